/** A command the transaction cannot carry out in its state (RFC 3261 §17 rules, RFC 4320). */
export type TransactionErrorCode =
  | "final-already-sent"
  | "cancelled"
  | "terminated"
  | "bad-status"
  | "not-allowed" // e.g. a non-100 provisional or a 408 to a non-INVITE (RFC 4320 §4.1)
  | "table-full"
  | "no-transport"
  | "bad-request";

export class TransactionError extends Error {
  override readonly name = "TransactionError";
  constructor(
    readonly code: TransactionErrorCode,
    message: string,
    readonly transactionId?: string,
  ) {
    super(message);
  }
}

const REFUSALS: ReadonlySet<TransactionErrorCode> = new Set([
  "final-already-sent",
  "cancelled",
  "terminated",
]);

/**
 * The transaction's state, not the caller's input, refused a reply: the final
 * already went (a CANCEL's 487 won the race) or the transaction has ended.
 * What `tryReply()` answers `false` for.
 */
export function isRefusal(err: unknown): err is TransactionError {
  return err instanceof TransactionError && REFUSALS.has(err.code);
}
