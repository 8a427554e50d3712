/**
 * @siptm/core — the SIP message layer and the RFC 3261 transaction engine,
 * without threads. See ARCHITECTURE.md at the repository root.
 */
export * from "./clock.js";
export * from "./engine.js";
export * from "./message/index.js";
export { type HashKey, hashBytes, hashBytes64, hashKey, hashString } from "./message/siphash.js";
export { type RelayContext, type RelayOptions, type RelayTarget, relay } from "./proxy/relay.js";
export * from "./proxy/resolver.js";
export { isLoop, loopHash, ownRouteProcessing, uriHostPort } from "./proxy/routing.js";
export { type BranchFinal, type Selection, selectBest } from "./proxy/select.js";
export { forwardRequestStateless, forwardResponseStateless } from "./proxy/stateless.js";
export type { FinalOutcome, Observers, Transaction, TxKind, TxStats } from "./transaction/actor.js";
export { newStats, TIMER_NAMES, Timer } from "./transaction/actor.js";
export type { CancelProgress, CancelResult, ClientTu } from "./transaction/client.js";
export { defaultTimers, longestLifetime, resolveTimers, type TimerConfig } from "./transaction/config.js";
export { isRefusal, TransactionError, type TransactionErrorCode } from "./transaction/errors.js";
export {
  type ClientEvents,
  ClientTransactionHandle,
  type ServerEvents,
  ServerTransactionHandle,
} from "./transaction/handles.js";
export { InviteClientTransaction } from "./transaction/ict.js";
export { InviteServerTransaction } from "./transaction/ist.js";
export { NonInviteClientTransaction } from "./transaction/nict.js";
export { NonInviteServerTransaction } from "./transaction/nist.js";
export {
  countingReporter,
  RefError,
  type RefFault,
  type RefReporter,
  RefSet,
  throwingReporter,
} from "./transaction/refs.js";
export type { ReplyOptions, ServerEndCause, ServerTu } from "./transaction/server.js";
export { clientKey, dialogKey, serverKey, TransactionTable } from "./transaction/table.js";
export { type TimerEntry, TimerQueues, TimerService } from "./transaction/timers.js";
export * from "./transport/index.js";
