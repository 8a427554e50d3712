/**
 * The user's handles on transactions. A handle is the user of its actor
 * (ClientTu / ServerTu) and holds the named reference "handle" while the user
 * can still act on it: until the final outcome (client) or until a final
 * response went out (server), or until termination, whichever comes first.
 * After that the handle is detached: commands answer "none" or throw a
 * TransactionError, and nothing reaches a freed actor.
 */
import type { SipRequest, SipResponse } from "../message/types.js";
import type { Source } from "../transport/types.js";
import type { FinalOutcome, Transaction } from "./actor.js";
import type { CancelProgress, CancelResult, ClientTu } from "./client.js";
import { isRefusal, TransactionError } from "./errors.js";
import type { IctState, InviteClientTransaction } from "./ict.js";
import type { InviteServerTransaction, IstState } from "./ist.js";
import type { NictState, NonInviteClientTransaction } from "./nict.js";
import type { NistState, NonInviteServerTransaction } from "./nist.js";
import type { ReplyOptions, ServerEndCause, ServerTu } from "./server.js";

/** Calls a user callback; a throwing callback is counted and reported, never breaks the engine. */

export type SafeCall = (what: string, fn: () => void) => void;

/**
 * What both handles share: the actor while attached (holding "handle"), its
 * id and method, its holders for audit, and letting go.
 */
abstract class TransactionHandle<T extends Transaction> {
  protected tx: T | null;
  readonly id: string;
  readonly method: string;

  constructor(tx: T) {
    this.tx = tx;
    this.id = tx.id;
    this.method = tx.method;
    tx.take("handle");
  }

  /** Holders of the actor's references (for tests and audit); empty once detached. */
  holders(): string[] {
    return this.tx ? this.tx.refs.holders() : [];
  }

  /** The user has nothing left to do on the transaction: release "handle" (once). */
  protected detach(): void {
    const tx = this.tx;
    if (!tx) return;
    this.tx = null;
    tx.release("handle");
  }
}

export interface ClientEvents {
  /** A provisional response (1xx). */
  onProvisional?: ((res: SipResponse) => void) | undefined;
  /** Every response passed up, including 2xx retransmissions and forks after the first (RFC 6026). */
  onResponse?: ((res: SipResponse) => void) | undefined;
  /** Exactly once: the final outcome (a response, or a local 408/503). */
  onFinal?: ((outcome: FinalOutcome) => void) | undefined;
  onCancel?: ((progress: CancelProgress) => void) | undefined;
  onTerminated?: (() => void) | undefined;
}

export class ClientTransactionHandle
  extends TransactionHandle<InviteClientTransaction | NonInviteClientTransaction>
  implements ClientTu
{
  readonly callId: string;
  readonly cseq: number;
  readonly branch: string;
  /** The request as sent. */
  readonly request: Buffer;
  outcome: FinalOutcome | undefined;
  /** The 2xx responses received (INVITE): each must be ACKed by the user (§13.2.2.4). */
  readonly answers: SipResponse[] = [];
  lastCancel: CancelProgress | undefined;
  terminated = false;
  events: ClientEvents;
  private settle: ((o: FinalOutcome) => void) | undefined;
  private promise: Promise<FinalOutcome> | undefined;

  constructor(
    tx: InviteClientTransaction | NonInviteClientTransaction,
    events: ClientEvents | undefined,
    private readonly safe: SafeCall,
  ) {
    super(tx);
    this.callId = tx.callId;
    this.cseq = tx.cseq;
    this.branch = tx.branch;
    this.request = tx.request;
    this.events = events ?? {};
  }

  /** The transaction's state now ("terminated" once detached and ended). */
  get state(): IctState | NictState {
    return this.tx ? this.tx.state : "terminated";
  }

  /** Resolves with the final outcome (created on first use). */
  get final(): Promise<FinalOutcome> {
    if (!this.promise) {
      if (this.outcome) this.promise = Promise.resolve(this.outcome);
      else
        this.promise = new Promise((resolve) => {
          this.settle = resolve;
        });
    }
    return this.promise;
  }

  /**
   * Cancel an INVITE (two-phase, RFC 3261 §9.1): "sent", "pending" (waiting for
   * a provisional), or "none" (not an INVITE, already final, or ended). Never throws.
   */
  cancel(reason?: string): CancelResult {
    const tx = this.tx;
    if (tx?.kind !== "ict") return "none";
    return tx.cancel(reason);
  }

  // --- ClientTu -----------------------------------------------------------------
  onResponse(_tx: Transaction, res: SipResponse): void {
    const ev = this.events;
    if (res.status >= 200 && res.status < 300 && this.method === "INVITE") this.answers.push(res);
    if (ev.onResponse) this.safe("onResponse", () => ev.onResponse!(res));
    if (res.status < 200 && ev.onProvisional) this.safe("onProvisional", () => ev.onProvisional!(res));
  }
  onFinal(_tx: Transaction, outcome: FinalOutcome): void {
    this.outcome = outcome;
    const ev = this.events;
    if (ev.onFinal) this.safe("onFinal", () => ev.onFinal!(outcome));
    if (this.settle) this.settle(outcome);
    this.detach();
  }
  onCancel(_tx: Transaction, progress: CancelProgress): void {
    this.lastCancel = progress;
    const ev = this.events;
    if (ev.onCancel) this.safe("onCancel", () => ev.onCancel!(progress));
  }
  onTerminated(_tx: Transaction): void {
    this.terminated = true;
    this.detach();
    const ev = this.events;
    if (ev.onTerminated) this.safe("onTerminated", () => ev.onTerminated!());
  }
}

export interface ServerEvents {
  /** A CANCEL matched this INVITE before its final response. With auto-487 on, the 487 has already gone out. */
  onCancel?: ((cancel: SipRequest) => void) | undefined;
  /** The ACK for the 2xx this transaction sent. */
  onAck?: ((ack: SipRequest) => void) | undefined;
  onTerminated?: ((cause: ServerEndCause) => void) | undefined;
}

export class ServerTransactionHandle
  extends TransactionHandle<InviteServerTransaction | NonInviteServerTransaction>
  implements ServerTu
{
  readonly request: SipRequest;
  readonly source: Source;
  cancelled = false;
  finalStatus = 0;
  terminated = false;
  events: ServerEvents = {};

  constructor(
    tx: InviteServerTransaction | NonInviteServerTransaction,
    private readonly safe: SafeCall,
  ) {
    super(tx);
    this.request = tx.request;
    this.source = tx.source;
  }

  /** The transaction's state now ("terminated" once detached). */
  get state(): IstState | NistState {
    return this.tx ? this.tx.state : "terminated";
  }
  /** @internal The actor, while attached (the proxy takes its own reference on it). */
  actor(): InviteServerTransaction | NonInviteServerTransaction | null {
    return this.tx;
  }
  /** The To tag of this transaction's responses. */
  get toTag(): string | undefined {
    return this.tx?.toTag;
  }

  /**
   * Answer the request. Throws TransactionError when the state does not allow
   * it: a final already sent, the INVITE was cancelled (its final was the 487),
   * or RFC 4320's rules for non-INVITE.
   */
  reply(status: number, opts?: ReplyOptions): void {
    const tx = this.tx;
    if (!tx) {
      if (this.cancelled)
        throw new TransactionError(
          "cancelled",
          "the INVITE was cancelled: the final response was 487",
          this.id,
        );
      throw new TransactionError(
        this.finalStatus ? "final-already-sent" : "terminated",
        this.finalStatus
          ? `a final response (${this.finalStatus}) was already sent`
          : "the transaction has terminated",
        this.id,
      );
    }
    tx.reply(status, opts);
  }

  /**
   * `reply()` for answers that may race a CANCEL or the end of the
   * transaction: false instead of a throw when the state does not allow it
   * (a bad status code or header still throws: that is the caller's bug).
   */
  tryReply(status: number, opts?: ReplyOptions): boolean {
    try {
      this.reply(status, opts);
      return true;
    } catch (err) {
      if (isRefusal(err)) return false;
      throw err;
    }
  }

  // --- ServerTu -----------------------------------------------------------------
  onCancel(_tx: Transaction, cancel: SipRequest): void {
    this.cancelled = true;
    const ev = this.events;
    if (ev.onCancel) this.safe("onCancel", () => ev.onCancel!(cancel));
  }
  onAck(_tx: Transaction, ack: SipRequest): void {
    const ev = this.events;
    if (ev.onAck) this.safe("onAck", () => ev.onAck!(ack));
  }
  onFinalSent(_tx: Transaction, status: number): void {
    // After a final the user has nothing left to do on the transaction; events
    // (onAck, onTerminated) still arrive, since the actor calls its user.
    this.finalStatus = status;
    this.detach();
  }
  onTerminated(_tx: Transaction, cause: ServerEndCause): void {
    this.terminated = true;
    this.detach();
    const ev = this.events;
    if (ev.onTerminated) this.safe("onTerminated", () => ev.onTerminated!(cause));
  }
}
