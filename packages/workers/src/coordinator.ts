/**
 * `ShardedEngine`: the siptm engine sharded across worker threads by a hash
 * of the Call-ID.
 *
 * Every transaction is an actor owned by exactly one shard, for its whole
 * life; a shard is one core `Engine` (one actor system: no locks, nothing
 * shared with the other shards) in its own thread. The coordinator, here on
 * the main thread, owns the sockets. What a datagram goes through before a
 * shard sees it — which shard owns it, the rate limit, the queue bound, the
 * whole-engine cap — is admission.ts; starting, restarting and calling the
 * shards is supervisor.ts (piscina threads, the comlink control plane). This
 * file is the data plane between them and the user's API.
 *
 * Data plane: messages for a shard are batched per event-loop turn (flushed
 * by setImmediate, or at once when a batch reaches `batchMessages` messages
 * or `batchBytes` bytes; a shard that has `batchesInFlight` batches not yet
 * processed gets the next when it reports one done, so a busy shard gets
 * fewer, larger batches) into ONE ArrayBuffer, posted with the buffer in the
 * transfer list (batch.ts). Never one postMessage per SIP message, never a
 * structured-cloned object per message. The shards batch their sends back the
 * same way, and the coordinator sends them from its own sockets; the events
 * of the transactions the main thread holds ride the same batches to their
 * handles (handles.ts).
 */
import { randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";
import {
  type AuditEntry,
  type CancelResult,
  type ClientEvents,
  createTcpTransport,
  createUdpTransport,
  type Destination,
  newCallId,
  parseMessage,
  type ReplyOptions,
  type RequestOptions,
  type SipResponse,
  type Source,
  type StatsSnapshot,
  type TlsCredentials,
  TransactionError,
  type TransactionErrorCode,
  type Transport,
  type TransportSendError,
  type TransportSink,
} from "@siptm/core";
import {
  addTransportStats,
  createWsTransport,
  newStats,
  newTransportStats,
  offerAlias,
} from "@siptm/core/internal";
import type { Remote } from "comlink";
import { Admission } from "./admission.js";
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
  NOT_TOLD,
  newSendRecord,
  newSyncRecord,
  REC_CLIENT,
  REC_SEND,
  REC_SERVER,
  REC_SERVER_NEW,
  REC_SYNC,
  readSend,
  readSync,
  writeIn,
} from "./batch.js";
import { type Span, scanCallId } from "./callid.js";
import { type HandleOwner, HandleTable, ShardClientHandle, type ShardServerHandle } from "./handles.js";
import { defaultHashKey, type HashKey, hashKey, shardOf } from "./hash.js";
import { type EngineInternals, registerInternals } from "./lockstep.js";
import {
  type CoordinatorLogger,
  DEFAULT_BATCH_BYTES,
  DEFAULT_BATCH_MESSAGES,
  DEFAULT_BATCHES_IN_FLIGHT,
  DEFAULT_DRAIN_MS,
  DEFAULT_MAX_TRANSACTIONS,
  DEFAULT_QUEUE_LIMIT,
  DEFAULT_REPORT_MS,
  type ListenOption,
  type ShardedEngineOptions,
} from "./options.js";
import type {
  CreatedRequest,
  ListenerInfo,
  PlainRequestOptions,
  RequestFromOptions,
  Result,
  ShardApi,
  ShardTask,
} from "./protocol.js";
import { type Incarnation, type Slot, Supervisor } from "./supervisor.js";

export type { CoordinatorLogger, ListenOption, ShardedEngineOptions, WsLimitOptions } from "./options.js";
export { SHARD_LOST } from "./supervisor.js";

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

/** What a top Via asking for connection reuse contains (RFC 5923). */
const ALIAS = Buffer.from(";alias", "latin1");

export class ShardedEngine implements TransactionEngine, HandleOwner {
  /** The sockets, with their bound ports. */
  readonly addresses: ReadonlyArray<Readonly<ListenerInfo>>;
  onRequest: ((tx: ShardServerHandle) => void) | undefined;
  /**
   * A connection (TCP, TLS, WS) closed. The coordinator owns every connection,
   * so this runs in the main thread, where the shared registrar drops the
   * bindings that lived on it (RFC 5626 §5.3).
   */
  onFlowClosed: ((source: Source) => void) | undefined;

  private readonly opts: ShardedEngineOptions;
  private readonly shards: Supervisor;
  private readonly slots: readonly Slot[];
  private readonly admission: Admission;
  private readonly transports: Transport[] = [];
  private readonly listeners: ListenerInfo[] = [];
  private readonly queueLimit: number;
  private readonly maxTransactions: number;
  private readonly batchMessages: number;
  private readonly batchBytes: number;
  private readonly batchesInFlight: number;
  private readonly routeUrl: string | undefined;
  private readonly baseId: string;
  private readonly logger: CoordinatorLogger;
  private readonly handles: HandleTable;
  private closing: Promise<void> | undefined;
  private flushScheduled = false;
  /** Send errors posted to the shards (lockstep tests wait for their effects). */
  private sendErrors = 0;
  private readonly counters = emptyCoordinatorStats();
  private userErrors = 0;
  private readonly key: HashKey;
  /** What the test functions of lockstep.ts work on (never reachable from the public type). */
  private readonly internals: EngineInternals;
  /** Scratch records the shards' batches are read into (batch.ts), reused record after record. */
  private readonly sendRecord = newSendRecord();
  private readonly syncRecord = newSyncRecord();
  private readonly flushAll = () => {
    this.flushScheduled = false;
    this.admission.rotate(Date.now());
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
    this.batchMessages = Math.max(1, opts.batchMessages ?? DEFAULT_BATCH_MESSAGES);
    this.batchBytes = Math.max(1024, opts.batchBytes ?? DEFAULT_BATCH_BYTES);
    this.batchesInFlight = Math.max(1, opts.batchesInFlight ?? DEFAULT_BATCHES_IN_FLIGHT);
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
    this.handles = new HandleTable(this, this.listeners);
    this.shards = new Supervisor(
      opts.shards,
      {
        task: (index, incarnation) => this.taskFor(index, incarnation),
        onData: (slot, inc, m) => this.onShardData(slot, inc, m),
        onEnd: (shard, outcome) => this.handles.failShard(shard, outcome),
        onLaunch: () => this.scheduleFlush(),
      },
      this.logger,
      this.counters,
    );
    this.slots = this.shards.slots;
    const clock = opts.virtualClock;
    const t1 = opts.engine?.timers?.t1 ?? 500;
    this.admission = new Admission(
      {
        key: this.key,
        queueLimit: this.queueLimit,
        maxTransactions: this.maxTransactions,
        rateLimit: opts.rateLimit,
        now: opts.now ?? (clock ? () => clock.now() : () => performance.now()),
        overload: opts.overload ?? "503",
        retryAfter: opts.retryAfter ?? opts.engine?.retryAfter ?? 5,
        recentWindowMs: Math.max(
          opts.engine?.timers?.timerB ?? 64 * t1,
          opts.engine?.timers?.timerF ?? 64 * t1,
        ),
      },
      this.slots,
      this.transports,
      this.counters,
      () => this.shards.state === "open" || this.shards.state === "starting",
    );
    this.internals = {
      supervisor: this.shards,
      lockstep: clock !== undefined,
      testHooks: opts.testHooks ?? false,
      flush: (slot) => this.flushSlot(slot),
      effects: () => this.shards.settledCalls + this.sendErrors,
      handlesLive: () => this.handles.size,
      onSync: undefined,
    };
    registerInternals(this, this.internals);
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
        onConnectionClosed: (source: Source, inbound: boolean) => this.connectionClosed(source, inbound),
      };
      const t = this.opts.transportFactory
        ? await this.opts.transportFactory(l, sink)
        : l.protocol === "UDP"
          ? await createUdpTransport({ address: l.address, port: l.port, sink })
          : await this.streamTransport(l, sink);
      this.transports.push(t);
      this.listeners.push({ protocol: l.protocol, address: l.address, port: t.localPort });
    }
    await this.shards.start();
  }

  /**
   * A connection closed. A client on its own connection (WebSocket, or one
   * that connected to us) cannot be reached on another, so every shard hears
   * of it (their client transactions on it fail now); then the main thread's
   * `onFlowClosed` (the shared registrar).
   */
  private connectionClosed(source: Source, inbound: boolean): void {
    if (this.shards.state === "closed") return;
    if (inbound || source.protocol === "WS" || source.protocol === "WSS")
      for (let i = 0; i < this.slots.length; i++)
        this.call(i, (api) => api.connectionClosed(source, inbound)).catch(() => {});
    this.onFlowClosed?.(source);
  }

  /** A TCP, TLS, WS or WSS listener (the coordinator owns every connection; shards send by connection id). */
  private streamTransport(l: ListenOption, sink: TransportSink): Promise<Transport> {
    const secure = l.protocol === "TLS" || l.protocol === "WSS";
    if (secure && !this.opts.tls)
      throw new TypeError(`ShardedEngine: a ${l.protocol} listener needs opts.tls`);
    if (l.protocol === "WS" || l.protocol === "WSS")
      return createWsTransport({
        address: l.address,
        port: l.port,
        sink,
        ...this.opts.ws,
        ...(secure ? { tls: this.opts.tls } : {}),
      });
    return createTcpTransport({
      address: l.address,
      port: l.port,
      sink,
      limits: this.opts.engine?.limits,
      ...this.opts.tcp,
      ...(l.protocol === "TLS" ? { tls: this.opts.tls } : {}),
    });
  }

  /**
   * TLS and WSS listeners present `creds` on new handshakes from now on
   * (SIGHUP); live connections keep theirs. Throws when the material does not load.
   */
  reloadCertificates(creds: TlsCredentials): void {
    for (const t of this.transports) {
      const r = (t as Partial<{ reloadCertificates(c: TlsCredentials): void }>).reloadCertificates;
      if (typeof r === "function" && (t.protocol === "TLS" || t.protocol === "WSS")) r.call(t, creds);
    }
  }

  /** What incarnation `incarnation` of shard `index` starts with (the supervisor adds its ports). */
  private taskFor(index: number, incarnation: number): Omit<ShardTask, "data" | "control"> {
    return {
      index,
      shards: this.slots.length,
      incarnation,
      engineId: `${this.baseId}-s${index}i${incarnation}`,
      listeners: this.listeners,
      // Each shard's own cap is the whole engine's (a safety net; the coordinator enforces the cap).
      engine: { maxTransactions: this.maxTransactions, ...this.opts.engine },
      route: this.routeUrl,
      forward: this.onRequest !== undefined,
      routeKeys: this.opts.routeKeys ?? {},
      testHooks: this.opts.testHooks ?? false,
      virtualStart: this.opts.virtualClock?.now(),
      batch: { maxMessages: this.batchMessages, maxBytes: this.batchBytes },
      reportMs: Math.max(1, this.opts.reportIntervalMs ?? DEFAULT_REPORT_MS),
    };
  }

  private call<T>(shard: number, fn: (api: Remote<ShardApi>) => Promise<T>): Promise<T> {
    return this.shards.call(shard, fn);
  }

  // --- data plane: in -------------------------------------------------------------------

  /** TransportSink of socket `listener`: find the owning shard and queue the message for it. */
  private onMessage(listener: number, data: Buffer, source: Source): void {
    if (this.shards.state === "closed") return;
    if (source.protocol === "TLS") this.aliasFrom(listener, data, source);
    const shard = this.admission.shardFor(listener, data, source);
    if (shard < 0) return;
    const slot = this.slots[shard]!;
    writeIn(slot.pending, listener, source.address, source.port, source.connectionId, data);
    slot.inFlight++;
    this.counters.in_messages++;
    if (slot.pending.count >= this.batchMessages || slot.pending.bytes >= this.batchBytes)
      this.flushSlot(slot);
    else this.scheduleFlush();
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
      this.shards.state !== "open" ||
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
          this.handles.clientEvent(r);
          break;
        case REC_SERVER_NEW:
          this.handles.serverNew(slot.index, r);
          break;
        case REC_SERVER:
          this.handles.serverEvent(r);
          break;
        case REC_SYNC:
          if (slot.inc === inc) this.internals.onSync?.(slot, readSync(r, this.syncRecord));
          break;
      }
    }
  }

  private sendFor(inc: Incarnation, r: BatchReader): void {
    const rec = readSend(r, this.sendRecord);
    const t = this.transportFor(rec.listener, rec.connectionId);
    if (!t) return;
    const dest: Destination = {
      protocol: t.protocol,
      address: rec.address,
      port: rec.port,
      connectionId: rec.connectionId,
      serverName: rec.serverName,
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
          this.sendErrors++;
        },
      });
  }

  /**
   * RFC 5923: the coordinator owns the connections, so it grants a Via
   * `alias` itself (the transport checks the peer's certificate). Only a
   * TLS message that mentions `alias` at all is parsed here.
   */
  private aliasFrom(listener: number, data: Buffer, source: Source): void {
    if (data.indexOf(ALIAS) < 0) return;
    try {
      const msg = parseMessage(data);
      if (msg.isRequest) offerAlias(msg, source, this.transports[listener]);
    } catch {
      // the shard answers what does not parse
    }
  }

  /**
   * The socket to send on: `listener`'s, unless the connection named is held
   * by another listener of the same protocol (connection ids are unique in the
   * process; a shard's engine picks the first listener of a protocol).
   */
  private transportFor(listener: number, connectionId: number | undefined): Transport | undefined {
    const t = this.transports[listener];
    if (!t || connectionId === undefined || t.hasConnection?.(connectionId) !== false) return t;
    for (const other of this.transports)
      if (other.protocol === t.protocol && other.hasConnection?.(connectionId) === true) return other;
    return t;
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
    if (this.shards.state !== "open") throw new TransactionError("terminated", "the engine is closed");
    const shard = this.shardOf(callId);
    const h = this.handles.newClient(shard, callId, cseq, method, events);
    const handleId = h.handleId;
    let r: Result<CreatedRequest>;
    try {
      r = await this.call<Result<CreatedRequest>>(shard, (api) => start(api, handleId));
    } catch (err) {
      this.handles.forgetClient(handleId);
      throw err;
    }
    if (!r.ok) {
      this.handles.forgetClient(handleId);
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

  /** Resolves when every shard is up (after a restart). */
  ready(timeoutMs = 10_000): Promise<void> {
    return this.shards.ready(timeoutMs);
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
    total.rate_limited += this.admission.rateLimited;
    total.rate_sources_evicted += this.admission.rateEvicted;
    total.table_full += this.admission.capRejected;
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
    this.shards.beginClose();
    for (const slot of this.slots) this.flushSlot(slot);
    await this.shards.stop(this.opts.drainTimeoutMs ?? DEFAULT_DRAIN_MS);
    await Promise.all(this.transports.map((t) => t.close()));
  }
}

function zeroSnapshot(): StatsSnapshot {
  return { ...newStats(), ...newTransportStats(), user_errors: 0 };
}
