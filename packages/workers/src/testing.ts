/**
 * Test beds that run one test against either engine (exported as
 * `@siptm/workers/testing`): the one-thread core `Engine` and the
 * `ShardedEngine`, both on a virtual clock over the in-memory network, so the
 * transaction and CANCEL suites (test/engines) are written once and run on
 * both. A test talks to a `BedEngine` (the `TransactionEngine` API plus the
 * server handler and its address) and moves time with `await bed.flush()` /
 * `await bed.advance(ms)`.
 *
 * The sharded bed runs real shards (worker threads, batches, comlink), in
 * lockstep: every shard's engine has its own virtual clock, moved only by the
 * bed. To move time to T the bed repeats, until nothing moves any more: wait
 * for the control calls in flight, tell every shard to move its clock to T
 * (`syncShards`: the shard runs what falls due and answers after everything it
 * sent, on the same FIFO port), then move the main clock to T (the in-memory
 * network delivers to the peers and to the coordinators). Going further, it
 * stops at every deadline of any clock on the way. So a 32 s Timer D in a
 * shard also takes microseconds, and a test sees the same order of events on
 * both engines.
 *
 * Both beds have the one shape of a test bed, core's `TestBed` (the core
 * `Testbed` is the third, for core's own tests), and `BED_KINDS` is the one
 * list of engine kinds a suite runs on (`forEachEngine`, test/setup/engines.ts).
 *
 * Every bed made here is checked after each test (test/setup/leak-check.ts,
 * core's `checkAllBeds`): its clocks are run past the longest timer, and each
 * engine — each shard — must show created == freed, no proxy context left, an
 * empty table, no armed timer and no reference fault; a sharded engine also
 * no lost transaction, no restart and no main-thread handle left. Then the
 * bed's threads are ended.
 */

import { pathToFileURL } from "node:url";
import {
  type Destination,
  type Engine,
  type EngineOptions,
  MemoryNetwork,
  type RequestOptions,
  VirtualClock,
} from "@siptm/core";
import { Peer, type TestBed, Testbed, type TestbedOptions, trackBed, untrackBed } from "@siptm/core/testing";
import {
  type ClientTransactionLike,
  type MaybePromise,
  type ServerTransactionLike,
  type TransactionEngine,
  wrapEngine,
} from "./api.js";
import { ShardedEngine } from "./coordinator.js";
import type { ShardServerHandle } from "./handles.js";
import { callsDone, handlesLive, shardHealth, shardsIdle, shardsNextDue, syncShards } from "./lockstep.js";
import type { RequestFromOptions, ShardHealth } from "./protocol.js";
import type { ShardRouteContext } from "./shard.js";

export {
  blockShard,
  callsDone,
  crashShard,
  handlesLive,
  reportNow,
  shardHealth,
  shardsIdle,
  shardsNextDue,
  syncShards,
} from "./lockstep.js";

export type BedKind = "core" | "sharded";

export interface BedOptions extends TestbedOptions {
  /** Sharded beds: shards per engine. Default 2. */
  shards?: number;
}

/** Engine options a bed accepts: plain data, so that they can be cloned into shards. */
export interface BedEngineOptions
  extends Omit<EngineOptions, "clock" | "logger" | "onRequest" | "branchPrefix" | "id" | "resolver"> {
  /** Address of the engine's transports. Default 127.0.0.N for the N-th engine of the bed. */
  address?: string;
  port?: number;
  /** Which transports to attach. Default UDP and TCP. */
  protocols?: Array<"UDP" | "TCP">;
  /**
   * A route module (plain JS, absolute path or file URL) installed on the
   * engine: in each shard of a sharded engine, on the engine itself for the
   * core one. Its default export gets `(engine, ctx)` as in ShardedEngine's `route`.
   */
  route?: string;
}

/** An engine of a bed: the common API, the server handler, and where it listens. */
export interface BedEngine extends TransactionEngine {
  readonly kind: BedKind;
  /** A request written in full (core's `requestFrom`). */
  requestFrom(
    message: Buffer | string,
    opts?: RequestFromOptions &
      Pick<RequestOptions, "onProvisional" | "onResponse" | "onFinal" | "onCancel" | "onTerminated">,
  ): MaybePromise<ClientTransactionLike>;
  /** New server transactions. Unset: 501, as the core engine does. */
  onRequest: ((tx: ServerTransactionLike) => void) | undefined;
  /** Where it listens, for `nextHop` and for peers. */
  hop(protocol?: "UDP" | "TCP"): Destination;
}

export abstract class EngineBed implements TestBed<BedEngine, BedEngineOptions> {
  abstract readonly kind: BedKind;
  abstract readonly clock: VirtualClock;
  abstract readonly network: MemoryNetwork;
  constructor() {
    trackBed(this);
  }
  abstract engine(opts?: BedEngineOptions): Promise<BedEngine>;
  abstract peer(address: string, port?: number, protocol?: "UDP" | "TCP"): Peer;
  /** Deliver and process everything due now, without moving time. */
  abstract flush(): Promise<void>;
  /** Move time forward by `ms`, everything due on the way processed in order. */
  abstract advance(ms: number): Promise<void>;
  /** The longest timer of any engine made here (ms). */
  protected abstract get longestTimer(): number;
  /** Run the clocks past every engine's longest timer. */
  settle(): Promise<void> {
    return this.advance(this.longestTimer + 1_000);
  }
  /** Problems found after settling: leaks, armed timers, reference faults. */
  abstract leaks(): Promise<string[]>;
  abstract close(): Promise<void>;
}

function describeLeaks(name: string, h: ShardHealth): string[] {
  const out: string[] = [];
  if (h.created !== h.freed)
    out.push(
      `${name}: created ${h.created} != freed ${h.freed}; live: ${h.live.join("; ") || "(none in table)"}`,
    );
  if (h.ctxCreated !== h.ctxFreed)
    out.push(`${name}: proxy contexts created ${h.ctxCreated} != freed ${h.ctxFreed}`);
  if (h.table !== 0) out.push(`${name}: ${h.table} transactions still in the table`);
  if (h.armedTimers !== 0) out.push(`${name}: ${h.armedTimers} timers still armed`);
  if (h.refFaults.length) out.push(`${name}: reference faults: ${h.refFaults.join("; ")}`);
  return out;
}

// --- the core engine -------------------------------------------------------------------

/** The one-thread core Engine on core's Testbed. */
export class CoreBed extends EngineBed {
  readonly kind = "core" as const;
  private readonly bed: Testbed;
  readonly engines: Engine[] = [];
  constructor(opts: BedOptions = {}) {
    super();
    const { shards: _shards, ...rest } = opts;
    this.bed = new Testbed(rest);
    // Checked as part of this bed (leaks() settles the promise jobs of its routes first).
    untrackBed(this.bed);
  }
  get clock(): VirtualClock {
    return this.bed.clock;
  }
  get network(): MemoryNetwork {
    return this.bed.network;
  }
  async engine(opts: BedEngineOptions = {}): Promise<BedEngine> {
    const { route, ...engineOpts } = opts;
    const engine = this.bed.engine(engineOpts);
    this.engines.push(engine);
    if (route !== undefined) {
      const mod = (await import(routeUrl(route))) as {
        default: (engine: Engine, ctx: ShardRouteContext) => unknown;
      };
      const listeners = (opts.protocols ?? ["UDP", "TCP"]).map((protocol) => {
        const t = engine.transportFor(protocol)!;
        return { protocol, address: t.localAddress, port: t.localPort };
      });
      const ctx: ShardRouteContext = {
        shard: 0,
        shards: 1,
        incarnation: 1,
        forward: undefined,
        keys: {},
        listeners,
        // One thread: nothing to call from another one, nothing to trace here.
        provide: () => {},
        onClose: () => {},
        tap: () => {},
      };
      await mod.default(engine, ctx);
    }
    const api = wrapEngine(engine);
    return {
      ...api,
      kind: "core",
      requestFrom: (message, o) => engine.requestFrom(message, o),
      get onRequest() {
        return engine.onRequest as ((tx: ServerTransactionLike) => void) | undefined;
      },
      set onRequest(fn) {
        engine.onRequest = fn;
      },
      hop: (protocol = "UDP") => Testbed.hop(engine, protocol),
    };
  }
  peer(address: string, port = 5060, protocol: "UDP" | "TCP" = "UDP"): Peer {
    return this.bed.peer(address, port, protocol);
  }
  /** What is due now, then the promise jobs it started (a route's async next-hop resolution…), until nothing is due. */
  async flush(): Promise<void> {
    const clock = this.clock;
    for (;;) {
      this.bed.flush();
      await tick();
      const due = clock.nextDue();
      if (due === undefined || due > clock.now()) return;
    }
  }
  /** Deadline by deadline, with the promise jobs of each settled before the next. */
  async advance(ms: number): Promise<void> {
    const clock = this.clock;
    const target = clock.now() + ms;
    for (;;) {
      await this.flush();
      const due = clock.nextDue();
      if (due === undefined || due > target) break;
      clock.advanceTo(due);
    }
    clock.advanceTo(target);
    await this.flush();
  }
  protected get longestTimer(): number {
    return Math.max(0, ...this.engines.map((e) => e.longestTimer));
  }
  async leaks(): Promise<string[]> {
    await this.settle();
    return this.bed.leaks();
  }
  async close(): Promise<void> {
    await Promise.all(this.engines.map((e) => e.close()));
  }
}

// --- the sharded engine ----------------------------------------------------------------

interface ShardedEntry {
  engine: ShardedEngine;
  longestTimer: number;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Real time a lockstep step may take before the bed gives up (a shard that never answers). */
const STEP_LIMIT_MS = 10_000;

/** The ShardedEngine: real shard threads, every clock in lockstep with the bed's. */
export class ShardedBed extends EngineBed {
  readonly kind = "sharded" as const;
  readonly clock = new VirtualClock(0);
  readonly network: MemoryNetwork;
  readonly engines: ShardedEntry[] = [];
  private readonly shards: number;

  constructor(opts: BedOptions = {}) {
    super();
    const { shards, ...faults } = opts;
    this.shards = shards ?? 2;
    this.network = new MemoryNetwork({ clock: this.clock, ...faults });
  }

  async engine(opts: BedEngineOptions = {}): Promise<BedEngine> {
    // The rate limit is the coordinator's (before any shard), on the bed's clock.
    const { address: addr, port: p, protocols, route, rateLimit, ...engineOpts } = opts;
    const address = addr ?? `127.0.0.${this.engines.length + 1}`;
    const port = p ?? 5060;
    let handler: ((tx: ServerTransactionLike) => void) | undefined;
    const network = this.network;
    const engine = await ShardedEngine.create({
      shards: this.shards,
      listen: (protocols ?? ["UDP", "TCP"]).map((protocol) => ({ protocol, address, port })),
      transportFactory: (l, sink) =>
        network.createTransport({
          address: l.address,
          port: l.port,
          protocol: l.protocol === "UDP" ? "UDP" : "TCP",
          sink,
        }),
      virtualClock: this.clock,
      engine: { refFaults: "count", ...engineOpts },
      rateLimit,
      // Always forwarded to the main thread, so that a test may set its handler at any time.
      onRequest: (tx: ShardServerHandle) => {
        if (handler) handler(tx);
        else tx.reply(501).catch(() => {});
      },
      drainTimeoutMs: 0,
      testHooks: true,
      route: route === undefined ? undefined : routeUrl(route),
    });
    const health = await shardHealth(engine);
    this.engines.push({ engine, longestTimer: Math.max(0, ...health.map((h) => h.longestTimer)) });
    return {
      kind: "sharded",
      get onRequest() {
        return handler;
      },
      set onRequest(fn) {
        handler = fn;
      },
      hop: (protocol = "UDP") => {
        const l = engine.addresses.find((a) => a.protocol === protocol);
        if (!l) throw new Error(`engine has no ${protocol} transport`);
        return { protocol, address: l.address, port: l.port };
      },
      request: (o) => engine.request(o),
      requestFrom: (message, o) => engine.requestFrom(message, o),
      cancel: (callId, cseq, reason) => engine.cancel(callId, cseq, reason),
      replyById: (id, status, o) => engine.replyById(id, status, o),
      replyByCallId: (callId, cseq, status, o) => engine.replyByCallId(callId, cseq, status, o),
      ack2xx: (invite, answer) => engine.ack2xx(invite, answer),
      stats: () => engine.stats(),
      audit: () => engine.audit(),
      auditPage: (after, limit) => engine.auditPage(after, limit),
      close: () => engine.close(),
    };
  }

  peer(address: string, port = 5060, protocol: "UDP" | "TCP" = "UDP"): Peer {
    return Peer.on(this.network, address, port, protocol);
  }

  /**
   * Everything due at `t` (main clock and every shard's) processed, until
   * nothing moves. The main clock's events — a datagram delivered, a peer's
   * timer — run ONE at a time, each settled everywhere before the next: what
   * the core engine does within one call (a handler's reply goes out before
   * the next datagram is read) holds here too, across threads.
   */
  private async stepTo(t: number): Promise<void> {
    const started = Date.now();
    const synced = new Set<ShardedEntry>();
    for (;;) {
      if (Date.now() - started > STEP_LIMIT_MS) throw new Error(`lockstep: no rest at t=${t} ms`);
      await tick();
      // Control calls in flight (a reply from a handler, a cancel…) finish in the shards first.
      while (!this.engines.every((e) => callsDone(e.engine))) {
        if (Date.now() - started > STEP_LIMIT_MS) throw new Error("lockstep: a control call never answered");
        await tick();
      }
      let moved = false;
      for (const e of this.engines) {
        if (synced.has(e) && shardsIdle(e.engine)) continue;
        await syncShards(e.engine, t);
        synced.add(e);
        moved = true;
      }
      if (moved) continue;
      if (this.clock.runNext(t)) continue;
      await tick();
      if (this.engines.every((e) => shardsIdle(e.engine)) && !this.clock.runNext(t)) {
        this.clock.advanceTo(t);
        return;
      }
    }
  }

  private nextDue(): number | undefined {
    let due = this.clock.nextDue();
    for (const e of this.engines) {
      const d = shardsNextDue(e.engine);
      if (d !== undefined && (due === undefined || d < due)) due = d;
    }
    return due;
  }

  private async advanceTo(target: number): Promise<void> {
    for (;;) {
      await this.stepTo(this.clock.now());
      const due = this.nextDue();
      if (due === undefined || due > target) break;
      await this.stepTo(due);
    }
    await this.stepTo(target);
  }

  flush(): Promise<void> {
    return this.advanceTo(this.clock.now());
  }
  advance(ms: number): Promise<void> {
    return this.advanceTo(this.clock.now() + ms);
  }
  protected get longestTimer(): number {
    return Math.max(0, ...this.engines.map((e) => e.longestTimer));
  }

  async leaks(): Promise<string[]> {
    await this.settle();
    const out: string[] = [];
    for (const [i, e] of this.engines.entries()) {
      for (const h of await shardHealth(e.engine))
        out.push(...describeLeaks(`engine #${i} shard ${h.shard}`, h));
      const st = await e.engine.stats();
      if (st.lost !== 0 || st.restarts !== 0)
        out.push(`engine #${i}: ${st.lost} transaction(s) lost, ${st.restarts} shard restart(s)`);
      if (handlesLive(e.engine) !== 0)
        out.push(`engine #${i}: ${handlesLive(e.engine)} main-thread handle(s) never told their end`);
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.engines.map((e) => e.engine.close()));
  }
}

function routeUrl(route: string): string {
  return route.startsWith("file:") ? route : pathToFileURL(route).href;
}

/** An engine a suite runs on: its name, kind, shard threads (0: the core engine), and a test bed of it. */
export interface EngineKind {
  readonly name: string;
  readonly kind: BedKind;
  /** Shard threads; 0 for the one-thread core engine (what `siptm serve --workers` takes). */
  readonly shards: number;
  /** A test bed of this engine on a virtual clock. */
  make(opts?: BedOptions): EngineBed;
}

/** The core engine, or the sharded one with `shards` threads (default 2). */
export function engineKind(kind: BedKind, shards = kind === "core" ? 0 : 2): EngineKind {
  if (kind === "core") return { name: "core Engine", kind, shards: 0, make: (opts) => new CoreBed(opts) };
  return {
    name: `ShardedEngine, ${shards} shard${shards === 1 ? "" : "s"}`,
    kind,
    shards,
    make: (opts) => new ShardedBed({ shards, ...opts }),
  };
}

/** The engines every suite runs on: the core Engine and the ShardedEngine with 2 shards. */
export const BED_KINDS: readonly EngineKind[] = [engineKind("core"), engineKind("sharded")];
