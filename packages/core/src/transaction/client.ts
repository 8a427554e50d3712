/** What the two client transaction actors share: their user interface. */
import type { SipResponse } from "../message/types.js";
import type { Destination } from "../transport/types.js";
import type { FinalOutcome, Transaction, TransactionInit } from "./actor.js";

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
