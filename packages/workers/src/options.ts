/**
 * The options of a `ShardedEngine` (coordinator.ts) and their defaults.
 */
import type {
  RateLimitOptions,
  TcpLimitOptions,
  TlsOptions,
  Transport,
  TransportProtocol,
  TransportSink,
} from "@siptm/core";
import type { WsTransportOptions } from "@siptm/core/internal";
import type { ShardServerHandle } from "./handles.js";
import type { ShardEngineOptions } from "./protocol.js";

/** The WebSocket transport's options a server passes through (everything but where it listens and what it presents). */
export type WsLimitOptions = Omit<WsTransportOptions, "address" | "port" | "sink" | "tls" | "clock">;

export interface ListenOption {
  protocol: TransportProtocol;
  /** IP literal. */
  address: string;
  /** 0 = ephemeral (see `addresses` for the bound port). */
  port: number;
}

export interface CoordinatorLogger {
  warn(obj: object, msg: string): void;
}

export interface ShardedEngineOptions {
  /** Number of shards (worker threads), ≥ 1. */
  shards: number;
  /**
   * The 16-byte key of the Call-ID hash that picks a request's shard
   * (SipHash-2-4, hash.ts). Nodes of a cluster that must agree on a Call-ID's
   * owner give the same key (derived from their shared secret). Default: a
   * random key made once per process — fine for one node, unpredictable to
   * senders either way.
   */
  hashKey?: Uint8Array;
  listen: ListenOption[];
  /** Options of each shard's core Engine, as plain data (timers, limits, strict, maxTransactions…). */
  engine?: ShardEngineOptions;
  /**
   * Absolute path or file URL of an ES module loaded in EACH shard; its
   * default export `(engine, ctx) => void` installs `engine.onRequest` etc.
   * The fast path: the handler runs in the shard, nothing crosses threads per
   * transaction.
   */
  route?: string | URL;
  /**
   * Main-thread handler, for parity with the core API: each new server
   * transaction is handed over (id, request, source) and `tx.reply()` goes
   * back to the shard (async). Costs a parse on each side and two hops.
   */
  onRequest?: (tx: ShardServerHandle) => void;
  /** Messages in flight per shard (posted, not acknowledged) past which new requests are turned away. Default 10000. */
  queueLimit?: number;
  /**
   * The live-transaction cap of the WHOLE engine, all shards together: the
   * coordinator adds up the live counts the shards report and the new
   * requests on their way to them, and past the cap answers a new request
   * 503 + Retry-After itself (counted in `table_full`), wherever its Call-ID
   * hashes — so a flood aimed at one shard cannot fill that shard while
   * the others have room, nor be refused there while the server has room.
   * Default: `engine.maxTransactions`, else 1,000,000. Each shard's engine
   * keeps its own cap (`engine.maxTransactions`, default this one) as a safety
   * net for what the coordinator does not see (requests a route starts).
   */
  maxTransactions?: number;
  /**
   * A token bucket per source IP for new requests, applied here before any
   * shard sees them (core's `SourceRateLimiter`); over it a request is
   * dropped without an answer and counted in `rate_limited`. Default: off.
   */
  rateLimit?: RateLimitOptions;
  /** The coordinator's clock (ms) for the rate limit. Default: `virtualClock`, else `performance.now`. */
  now?: () => number;
  /** What a turned-away request gets: "503" + Retry-After (default) or nothing. */
  overload?: "503" | "drop";
  /** Retry-After seconds on the coordinator's 503. Default: engine.retryAfter or 5. */
  retryAfter?: number;
  /** Flush a batch at this many messages (default 256)… */
  batchMessages?: number;
  /** …or at this many bytes (default 256 KiB), without waiting for the end of the turn. */
  batchBytes?: number;
  /**
   * Batches posted to a shard and not yet processed, past which the end of a
   * turn does not flush: what arrives meanwhile joins the held batch, which
   * goes when the shard reports one done (or at `batchMessages`). Default 2:
   * the shard always has the next batch queued while it works on one, and a
   * busy shard gets fewer, larger batches (fewer thread wakeups).
   */
  batchesInFlight?: number;
  /**
   * How often a shard tells its live transaction count when no batch carried
   * it, and the acknowledgements it held back (batches whose messages caused
   * no send and whose acknowledgement nothing waited for, batch.ts ACK_NOW).
   * Default 200 ms.
   */
  reportIntervalMs?: number;
  /** close(): longest wait for the shards' live transactions to end. Default 5000 ms. */
  drainTimeoutMs?: number;
  /** Where the coordinator logs a shard's death. Default: console.warn. */
  logger?: CoordinatorLogger;
  /** Let tests kill, stall or prod a shard (`crashShard`, `blockShard`, `reportNow` of `@siptm/workers/testing`). */
  testHooks?: boolean;
  /** Limits of the TCP listeners (connection caps, message deadline, keep-alive budget…); the core's defaults otherwise. */
  tcp?: TcpLimitOptions;
  /** The TLS material of the TLS (and WSS) listeners and of outbound TLS; required when one listens on TLS. */
  tls?: TlsOptions;
  /**
   * Keys a route needs in every shard (a flow-token MAC key…), by name:
   * structured-cloned into each shard with its task — never in the route
   * module's URL, which shows in stack traces. A restarted shard gets the same.
   */
  routeKeys?: Readonly<Record<string, Uint8Array>>;
  /** Limits of the WS and WSS listeners (message size, ping, trusted proxies…); the core's defaults otherwise. */
  ws?: WsLimitOptions;
  /**
   * Make the coordinator's sockets with this instead of real UDP/TCP sockets
   * (tests use an in-memory network; later transports plug in the same way).
   */
  transportFactory?: (listen: ListenOption, sink: TransportSink) => Transport | Promise<Transport>;
  /**
   * Lockstep tests: every shard's engine runs on a virtual clock that starts at
   * this clock's time and moves only when `syncShards(engine, t)` is called (the
   * test bed moves this clock and the shards' together; @siptm/workers/testing).
   */
  virtualClock?: { now(): number };
}

export const DEFAULT_QUEUE_LIMIT = 10_000;
export const DEFAULT_MAX_TRANSACTIONS = 1_000_000;
export const DEFAULT_BATCH_MESSAGES = 256;
export const DEFAULT_BATCH_BYTES = 256 * 1024;
export const DEFAULT_BATCHES_IN_FLIGHT = 2;
export const DEFAULT_REPORT_MS = 200;
export const DEFAULT_DRAIN_MS = 5_000;
