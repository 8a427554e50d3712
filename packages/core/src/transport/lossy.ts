/**
 * A lossy link: a decorator that drops a seeded-random fraction of the
 * datagrams a real transport sends and receives, so tests against a real
 * peer exercise the retransmission timers (RFC 3261 §17) on both sides.
 *
 * A transport needs its sink when it is created, so the link wraps both ends
 * separately, sharing one random sequence and one set of counters:
 *
 *   const link = lossy({ loss: 0.1, seed: 7 });
 *   const udp = await createUdpTransport({ address, port: 0, sink: link.sink(engine) });
 *   engine.addTransport(link.wrap(udp));
 *
 * A dropped send is silent, like a datagram lost on the wire: the caller's
 * `onError` is not told. Only meant for unreliable transports: dropping a
 * message framed out of a stream would not model any real network.
 */
import type { Destination, SendErrorTarget, Source, Transport, TransportSink } from "./types.js";

export type LossDirection = "send" | "receive";

export interface LossyOptions {
  /** Fraction (0..1) of datagrams dropped in each direction the link applies to. */
  loss: number;
  /** Seed of the random sequence: the same seed and the same traffic give the same drops. Default 1. */
  seed?: number;
  /** Which way loss applies. Default "both". */
  direction?: LossDirection | "both";
  /**
   * Decide a datagram's fate yourself: return true to drop it, false to let
   * it through, undefined to leave it to the random draw. For tests that
   * lose one given message (the first 200 to a CANCEL…).
   */
  filter?: (data: Buffer, direction: LossDirection, peer: Destination | Source) => boolean | undefined;
}

export interface LossyCounters {
  sent: number;
  received: number;
  droppedSend: number;
  droppedReceive: number;
}

export interface LossyLink {
  /** Wrap the sink the inner transport will deliver to (usually the engine). */
  sink(inner: TransportSink): TransportSink;
  /** Wrap the transport the engine sends through. */
  wrap(inner: Transport): Transport;
  /** Datagrams dropped so far, both directions. */
  readonly dropped: number;
  /** Datagrams that went through and were dropped, per direction. */
  readonly counters: Readonly<LossyCounters>;
}

export function lossy(opts: LossyOptions): LossyLink {
  const loss = opts.loss;
  if (typeof loss !== "number" || !(loss >= 0 && loss <= 1))
    throw new RangeError(`lossy: loss must be a number in 0..1, got ${String(loss)}`);
  const direction = opts.direction ?? "both";
  if (direction !== "both" && direction !== "send" && direction !== "receive")
    throw new RangeError(`lossy: bad direction "${String(direction)}"`);
  const random = splitmix32(opts.seed ?? 1);
  const filter = opts.filter;
  const counters: LossyCounters = { sent: 0, received: 0, droppedSend: 0, droppedReceive: 0 };

  const drop = (data: Buffer, dir: LossDirection, peer: Destination | Source): boolean => {
    const decided = filter ? filter(data, dir, peer) : undefined;
    if (decided !== undefined) return decided;
    if (direction !== "both" && direction !== dir) return false;
    // One draw per datagram the loss applies to: the drops depend on the seed and the traffic only.
    return random() < loss;
  };

  return {
    sink(inner: TransportSink): TransportSink {
      const out: TransportSink = {
        onMessage(data: Buffer, source: Source): void {
          if (drop(data, "receive", source)) {
            counters.droppedReceive++;
            return;
          }
          counters.received++;
          inner.onMessage(data, source);
        },
      };
      if (inner.onFramingError) {
        const onFramingError = inner.onFramingError.bind(inner);
        out.onFramingError = (err: Error, source: Source) => onFramingError(err, source);
      }
      return out;
    },
    wrap(inner: Transport): Transport {
      return new LossyTransport(inner, (data, dest) => {
        if (drop(data, "send", dest)) {
          counters.droppedSend++;
          return true;
        }
        counters.sent++;
        return false;
      });
    },
    get dropped(): number {
      return counters.droppedSend + counters.droppedReceive;
    },
    counters,
  };
}

class LossyTransport implements Transport {
  readonly protocol: Transport["protocol"];
  readonly reliable: boolean;

  constructor(
    private readonly inner: Transport,
    private readonly dropSend: (data: Buffer, dest: Destination) => boolean,
  ) {
    this.protocol = inner.protocol;
    this.reliable = inner.reliable;
  }
  get localAddress(): string {
    return this.inner.localAddress;
  }
  get localPort(): number {
    return this.inner.localPort;
  }
  send(data: Buffer, dest: Destination, onError?: SendErrorTarget): void {
    if (this.dropSend(data, dest)) return;
    this.inner.send(data, dest, onError);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** splitmix32: a small seeded PRNG (32-bit state), plenty for loss decisions. Returns [0, 1). */
function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    z ^= z >>> 15;
    return (z >>> 0) / 0x1_0000_0000;
  };
}
