/**
 * @siptm/server — the standalone `siptm` server as a library: start it from
 * code, write routes against `RouteContext`, reuse the registrar or the RPC
 * client.
 */
export { type ListenSpec, parseListen, parseServeArgs, type ServerConfig, UsageError } from "./config.js";
export type { BoundSocket } from "./local.js";
export { Metrics } from "./metrics.js";
export {
  type Binding,
  canonicalAor,
  type RegisterOutcome,
  Registrar,
  type RegistrarOptions,
} from "./registrar.js";
export {
  loadRoute,
  type RouteContext,
  type RouteFactory,
  type RouteHandlers,
  RouteLoadError,
} from "./route.js";
export { RpcError, RpcServer } from "./rpc.js";
export { RpcCallError, rpcCall } from "./rpc-client.js";
export { deriveKey, MIN_SECRET_LENGTH, SHARD_HASH_LABEL } from "./secret.js";
export { type RunningServer, type ServerInfo, startServer } from "./server.js";
