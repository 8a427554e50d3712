/**
 * What the one-thread core `Engine` and the sharded engine have in common, so
 * that code (and the shared test suite) can drive either. A result may be a
 * value (the core answers at once) or a promise (the sharded engine asks a
 * shard): callers `await` every call.
 *
 * The core Engine satisfies it through `wrapEngine(engine)`, a thin adapter:
 * nothing in @siptm/core changes.
 */
import type {
  AuditEntry,
  CancelResult,
  ClientEvents,
  Engine,
  ReplyOptions,
  RequestOptions,
  ServerEvents,
  SipRequest,
  SipResponse,
  Source,
  StatsSnapshot,
} from "@siptm/core";
import { ClientTransactionHandle } from "@siptm/core";

export type MaybePromise<T> = T | Promise<T>;

/**
 * A client transaction the user started: core's ClientTransactionHandle has this shape (its
 * fields, read-only here: id, Call-ID, CSeq, method, branch, the request as sent, the outcome,
 * the 2xx `answers` of an INVITE to be ACKed with `ack2xx`, the last CANCEL progress, `final`).
 */
export interface ClientTransactionLike
  extends Readonly<
    Pick<
      ClientTransactionHandle,
      | "id"
      | "callId"
      | "cseq"
      | "method"
      | "branch"
      | "request"
      | "outcome"
      | "answers"
      | "lastCancel"
      | "terminated"
      | "final"
    >
  > {
  events: ClientEvents;
  /** Two-phase cancel (RFC 3261 §9.1): "sent", "pending" or "none". */
  cancel(reason?: string): MaybePromise<CancelResult>;
}

/** A server transaction handed to `onRequest`: core's ServerTransactionHandle has this shape. */
export interface ServerTransactionLike {
  readonly id: string;
  readonly method: string;
  readonly request: SipRequest;
  readonly source: Source;
  readonly cancelled: boolean;
  readonly finalStatus: number;
  readonly terminated: boolean;
  events: ServerEvents;
  /** Throws (or rejects with) a TransactionError when the state does not allow it. */
  reply(status: number, opts?: ReplyOptions): MaybePromise<void>;
  /** `reply()` that answers false instead of throwing when the transaction's state refuses it (a CANCEL won the race). */
  tryReply(status: number, opts?: ReplyOptions): MaybePromise<boolean>;
}

/** One shard's counters (the core engine reports itself as shard 0). */
export interface ShardStatsEntry extends StatsSnapshot {
  shard: number;
  /** The shard's thread is up (false while it restarts, or after close). */
  alive: boolean;
  /** Times the shard died and was started again. */
  restarts: number;
  /** Transactions lost with dead incarnations of this shard (each one's last reported live count). */
  lost: number;
  /** Messages handed to the shard and not yet acknowledged (the bounded inbound queue). */
  inFlight: number;
  /** New requests turned away from this shard (503 or dropped) because its queue was full or the engine closing. */
  overloaded: number;
  /** Inbound batches the shard processed, the messages in them, and the time spent processing them. */
  batches: number;
  messages: number;
  busyMs: number;
  maxBatchMs: number;
  /** Event-loop utilization of the shard's thread since it started (0…1). */
  elu: number;
}

/** Totals over all shards plus the coordinator's own counters, and each shard. */
export interface EngineStats extends StatsSnapshot {
  shards: ShardStatsEntry[];
  lost: number;
  restarts: number;
  /** New requests answered 503 by the coordinator (overload or closing). */
  overload_rejected: number;
  /** New requests dropped by the coordinator (overload: "drop"). */
  overload_dropped: number;
  /** Requests let through a full queue as retransmissions of a request a shard already has. */
  overload_passed: number;
  /** Messages the coordinator handed to shards / sent for them, and the batches that carried them. */
  in_messages: number;
  out_messages: number;
  in_batches: number;
  out_batches: number;
}

export interface ShardAuditEntry extends AuditEntry {
  shard: number;
}

export interface AuditPage {
  entries: ShardAuditEntry[];
  next: string | undefined;
}

export interface TransactionEngine {
  /** Start a client transaction (RequestOptions of the core, events included). */
  request(opts: RequestOptions): MaybePromise<ClientTransactionLike>;
  /** Kamailio's tm.cancel: cancel the local INVITE with this Call-ID and CSeq number. */
  cancel(callId: string, cseq: number, reason?: string): MaybePromise<CancelResult>;
  /** Kamailio's tm.reply: answer a server transaction by id. */
  replyById(id: string, status: number, opts?: ReplyOptions): MaybePromise<void>;
  /** Kamailio's tm.reply_callid. */
  replyByCallId(callId: string, cseq: number, status: number, opts?: ReplyOptions): MaybePromise<void>;
  /** ACK a 2xx to an INVITE this engine sent (RFC 3261 §13.2.2.4). */
  ack2xx(invite: ClientTransactionLike, answer: SipResponse): MaybePromise<unknown>;
  stats(): MaybePromise<EngineStats>;
  audit(): MaybePromise<ShardAuditEntry[]>;
  /**
   * One page of `audit()`: at most `limit` entries after the transaction with id `after` (none: from
   * the first), shard by shard in creation order, and the `after` of the next page (undefined: this
   * was the last; a full page always gives one). The cursor is a transaction id: a page needs
   * nothing kept from the one before.
   */
  auditPage(after: string | undefined, limit: number): MaybePromise<AuditPage>;
  close(): Promise<void>;
}

/** Counters a coordinator keeps, zero for the core engine. */
export function emptyCoordinatorStats(): Omit<EngineStats, keyof StatsSnapshot | "shards"> {
  return {
    lost: 0,
    restarts: 0,
    overload_rejected: 0,
    overload_dropped: 0,
    overload_passed: 0,
    in_messages: 0,
    out_messages: 0,
    in_batches: 0,
    out_batches: 0,
  };
}

/** The core Engine as a TransactionEngine (one shard, number 0). The engine is used as it is. */
export function wrapEngine(engine: Engine): TransactionEngine & { readonly engine: Engine } {
  return {
    engine,
    request: (opts) => engine.request(opts),
    cancel: (callId, cseq, reason) => engine.cancel(callId, cseq, reason),
    replyById: (id, status, opts) => engine.replyById(id, status, opts),
    replyByCallId: (callId, cseq, status, opts) => engine.replyByCallId(callId, cseq, status, opts),
    ack2xx: (invite, answer) => {
      if (!(invite instanceof ClientTransactionHandle))
        throw new TypeError("ack2xx: not a transaction of this engine");
      return engine.ack2xx(invite, answer);
    },
    stats: () => {
      const snap = engine.snapshot();
      return {
        ...snap,
        ...emptyCoordinatorStats(),
        shards: [
          {
            ...snap,
            shard: 0,
            alive: true,
            restarts: 0,
            lost: 0,
            inFlight: 0,
            overloaded: 0,
            batches: 0,
            messages: 0,
            busyMs: 0,
            maxBatchMs: 0,
            elu: 0,
          },
        ],
      };
    },
    audit: () => engine.audit().map((e) => ({ ...e, shard: 0 })),
    auditPage: (after, limit) => {
      const page = engine.auditPage(after, limit);
      return { entries: page.entries.map((e) => ({ ...e, shard: 0 })), next: page.next };
    },
    close: () => engine.close(),
  };
}
