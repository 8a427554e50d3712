/** What the two client transaction actors share: their user interface, their fields and how they end. */
import type { SipResponse } from "../message/types.js";
import type { Destination } from "../transport/types.js";
import {
  type FinalOutcome,
  impossible,
  Timer,
  type TimerKind,
  Transaction,
  type TransactionInit,
} from "./actor.js";
import type { IctState } from "./ict.js";
import type { NictState } from "./nict.js";

/** What happened to a cancel request, as told to the user of an INVITE client transaction. */
export type CancelProgress =
  /** The CANCEL went out (at once, or when the first provisional arrived). */
  | { readonly kind: "sent" }
  /** A final response arrived before any provisional: no CANCEL was sent (§9.1). */
  | { readonly kind: "not-sent" }
  /** The CANCEL's own transaction got its final response (200, or 481 when the UAS had nothing to cancel). */
  | { readonly kind: "answered"; readonly status: number; readonly response: SipResponse }
  /** The CANCEL's own transaction timed out or hit a transport error; the INVITE goes on. */
  | { readonly kind: "failed"; readonly cause: "timeout" | "transport-error" };

/** The user of a client transaction (a handle, a proxy branch, or an INVITE for its CANCEL). */
export interface ClientTu {
  /** Every response the transaction passes up: provisionals, the final, and 2xx retransmissions/forks in Accepted. */
  onResponse(tx: Transaction, res: SipResponse): void;
  /** Exactly once: how the transaction ended for its user. */
  onFinal(tx: Transaction, outcome: FinalOutcome): void;
  /** INVITE only: progress of a cancel. */
  onCancel?(tx: Transaction, progress: CancelProgress): void;
  onTerminated(tx: Transaction): void;
}

export type CancelResult = "sent" | "pending" | "none";

/** What a client transaction is made with (the INVITE's; a non-INVITE adds its method). */
export interface ClientInit extends TransactionInit {
  /** The request as sent: retransmissions resend these bytes, never re-encode. */
  readonly request: Buffer;
  /** Where the request, its retransmissions and (INVITE) its ACK and CANCEL go. */
  readonly dest: Destination;
  /** The request's Call-ID (the dialog index; a CANCEL copies it, §9.1). */
  readonly callId: string;
  /** The request's CSeq number. */
  readonly cseq: number;
  /** The branch of the request's top Via: its table key with the method (§17.1.3). */
  readonly branch: string;
  /** Who hears the responses, the outcome and the end (a handle, a proxy branch, the INVITE a CANCEL belongs to). */
  readonly tu: ClientTu;
}

export const TIMEOUT_OUTCOME: FinalOutcome = Object.freeze({
  status: 408,
  reason: "Request Timeout",
  cause: "timeout",
});
export const LIFETIME_OUTCOME: FinalOutcome = Object.freeze({
  status: 408,
  reason: "Request Timeout",
  cause: "lifetime",
});
export const TRANSPORT_ERROR_OUTCOME: FinalOutcome = Object.freeze({
  status: 503,
  reason: "Service Unavailable",
  cause: "transport-error",
});

export function responseOutcome(res: SipResponse): FinalOutcome {
  return { status: res.status, reason: res.reason, response: res, cause: "response" };
}

/**
 * The two client actors (ict.ts, nict.ts): what they are made with, how they
 * start, resend and give the outcome, and the events both figures answer
 * alike — the lifetime cap and a transport error — as one switch over the
 * states of Figures 5 and 6.
 */
export abstract class ClientTransaction extends Transaction {
  abstract override state: IctState | NictState;
  readonly callId: string;
  readonly cseq: number;
  /** The request as sent: retransmissions resend these bytes, never re-encode. */
  readonly request: Buffer;
  readonly dest: Destination;
  readonly branch: string;
  tu: ClientTu;
  /** The final outcome once given to the user. */
  outcome: FinalOutcome | undefined;

  constructor(init: ClientInit) {
    super(init);
    this.callId = init.callId;
    this.cseq = init.cseq;
    this.request = init.request;
    this.dest = init.dest;
    this.branch = init.branch;
    this.tu = init.tu;
  }

  /**
   * The initial arrow of Figures 5 and 6: the lifetime cap, the retransmit
   * timer (A, E: unreliable only) at T1 and the timeout (B, F), then the request.
   */
  protected begin(
    lifetime: number,
    retransmit: TimerKind,
    timeout: TimerKind,
    timeoutDuration: number,
  ): void {
    this.arm(Timer.Lifetime, lifetime);
    if (!this.reliable) this.arm(retransmit, this.timers.t1);
    this.arm(timeout, timeoutDuration);
    this.ctx.send(this.request, this.dest, this);
  }

  /** The retransmit timer (A, E) fired: re-armed with the interval the caller set, the same bytes again. */
  protected resend(retransmit: TimerKind, interval: number): void {
    this.ctx.stats.retransmissions++;
    this.arm(retransmit, interval);
    this.ctx.send(this.request, this.dest, this);
  }

  /** Tell the user how it ended, once. */
  protected giveOutcome(outcome: FinalOutcome): void {
    if (this.outcome) return;
    this.outcome = outcome;
    this.tu.onFinal(this, outcome);
  }

  /** The INVITE drops a CANCEL still waiting for a provisional (§9.1); a non-INVITE has none. */
  protected dropPendingCancel(): void {}

  /** → Terminated with this outcome for a user still waiting (a CANCEL still pending is dropped first). */
  protected end(outcome: FinalOutcome): void {
    this.dropPendingCancel();
    this.giveOutcome(outcome);
    this.terminate();
  }

  /** Timer B or F (or the INVITE's CANCEL wait) expired: → Terminated, a 408 for the user. */
  protected timeout(): void {
    this.ctx.stats.timeouts++;
    this.end(TIMEOUT_OUTCOME);
  }

  /**
   * The hard cap (Kamailio max_inv_lifetime / max_noninv_lifetime): → Terminated whatever the state, 408 for a user still waiting.
   * Kept apart from transportError, whose switch looks alike: there Accepted/Completed end without a 503.
   */
  protected lifetimeExpired(): void {
    switch (this.state) {
      case "calling":
      case "trying":
      case "proceeding":
      case "accepted":
      case "completed":
        this.ctx.stats.lifetime_expired++;
        this.end(LIFETIME_OUTCOME);
        return;
      case "terminated":
        return;
      default:
        impossible(this.state);
    }
  }

  /**
   * §17.1.1.2 / §17.1.2.2 / §8.1.3.1: a transport failure ends the transaction; a user still waiting sees a 503.
   * Kept apart from lifetimeExpired: in Accepted/Completed no 503 is given (a failed ACK send ends an INVITE
   * before the outcome of its final response is told).
   */
  transportError(_err: Error): void {
    switch (this.state) {
      case "calling":
      case "trying":
      case "proceeding":
        // Figures 5 and 6: Calling/Trying/Proceeding —transport error→ Terminated, the TU told of a 503.
        this.ctx.stats.transport_errors++;
        this.end(TRANSPORT_ERROR_OUTCOME);
        return;
      case "accepted":
      case "completed":
        // The ACK could not be sent (INVITE, Completed: the outcome follows), or a late report: → Terminated.
        this.ctx.stats.transport_errors++;
        this.dropPendingCancel();
        this.terminate();
        return;
      case "terminated":
        return; // a late report of a send made before the end
      default:
        impossible(this.state);
    }
  }

  protected onTerminated(): void {
    this.dropPendingCancel();
    this.tu.onTerminated(this);
  }
}
