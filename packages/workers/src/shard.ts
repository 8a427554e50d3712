/**
 * One shard: a core `Engine` — one actor system, nothing shared with the
 * other shards — running in its own worker thread for its whole life. This
 * file is the piscina task: the default export receives the shard's two
 * MessagePorts (transferred) and resolves only when the coordinator shuts the
 * shard down.
 *
 * Data plane (port `data`): batches of received messages come in as one
 * ArrayBuffer each (batch.ts) and go to `engine.onMessage` one by one; what
 * the engine sends goes into the outgoing batch through a `ChannelTransport`
 * per coordinator socket, and the coordinator puts it on the wire from its own
 * socket, so source addresses and ports stay right for responses and for
 * timer-driven retransmissions alike. Each outgoing batch also acknowledges
 * the messages processed since the last one (the coordinator's bounded
 * inbound queue counts on it) and tells the live transaction count (what the
 * coordinator counts as lost if this thread dies).
 *
 * Control plane (port `control`): the ShardApi below, exposed with comlink.
 *
 * A throw out of the engine (a bug: user callbacks are already guarded by
 * the engine) is not caught here: the thread dies, the task's promise rejects
 * and the coordinator starts a new one. Half-updated actor state is worse than
 * a restart.
 */
import { performance } from "node:perf_hooks";
import { type MessagePort, receiveMessageOnPort } from "node:worker_threads";
import {
  type ClientTransactionHandle,
  type Destination,
  Engine,
  parseMessage,
  type SendErrorTarget,
  type ServerTransactionHandle,
  type SipResponse,
  type Source,
  TransactionError,
  type Transport,
  type TransportProtocol,
  TransportSendError,
  VirtualClock,
} from "@siptm/core";
import { internals } from "@siptm/core/internal";
import { expose } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import {
  ACK_NOW,
  BatchReader,
  BatchWriter,
  newInRecord,
  newSyncRecord,
  REC_IN,
  REC_SYNC,
  readIn,
  readSync,
  sourceOf,
  writeClientCancel,
  writeClientFinal,
  writeClientResponse,
  writeClientTerminated,
  writeSend,
  writeServerAck,
  writeServerCancel,
  writeServerNew,
  writeServerTerminated,
  writeSync,
} from "./batch.js";
import {
  type BatchLimits,
  type CreatedRequest,
  failure,
  type ListenerInfo,
  type Result,
  type ShardApi,
  type ShardConfig,
  type ShardExit,
  type ShardHealth,
  type ShardTask,
} from "./protocol.js";
import { type RouteFunction, RouteHooks, type WireTap } from "./route-hooks.js";
import { branchPrefixOf } from "./scan.js";

/** What a route module's default export gets besides the engine. */
export interface ShardRouteContext {
  shard: number;
  shards: number;
  incarnation: number;
  /** Present when the main thread has an onRequest handler: hand a server transaction to it. */
  forward: ((tx: ServerTransactionHandle) => void) | undefined;
  /** The coordinator's sockets (its `addresses`, with the bound ports), in listen order. */
  listeners: readonly ListenerInfo[];
  /** `ShardedEngineOptions.routeKeys`: the same in every shard and every incarnation. */
  keys: Readonly<Record<string, Uint8Array>>;
  /**
   * Name a function the main thread calls on every shard with `ShardedEngine.routeCall(name, ...args)`
   * (control plane; arguments and result structured-cloned). See route-hooks.ts.
   */
  provide(name: string, fn: RouteFunction): void;
  /** Run `fn` when the shard shuts down (`ShardedEngine.close()`): after the drain, before its engine closes. */
  onClose(fn: () => void | Promise<void>): void;
  /** Watch every message the shard's engine receives and sends (a wire trace); a throw out of it is ignored. */
  tap(tap: WireTap): void;
}

/** A route module: `export default function route(engine, ctx) { engine.onRequest = … }`. */
export type RouteModule = (engine: Engine, ctx: ShardRouteContext) => void | Promise<void>;

const EMPTY = Buffer.alloc(0);
/** Batches read off the data port after the one whose event fired, before the outgoing batch is posted. */
const DRAIN_MAX = 16;
/** How often stale send targets are swept. */
const TARGET_SWEEP_MS = 30_000;

interface TargetEntry {
  target: SendErrorTarget;
  dest: Destination;
  at: number;
}

/**
 * The shard's outgoing batch. Sends with an `onError` target get the target's
 * numeric id (one per target, reused by all its sends); the coordinator sends
 * `{ sendError: id, code, message }` back when a send fails. An id is
 * forgotten when its transaction is freed (the engine's `destroyed`
 * observer); targets that are not transactions are swept after 30 s.
 */
class Outbox {
  /** Where the shard's records go (batch.ts's typed writers); each one added schedules the flush. */
  readonly writer = new BatchWriter(() => this.kick());
  private acks = 0;
  private ackedBatches = 0;
  private scheduled = false;
  private closed = false;
  private toldLive = -1;
  private nextId = 1;
  private readonly ids = new WeakMap<SendErrorTarget, number>();
  private readonly targets = new Map<number, TargetEntry>();
  /** An acknowledgement the coordinator asked for now (ACK_NOW) is pending. */
  private ackDue = false;
  private readonly flushNow = () => {
    this.scheduled = false;
    this.flushDue();
  };

  constructor(
    private readonly port: MessagePort,
    public limits: BatchLimits,
    private readonly live: () => number,
  ) {}

  send(listener: number, data: Buffer, dest: Destination, onError: SendErrorTarget | undefined): void {
    let id = 0;
    if (onError) {
      const known = this.ids.get(onError);
      if (known !== undefined) {
        id = known;
        const entry = this.targets.get(id);
        if (entry) entry.dest = dest;
      } else {
        id = this.nextId++;
        if (this.nextId > 0xfffffff0) this.nextId = 1;
        this.ids.set(onError, id);
        this.targets.set(id, { target: onError, dest, at: performance.now() });
      }
    }
    writeSend(this.writer, listener, dest.address, dest.port, dest.connectionId, id, data, dest.serverName);
  }

  /**
   * A batch of `n` messages is processed: tell the coordinator with the next
   * flush. `now` (the batch had ACK_NOW): the data handler's `flushDue()` at
   * the end of its event posts it even with nothing else in it; otherwise the
   * acknowledgement waits for the next batch that goes anyway, or the next
   * live-count report.
   */
  ack(n: number, now: boolean): void {
    this.acks += n;
    this.ackedBatches++;
    if (now) this.ackDue = true;
  }

  /** The coordinator reported a failed send. */
  sendError(id: number, code: string, message: string): void {
    const entry = this.targets.get(id);
    if (!entry) return;
    entry.target.transportError(new TransportSendError(code, entry.dest, message));
  }

  /** A transaction was freed: forget its id. */
  forget(target: SendErrorTarget): void {
    const id = this.ids.get(target);
    if (id === undefined) return;
    this.ids.delete(target);
    this.targets.delete(id);
  }

  /** Drop old entries whose target is not a live transaction (the `destroyed` observer normally did it). */
  sweep(now: number): void {
    for (const [id, entry] of this.targets) {
      if (now - entry.at < TARGET_SWEEP_MS) continue;
      const t = entry.target as { terminated?: unknown };
      if (t.terminated === false) continue;
      this.targets.delete(id);
      this.ids.delete(entry.target);
    }
  }

  /** Batches processed whose acknowledgement has not gone yet. */
  get heldBatches(): number {
    return this.ackedBatches;
  }

  get pendingTargets(): number {
    return this.targets.size;
  }

  /** The periodic report: tell the live count if it changed since the last batch, and any acknowledgement held back. */
  tellLive(): void {
    if (this.live() !== this.toldLive || this.ackedBatches > 0) this.flush();
  }

  /** Post the batch if the coordinator waits for something in it: records, or an acknowledgement asked for now. */
  flushDue(): void {
    if (this.writer.count > 0 || this.ackDue) this.flush();
  }

  private kick(): void {
    if (this.closed) return;
    if (this.writer.count >= this.limits.maxMessages || this.writer.bytes >= this.limits.maxBytes) {
      this.flush();
      return;
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
  }

  flush(): void {
    if (this.closed) return;
    const live = this.live();
    if (this.writer.count === 0 && this.ackedBatches === 0 && live === this.toldLive) return;
    const ab = this.writer.finish(this.acks, live, this.ackedBatches);
    this.acks = 0;
    this.ackedBatches = 0;
    this.ackDue = false;
    this.toldLive = live;
    this.port.postMessage(ab, [ab]);
  }

  close(): void {
    this.flush();
    this.closed = true;
  }
}

/** Inside the shard, the engine's transport for one coordinator socket: a send joins the outgoing batch. */
export class ChannelTransport implements Transport {
  readonly reliable: boolean;
  constructor(
    readonly protocol: TransportProtocol,
    readonly localAddress: string,
    readonly localPort: number,
    private readonly listener: number,
    private readonly out: Outbox,
    private readonly hooks?: RouteHooks,
  ) {
    this.reliable = protocol === "TCP" || protocol === "TLS" || protocol === "WS" || protocol === "WSS";
  }
  send(data: Buffer, dest: Destination, onError?: SendErrorTarget): void {
    if (this.hooks?.tapping) this.hooks.tapOut(data, dest);
    this.out.send(this.listener, data, dest, onError);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function attempt<T>(fn: () => T): Result<T> {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    return failure(err);
  }
}

/** A structured-cloned Buffer arrives as a Uint8Array: make it a Buffer again, without copying. */
function asBuffer(u: Uint8Array | Buffer | string | undefined): Buffer | string | undefined {
  if (u === undefined || typeof u === "string" || Buffer.isBuffer(u)) return u;
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

class Shard {
  readonly engine: Engine;
  private readonly out: Outbox;
  private readonly listeners: ListenerInfo[];
  private readonly handles = new Map<number, ClientTransactionHandle>();
  private forwardOn: boolean;
  private routeHandler: Engine["onRequest"];
  private batches = 0;
  private messages = 0;
  private busyMs = 0;
  private maxBatchMs = 0;
  private readonly elu0 = performance.eventLoopUtilization();
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastSweep = performance.now();
  private finished: ((exit: ShardExit) => void) | undefined;
  private stopped = false;
  /** The route's control functions, close hooks and wire taps (route-hooks.ts). */
  private readonly hooks = new RouteHooks();
  /** Lockstep tests only: the engine's virtual clock, moved by REC_SYNC records. */
  private readonly vclock: VirtualClock | undefined;
  /** Scratch records the inbound batches are read into (batch.ts), reused record after record. */
  private readonly inRecord = newInRecord();
  private readonly syncRecord = newSyncRecord();

  constructor(private readonly task: ShardTask) {
    this.listeners = task.listeners;
    this.forwardOn = task.forward;
    this.vclock = task.virtualStart === undefined ? undefined : new VirtualClock(task.virtualStart);
    this.engine = new Engine({
      ...task.engine,
      ...(this.vclock ? { clock: this.vclock } : {}),
      id: task.engineId,
      branchPrefix: branchPrefixOf(task.index),
    });
    this.out = new Outbox(task.data, task.batch, () => this.engine.stats.current);
    task.listeners.forEach((l, i) => {
      this.engine.addTransport(new ChannelTransport(l.protocol, l.address, l.port, i, this.out, this.hooks));
    });
    this.chainDestroyed();
  }

  /** Forget a freed transaction's send-error id; keeps any observer already installed. */
  private chainDestroyed(): void {
    const observers = internals(this.engine).observers;
    const prev = observers.destroyed;
    if (prev && (prev as { siptmShard?: boolean }).siptmShard) return;
    const mine = Object.assign(
      (tx: Parameters<NonNullable<typeof prev>>[0]) => {
        this.out.forget(tx);
        if (prev) prev(tx);
      },
      { siptmShard: true },
    );
    observers.destroyed = mine;
  }

  async run(): Promise<ShardExit> {
    const task = this.task;
    if (task.route) {
      const mod = (await import(task.route)) as { default?: unknown };
      if (typeof mod.default !== "function")
        throw new TypeError(`route module ${task.route} has no default export function`);
      const ctx: ShardRouteContext = {
        shard: task.index,
        shards: task.shards,
        incarnation: task.incarnation,
        forward: task.forward ? (tx) => this.forward(tx) : undefined,
        listeners: task.listeners.map((l) => ({ ...l })),
        keys: task.routeKeys,
        provide: (name, fn) => this.hooks.provide(name, fn),
        onClose: (fn) => this.hooks.onClose(fn),
        tap: (tap) => this.hooks.tap(tap),
      };
      await (mod.default as RouteModule)(this.engine, ctx);
      // A route that installed its own `destroyed` observer replaced ours: chain it again.
      this.chainDestroyed();
    }
    this.routeHandler = this.engine.onRequest;
    if (this.forwardOn && !this.routeHandler) this.engine.onRequest = (tx) => this.forward(tx);

    const done = new Promise<ShardExit>((resolve) => {
      this.finished = resolve;
    });
    expose(this.api(), nodeEndpoint(task.control));
    task.data.on("message", (m: unknown) => this.onData(m));
    this.timer = setInterval(() => this.tick(), task.reportMs);
    return done;
  }

  private tick(): void {
    this.out.tellLive();
    const now = performance.now();
    if (now - this.lastSweep >= TARGET_SWEEP_MS) {
      this.lastSweep = now;
      this.out.sweep(now);
    }
  }

  /**
   * One 'message' event of the data port: this message, then whatever else is
   * already queued on the port (read with receiveMessageOnPort, no event each),
   * then ONE outgoing batch with the sends and acknowledgements of them all —
   * at once, not on setImmediate: the coordinator waits for it.
   */
  private onData(m: unknown): void {
    if (this.stopped) return;
    this.dataMessage(m);
    const port = this.task.data;
    for (let i = 0; i < DRAIN_MAX && !this.stopped; i++) {
      const next = receiveMessageOnPort(port);
      if (next === undefined) break;
      this.dataMessage(next.message);
    }
    if (!this.stopped) this.out.flushDue();
  }

  private dataMessage(m: unknown): void {
    if (m instanceof ArrayBuffer) {
      this.processBatch(m);
      return;
    }
    const e = m as { sendError?: number; code?: string; message?: string };
    if (typeof e.sendError === "number") this.out.sendError(e.sendError, e.code ?? "EIO", e.message ?? "");
  }

  private processBatch(ab: ArrayBuffer): void {
    const t0 = performance.now();
    const r = new BatchReader(ab);
    const engine = this.engine;
    const listeners = this.listeners;
    const rec = this.inRecord;
    let n = 0;
    let sync = -1;
    let syncs = 0;
    while (r.next()) {
      if (r.type === REC_SYNC) {
        const s = readSync(r, this.syncRecord);
        sync = s.seq;
        syncs++;
        if (s.time !== undefined) this.vclock?.advanceTo(s.time);
        continue;
      }
      if (r.type !== REC_IN) continue;
      readIn(r, rec);
      const l = listeners[rec.listener];
      if (!l) continue;
      const source = sourceOf(l, rec);
      // A transaction keeps its message's bytes for its whole life. A batch of one message is
      // little more than that message (a few dozen bytes of header and address): keep a view.
      // Out of a bigger batch, copy, or one kept message would keep every other one alive.
      let data = rec.data;
      if (r.count > 1) {
        data = Buffer.allocUnsafe(rec.data.length);
        data.set(rec.data);
      }
      if (this.hooks.tapping) this.hooks.tapIn(data, source);
      engine.onMessage(data, source);
      n++;
    }
    const ms = performance.now() - t0;
    this.batches++;
    this.messages += n;
    this.busyMs += ms;
    if (ms > this.maxBatchMs) this.maxBatchMs = ms;
    // The coordinator's queue counts messages, not lockstep records.
    this.out.ack(r.count - syncs, (r.batches & ACK_NOW) !== 0);
    if (sync >= 0) {
      // Lockstep: answer once the whole batch is processed and the promise jobs it started have run
      // (a route's async next-hop resolution…), with the shard's next deadline.
      setImmediate(() => {
        writeSync(this.out.writer, sync, this.vclock?.nextDue());
        this.out.flush();
      });
    }
  }

  /** Hand a new server transaction to the main thread's onRequest; its events follow it. */
  private forward(tx: ServerTransactionHandle): void {
    const id = tx.id;
    const w = this.out.writer;
    tx.events = {
      onCancel: (cancel) => writeServerCancel(w, id, cancel.toBuffer()),
      onAck: (ack) => writeServerAck(w, id, ack.toBuffer()),
      onTerminated: (cause) => writeServerTerminated(w, id, cause),
    };
    const src = tx.source;
    const listener = this.listenerOf(src);
    writeServerNew(w, listener, src.address, src.port, src.connectionId, id, tx.request.toBuffer());
  }

  private listenerOf(src: Source): number {
    const ls = this.listeners;
    for (let i = 0; i < ls.length; i++) {
      const l = ls[i]!;
      if (l.protocol === src.protocol && l.port === src.localPort && l.address === src.localAddress) return i;
    }
    return 0;
  }

  /** Start a client transaction for the main thread; its events go back as batch records. */
  private startRequest(
    handleId: number,
    start: (events: ClientEventsOf) => ClientTransactionHandle,
  ): CreatedRequest {
    const w = this.out.writer;
    let last: SipResponse | undefined;
    const h = start({
      onResponse: (res) => {
        last = res;
        writeClientResponse(w, handleId, res.status, res.toBuffer());
      },
      onFinal: (o) => {
        const data = o.response && o.response !== last ? o.response.toBuffer() : EMPTY;
        writeClientFinal(w, handleId, o.status, o.reason, o.cause, data);
      },
      onCancel: (p) => {
        if (p.kind === "answered")
          writeClientCancel(w, handleId, p.kind, p.status, "", p.response.toBuffer());
        else writeClientCancel(w, handleId, p.kind, 0, p.kind === "failed" ? p.cause : "");
      },
      onTerminated: () => {
        this.handles.delete(handleId);
        writeClientTerminated(w, handleId);
      },
    });
    if (!h.terminated) this.handles.set(handleId, h);
    return {
      id: h.id,
      callId: h.callId,
      cseq: h.cseq,
      method: h.method,
      branch: h.branch,
      request: h.request,
    };
  }

  private api(): ShardApi {
    const engine = this.engine;
    const task = this.task;
    const hooks = () => {
      if (!task.testHooks) throw new Error("test hooks are off");
    };
    return {
      ready: () => ({ shard: task.index, incarnation: task.incarnation }),
      stats: () => ({
        ...engine.snapshot(),
        shard: task.index,
        incarnation: task.incarnation,
        batches: this.batches,
        messages: this.messages,
        busyMs: this.busyMs,
        maxBatchMs: this.maxBatchMs,
        elu: performance.eventLoopUtilization(this.elu0).utilization,
        handles: this.handles.size,
      }),
      audit: () => engine.audit(),
      auditPage: (after, limit) => engine.auditPage(after, limit),
      // A field-by-field copy, alike in form with server.ts's controlOptions: different records, nothing to share.
      health: (): ShardHealth => {
        const st = engine.stats;
        return {
          shard: task.index,
          created: st.created,
          freed: st.freed,
          ctxCreated: st.ctx_created,
          ctxFreed: st.ctx_freed,
          table: internals(engine).table.size,
          armedTimers: engine.armedTimers,
          refFaults: engine.refFaults.map((f) => f.message),
          live: engine
            .audit()
            .map((a) => `${a.id} ${a.kind} ${a.method} ${a.state} holders=[${a.holders.join(",")}]`),
          longestTimer: engine.longestTimer,
        };
      },
      request: (opts, handleId) =>
        attempt(() =>
          this.startRequest(handleId, (events) =>
            engine.request({ ...opts, body: asBuffer(opts.body), ...events }),
          ),
        ),
      requestFrom: (message, opts, handleId) =>
        attempt(() =>
          this.startRequest(handleId, (events) =>
            engine.requestFrom(asBuffer(message) as Buffer | string, { ...opts, ...events }),
          ),
        ),
      cancelHandle: (handleId, reason) => this.handles.get(handleId)?.cancel(reason) ?? "none",
      cancel: (callId, cseq, reason) => engine.cancel(callId, cseq, reason),
      replyById: (id, status, opts) => attempt(() => engine.replyById(id, status, withBody(opts))),
      replyByCallId: (callId, cseq, status, opts) =>
        attempt(() => engine.replyByCallId(callId, cseq, status, withBody(opts))),
      ack2xx: (handleId, answer) =>
        attempt(() => {
          const h = this.handles.get(handleId);
          if (!h) throw new TransactionError("terminated", "the INVITE transaction has ended");
          const res = parseMessage(asBuffer(answer) as Buffer);
          if (res.isRequest) throw new TransactionError("bad-request", "not a response");
          engine.ack2xx(h, res);
        }),
      config: (patch) => this.configure(patch),
      connectionClosed: (source, inbound) => engine.onConnectionClosed(source, inbound),
      routeCall: (name, args) => this.hooks.call(name, args),
      drain: (timeoutMs) => this.drain(timeoutMs),
      shutdown: () => {
        setImmediate(() => this.finish());
      },
      crash: (mode) => {
        hooks();
        if (mode === "exit") process.exit(1);
        setImmediate(() => {
          throw new Error(`shard ${task.index} crashed (test hook)`);
        });
      },
      block: (ms) => {
        hooks();
        // Answer first, then block: when the caller hears back, the thread is (about to be) stuck.
        setImmediate(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms));
      },
      report: () => {
        hooks();
        const held = this.out.heldBatches;
        this.tick();
        return held;
      },
    };
  }

  private configure(patch: Partial<ShardConfig>): ShardConfig {
    if (patch.batch) this.out.limits = { ...this.out.limits, ...patch.batch };
    if (patch.forward !== undefined && patch.forward !== this.forwardOn) {
      this.forwardOn = patch.forward;
      if (!this.routeHandler) this.engine.onRequest = patch.forward ? (tx) => this.forward(tx) : undefined;
    }
    return { forward: this.forwardOn, batch: { ...this.out.limits } };
  }

  private async drain(timeoutMs: number): Promise<number> {
    // New requests that still reach the shard (queued before the coordinator stopped accepting) get 503 too.
    this.engine.drain();
    const deadline = performance.now() + timeoutMs;
    // Transactions only absorbing retransmissions (Timer J, K, D…) hold no drain.
    while (this.engine.unsettled > 0 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    this.out.flush();
    return this.engine.unsettled;
  }

  private async finish(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    // The route's close hooks, after the drain, while the engine and the outgoing batch still work.
    await this.hooks.close();
    const abandoned = this.engine.unsettled;
    await this.engine.close();
    this.out.close();
    this.task.data.close();
    this.task.control.close();
    this.finished?.({
      shard: this.task.index,
      incarnation: this.task.incarnation,
      abandoned,
      stats: this.engine.snapshot(),
    });
  }
}

type ClientEventsOf = Required<
  Pick<import("@siptm/core").ClientEvents, "onResponse" | "onFinal" | "onCancel" | "onTerminated">
>;

function withBody<T extends { body?: Buffer | string | undefined } | undefined>(opts: T): T {
  if (!opts?.body || typeof opts.body === "string") return opts;
  return { ...opts, body: asBuffer(opts.body) as Buffer };
}

/** The piscina task: run shard `task.index` until the coordinator shuts it down. */
export default async function runShard(task: ShardTask): Promise<ShardExit> {
  return new Shard(task).run();
}
