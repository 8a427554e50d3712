/**
 * @siptm/core/internal — what siptm's own packages (the shards, the server,
 * the benchmarks and tests) share beyond the public API: the actors, the
 * table and timers, the engine's private context, message-layer pieces of the
 * hot path. No stability promise: embedders use `@siptm/core`.
 */
export { Addressing, offerAlias, replyDestination, stampVia } from "./engine/addressing.js";
export { AuditPager, auditEntry } from "./engine/audit.js";
export { type ClientStart, type EngineContext, internals } from "./engine/context.js";
export { answeredDialog, sendAck2xx } from "./engine/dialog.js";
export { buildReject } from "./message/build.js";
export * from "./message/index.js";
export { uriOfNameAddr } from "./message/nameaddr.js";
export { type HashKey, hashBytes, hashBytes64, hashKey, hashString } from "./message/siphash.js";
export { BranchCookie } from "./proxy/cookie.js";
export type { RelayHost } from "./proxy/relay.js";
export * from "./proxy/resolver.js";
export { isLoop, type Locality, loopHash, ownRouteProcessing, uriHostPort } from "./proxy/routing.js";
export { type BranchFinal, type Selection, selectBest } from "./proxy/select.js";
export type { Observers, Transaction, TxContext } from "./transaction/actor.js";
export { newStats, TIMER_NAMES, Timer } from "./transaction/actor.js";
export type { ClientTu } from "./transaction/client.js";
export { longestLifetime, resolveTimers } from "./transaction/config.js";
export type { SafeCall } from "./transaction/handles.js";
export { InviteClientTransaction } from "./transaction/ict.js";
export { InviteServerTransaction } from "./transaction/ist.js";
export { NonInviteClientTransaction } from "./transaction/nict.js";
export { NonInviteServerTransaction } from "./transaction/nist.js";
export {
  countingReporter,
  type RefReporter,
  RefSet,
  throwingReporter,
} from "./transaction/refs.js";
export type { ProxyLink, ServerTu } from "./transaction/server.js";
export { clientKey, dialogKey, serverKey, TransactionTable } from "./transaction/table.js";
export { type TimerEntry, TimerQueues, TimerService } from "./transaction/timers.js";
export { unbracket } from "./transport/address.js";
export * from "./transport/index.js";
export * from "./transport/ws.js";
