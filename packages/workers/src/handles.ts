/**
 * The main thread's handles on transactions that live in a shard. They mirror
 * core's ClientTransactionHandle / ServerTransactionHandle (same fields, same
 * events); commands go to the owning shard over the control plane and answer
 * with a promise; events come back in the data-plane batches, and the
 * `HandleTable` below delivers them.
 */
import type {
  CancelProgress,
  CancelResult,
  ClientEvents,
  FinalOutcome,
  ReplyOptions,
  ServerEndCause,
  ServerEvents,
  SipRequest,
  SipResponse,
  Source,
} from "@siptm/core";
import { isRefusal, parseMessage } from "@siptm/core";
import type { ClientTransactionLike, ServerTransactionLike } from "./api.js";
import {
  type BatchReader,
  CEV_CANCEL,
  CEV_FINAL,
  CEV_RESPONSE,
  CEV_TERMINATED,
  newClientRecord,
  newServerNewRecord,
  newServerRecord,
  readClient,
  readServer,
  readServerNew,
  SEV_ACK,
  SEV_CANCEL,
  SEV_TERMINATED,
  sourceOf,
} from "./batch.js";
import type { CreatedRequest, ListenerInfo } from "./protocol.js";

/** What the handles need from their engine. */
export interface HandleOwner {
  cancelHandle(h: ShardClientHandle, reason?: string): Promise<CancelResult>;
  replyById(id: string, status: number, opts?: ReplyOptions): Promise<void>;
  /** A user callback threw: counted, never propagated. */
  userError(what: string, err: unknown): void;
}

const EMPTY = Buffer.alloc(0);

export class ShardClientHandle implements ClientTransactionLike {
  id = "";
  branch = "";
  request: Buffer = EMPTY;
  outcome: FinalOutcome | undefined;
  readonly answers: SipResponse[] = [];
  lastCancel: CancelProgress | undefined;
  terminated = false;
  readonly final: Promise<FinalOutcome>;
  private settle!: (o: FinalOutcome) => void;
  /** Events that arrived before the shard's answer to `request` (another port: no order between them). */
  private backlog: Array<() => void> | null = [];
  /** The last response told, for a final outcome that refers to it. */
  lastResponse: SipResponse | undefined;

  constructor(
    readonly shard: number,
    readonly handleId: number,
    readonly callId: string,
    readonly cseq: number,
    readonly method: string,
    public events: ClientEvents,
    private readonly owner: HandleOwner,
  ) {
    this.final = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  /** Two-phase cancel in the shard: "sent", "pending" or "none". */
  cancel(reason?: string): Promise<CancelResult> {
    if (this.outcome || this.terminated) return Promise.resolve("none");
    return this.owner.cancelHandle(this, reason);
  }

  /** @internal The shard started the transaction. Events held back so far run on the next turn, after the caller's `await`. */
  created(info: CreatedRequest): void {
    this.id = info.id;
    this.branch = info.branch;
    this.request = Buffer.from(info.request.buffer, info.request.byteOffset, info.request.byteLength);
    setImmediate(() => {
      const backlog = this.backlog;
      this.backlog = null;
      if (backlog) for (const fn of backlog) fn();
    });
  }

  /** @internal Run an event now, or after `created` when the answer to `request` has not come yet. */
  deliver(fn: () => void): void {
    if (this.backlog) this.backlog.push(fn);
    else fn();
  }

  /** @internal */
  onResponse(res: SipResponse): void {
    this.lastResponse = res;
    if (res.status >= 200 && res.status < 300 && this.method === "INVITE") this.answers.push(res);
    const ev = this.events;
    if (ev.onResponse) this.call("onResponse", () => ev.onResponse!(res));
    if (res.status < 200 && ev.onProvisional) this.call("onProvisional", () => ev.onProvisional!(res));
  }
  /** @internal */
  onFinal(outcome: FinalOutcome): void {
    if (this.outcome) return;
    this.outcome = outcome;
    const ev = this.events;
    if (ev.onFinal) this.call("onFinal", () => ev.onFinal!(outcome));
    this.settle(outcome);
  }
  /** @internal */
  onCancel(progress: CancelProgress): void {
    this.lastCancel = progress;
    const ev = this.events;
    if (ev.onCancel) this.call("onCancel", () => ev.onCancel!(progress));
  }
  /** @internal */
  onTerminated(): void {
    if (this.terminated) return;
    this.terminated = true;
    const ev = this.events;
    if (ev.onTerminated) this.call("onTerminated", () => ev.onTerminated!());
  }
  /** @internal The shard died or closed with this transaction in it: a local outcome, then the end. */
  lost(outcome: FinalOutcome): void {
    const run = () => {
      this.onFinal(outcome);
      this.onTerminated();
    };
    this.deliver(run);
    if (this.backlog) {
      // `request` may never be answered now: do not wait for it.
      const backlog = this.backlog;
      this.backlog = null;
      for (const fn of backlog) fn();
    }
  }

  private call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.owner.userError(what, err);
    }
  }
}

export class ShardServerHandle implements ServerTransactionLike {
  cancelled = false;
  finalStatus = 0;
  terminated = false;
  events: ServerEvents = {};

  constructor(
    readonly shard: number,
    readonly id: string,
    readonly request: SipRequest,
    readonly source: Source,
    private readonly owner: HandleOwner,
  ) {}

  get method(): string {
    return this.request.method;
  }

  /**
   * Answer in the shard (async). Rejects with a TransactionError when the
   * state does not allow it — which a main-thread handler cannot always know
   * (a CANCEL may reach the shard before the handler's reply does). A refusal
   * nobody awaits is dropped rather than left as an unhandled rejection, which
   * would end the process; an awaiting caller still gets it.
   */
  reply(status: number, opts?: ReplyOptions): Promise<void> {
    const done = this.owner.replyById(this.id, status, opts).then(() => {
      if (status >= 200 && this.finalStatus === 0) this.finalStatus = status;
    });
    done.catch(() => {});
    return done;
  }

  /** `reply()` resolving false when the shard refused it for the transaction's state (see isRefusal). */
  tryReply(status: number, opts?: ReplyOptions): Promise<boolean> {
    return this.reply(status, opts).then(
      () => true,
      (err: unknown) => {
        if (isRefusal(err)) return false;
        throw err;
      },
    );
  }

  /** @internal */
  onCancel(cancel: SipRequest): void {
    this.cancelled = true;
    const ev = this.events;
    if (ev.onCancel) this.call("onCancel", () => ev.onCancel!(cancel));
  }
  /** @internal */
  onAck(ack: SipRequest): void {
    const ev = this.events;
    if (ev.onAck) this.call("onAck", () => ev.onAck!(ack));
  }
  /** @internal */
  onTerminated(cause: ServerEndCause): void {
    if (this.terminated) return;
    this.terminated = true;
    const ev = this.events;
    if (ev.onTerminated) this.call("onTerminated", () => ev.onTerminated!(cause));
  }

  private call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.owner.userError(what, err);
    }
  }
}

/**
 * The main-thread handles of one engine — client ones by handle id, server ones by transaction
 * id — and the delivery to them of the events the shards' batches carry (batch.ts: REC_CLIENT,
 * REC_SERVER_NEW, REC_SERVER). A handle leaves the table when its transaction's end is told.
 */
export class HandleTable {
  private readonly client = new Map<number, ShardClientHandle>();
  private readonly server = new Map<string, ShardServerHandle>();
  private nextHandle = 0;
  /** Scratch records the events are read into, reused record after record. */
  private readonly clientRecord = newClientRecord();
  private readonly serverNewRecord = newServerNewRecord();
  private readonly serverRecord = newServerRecord();

  constructor(
    private readonly owner: HandleOwner & {
      readonly onRequest: ((tx: ShardServerHandle) => void) | undefined;
    },
    /** The coordinator's sockets, in listen order (a record names its socket by index). */
    private readonly listeners: readonly ListenerInfo[],
  ) {}

  /** Handles whose transaction has not told its end yet. */
  get size(): number {
    return this.client.size + this.server.size;
  }

  /** A handle for a client transaction about to be started in `shard` (`forgetClient` if it is not). */
  newClient(
    shard: number,
    callId: string,
    cseq: number,
    method: string,
    events: ClientEvents,
  ): ShardClientHandle {
    const handleId = ++this.nextHandle;
    if (this.nextHandle >= 0xfffffff0) this.nextHandle = 0;
    const h = new ShardClientHandle(shard, handleId, callId, cseq, method, events, this.owner);
    this.client.set(handleId, h);
    return h;
  }

  forgetClient(handleId: number): void {
    this.client.delete(handleId);
  }

  /** The transactions held in a shard that is gone: a local outcome, then their end. */
  failShard(shard: number, outcome: FinalOutcome): void {
    for (const [id, h] of this.client) {
      if (h.shard !== shard) continue;
      this.client.delete(id);
      h.lost(outcome);
    }
    for (const [id, h] of this.server) {
      if (h.shard !== shard) continue;
      this.server.delete(id);
      h.onTerminated("transport-error");
    }
  }

  private parse(data: Buffer): ReturnType<typeof parseMessage> | undefined {
    try {
      // Copied: the user may keep the message; a view would keep the whole batch alive.
      return parseMessage(Buffer.from(data));
    } catch {
      return undefined;
    }
  }

  // Same shape as serverEvent below on purpose: each dispatcher is typed for its own record and handles.
  /** An event of a client transaction started here. */
  clientEvent(r: BatchReader): void {
    const rec = readClient(r, this.clientRecord);
    const handleId = rec.handleId;
    const h = this.client.get(handleId);
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
        this.client.delete(handleId);
        h.deliver(() => h.onTerminated());
        return;
    }
  }

  /** A new server transaction for the main thread's onRequest (without one: 501). */
  serverNew(shard: number, r: BatchReader): void {
    const rec = readServerNew(r, this.serverNewRecord);
    const id = rec.id;
    const l = this.listeners[rec.listener] ?? this.listeners[0]!;
    const source = sourceOf(l, rec);
    const req = this.parse(rec.data);
    if (!req?.isRequest) return;
    const h = new ShardServerHandle(shard, id, req as SipRequest, source, this.owner);
    this.server.set(id, h);
    const handler = this.owner.onRequest;
    if (!handler) {
      this.owner.replyById(id, 501).catch(() => {});
      return;
    }
    try {
      handler(h);
    } catch (err) {
      this.owner.userError("onRequest", err);
    }
  }

  // Same shape as clientEvent on purpose: a switch per record kind over its own event codes and handle map,
  // typed for its record (one dispatcher per kind, no generic lookup per event).
  /** An event of a server transaction handed to onRequest. */
  serverEvent(r: BatchReader): void {
    const rec = readServer(r, this.serverRecord);
    const id = rec.id;
    const h = this.server.get(id);
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
        this.server.delete(id);
        h.onTerminated(rec.cause as ServerEndCause);
        return;
    }
  }
}
