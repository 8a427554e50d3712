/**
 * What sits between the transports and the engine in one thread: the start
 * gate (no new requests before the route is ready) and, with --trace, the wire
 * log of every message in and out. Refusing new requests at shutdown is the
 * engine's own drain (`Engine.drain()`, see `shutdownServer` in server.ts).
 */
import type { Destination, Engine, SendErrorTarget, Source, Transport, TransportSink } from "@siptm/core";
import type { Logger } from "./log.js";

const RESPONSE_START = Buffer.from("SIP/2.0 ", "latin1");

export class Gate implements TransportSink {
  /** False until the route is installed: requests are dropped, responses pass. */
  private ready = false;

  constructor(
    private readonly engine: Engine,
    private readonly logger: Logger,
    private readonly trace: boolean,
  ) {}

  /** The route is ready: every message goes to the engine from now on. */
  open(): void {
    this.ready = true;
  }

  onMessage(data: Buffer, source: Source): void {
    if (this.trace) traceMessage(this.logger, "in", data, source.protocol, source.address, source.port);
    // Before the route is ready: UDP peers retransmit; TCP ones will time out at worst.
    if (this.ready || isResponse(data)) this.engine.onMessage(data, source);
  }

  onConnectionClosed(source: Source, inbound: boolean): void {
    this.engine.onConnectionClosed(source, inbound);
  }

  onFramingError(err: Error, source: Source): void {
    this.logger.debug({ err: err.message, peer: `${source.address}:${source.port}` }, "stream framing error");
  }
}

function isResponse(data: Buffer): boolean {
  return data.length >= RESPONSE_START.length && data.compare(RESPONSE_START, 0, 8, 0, 8) === 0;
}

/** A transport that logs every message it sends (--trace), then sends it. */
export class TracedTransport implements Transport {
  readonly protocol: Transport["protocol"];
  readonly reliable: boolean;
  readonly localAddress: string;
  readonly localPort: number;

  constructor(
    private readonly inner: Transport,
    private readonly logger: Logger,
  ) {
    this.protocol = inner.protocol;
    this.reliable = inner.reliable;
    this.localAddress = inner.localAddress;
    this.localPort = inner.localPort;
  }

  /** The wrapped transport's limit counters (TCP), for Engine.snapshot(). */
  get stats(): Transport["stats"] {
    return this.inner.stats;
  }

  send(data: Buffer, dest: Destination, onError?: SendErrorTarget): void {
    traceMessage(this.logger, "out", data, dest.protocol, dest.address, dest.port);
    this.inner.send(data, dest, onError);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * One --trace line: `dir`, `proto`, `peer`, `bytes` and the whole message in `sip`, at info. The same
 * in one thread (Gate, TracedTransport) and in each shard (shard-route.ts, whose logger adds `shard`).
 */
export function traceMessage(
  logger: Logger,
  dir: "in" | "out",
  data: Buffer,
  protocol: string,
  address: string,
  port: number,
): void {
  const text = data.toString("utf8");
  const eol = text.indexOf("\r\n");
  logger.info(
    {
      dir,
      proto: protocol,
      peer: address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`,
      bytes: data.length,
      sip: text,
    },
    `${dir === "in" ? "<<" : ">>"} ${eol < 0 ? text.slice(0, 80) : text.slice(0, eol)}`,
  );
}
