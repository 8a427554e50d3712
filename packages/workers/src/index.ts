/**
 * @siptm/workers — the siptm engine sharded across worker threads by a hash
 * of the Call-ID. Filled by the sharding work; for now it re-exports the core
 * so that dependants can already import from here.
 */
export * from "@siptm/core";
export const SHARDING_AVAILABLE = false as const;
