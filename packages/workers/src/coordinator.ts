/**
 * `ShardedEngine`: the siptm engine sharded across worker threads by a hash
 * of the Call-ID.
 *
 * Every transaction is an actor owned by exactly one shard, for its whole
 * life; a shard is one core `Engine` (one actor system: no locks, nothing
 * shared with the other shards) in its own thread. The coordinator, here on
 * the main thread, owns the sockets. For each message it finds the owner with
 * a byte scan, no parse:
 * - a request: the keyed SipHash-2-4 of its Call-ID (callid.ts, hash.ts)
 *   modulo the shard count. All of a call's requests — INVITE, CANCEL, the ACK of a 2xx, which
 *   has a branch of its own — land on the shard that holds its transactions;
 * - a response: the shard named in its top Via branch ("z9hG4bKs<n>." — each
 *   shard's engine writes its number there, `branchPrefix`), so a response
 *   finds its client transaction even when a route started that request with a
 *   Call-ID that hashes elsewhere; a branch without our marker falls back to
 *   the Call-ID.
 *
 * Data plane: messages for a shard are batched per event-loop turn (flushed
 * by setImmediate, or at once when a batch reaches `batchMessages` messages
 * or `batchBytes` bytes; a shard that has `batchesInFlight` batches not yet
 * processed gets the next when it reports one done, so a busy shard gets
 * fewer, larger batches) into ONE ArrayBuffer, posted with the buffer in the
 * transfer list (batch.ts). Never one postMessage per SIP message, never a
 * structured-cloned object per message. The shards batch their sends back the
 * same way, and the coordinator sends them from its own sockets.
 *
 * Control plane: comlink over a dedicated MessagePort per shard. Control
 * calls (a local request, cancel, reply, stats, audit, config, drain) are
 * rare, typed and request/response shaped, which is what comlink gives
 * cheaply: a typed proxy, call ids, promise results. It would be wrong for the
 * data plane: each call is a structured-cloned message with its own id and
 * promise, i.e. one postMessage and one clone per SIP message, exactly what
 * the batches avoid.
 *
 * Threads: piscina. Each shard is ONE long-lived task in its own
 * single-thread pool (minThreads = maxThreads = 1, idleTimeout = Infinity):
 * affinity by construction — the shard's state never has to move, because its
 * pool has one thread. Why piscina fits: it gives a supervised worker with a
 * promise API — it loads our ESM entry, hands the task its transferred
 * MessagePorts, turns a throw or an exit of the thread into a rejected task
 * promise (our restart signal), replaces a dead thread, and tears threads
 * down on destroy(). Where it does not: its scheduler (queue, load balancing,
 * maxQueue, needsDrain) has nothing to do when a task never ends, and its
 * per-task run/wait histograms and `utilization` describe tasks, so for a task
 * that lives as long as the shard they say only "one task, still running".
 * Per-shard timing is measured by the shard itself instead (time spent
 * processing each inbound batch, batches, messages, the thread's event-loop
 * utilization: `stats().shards[i]`). Atomics are disabled: a piscina worker
 * in "sync" mode parks its thread between tasks, and a shard is an event loop
 * that must keep running its timers.
 *
 * Backpressure: each shard's inbound queue is bounded by `queueLimit`
 * messages in flight (posted, not yet acknowledged: shards acknowledge each
 * batch). Past the bound, a NEW request gets a 503 + Retry-After built by the
 * coordinator from the raw bytes (or is dropped, `overload: "drop"`), while
 * responses, ACK, CANCEL and retransmissions of requests a shard already has
 * (their top-Via branch was let in recently) always pass, so calls in progress
 * can finish. Counted in stats; it recovers by itself as acks come back.
 *
 * Limits of the whole engine, also applied here: `maxTransactions` counts the
 * live transactions of all shards together (their reported counts plus the new
 * requests on their way to them) and past it answers 503 itself; `rateLimit`
 * drops new requests over their source's token bucket before any shard sees
 * them (core's SourceRateLimiter).
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import {
  type AuditEntry,
  addTransportStats,
  type CancelProgress,
  type CancelResult,
  type ClientEvents,
  createTcpTransport,
  createUdpTransport,
  type Destination,
  type FinalOutcome,
  newCallId,
  newStats,
  newTransportStats,
  parseMessage,
  type RateLimitOptions,
  type ReplyOptions,
  type RequestOptions,
  type ServerEndCause,
  type SipRequest,
  type SipResponse,
  type Source,
  SourceRateLimiter,
  type StatsSnapshot,
  type TcpLimitOptions,
  TransactionError,
  type TransactionErrorCode,
  type Transport,
  type TransportSendError,
  type TransportSink,
} from "@siptm/core";
import { type Remote, wrap } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { Piscina } from "piscina";
import {
  type AuditPage,
  type ClientTransactionLike,
  type EngineStats,
  emptyCoordinatorStats,
  type ShardAuditEntry,
  type ShardStatsEntry,
  type TransactionEngine,
} from "./api.js";
import {
  ACK_NOW,
  BatchReader,
  BatchWriter,
  CEV_CANCEL,
  CEV_FINAL,
  CEV_RESPONSE,
  CEV_TERMINATED,
  NOT_TOLD,
  newClientRecord,
  newSendRecord,
  newServerNewRecord,
  newServerRecord,
  newSyncRecord,
  REC_CLIENT,
  REC_SEND,
  REC_SERVER,
  REC_SERVER_NEW,
  REC_SYNC,
  readClient,
  readSend,
  readServer,
  readServerNew,
  readSync,
  SEV_ACK,
  SEV_CANCEL,
  SEV_TERMINATED,
  writeIn,
  writeSync,
} from "./batch.js";
import { type Span, scanCallId } from "./callid.js";
import { type HandleOwner, ShardClientHandle, ShardServerHandle } from "./handles.js";
import { defaultHashKey, type HashKey, hashBytes, hashKey, shardOf } from "./hash.js";
import type {
  CreatedRequest,
  ListenerInfo,
  PlainRequestOptions,
  RequestFromOptions,
  Result,
  ShardApi,
  ShardEngineOptions,
  ShardExit,
  ShardHealth,
  ShardTask,
} from "./protocol.js";
import { buildReject, replyDestination } from "./reject.js";
import { branchShard, isResponse, METHOD_OTHER, methodKind, newViaScan, scanTopVia } from "./scan.js";

export interface ListenOption {
  protocol: "UDP" | "TCP";
  /** IP literal. */
  address: string;
  /** 0 = ephemeral (see `addresses` for the bound port). */
  port: number;
}

export interface CoordinatorLogger {
  warn(obj: object, msg: string): void;
}

export interface ShardedEngineOptions {
  /** Number of shards (worker threads), ≥ 1. */
  shards: number;
  /**
   * The 16-byte key of the Call-ID hash that picks a request's shard
   * (SipHash-2-4, hash.ts). Nodes of a cluster that must agree on a Call-ID's
   * owner give the same key (derived from their shared secret). Default: a
   * random key made once per process — fine for one node, unpredictable to
   * senders either way.
   */
  hashKey?: Uint8Array;
  listen: ListenOption[];
  /** Options of each shard's core Engine, as plain data (timers, limits, strict, maxTransactions…). */
  engine?: ShardEngineOptions;
  /**
   * Absolute path or file URL of an ES module loaded in EACH shard; its
   * default export `(engine, ctx) => void` installs `engine.onRequest` etc.
   * The fast path: the handler runs in the shard, nothing crosses threads per
   * transaction.
   */
  route?: string | URL;
  /**
   * Main-thread handler, for parity with the core API: each new server
   * transaction is handed over (id, request, source) and `tx.reply()` goes
   * back to the shard (async). Costs a parse on each side and two hops.
   */
  onRequest?: (tx: ShardServerHandle) => void;
  /** Messages in flight per shard (posted, not acknowledged) past which new requests are turned away. Default 10000. */
  queueLimit?: number;
  /**
   * The live-transaction cap of the WHOLE engine, all shards together: the
   * coordinator adds up the live counts the shards report and the new
   * requests on their way to them, and past the cap answers a new request
   * 503 + Retry-After itself (counted in `table_full`), wherever its Call-ID
   * hashes — so a flood aimed at one shard cannot fill that shard while
   * the others have room, nor be refused there while the server has room.
   * Default: `engine.maxTransactions`, else 1,000,000. Each shard's engine
   * keeps its own cap (`engine.maxTransactions`, default this one) as a safety
   * net for what the coordinator does not see (requests a route starts).
   */
  maxTransactions?: number;
  /**
   * A token bucket per source IP for new requests, applied here before any
   * shard sees them (core's `SourceRateLimiter`); over it a request is
   * dropped without an answer and counted in `rate_limited`. Default: off.
   */
  rateLimit?: RateLimitOptions;
  /** The coordinator's clock (ms) for the rate limit. Default: `virtualClock`, else `performance.now`. */
  now?: () => number;
  /** What a turned-away request gets: "503" + Retry-After (default) or nothing. */
  overload?: "503" | "drop";
  /** Retry-After seconds on the coordinator's 503. Default: engine.retryAfter or 5. */
  retryAfter?: number;
  /** Flush a batch at this many messages (default 256)… */
  batchMessages?: number;
  /** …or at this many bytes (default 256 KiB), without waiting for the end of the turn. */
  batchBytes?: number;
  /**
   * Batches posted to a shard and not yet processed, past which the end of a
   * turn does not flush: what arrives meanwhile joins the held batch, which
   * goes when the shard reports one done (or at `batchMessages`). Default 2:
   * the shard always has the next batch queued while it works on one, and a
   * busy shard gets fewer, larger batches (fewer thread wakeups).
   */
  batchesInFlight?: number;
  /**
   * How often a shard tells its live transaction count when no batch carried
   * it, and the acknowledgements it held back (batches whose messages caused
   * no send and whose acknowledgement nothing waited for, batch.ts ACK_NOW).
   * Default 200 ms.
   */
  reportIntervalMs?: number;
  /** close(): longest wait for the shards' live transactions to end. Default 5000 ms. */
  drainTimeoutMs?: number;
  /** Where the coordinator logs a shard's death. Default: console.warn. */
  logger?: CoordinatorLogger;
  /** Enable `crashShard` / `blockShard` (tests). */
  testHooks?: boolean;
  /** Limits of the TCP listeners (connection caps, message deadline, keep-alive budget…); the core's defaults otherwise. */
  tcp?: TcpLimitOptions;
  /**
   * Make the coordinator's sockets with this instead of real UDP/TCP sockets
   * (tests use an in-memory network; later transports plug in the same way).
   */
  transportFactory?: (listen: ListenOption, sink: TransportSink) => Transport | Promise<Transport>;
  /**
   * Lockstep tests: every shard's engine runs on a virtual clock that starts at
   * this clock's time and moves only when `syncShards(t)` is called (the test
   * bed moves this clock and the shards' together; @siptm/workers/testing).
   */
  virtualClock?: { now(): number };
}

/** The local outcome of a client transaction whose shard died or closed with it (like a transport failure, §8.1.3.1). */
export const SHARD_LOST: FinalOutcome = Object.freeze({
  status: 503,
  reason: "Shard Lost",
  cause: "transport-error",
});

const DEFAULT_QUEUE_LIMIT = 10_000;
const DEFAULT_MAX_TRANSACTIONS = 1_000_000;
const DEFAULT_BATCH_MESSAGES = 256;
const DEFAULT_BATCH_BYTES = 256 * 1024;
const DEFAULT_BATCHES_IN_FLIGHT = 2;
const DEFAULT_REPORT_MS = 200;
const DEFAULT_DRAIN_MS = 5_000;
const SHUTDOWN_WAIT_MS = 2_000;
/** Restarts within this window beyond RESTART_BURST are delayed by RESTART_DELAY_MS (a crash loop must not spin). */
const RESTART_WINDOW_MS = 10_000;
const RESTART_BURST = 3;
const RESTART_DELAY_MS = 1_000;

interface Incarnation {
  readonly n: number;
  readonly api: Remote<ShardApi>;
  readonly data: MessagePort;
  readonly control: MessagePort;
  /** Rejects when this incarnation ends. */
  readonly dead: Promise<never>;
  die(err: Error): void;
  /** Control calls not answered yet: rejected when the incarnation ends (comlink would wait forever). */
  readonly calls: Set<(err: Error) => void>;
  ended: boolean;
  expectedEnd: boolean;
}

class Slot {
  pool: Piscina;
  inc: Incarnation | undefined;
  alive = false;
  incarnations = 0;
  readonly pending = new BatchWriter();
  /** Messages posted or pending, not yet acknowledged by the shard. */
  inFlight = 0;
  /** Batches posted to the current incarnation and not yet reported processed. */
  batchesOut = 0;
  /**
   * New requests let in for this shard and not yet acknowledged (pending or posted): they may
   * become transactions the shard has not told yet. `newPending` of them are in the pending
   * batch; `newPosted` has the count of each posted batch, oldest first (acks come per batch).
   */
  newInFlight = 0;
  newPending = 0;
  readonly newPosted: number[] = [];
  /** The live transaction count the shard told last. */
  live = 0;
  restarts = 0;
  lost = 0;
  overloaded = 0;
  restartTimes: number[] = [];
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  /** Lockstep: the sync this shard has not answered yet, and its next deadline as last told. */
  syncWait: { seq: number; done: () => void } | undefined;
  nextDue: number | undefined;
  constructor(
    readonly index: number,
    pool: Piscina,
  ) {
    this.pool = pool;
  }
}

/**
 * Branches of requests let in recently (a keyed hash of the top-Via branch,
 * under a random key of this engine's: the branch is the sender's choice, and
 * with an unkeyed hash a sender could pick branches that collide with a live
 * one, or pile its entries into one bucket of the Set — V8 hashes small
 * integers without a seed): a
 * request seen again within the window is a retransmission of a transaction a
 * shard already has, and passes a full queue. Two generations of one window
 * each (64·T1 by default, the longest a client retransmits a request): an
 * entry lives between one and two windows. A hash collision lets a new
 * request through, which only makes the bound a little soft. Hashes are kept
 * to 30 bits so that V8 stores them as small integers, and a generation that
 * reaches RECENT_CAP entries is rotated early (memory stays bounded at very
 * high rates; the oldest entries are then forgotten sooner).
 */
const RECENT_CAP = 500_000;

class RecentBranches {
  private cur = new Set<number>();
  private old = new Set<number>();
  private since = Date.now();
  constructor(private readonly windowMs: number) {}
  add(h: number): void {
    this.cur.add(h & 0x3fffffff);
    if (this.cur.size >= RECENT_CAP) this.rotate(Date.now(), true);
  }
  has(h: number): boolean {
    const k = h & 0x3fffffff;
    return this.cur.has(k) || this.old.has(k);
  }
  rotate(now: number, force = false): void {
    if (!force && now - this.since < this.windowMs) return;
    this.old = this.cur;
    this.cur = new Set();
    this.since = now;
  }
}

function shardFile(): string {
  // Built: dist/coordinator.js next to dist/shard.js. Run from src (tests through vite): use the built one.
  const here = new URL("./shard.js", import.meta.url);
  if (existsSync(fileURLToPath(here))) return here.href;
  return new URL("../dist/shard.js", import.meta.url).href;
}

function toError(r: Extract<Result<unknown>, { ok: false }>): Error {
  if (r.name === "TransactionError" && r.code)
    return new TransactionError(r.code as TransactionErrorCode, r.message);
  const err = new Error(r.message);
  err.name = r.name;
  return err;
}

function unwrap<T>(r: Result<T>): T {
  if (!r.ok) throw toError(r);
  return r.value;
}

let instances = 0;

export class ShardedEngine implements TransactionEngine, HandleOwner {
  /** The sockets, with their bound ports. */
  readonly addresses: ReadonlyArray<Readonly<ListenerInfo>>;
  onRequest: ((tx: ShardServerHandle) => void) | undefined;

  private readonly opts: ShardedEngineOptions;
  private readonly slots: Slot[] = [];
  private readonly transports: Transport[] = [];
  private readonly listeners: ListenerInfo[] = [];
  private readonly queueLimit: number;
  private readonly maxTransactions: number;
  private readonly limiter: SourceRateLimiter | undefined;
  /** New requests dropped by the rate limit, refused at the whole-engine cap. */
  private rateLimited = 0;
  private rateEvicted = 0;
  private capRejected = 0;
  private readonly retryAfter: number;
  private readonly batchMessages: number;
  private readonly batchBytes: number;
  private readonly batchesInFlight: number;
  private readonly recent: RecentBranches;
  private readonly routeUrl: string | undefined;
  private readonly baseId: string;
  private readonly logger: CoordinatorLogger;
  private readonly clientHandles = new Map<number, ShardClientHandle>();
  private readonly serverHandles = new Map<string, ShardServerHandle>();
  private nextHandle = 0;
  private state: "starting" | "open" | "closing" | "closed" = "starting";
  private closing: Promise<void> | undefined;
  private flushScheduled = false;
  /** Control calls sent and not answered yet (lockstep tests wait for none). */
  private pendingCalls = 0;
  /**
   * Lockstep: things whose effects in a shard the data port has not yet been
   * synced past — control calls answered (what they sent comes on the data
   * port after their answer), send errors posted — and their count when the
   * last sync began.
   */
  private unsynced = 0;
  private unsyncedAtSync = 0;
  private syncSeq = 0;
  private readonly counters = emptyCoordinatorStats();
  private userErrors = 0;
  private readonly span: Span = { start: 0, end: 0 };
  private readonly key: HashKey;
  /** Key of the recent-branch hash: local to this engine, never shared. */
  private readonly branchKey = hashKey(new Uint8Array(randomBytes(16)));
  private readonly via = newViaScan();
  /** Scratch records the shards' batches are read into (batch.ts), reused record after record. */
  private readonly sendRecord = newSendRecord();
  private readonly clientRecord = newClientRecord();
  private readonly serverNewRecord = newServerNewRecord();
  private readonly serverRecord = newServerRecord();
  private readonly syncRecord = newSyncRecord();
  private readonly flushAll = () => {
    this.flushScheduled = false;
    this.recent.rotate(Date.now());
    for (const slot of this.slots) if (slot.batchesOut < this.batchesInFlight) this.flushSlot(slot);
  };

  private constructor(opts: ShardedEngineOptions) {
    if (!Number.isInteger(opts.shards) || opts.shards < 1 || opts.shards > 255)
      throw new RangeError(`shards must be an integer in 1…255, got ${opts.shards}`);
    if (opts.listen.length === 0 || opts.listen.length > 255)
      throw new RangeError("listen: one to 255 sockets");
    // Every shard (and a restarted one) checks the branch cookies of the others' relayed INVITEs with one key.
    this.opts = { ...opts, engine: { ...opts.engine, cookieKey: opts.engine?.cookieKey ?? randomBytes(16) } };
    this.key = hashKey(opts.hashKey ?? defaultHashKey());
    this.onRequest = opts.onRequest;
    this.queueLimit = opts.queueLimit ?? DEFAULT_QUEUE_LIMIT;
    this.maxTransactions = opts.maxTransactions ?? opts.engine?.maxTransactions ?? DEFAULT_MAX_TRANSACTIONS;
    const clock = opts.virtualClock;
    const now = opts.now ?? (clock ? () => clock.now() : () => performance.now());
    this.limiter = opts.rateLimit
      ? new SourceRateLimiter(opts.rateLimit, now, () => {
          this.rateEvicted++;
        })
      : undefined;
    this.retryAfter = opts.retryAfter ?? opts.engine?.retryAfter ?? 5;
    this.batchMessages = Math.max(1, opts.batchMessages ?? DEFAULT_BATCH_MESSAGES);
    this.batchBytes = Math.max(1024, opts.batchBytes ?? DEFAULT_BATCH_BYTES);
    this.batchesInFlight = Math.max(1, opts.batchesInFlight ?? DEFAULT_BATCHES_IN_FLIGHT);
    const t1 = opts.engine?.timers?.t1 ?? 500;
    const window = Math.max(opts.engine?.timers?.timerB ?? 64 * t1, opts.engine?.timers?.timerF ?? 64 * t1);
    this.recent = new RecentBranches(window);
    this.routeUrl =
      opts.route === undefined
        ? undefined
        : opts.route instanceof URL
          ? opts.route.href
          : opts.route.startsWith("file:")
            ? opts.route
            : pathToFileURL(opts.route).href;
    this.baseId = `${Math.floor(Math.random() * 0xffffff).toString(36)}${(instances++).toString(36)}`;
    this.logger = opts.logger ?? { warn: (obj, msg) => console.warn(`siptm/workers: ${msg}`, obj) };
    this.addresses = this.listeners;
    for (let i = 0; i < opts.shards; i++) this.slots.push(new Slot(i, this.makePool()));
  }

  /** Bind the sockets, start the shards (each loads the route module), and resolve when all are ready. */
  static async create(opts: ShardedEngineOptions): Promise<ShardedEngine> {
    const engine = new ShardedEngine(opts);
    try {
      await engine.start();
    } catch (err) {
      await engine.close().catch(() => {});
      throw err;
    }
    return engine;
  }

  private async start(): Promise<void> {
    for (const [i, l] of this.opts.listen.entries()) {
      const sink = {
        onMessage: (data: Buffer, source: Source) => this.onMessage(i, data, source),
      };
      const t = this.opts.transportFactory
        ? await this.opts.transportFactory(l, sink)
        : l.protocol === "UDP"
          ? await createUdpTransport({ address: l.address, port: l.port, sink })
          : await createTcpTransport({
              address: l.address,
              port: l.port,
              sink,
              limits: this.opts.engine?.limits,
              ...this.opts.tcp,
            });
      this.transports.push(t);
      this.listeners.push({ protocol: l.protocol, address: l.address, port: t.localPort });
    }
    await Promise.all(
      this.slots.map(async (slot) => {
        const inc = this.launch(slot);
        await this.call(slot.index, (api) => api.ready());
        if (slot.inc === inc) slot.alive = true;
      }),
    );
    for (const slot of this.slots)
      if (!slot.inc || slot.inc.ended) throw new Error(`shard ${slot.index} ended while starting`);
    this.state = "open";
  }

  // --- shards -----------------------------------------------------------------------

  private launch(slot: Slot): Incarnation {
    const n = ++slot.incarnations;
    const data = new MessageChannel();
    const control = new MessageChannel();
    let die!: (err: Error) => void;
    const dead = new Promise<never>((_, reject) => {
      die = reject;
    });
    dead.catch(() => {});
    const inc: Incarnation = {
      n,
      api: wrap<ShardApi>(nodeEndpoint(control.port1)),
      data: data.port1,
      control: control.port1,
      dead,
      die,
      calls: new Set(),
      ended: false,
      expectedEnd: false,
    };
    data.port1.on("message", (m: unknown) => this.onShardData(slot, inc, m));
    const task: ShardTask = {
      index: slot.index,
      shards: this.slots.length,
      incarnation: n,
      engineId: `${this.baseId}-s${slot.index}i${n}`,
      listeners: this.listeners,
      // Each shard's own cap is the whole engine's (a safety net; the coordinator enforces the cap).
      engine: { maxTransactions: this.maxTransactions, ...this.opts.engine },
      route: this.routeUrl,
      forward: this.onRequest !== undefined,
      testHooks: this.opts.testHooks ?? false,
      virtualStart: this.opts.virtualClock?.now(),
      batch: { maxMessages: this.batchMessages, maxBytes: this.batchBytes },
      reportMs: Math.max(1, this.opts.reportIntervalMs ?? DEFAULT_REPORT_MS),
      data: data.port2,
      control: control.port2,
    };
    slot.inc = inc;
    slot.alive = false;
    slot.live = 0;
    // Whatever was posted to the previous incarnation is gone; what is still pending goes to this one.
    slot.inFlight = slot.pending.count;
    slot.batchesOut = 0;
    slot.newInFlight = slot.newPending;
    slot.newPosted.length = 0;
    const run = slot.pool.run(task, { transferList: [data.port2, control.port2] }) as Promise<ShardExit>;
    run.then(
      () => this.onShardEnd(slot, inc, undefined),
      (err: unknown) => this.onShardEnd(slot, inc, err instanceof Error ? err : new Error(String(err))),
    );
    this.scheduleFlush();
    return inc;
  }

  private onShardEnd(slot: Slot, inc: Incarnation, err: Error | undefined): void {
    if (inc.ended) return;
    inc.ended = true;
    const why = err ?? new Error(`shard ${slot.index} ended`);
    inc.die(why);
    for (const reject of inc.calls) reject(why);
    inc.calls.clear();
    inc.data.close();
    inc.control.close();
    if (slot.inc === inc) slot.alive = false;
    const expected = inc.expectedEnd && err === undefined;
    const outcome: FinalOutcome = expected ? { ...SHARD_LOST, reason: "Shard Closed" } : SHARD_LOST;
    this.failHandles(slot.index, outcome);
    if (expected || this.state === "closed") return;
    if (this.state === "starting") {
      // create() fails with this error; no restart.
      this.logger.warn({ shard: slot.index, err: why.message }, `shard ${slot.index} failed to start`);
      return;
    }
    // It died (a throw, an exit, a killed thread), or ended without being asked to.
    const lost = slot.live;
    slot.lost += lost;
    slot.restarts++;
    this.counters.lost += lost;
    this.counters.restarts++;
    this.logger.warn(
      { shard: slot.index, incarnation: inc.n, lost, err: err?.message ?? "ended unasked" },
      `shard ${slot.index} died; ${lost} transaction(s) lost; starting it again`,
    );
    if (this.state === "closing") return;
    this.restart(slot);
  }

  private restart(slot: Slot): void {
    // piscina replaces a dead thread itself (minThreads 1) — unless it died during bootstrap,
    // when piscina stops replacing: then the shard gets a fresh pool.
    if (slot.pool.threads.length === 0) {
      void slot.pool.destroy().catch(() => {});
      slot.pool = this.makePool();
    }
    const now = Date.now();
    slot.restartTimes = slot.restartTimes.filter((t) => now - t < RESTART_WINDOW_MS);
    slot.restartTimes.push(now);
    const go = () => {
      slot.restartTimer = undefined;
      if (this.state !== "open" && this.state !== "starting") return;
      const inc = this.launch(slot);
      this.call(slot.index, (api) => api.ready()).then(
        () => {
          if (slot.inc === inc) slot.alive = true;
        },
        () => {},
      );
    };
    if (slot.restartTimes.length > RESTART_BURST) {
      slot.inc = undefined;
      slot.restartTimer = setTimeout(go, RESTART_DELAY_MS);
    } else go();
  }

  /** One single-thread pool per shard: affinity by construction. */
  private makePool(): Piscina {
    const pool = new Piscina({
      filename: shardFile(),
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
      // A parked ("sync") worker would stop the shard's event loop between tasks.
      atomics: "disabled",
      // Task timings would describe one task as long as the shard: see the header comment.
      recordTiming: false,
    });
    // piscina emits 'error' for a thread that fails with no task on it; unheard, that would end the process.
    pool.on("error", (err: unknown) =>
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "shard pool error"),
    );
    return pool;
  }

  /** The transactions the main thread holds in a shard that is gone: a local outcome, then their end. */
  private failHandles(shard: number, outcome: FinalOutcome): void {
    for (const [id, h] of this.clientHandles) {
      if (h.shard !== shard) continue;
      this.clientHandles.delete(id);
      h.lost(outcome);
    }
    for (const [id, h] of this.serverHandles) {
      if (h.shard !== shard) continue;
      this.serverHandles.delete(id);
      h.onTerminated("transport-error");
    }
  }

  /** A control call to a shard's current incarnation; rejects if that incarnation ends first. */
  private call<T>(shard: number, fn: (api: Remote<ShardApi>) => Promise<T>): Promise<T> {
    const slot = this.slots[shard];
    const inc = slot?.inc;
    if (!slot || !inc || inc.ended)
      return Promise.reject(new TransactionError("no-transport", `shard ${shard} is not running`));
    // Not Promise.race with `inc.dead`: that would pile one reaction per call on a promise that
    // lives as long as the shard. Pending calls are listed and rejected when it ends.
    this.pendingCalls++;
    return new Promise<T>((resolve, reject) => {
      const failed = (e: unknown) => {
        this.pendingCalls--;
        this.unsynced++;
        reject(e);
      };
      inc.calls.add(failed);
      fn(inc.api).then(
        (v) => {
          if (!inc.calls.delete(failed)) return;
          this.pendingCalls--;
          this.unsynced++;
          resolve(v);
        },
        (e: unknown) => {
          if (inc.calls.delete(failed)) failed(e);
        },
      );
    });
  }

  // --- data plane: in -------------------------------------------------------------------

  /** TransportSink of socket `listener`: find the owning shard and queue the message for it. */
  private onMessage(listener: number, data: Buffer, source: Source): void {
    if (this.state === "closed") return;
    const n = this.slots.length;
    let shard = 0;
    if (isResponse(data)) {
      if (n > 1) {
        scanTopVia(data, this.via);
        shard = branchShard(data, this.via.branch, n);
        if (shard < 0) shard = this.callIdShard(data, source, n);
      }
    } else {
      const kind = methodKind(data);
      // Per-source rate limit, before any shard sees the request. The coordinator cannot match
      // transactions cheaply, so every request but ACK and CANCEL draws a token here — a
      // retransmission of a live INVITE too (the one-thread engine, which matches first, does
      // not count those). Dropped, not answered: a 503 per request of a flood would make us a
      // reflection amplifier towards the (spoofable) source.
      if (kind === METHOD_OTHER && this.limiter !== undefined && !this.limiter.allow(source.address)) {
        this.rateLimited++;
        return;
      }
      if (n > 1) shard = this.callIdShard(data, source, n);
      if (!this.admit(this.slots[shard]!, listener, data, source, kind)) return;
    }
    const slot = this.slots[shard]!;
    writeIn(slot.pending, listener, source.address, source.port, source.connectionId, data);
    slot.inFlight++;
    this.counters.in_messages++;
    if (slot.pending.count >= this.batchMessages || slot.pending.bytes >= this.batchBytes)
      this.flushSlot(slot);
    else this.scheduleFlush();
  }

  private callIdShard(data: Buffer, source: Source, n: number): number {
    // No Call-ID: the shard's parser answers 400; spread such junk by source port.
    if (!scanCallId(data, this.span)) return source.port % n;
    return hashBytes(this.key, data, this.span.start, this.span.end) % n;
  }

  /** Backpressure, the whole-engine cap and closing: may this request go to its shard? */
  private admit(slot: Slot, listener: number, data: Buffer, source: Source, kind: number): boolean {
    if (kind !== METHOD_OTHER) return true; // ACK and CANCEL always pass
    scanTopVia(data, this.via);
    const b = this.via.branch;
    const h = b.start >= 0 ? hashBytes(this.branchKey, data, b.start, b.end) : -1;
    const room = (this.state === "open" || this.state === "starting") && slot.inFlight < this.queueLimit;
    if (room && this.liveEstimate() < this.maxTransactions) {
      if (h >= 0) this.recent.add(h);
      slot.newInFlight++;
      slot.newPending++;
      return true;
    }
    // A retransmission of a request a shard already has passes a full queue and the cap.
    if (h >= 0 && this.recent.has(h)) {
      this.counters.overload_passed++;
      return true;
    }
    if (room) {
      // The whole engine is at its cap: what the one-thread engine does with a full table.
      this.capRejected++;
      const res = buildReject(data, 503, "Service Unavailable", [["Retry-After", String(this.retryAfter)]]);
      if (res) this.transports[listener]!.send(res, replyDestination(data, source));
      return false;
    }
    slot.overloaded++;
    if (this.opts.overload === "drop") {
      this.counters.overload_dropped++;
      return false;
    }
    this.counters.overload_rejected++;
    const res = buildReject(data, 503, "Service Unavailable", [["Retry-After", String(this.retryAfter)]]);
    if (res) this.transports[listener]!.send(res, replyDestination(data, source));
    return false;
  }

  /**
   * Live transactions of the whole engine as the coordinator knows them: each shard's last told
   * count plus the new requests on their way to it (each may become one). A little high while
   * requests are in flight (a retransmission or a refused request counts until acknowledged),
   * exact once the shards have reported.
   */
  private liveEstimate(): number {
    let n = 0;
    for (const s of this.slots) n += s.live + s.newInFlight;
    return n;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushAll);
  }

  private flushSlot(slot: Slot): void {
    const inc = slot.inc;
    if (!inc || inc.ended || slot.pending.count === 0) return;
    slot.batchesOut++;
    // Ask for the acknowledgement at once only when something waits for it (batch.ts, ACK_NOW):
    // the next batch would be held, the queue fills, the engine is closing, or lockstep tests.
    const now =
      slot.batchesOut >= this.batchesInFlight ||
      slot.inFlight >= this.queueLimit / 2 ||
      this.state !== "open" ||
      this.opts.virtualClock !== undefined;
    const ab = slot.pending.finish(0, NOT_TOLD, now ? ACK_NOW : 0);
    slot.newPosted.push(slot.newPending);
    slot.newPending = 0;
    inc.data.postMessage(ab, [ab]);
    this.counters.in_batches++;
  }

  // --- data plane: out ------------------------------------------------------------------

  private onShardData(slot: Slot, inc: Incarnation, m: unknown): void {
    if (!(m instanceof ArrayBuffer)) return;
    const r = new BatchReader(m);
    if (slot.inc === inc) {
      slot.inFlight = Math.max(0, slot.inFlight - r.ack);
      slot.batchesOut = Math.max(0, slot.batchesOut - r.batches);
      for (let k = 0; k < r.batches && slot.newPosted.length > 0; k++)
        slot.newInFlight -= slot.newPosted.shift()!;
      if (r.live !== NOT_TOLD) slot.live = r.live;
      // A held batch goes as soon as the shard has room for it.
      if (slot.pending.count > 0 && slot.batchesOut < this.batchesInFlight) this.flushSlot(slot);
    }
    this.counters.out_batches++;
    while (r.next()) {
      switch (r.type) {
        case REC_SEND:
          this.sendFor(inc, r);
          break;
        case REC_CLIENT:
          this.clientEvent(r);
          break;
        case REC_SERVER_NEW:
          this.serverNew(slot, r);
          break;
        case REC_SERVER:
          this.serverEvent(r);
          break;
        case REC_SYNC: {
          const sync = readSync(r, this.syncRecord);
          if (slot.inc === inc && slot.syncWait?.seq === sync.seq) {
            slot.nextDue = sync.time;
            const w = slot.syncWait;
            slot.syncWait = undefined;
            w.done();
          }
          break;
        }
      }
    }
  }

  private sendFor(inc: Incarnation, r: BatchReader): void {
    const rec = readSend(r, this.sendRecord);
    const t = this.transports[rec.listener];
    if (!t) return;
    const dest: Destination = {
      protocol: t.protocol,
      address: rec.address,
      port: rec.port,
      connectionId: rec.connectionId,
    };
    this.counters.out_messages++;
    const id = rec.errorTarget;
    // rec.data is a view into the batch: the batch is ours now and never reused, so no copy.
    if (id === 0) t.send(rec.data, dest);
    else
      t.send(rec.data, dest, {
        transportError: (err: Error) => {
          if (inc.ended) return;
          const e = err as TransportSendError;
          const cause = e.cause instanceof Error ? e.cause.message : undefined;
          inc.data.postMessage({ sendError: id, code: e.code ?? "EIO", message: cause ?? e.message });
          this.unsynced++;
        },
      });
  }

  private parse(data: Buffer): ReturnType<typeof parseMessage> | undefined {
    try {
      // Copied: the user may keep the message; a view would keep the whole batch alive.
      return parseMessage(Buffer.from(data));
    } catch {
      return undefined;
    }
  }

  private clientEvent(r: BatchReader): void {
    const rec = readClient(r, this.clientRecord);
    const handleId = rec.handleId;
    const h = this.clientHandles.get(handleId);
    if (!h) return;
    switch (rec.event) {
      case CEV_RESPONSE: {
        const res = this.parse(rec.data);
        if (res && !res.isRequest) h.deliver(() => h.onResponse(res));
        return;
      }
      case CEV_FINAL: {
        const status = rec.status;
        const reason = rec.text;
        const cause = rec.cause;
        const own = rec.data.length > 0 ? this.parse(rec.data) : undefined;
        h.deliver(() => {
          const response = own && !own.isRequest ? own : cause === "response" ? h.lastResponse : undefined;
          h.onFinal(response ? { status, reason, cause, response } : { status, reason, cause });
        });
        return;
      }
      case CEV_CANCEL: {
        const kind = rec.cancel;
        let progress: CancelProgress;
        if (kind === "answered") {
          const res = this.parse(rec.data);
          if (!res || res.isRequest) return;
          progress = { kind, status: rec.status, response: res as SipResponse };
        } else if (kind === "failed") {
          progress = { kind, cause: rec.text === "transport-error" ? "transport-error" : "timeout" };
        } else if (kind === "sent" || kind === "not-sent") {
          progress = { kind };
        } else return;
        h.deliver(() => h.onCancel(progress));
        return;
      }
      case CEV_TERMINATED:
        this.clientHandles.delete(handleId);
        h.deliver(() => h.onTerminated());
        return;
    }
  }

  private serverNew(slot: Slot, r: BatchReader): void {
    const rec = readServerNew(r, this.serverNewRecord);
    const id = rec.id;
    const l = this.listeners[rec.listener] ?? this.listeners[0]!;
    const source: Source = {
      protocol: l.protocol,
      address: rec.address,
      port: rec.port,
      localAddress: l.address,
      localPort: l.port,
      connectionId: rec.connectionId,
    };
    const req = this.parse(rec.data);
    if (!req?.isRequest) return;
    const h = new ShardServerHandle(slot.index, id, req as SipRequest, source, this);
    this.serverHandles.set(id, h);
    const handler = this.onRequest;
    if (!handler) {
      this.replyById(id, 501).catch(() => {});
      return;
    }
    try {
      handler(h);
    } catch (err) {
      this.userError("onRequest", err);
    }
  }

  private serverEvent(r: BatchReader): void {
    const rec = readServer(r, this.serverRecord);
    const id = rec.id;
    const h = this.serverHandles.get(id);
    if (!h) return;
    switch (rec.event) {
      case SEV_CANCEL: {
        const m = this.parse(rec.data);
        if (m?.isRequest) h.onCancel(m);
        return;
      }
      case SEV_ACK: {
        const m = this.parse(rec.data);
        if (m?.isRequest) h.onAck(m);
        return;
      }
      case SEV_TERMINATED:
        this.serverHandles.delete(id);
        h.onTerminated(rec.cause as ServerEndCause);
        return;
    }
  }

  // --- HandleOwner ----------------------------------------------------------------------

  userError(what: string, err: unknown): void {
    this.userErrors++;
    this.logger.warn(
      { callback: what, err: err instanceof Error ? err.message : String(err) },
      "user callback threw",
    );
  }

  cancelHandle(h: ShardClientHandle, reason?: string): Promise<CancelResult> {
    return this.call(h.shard, (api) => api.cancelHandle(h.handleId, reason)).catch(() => "none" as const);
  }

  // --- the user's API -------------------------------------------------------------------

  /** The shard (0 … shards-1) that owns this Call-ID: where its requests go (keyed hash, `hashKey`). */
  shardOf(callId: string | Uint8Array): number {
    return shardOf(callId, this.slots.length, this.key);
  }

  /**
   * Start a client transaction in the shard that owns its Call-ID (made here
   * when not given). Resolves with the handle once the shard has started it;
   * its events are delivered after that.
   */
  async request(opts: RequestOptions): Promise<ShardClientHandle> {
    const { onProvisional, onResponse, onFinal, onCancel, onTerminated, ...rest } = opts;
    const plain: PlainRequestOptions = {
      ...rest,
      callId: opts.callId ?? newCallId(),
      cseq: opts.cseq ?? 1 + Math.floor(Math.random() * 10_000),
    };
    return this.startClient(
      plain.callId!,
      plain.cseq!,
      plain.method.toUpperCase(),
      { onProvisional, onResponse, onFinal, onCancel, onTerminated },
      (api, handleId) => api.request(plain, handleId),
    );
  }

  /**
   * A request written in full (core's `requestFrom`): it goes to the shard of
   * the Call-ID it carries (or shard 0 when it has none: the shard rejects it).
   */
  async requestFrom(
    message: Buffer | string,
    opts: RequestFromOptions &
      Pick<RequestOptions, "onProvisional" | "onResponse" | "onFinal" | "onCancel" | "onTerminated"> = {},
  ): Promise<ShardClientHandle> {
    const bytes = typeof message === "string" ? Buffer.from(message, "latin1") : message;
    const span: Span = { start: 0, end: 0 };
    const callId = scanCallId(bytes, span) ? bytes.toString("latin1", span.start, span.end) : "";
    const { onProvisional, onResponse, onFinal, onCancel, onTerminated, ...rest } = opts;
    const firstLine = bytes.toString("latin1", 0, Math.min(bytes.length, 64)).split(" ")[0] ?? "";
    return this.startClient(
      callId,
      0,
      firstLine,
      { onProvisional, onResponse, onFinal, onCancel, onTerminated },
      (api, handleId) => api.requestFrom(bytes, rest, handleId),
    );
  }

  private async startClient(
    callId: string,
    cseq: number,
    method: string,
    events: ClientEvents,
    start: (api: Remote<ShardApi>, handleId: number) => Promise<Result<CreatedRequest>>,
  ): Promise<ShardClientHandle> {
    if (this.state !== "open") throw new TransactionError("terminated", "the engine is closed");
    const shard = this.shardOf(callId);
    const handleId = ++this.nextHandle;
    if (this.nextHandle >= 0xfffffff0) this.nextHandle = 0;
    const h = new ShardClientHandle(shard, handleId, callId, cseq, method, events, this);
    this.clientHandles.set(handleId, h);
    let r: Result<CreatedRequest>;
    try {
      r = await this.call<Result<CreatedRequest>>(shard, (api) => start(api, handleId));
    } catch (err) {
      this.clientHandles.delete(handleId);
      throw err;
    }
    if (!r.ok) {
      this.clientHandles.delete(handleId);
      throw toError(r);
    }
    if (cseq === 0) (h as { cseq: number }).cseq = r.value.cseq;
    (h as { method: string }).method = r.value.method;
    h.created(r.value);
    return h;
  }

  /** Kamailio's tm.cancel: asks the shard of the Call-ID, then the others (a route may have used any Call-ID). */
  async cancel(callId: string, cseq: number, reason?: string): Promise<CancelResult> {
    const owner = this.shardOf(callId);
    const first = await this.call(owner, (api) => api.cancel(callId, cseq, reason));
    if (first !== "none") return first;
    for (let i = 0; i < this.slots.length; i++) {
      if (i === owner) continue;
      const r = await this.call(i, (api) => api.cancel(callId, cseq, reason)).catch(() => "none" as const);
      if (r !== "none") return r;
    }
    return "none";
  }

  /** Kamailio's tm.reply: the shard is read from the transaction id ("<engine>-s<shard>i<incarnation>.<n>"). */
  async replyById(id: string, status: number, opts?: ReplyOptions): Promise<void> {
    const m = /-s(\d+)i(\d+)\.[^.]+$/.exec(id);
    const shard = m ? Number(m[1]) : -1;
    const slot = this.slots[shard];
    if (!slot || !m || !id.startsWith(this.baseId) || slot.inc?.n !== Number(m[2]))
      throw new TransactionError("terminated", `no transaction ${id}`, id);
    unwrap(await this.call<Result<void>>(shard, (api) => api.replyById(id, status, opts)));
  }

  /** Kamailio's tm.reply_callid: the shard of the Call-ID, then the others. */
  async replyByCallId(callId: string, cseq: number, status: number, opts?: ReplyOptions): Promise<void> {
    const owner = this.shardOf(callId);
    const first = await this.call<Result<void>>(owner, (api) =>
      api.replyByCallId(callId, cseq, status, opts),
    );
    if (first.ok) return;
    for (let i = 0; i < this.slots.length; i++) {
      if (i === owner) continue;
      const r = await this.call<Result<void>>(i, (api) =>
        api.replyByCallId(callId, cseq, status, opts),
      ).catch(() => undefined);
      if (r?.ok) return;
    }
    throw toError(first);
  }

  /** ACK a 2xx to an INVITE started here (RFC 3261 §13.2.2.4); built and sent by the INVITE's shard. */
  async ack2xx(invite: ClientTransactionLike, answer: SipResponse): Promise<void> {
    if (!(invite instanceof ShardClientHandle))
      throw new TypeError("ack2xx: not a transaction of this engine");
    unwrap(
      await this.call<Result<void>>(invite.shard, (api) => api.ack2xx(invite.handleId, answer.toBuffer())),
    );
  }

  /** Turn main-thread forwarding of new server transactions on or off in every shard. */
  async setOnRequest(handler: ((tx: ShardServerHandle) => void) | undefined): Promise<void> {
    this.onRequest = handler;
    await Promise.all(
      this.slots.map((_, i) =>
        this.call(i, (api) => api.config({ forward: handler !== undefined })).catch(() => {}),
      ),
    );
  }

  /**
   * Call the function the route module provided as `name` (`ctx.provide(name, fn)`) in EVERY shard,
   * over the control plane (arguments and results are structured-cloned; for what is read now and
   * then, never per message). One result per shard, in shard order; `undefined` for a shard that is
   * not running (restarting, or ending during the call). Rejects when a shard's function throws or
   * was not provided (code ENOROUTEFN).
   */
  async routeCall(name: string, ...args: unknown[]): Promise<unknown[]> {
    return Promise.all(
      this.slots.map(async (slot) => {
        const inc = slot.inc;
        if (!slot.alive || !inc || inc.ended) return undefined;
        let r: Result<unknown>;
        try {
          r = await this.call<Result<unknown>>(slot.index, (api) => api.routeCall(name, args));
        } catch (err) {
          if (inc.ended) return undefined;
          throw err;
        }
        if (r.ok) return r.value;
        const err = toError(r);
        if (r.code && !("code" in err)) Object.assign(err, { code: r.code });
        throw err;
      }),
    );
  }

  /** Test hook (`testHooks`): kill shard `shard` — `process.exit` in its thread, or an uncaught throw. */
  async crashShard(shard: number, mode: "exit" | "throw" = "exit"): Promise<void> {
    if (!this.opts.testHooks) throw new Error("test hooks are off");
    const inc = this.slots[shard]?.inc;
    if (!inc) throw new RangeError(`no shard ${shard}`);
    // The call never answers: the thread is gone. Wait for the coordinator to have seen the death.
    void inc.api.crash(mode).catch(() => {});
    await inc.dead.catch(() => {});
  }

  /** Test hook (`testHooks`): keep shard `shard`'s thread busy for `ms` (it processes nothing meanwhile). */
  async blockShard(shard: number, ms: number): Promise<void> {
    if (!this.opts.testHooks) throw new Error("test hooks are off");
    await this.call(shard, (api) => api.block(ms));
  }

  // --- lockstep (tests on a virtual clock) ---------------------------------------------

  /**
   * Lockstep tests (`virtualClock`): move every shard's clock to `t` (each runs
   * what falls due on the way, after the messages queued for it), and resolve
   * once every shard has answered — by then everything the shards sent before
   * has been received here and handed to the transports. Resolves with the
   * earliest deadline still pending in any shard.
   */
  async syncShards(t: number): Promise<number | undefined> {
    if (!this.opts.virtualClock) throw new Error("syncShards: the engine has no virtual clock");
    // What a control call sent leaves on the data port after its answer (another port): this sync,
    // answered on the data port, comes after it.
    this.unsyncedAtSync = this.unsynced;
    await Promise.all(
      this.slots.map((slot) => {
        const inc = slot.inc;
        if (!inc || inc.ended) return undefined;
        const seq = ++this.syncSeq;
        const answered = new Promise<void>((done) => {
          slot.syncWait = { seq, done };
        });
        writeSync(slot.pending, seq, t);
        this.flushSlot(slot);
        return Promise.race([answered, inc.dead.catch(() => {})]);
      }),
    );
    return this.shardsNextDue;
  }

  /**
   * Lockstep: nothing waits — no message queued for a shard or posted and not
   * yet processed, no control call unanswered, none answered since the last
   * sync (what it sent may still be on its way).
   */
  get idle(): boolean {
    return (
      this.pendingCalls === 0 &&
      this.unsynced === this.unsyncedAtSync &&
      this.slots.every((s) => s.pending.count === 0 && s.inFlight === 0)
    );
  }

  /** Lockstep: no control call unanswered. */
  get callsDone(): boolean {
    return this.pendingCalls === 0;
  }

  /** Lockstep: the earliest deadline pending in any shard, as told at the last `syncShards`. */
  get shardsNextDue(): number | undefined {
    let due: number | undefined;
    for (const slot of this.slots)
      if (slot.nextDue !== undefined && (due === undefined || slot.nextDue < due)) due = slot.nextDue;
    return due;
  }

  /** Main-thread handles of transactions not yet told their end (0 once everything has ended). */
  get handlesLive(): number {
    return this.clientHandles.size + this.serverHandles.size;
  }

  /** What the tests' leak check reads from every running shard. */
  async health(): Promise<ShardHealth[]> {
    return Promise.all(this.slots.map((slot) => this.call(slot.index, (api) => api.health())));
  }

  /** Resolves when every shard is up (after a restart). */
  async ready(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.slots.every((s) => s.alive)) {
      if (Date.now() > deadline || this.state === "closed") throw new Error("shards not ready");
      await delay(10);
    }
  }

  /** Totals over all shards, the coordinator's counters, and each shard. */
  async stats(): Promise<EngineStats> {
    const keys = Object.keys(zeroSnapshot()) as Array<keyof StatsSnapshot>;
    const entries = await Promise.all(
      this.slots.map(async (slot): Promise<ShardStatsEntry> => {
        const s = slot.alive
          ? await this.call(slot.index, (api) => api.stats()).catch(() => undefined)
          : undefined;
        const snap = zeroSnapshot();
        if (s) for (const k of keys) snap[k] = s[k] ?? 0;
        return {
          ...snap,
          shard: slot.index,
          alive: s !== undefined,
          restarts: slot.restarts,
          lost: slot.lost,
          inFlight: slot.inFlight,
          overloaded: slot.overloaded,
          batches: s?.batches ?? 0,
          messages: s?.messages ?? 0,
          busyMs: s?.busyMs ?? 0,
          maxBatchMs: s?.maxBatchMs ?? 0,
          elu: s?.elu ?? 0,
        };
      }),
    );
    const total = zeroSnapshot();
    for (const e of entries) for (const k of keys) total[k] += e[k];
    total.user_errors += this.userErrors;
    total.rate_limited += this.rateLimited;
    total.rate_sources_evicted += this.rateEvicted;
    total.table_full += this.capRejected;
    // The sockets are here: their counters are the coordinator's, not the shards'.
    for (const t of this.transports) if (t.stats) addTransportStats(total, t.stats);
    return { ...total, ...this.counters, shards: entries };
  }

  /** Live transactions of every shard, each with its shard. */
  async audit(): Promise<ShardAuditEntry[]> {
    const lists = await Promise.all(
      this.slots.map((slot) =>
        slot.alive
          ? this.call(slot.index, (api) => api.audit()).then(
              (l: AuditEntry[]) => l.map((e) => ({ ...e, shard: slot.index })),
              () => [] as ShardAuditEntry[],
            )
          : ([] as ShardAuditEntry[]),
      ),
    );
    return lists.flat();
  }

  /**
   * One page of `audit()`: the shards in order, each in creation order, from the one the cursor (a
   * transaction id) names. A cursor of a shard restarted since starts at that shard's first.
   */
  async auditPage(after: string | undefined, limit: number): Promise<AuditPage> {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`page limit ${limit} is not a whole number ≥ 1`);
    let start = 0;
    let cursor = after;
    if (after !== undefined) {
      const m = /-s(\d+)i(\d+)\.[0-9a-z]+$/.exec(after);
      const shard = m ? Number(m[1]) : -1;
      if (!m || !after.startsWith(this.baseId) || shard >= this.slots.length)
        throw new RangeError(
          `cursor ${JSON.stringify(after.slice(0, 80))} is not a transaction id of this server`,
        );
      start = shard;
      if (this.slots[shard]!.inc?.n !== Number(m[2])) cursor = undefined;
    }
    const entries: ShardAuditEntry[] = [];
    for (let i = start; i < this.slots.length; i++) {
      const slot = this.slots[i]!;
      const from = i === start ? cursor : undefined;
      const page = slot.alive
        ? await this.call(i, (api) => api.auditPage(from, limit - entries.length)).catch(() => undefined)
        : undefined;
      if (page) for (const e of page.entries) entries.push({ ...e, shard: i });
      if (page?.next !== undefined) return { entries, next: page.next };
      if (entries.length >= limit)
        // This shard is done; the next page starts at the following one.
        return { entries, next: i + 1 < this.slots.length ? entries[entries.length - 1]!.id : undefined };
    }
    return { entries, next: undefined };
  }

  /**
   * Graceful: stop accepting new requests (they get 503, or are dropped with
   * overload "drop"), let the shards' transactions finish or time out for at
   * most `drainTimeoutMs`, then end the threads and close the sockets.
   * Transactions still live then are abandoned: main-thread handles get a
   * local 503 "Shard Closed".
   */
  close(): Promise<void> {
    if (!this.closing) this.closing = this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.state = "closing";
    for (const slot of this.slots) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
    }
    for (const slot of this.slots) this.flushSlot(slot);
    const drainMs = this.opts.drainTimeoutMs ?? DEFAULT_DRAIN_MS;
    await Promise.all(
      this.slots.map(async (slot) => {
        const inc = slot.inc;
        if (!inc || inc.ended) return;
        await this.call(slot.index, (api) => api.drain(drainMs)).catch(() => {});
        inc.expectedEnd = true;
        await this.call(slot.index, (api) => api.shutdown()).catch(() => {});
        // The task resolves when the shard has closed its engine and ports.
        await Promise.race([inc.dead.catch(() => {}), delay(SHUTDOWN_WAIT_MS)]);
      }),
    );
    this.state = "closed";
    for (const slot of this.slots) {
      const inc = slot.inc;
      if (inc && !inc.ended) {
        inc.expectedEnd = true;
        this.onShardEnd(slot, inc, undefined);
      }
      slot.alive = false;
      slot.pending.clear();
    }
    await Promise.all(this.slots.map((slot) => slot.pool.destroy().catch(() => {})));
    await Promise.all(this.transports.map((t) => t.close()));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    t.unref?.();
  });
}

function zeroSnapshot(): StatsSnapshot {
  return { ...newStats(), ...newTransportStats(), user_errors: 0 };
}
