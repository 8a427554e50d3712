import type { Clock } from "../clock.js";
import { normalizeAddress } from "./address.js";
import { hostPort, TransportBindError, TransportSendError } from "./errors.js";
import type { Destination, SendErrorTarget, Source, Transport, TransportSink } from "./types.js";

/** Network faults, applied to the unreliable (UDP) flavour only. */
export interface MemoryFaults {
  /** Probability (0..1) that a datagram is lost. */
  loss: number;
  /** Probability (0..1) that a datagram is delivered twice. */
  duplicate: number;
  /** Probability (0..1) that a datagram gets an extra delay (1..reorderDelayMs ms), so later ones may overtake it. */
  reorder: number;
  /** Base one-way delay, ms (every flavour). */
  delayMs: number;
  /** Largest extra delay of a reordered datagram, ms. Default 20. */
  reorderDelayMs: number;
}

export interface MemoryNetworkOptions extends Partial<MemoryFaults> {
  clock: Clock;
  /** PRNG seed for loss/duplication/reordering decisions. Default 1. */
  seed?: number;
  /** Keep a log of message fates: true = the last 1000, a number = the last N. Default: no log. */
  log?: boolean | number;
}

export type MemoryFate = "delivered" | "dropped" | "duplicated";

export interface MemoryLogEntry {
  /** Clock time of the fate (delivery time, or send time for a drop at send). */
  readonly at: number;
  /** "UDP 127.0.0.1:5060" */
  readonly from: string;
  readonly to: string;
  readonly data: Buffer;
  /** "duplicated" marks the extra copy of a duplicated datagram (the first copy is "delivered"). */
  readonly fate: MemoryFate;
}

/** Return "drop" to lose this message (applies to both flavours: the test asked for it). */
export type MemoryFilter = (data: Buffer, from: Source, to: Destination) => "pass" | "drop";

/** A simulated connection between two memory TCP transports. */
export interface MemoryConnection {
  readonly id: number;
  readonly a: MemoryTransport;
  readonly b: MemoryTransport;
  open: boolean;
  /** Latest delivery time scheduled in each direction, so order is kept whatever the delay does. */
  lastAtToA: number;
  lastAtToB: number;
}

/**
 * A simulated network for tests, driven by an injected clock (a `VirtualClock`
 * makes it fully deterministic). Every delivery goes through
 * `clock.setTimer`, even with no delay: nothing is delivered inside `send`.
 */
export class MemoryNetwork {
  private readonly clock: Clock;
  private readonly faults: MemoryFaults;
  private readonly rng: () => number;
  private readonly endpoints = new Map<string, MemoryTransport>();
  private readonly filters: MemoryFilter[] = [];
  private readonly logLimit: number;
  private readonly logEntries: MemoryLogEntry[] = [];
  private nextConnectionId = 1;
  private nextEphemeral = 49152;
  private deliveredCount = 0;
  private droppedCount = 0;

  constructor(opts: MemoryNetworkOptions) {
    this.clock = opts.clock;
    this.faults = {
      loss: opts.loss ?? 0,
      duplicate: opts.duplicate ?? 0,
      reorder: opts.reorder ?? 0,
      delayMs: opts.delayMs ?? 0,
      reorderDelayMs: opts.reorderDelayMs ?? 20,
    };
    checkFaults(this.faults);
    this.rng = mulberry32(opts.seed ?? 1);
    this.logLimit = opts.log === true ? 1000 : typeof opts.log === "number" ? Math.max(0, opts.log) : 0;
  }

  /** Messages handed to a sink (a duplicate counts twice). */
  get delivered(): number {
    return this.deliveredCount;
  }
  /** Messages lost: random loss, filters, nobody listening, receiver gone before delivery. */
  get dropped(): number {
    return this.droppedCount;
  }
  /** The last fates, oldest first (empty unless `log` was asked for). */
  get log(): ReadonlyArray<MemoryLogEntry> {
    return this.logEntries;
  }

  setFaults(faults: Partial<MemoryFaults>): void {
    const next = { ...this.faults, ...faults };
    checkFaults(next);
    Object.assign(this.faults, next);
  }

  /** Add a filter; returns a function that removes it. */
  addFilter(fn: MemoryFilter): () => void {
    this.filters.push(fn);
    return () => {
      const i = this.filters.indexOf(fn);
      if (i >= 0) this.filters.splice(i, 1);
    };
  }

  /** Attach a transport at `address:port` (port 0 = a free ephemeral port). Throws `TransportBindError` (EADDRINUSE) when taken. */
  createTransport(opts: {
    address: string;
    port: number;
    protocol?: "UDP" | "TCP";
    sink: TransportSink;
  }): MemoryTransport {
    const protocol = opts.protocol ?? "UDP";
    let port = opts.port;
    if (port === 0) {
      do {
        port = this.nextEphemeral++;
        if (this.nextEphemeral > 65535) this.nextEphemeral = 49152;
      } while (this.endpoints.has(endpointKey(protocol, opts.address, port)));
    }
    const key = endpointKey(protocol, opts.address, port);
    if (this.endpoints.has(key)) {
      const err = Object.assign(new Error("address in use"), { code: "EADDRINUSE" });
      throw new TransportBindError(protocol, opts.address, opts.port, err);
    }
    const transport = new MemoryTransport(this, protocol, opts.address, port, opts.sink);
    this.endpoints.set(key, transport);
    return transport;
  }

  /** Break a simulated TCP connection (both ends forget it). Returns false when there is none. */
  closeConnection(connectionId: number): boolean {
    for (const t of this.endpoints.values()) {
      const conn = t.connections.get(connectionId);
      if (conn) {
        this.dropConnection(conn);
        return true;
      }
    }
    return false;
  }

  // --- internal, called by MemoryTransport ---

  /** @internal */
  detach(transport: MemoryTransport): void {
    const key = endpointKey(transport.protocol, transport.localAddress, transport.localPort);
    if (this.endpoints.get(key) === transport) this.endpoints.delete(key);
    for (const conn of [...transport.connections.values()]) this.dropConnection(conn);
  }

  /** @internal */
  route(
    from: MemoryTransport,
    original: Buffer,
    dest: Destination,
    onError: SendErrorTarget | undefined,
  ): void {
    // The sender may reuse its buffer as soon as send returns.
    const data = Buffer.from(original);
    if (from.protocol === "TCP") this.routeStream(from, data, dest, onError);
    else this.routeDatagram(from, data, dest);
  }

  private routeDatagram(from: MemoryTransport, data: Buffer, dest: Destination): void {
    const source = sourceOf("UDP", from, dest.address, dest.port);
    const to = describe("UDP", dest.address, dest.port);
    const fromText = describe("UDP", from.localAddress, from.localPort);
    // Always four draws per datagram, so changing one probability does not shift the others' streams.
    const rLoss = this.rng();
    const rDup = this.rng();
    const rReorder = this.rng();
    const rExtra = this.rng();
    if (!this.passesFilters(data, source, dest) || rLoss < this.faults.loss) {
      this.drop(fromText, to, data);
      return;
    }
    const now = this.clock.now();
    const extra = rReorder < this.faults.reorder ? 1 + Math.floor(rExtra * this.faults.reorderDelayMs) : 0;
    const deliver = (fate: MemoryFate) => () => {
      // Looked up at delivery time: whoever is bound there then gets it (or nobody).
      const target = this.endpoints.get(endpointKey("UDP", dest.address, dest.port));
      if (!target) this.drop(fromText, to, data);
      else this.deliver(target, data, source, fromText, to, fate);
    };
    this.clock.setTimer(now + this.faults.delayMs + extra, deliver("delivered"));
    if (rDup < this.faults.duplicate) {
      // The copy travels on its own, a little later.
      this.clock.setTimer(now + this.faults.delayMs + extra + 1, deliver("duplicated"));
    }
  }

  private routeStream(
    from: MemoryTransport,
    data: Buffer,
    dest: Destination,
    onError: SendErrorTarget | undefined,
  ): void {
    let conn: MemoryConnection | undefined;
    if (dest.connectionId !== undefined) conn = from.connections.get(dest.connectionId);
    if (!conn) conn = from.connectionsByPeer.get(peerKey(dest.address, dest.port));
    if (!conn) {
      const peer = this.endpoints.get(endpointKey("TCP", dest.address, dest.port));
      if (!peer) {
        const fromText = describe("TCP", from.localAddress, from.localPort);
        this.drop(fromText, describe("TCP", dest.address, dest.port), data);
        if (onError) {
          const err = new TransportSendError("ECONNREFUSED", dest, "nobody listening");
          this.clock.setTimer(this.clock.now() + this.faults.delayMs, () => onError.transportError(err));
        }
        return;
      }
      conn = this.openConnection(from, peer);
    }
    const toA = conn.b === from;
    const peer = toA ? conn.a : conn.b;
    const source: Source = {
      ...sourceOf("TCP", from, peer.localAddress, peer.localPort),
      connectionId: conn.id,
    };
    const fromText = describe("TCP", from.localAddress, from.localPort);
    const to = describe("TCP", peer.localAddress, peer.localPort);
    const target: Destination = { protocol: "TCP", address: peer.localAddress, port: peer.localPort };
    if (!this.passesFilters(data, source, target)) {
      this.drop(fromText, to, data);
      return;
    }
    // Reliable and in order: no random faults, and never earlier than the previous message this way.
    let at = this.clock.now() + this.faults.delayMs;
    if (toA) {
      at = Math.max(at, conn.lastAtToA);
      conn.lastAtToA = at;
    } else {
      at = Math.max(at, conn.lastAtToB);
      conn.lastAtToB = at;
    }
    const c = conn;
    this.clock.setTimer(at, () => {
      if (!c.open || peer.isClosed) this.drop(fromText, to, data);
      else this.deliver(peer, data, source, fromText, to, "delivered");
    });
  }

  private openConnection(a: MemoryTransport, b: MemoryTransport): MemoryConnection {
    const conn: MemoryConnection = {
      id: this.nextConnectionId++,
      a,
      b,
      open: true,
      lastAtToA: 0,
      lastAtToB: 0,
    };
    a.connections.set(conn.id, conn);
    b.connections.set(conn.id, conn);
    const toB = peerKey(b.localAddress, b.localPort);
    const toA = peerKey(a.localAddress, a.localPort);
    if (!a.connectionsByPeer.has(toB)) a.connectionsByPeer.set(toB, conn);
    if (!b.connectionsByPeer.has(toA)) b.connectionsByPeer.set(toA, conn);
    return conn;
  }

  private dropConnection(conn: MemoryConnection): void {
    conn.open = false;
    for (const [end, other] of [
      [conn.a, conn.b],
      [conn.b, conn.a],
    ] as const) {
      end.connections.delete(conn.id);
      const key = peerKey(other.localAddress, other.localPort);
      if (end.connectionsByPeer.get(key) === conn) end.connectionsByPeer.delete(key);
    }
  }

  private passesFilters(data: Buffer, from: Source, to: Destination): boolean {
    for (const f of [...this.filters]) if (f(data, from, to) === "drop") return false;
    return true;
  }

  private deliver(
    target: MemoryTransport,
    data: Buffer,
    source: Source,
    from: string,
    to: string,
    fate: MemoryFate,
  ): void {
    this.deliveredCount++;
    this.record(from, to, data, fate);
    // Each delivery gets its own copy: a sink may keep or edit it.
    target.receive(Buffer.from(data), source);
  }

  private drop(from: string, to: string, data: Buffer): void {
    this.droppedCount++;
    this.record(from, to, data, "dropped");
  }

  private record(from: string, to: string, data: Buffer, fate: MemoryFate): void {
    if (this.logLimit === 0) return;
    this.logEntries.push({ at: this.clock.now(), from, to, data, fate });
    if (this.logEntries.length > this.logLimit)
      this.logEntries.splice(0, this.logEntries.length - this.logLimit);
  }
}

/** One endpoint on a `MemoryNetwork`. */
export class MemoryTransport implements Transport {
  readonly reliable: boolean;
  /** @internal connections by id (TCP flavour). */
  readonly connections = new Map<number, MemoryConnection>();
  /** @internal connections by peer "address|port" (TCP flavour), for reuse. */
  readonly connectionsByPeer = new Map<string, MemoryConnection>();
  private closed = false;

  /** @internal use `MemoryNetwork.createTransport`. */
  constructor(
    private readonly network: MemoryNetwork,
    readonly protocol: "UDP" | "TCP",
    readonly localAddress: string,
    readonly localPort: number,
    private readonly sink: TransportSink,
  ) {
    this.reliable = protocol === "TCP";
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Simulated connections this endpoint is part of (TCP flavour). */
  get connectionCount(): number {
    return this.connections.size;
  }

  send(data: Buffer, dest: Destination, onError?: SendErrorTarget): void {
    if (this.closed) {
      if (onError) {
        const err = new TransportSendError("ECLOSED", dest, "transport closed");
        queueMicrotask(() => onError.transportError(err));
      }
      return;
    }
    this.network.route(this, data, dest, onError);
  }

  /** @internal */
  receive(data: Buffer, source: Source): void {
    if (!this.closed) this.sink.onMessage(data, source);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.network.detach(this);
    }
    return Promise.resolve();
  }
}

function endpointKey(protocol: string, address: string, port: number): string {
  return `${protocol}|${normalizeAddress(address)}|${port}`;
}

function peerKey(address: string, port: number): string {
  return `${normalizeAddress(address)}|${port}`;
}

function describe(protocol: string, address: string, port: number): string {
  return `${protocol} ${hostPort(address, port)}`;
}

/** Where a message from `from` comes from, as its receiver at localAddress:localPort sees it. */
function sourceOf(
  protocol: "UDP" | "TCP",
  from: MemoryTransport,
  localAddress: string,
  localPort: number,
): Source {
  return { protocol, address: from.localAddress, port: from.localPort, localAddress, localPort };
}

function checkFaults(f: MemoryFaults): void {
  for (const name of ["loss", "duplicate", "reorder"] as const) {
    const v = f[name];
    if (!(v >= 0 && v <= 1)) throw new RangeError(`MemoryNetwork: ${name} must be in 0..1, got ${v}`);
  }
  if (!(f.delayMs >= 0)) throw new RangeError(`MemoryNetwork: delayMs must be >= 0, got ${f.delayMs}`);
  if (!(f.reorderDelayMs >= 0)) throw new RangeError(`MemoryNetwork: reorderDelayMs must be >= 0`);
}

/**
 * mulberry32: a small 32-bit PRNG, plenty for fault injection. Returns [0, 1).
 * Exported for the tests that want a seeded sequence of their own.
 */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
