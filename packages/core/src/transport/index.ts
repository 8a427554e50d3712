export { normalizeAddress } from "./address.js";
export { TransportBindError, TransportSendError } from "./errors.js";
export * from "./lossy.js";
export {
  type MemoryConnection,
  type MemoryFate,
  type MemoryFaults,
  type MemoryFilter,
  type MemoryLogEntry,
  MemoryNetwork,
  type MemoryNetworkOptions,
  MemoryTransport,
} from "./memory.js";
export * from "./ratelimit.js";
export * from "./tcp.js";
export * from "./types.js";
export * from "./udp.js";
