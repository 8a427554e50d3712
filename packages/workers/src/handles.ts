/**
 * The main thread's handles on transactions that live in a shard. They mirror
 * core's ClientTransactionHandle / ServerTransactionHandle (same fields, same
 * events); commands go to the owning shard over the control plane and answer
 * with a promise; events come back in the data-plane batches.
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
import { isRefusal } from "@siptm/core";
import type { ClientTransactionLike, ServerTransactionLike } from "./api.js";
import type { CreatedRequest } from "./protocol.js";

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
