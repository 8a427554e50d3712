/**
 * @siptm/workers — the siptm engine sharded across worker threads by a hash
 * of the Call-ID. `ShardedEngine` is the entry point; `wrapEngine` makes the
 * one-thread core `Engine` fit the same `TransactionEngine` interface. The
 * core is re-exported so that dependants can import everything from here.
 */
export * from "@siptm/core";
export {
  type AuditPage,
  type ClientTransactionLike,
  type EngineStats,
  emptyCoordinatorStats,
  type MaybePromise,
  type ServerTransactionLike,
  type ShardAuditEntry,
  type ShardStatsEntry,
  type TransactionEngine,
  wrapEngine,
} from "./api.js";
export { findCallId, type Span, scanCallId } from "./callid.js";
export {
  type CoordinatorLogger,
  type ListenOption,
  SHARD_LOST,
  ShardedEngine,
  type ShardedEngineOptions,
  type WsLimitOptions,
} from "./coordinator.js";
export { ShardClientHandle, ShardServerHandle } from "./handles.js";
export {
  defaultHashKey,
  type HashKey,
  hashBytes,
  hashBytes64,
  hashKey,
  hashString,
  shardOf,
} from "./hash.js";
export type { ShardEngineOptions } from "./protocol.js";
export { buildReject } from "./reject.js";
export type { RouteFunction, WireTap } from "./route-hooks.js";
export { branchShard, isResponse, methodKind, newViaScan, scanTopVia, type ViaScan } from "./scan.js";
export type { RouteModule, ShardRouteContext } from "./shard.js";
export const SHARDING_AVAILABLE = true as const;
