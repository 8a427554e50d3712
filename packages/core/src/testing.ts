/**
 * Test support (exported as `@siptm/core/testing`): the one shape of a test
 * bed (`TestBed`: engines on a virtual clock over an in-memory network,
 * scripted peers, time moved by the test), core's own bed of it (`Testbed`,
 * the core Engine), and the automatic leak check that runs after every test
 * (`checkAllBeds`) — every engine made by any bed, this one or those of
 * `@siptm/workers/testing`, is run past its longest timer and must show
 * created == freed, an empty table, no armed timer and no reference fault.
 */
import { VirtualClock } from "./clock.js";
import { internals } from "./engine/context.js";
import { Engine, type EngineOptions } from "./engine.js";
import { parseMessage } from "./message/parser.js";
import type { SipMessage, SipRequest } from "./message/types.js";
import { liveStreamTransports } from "./transport/live.js";
import { type MemoryFaults, MemoryNetwork } from "./transport/memory.js";
import type { Destination, Source, Transport } from "./transport/types.js";

/** What a UAS behind a proxy saw of a request (the proxy suites): which UAS, the method, Max-Forwards, Vias, Record-Route. */
export interface SeenRequest {
  uas: number;
  method: string;
  mf: number | undefined;
  vias: number;
  rr: string[];
}

export function seenRequest(uas: number, req: SipRequest): SeenRequest {
  return {
    uas,
    method: req.method,
    mf: req.maxForwards,
    vias: req.viaCount,
    rr: req.headerValues("record-route"),
  };
}

/** A scripted SIP peer: records what it receives, sends what the test tells it. */
export class Peer {
  readonly received: Array<{ data: Buffer; msg: SipMessage; source: Source }> = [];
  transport!: Transport;
  constructor(readonly protocol: "UDP" | "TCP") {}
  onMessage(data: Buffer, source: Source): void {
    this.received.push({ data, msg: parseMessage(data, { datagram: source.protocol === "UDP" }), source });
  }
  /** Messages received so far, parsed, optionally only those whose method (requests) or CSeq method matches. */
  messages(filter?: (m: SipMessage) => boolean): SipMessage[] {
    const all = this.received.map((r) => r.msg);
    return filter ? all.filter(filter) : all;
  }
  requests(method?: string): SipRequest[] {
    return this.messages((m) => m.isRequest && (method === undefined || m.method === method)) as SipRequest[];
  }
  last(): { data: Buffer; msg: SipMessage; source: Source } {
    const r = this.received[this.received.length - 1];
    if (!r) throw new Error("the peer received nothing");
    return r;
  }
  /** Send raw text (CRLF line ends expected) or bytes to a destination. */
  send(data: Buffer | string, dest: Destination): void {
    this.transport.send(typeof data === "string" ? Buffer.from(data, "latin1") : data, dest);
  }
  get hop(): Destination {
    return { protocol: this.protocol, address: this.transport.localAddress, port: this.transport.localPort };
  }
  /** A peer at address:port on `network` (what every bed's `peer()` makes). */
  static on(network: MemoryNetwork, address: string, port = 5060, protocol: "UDP" | "TCP" = "UDP"): Peer {
    const peer = new Peer(protocol);
    peer.transport = network.createTransport({ address, port, protocol, sink: peer });
    return peer;
  }
}

/**
 * The one shape of a test bed, whichever engine it runs. Core's `Testbed`
 * answers at once (the core Engine, one thread); the beds of
 * `@siptm/workers/testing` answer with promises (the core Engine made the same
 * way, and the ShardedEngine with its shard threads in lockstep). A test that
 * awaits every call runs on either; `forEachEngine` (test/setup/engines.ts)
 * runs one on every engine kind. Every bed is tracked from its construction
 * (`trackBed`) and checked and closed after each test (`checkAllBeds`).
 */
export interface TestBed<E = unknown, O = never> {
  /** The engine it runs: "core" or "sharded". */
  readonly kind: string;
  readonly clock: VirtualClock;
  readonly network: MemoryNetwork;
  /** A new engine on the memory network. */
  engine(opts?: O): E | Promise<E>;
  /** A scripted peer at address:port. */
  peer(address: string, port?: number, protocol?: "UDP" | "TCP"): Peer;
  /** Deliver and process everything due now, without moving time. */
  flush(): void | Promise<void>;
  /** Move time forward by `ms`, everything due on the way processed in order. */
  advance(ms: number): void | Promise<void>;
  /** Run the clocks past every engine's longest timer. */
  settle(): void | Promise<void>;
  /** Problems found after settling: leaks, armed timers, reference faults. */
  leaks(): string[] | Promise<string[]>;
  /** End the bed's engines (and threads). */
  close(): void | Promise<void>;
}

export interface TestbedOptions extends Partial<MemoryFaults> {
  seed?: number;
  /** Keep the in-memory network's log of message fates (`bed.network.log`). */
  log?: boolean | number;
}

export interface TestEngineOptions extends EngineOptions {
  /** Address of the engine's transports. Default 127.0.0.N for the N-th engine. */
  address?: string;
  port?: number;
  /** Which memory transports to attach. Default both. */
  protocols?: Array<"UDP" | "TCP">;
}

/** The core Engine's bed: everything happens within the call (flush, advance and settle return nothing to await). */
export class Testbed implements TestBed<Engine, TestEngineOptions> {
  readonly kind = "core" as const;
  readonly clock = new VirtualClock(0);
  readonly network: MemoryNetwork;
  readonly engines: Engine[] = [];

  constructor(opts: TestbedOptions = {}) {
    this.network = new MemoryNetwork({ clock: this.clock, ...opts });
    trackBed(this);
  }

  /** A new engine with memory UDP and TCP transports, reference faults thrown. */
  engine(opts: TestEngineOptions = {}): Engine {
    const address = opts.address ?? `127.0.0.${this.engines.length + 1}`;
    const port = opts.port ?? 5060;
    const engine = new Engine({ refFaults: "throw", ...opts, clock: this.clock });
    for (const protocol of opts.protocols ?? ["UDP", "TCP"]) {
      engine.addTransport(this.network.createTransport({ address, port, protocol, sink: engine }));
    }
    this.engines.push(engine);
    return engine;
  }

  /** A scripted peer at address:port. */
  peer(address: string, port = 5060, protocol: "UDP" | "TCP" = "UDP"): Peer {
    return Peer.on(this.network, address, port, protocol);
  }

  /** Where an engine made here listens, for `nextHop`. */
  static hop(engine: Engine, protocol: "UDP" | "TCP" = "UDP"): Destination {
    const t = engine.transportFor(protocol);
    if (!t) throw new Error(`engine has no ${protocol} transport`);
    return { protocol, address: t.localAddress, port: t.localPort };
  }

  /** Deliver what is due now without moving time. */
  flush(): void {
    this.clock.advance(0);
  }
  advance(ms: number): void {
    this.clock.advance(ms);
  }

  /** Run the clock past every engine's longest timer. */
  settle(): void {
    let longest = 0;
    for (const e of this.engines) longest = Math.max(longest, e.longestTimer);
    this.clock.advance(longest + 1_000);
  }

  /** Problems found after settling: leaks, armed timers, reference faults. */
  leaks(): string[] {
    this.settle();
    const out: string[] = [];
    this.engines.forEach((e, i) => {
      const s = e.stats;
      if (s.created !== s.freed) {
        const live = e
          .audit()
          .map((a) => `${a.id} ${a.kind} ${a.method} ${a.state} holders=[${a.holders.join(",")}]`);
        out.push(
          `engine #${i}: created ${s.created} != freed ${s.freed}; live: ${live.join("; ") || "(none in table)"}`,
        );
      }
      if (s.ctx_created !== s.ctx_freed)
        out.push(`engine #${i}: proxy contexts created ${s.ctx_created} != freed ${s.ctx_freed}`);
      const inTable = internals(e).table.size;
      if (inTable !== 0) out.push(`engine #${i}: ${inTable} transactions still in the table`);
      if (e.armedTimers !== 0) out.push(`engine #${i}: ${e.armedTimers} timers still armed`);
      if (e.refFaults.length)
        out.push(`engine #${i}: reference faults: ${e.refFaults.map((f) => f.message).join("; ")}`);
    });
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.engines.map((e) => e.close()));
  }
}

/**
 * The beds made and not yet checked. On `globalThis`, so that one set holds them whichever copy of
 * this module made them (a test may import the sources, a bed of @siptm/workers the built package).
 */
const BEDS_KEY = Symbol.for("siptm.testing.beds");
function beds(): Set<TestBed> {
  const g = globalThis as { [BEDS_KEY]?: Set<TestBed> };
  g[BEDS_KEY] ??= new Set();
  return g[BEDS_KEY];
}

/** Check `bed` after the test that made it (every bed's constructor calls this). */
export function trackBed(bed: TestBed): void {
  beds().add(bed);
}

/** No separate check of `bed`: a bed built on it checks it as part of its own. */
export function untrackBed(bed: TestBed): void {
  beds().delete(bed);
}

/**
 * Called after every test (test/setup/leak-check.ts): checks, closes and forgets every bed made
 * during the test, of any kind. A bed whose check throws is reported, not skipped.
 */
/** The stream transports open now (to tell later which ones a test made). */
export function openStreamTransports(): ReadonlySet<object> {
  return new Set(liveStreamTransports());
}

/**
 * No stream transport left with a connection open (or a handshake in
 * progress) once a test is over — of those not in `before` (made by the test;
 * a file's own transports are checked after the file). Closes are
 * asynchronous: it waits up to `waitMs` for the last ones before naming those
 * still open.
 */
export async function checkOpenConnections(before?: ReadonlySet<object>, waitMs = 2000): Promise<string[]> {
  const open = () =>
    [...liveStreamTransports()].filter(
      (t) => !before?.has(t) && (t.connectionCount > 0 || (t.handshakes ?? 0) > 0),
    );
  const deadline = Date.now() + waitMs;
  while (open().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return open().map(
    (t) =>
      `${t.protocol} transport ${t.localAddress}:${t.localPort}: ${t.connectionCount} connection(s)` +
      `${t.handshakes ? ` and ${t.handshakes} handshake(s)` : ""} left open`,
  );
}

export async function checkAllBeds(): Promise<string[]> {
  const problems: string[] = [];
  const all = [...beds()];
  beds().clear();
  for (const bed of all) {
    try {
      problems.push(...(await bed.leaks()));
    } catch (err) {
      problems.push(`${bed.kind} bed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      await Promise.resolve()
        .then(() => bed.close())
        .catch(() => {});
    }
  }
  return problems;
}
