/**
 * What the coordinator and a shard say to each other, besides the data-plane
 * batches (batch.ts): the task a shard starts with, and the control-plane API
 * it exposes with comlink.
 */
import type { MessagePort } from "node:worker_threads";
import type {
  AuditEntry,
  CancelResult,
  Destination,
  EngineOptions,
  ReplyOptions,
  RequestOptions,
  Source,
  StatsSnapshot,
  TimerConfig,
  TransportProtocol,
} from "@siptm/core";

/** Engine options that are plain data (they are structured-cloned into each shard). */
export type ShardEngineOptions = Omit<
  EngineOptions,
  // rateLimit: the coordinator applies it (ShardedEngineOptions.rateLimit), before any shard.
  "clock" | "logger" | "onRequest" | "onStrayAck" | "onStrayResponse" | "branchPrefix" | "id" | "rateLimit"
>;

/** One socket the coordinator listens on; shards send through it by its index. */
export interface ListenerInfo {
  protocol: TransportProtocol;
  address: string;
  /** The bound port (the real one when 0 was asked for). */
  port: number;
}

export interface BatchLimits {
  /** Flush a batch when it holds this many messages… */
  maxMessages: number;
  /** …or this many bytes, without waiting for the end of the event-loop turn. */
  maxBytes: number;
}

/** The piscina task that runs one shard for its whole life. */
export interface ShardTask {
  index: number;
  shards: number;
  incarnation: number;
  /** Engine id: transaction ids are "<engineId>.<n>", so the coordinator finds a transaction's shard from its id. */
  engineId: string;
  listeners: ListenerInfo[];
  engine: ShardEngineOptions;
  /** File URL of the route module, if any. */
  route: string | undefined;
  /** Hand each new server transaction to the main thread's onRequest. */
  forward: boolean;
  /** `ShardedEngineOptions.routeKeys`, for the route (`ShardRouteContext.keys`). */
  routeKeys: Readonly<Record<string, Uint8Array>>;
  testHooks: boolean;
  /** Lockstep tests: the engine runs on a virtual clock starting here, moved only by REC_SYNC records. */
  virtualStart: number | undefined;
  batch: BatchLimits;
  /** How often the shard tells its live count and any acknowledgement it held back (ms). */
  reportMs: number;
  /** Data plane: batches both ways, send errors to the shard. */
  data: MessagePort;
  /** Control plane: comlink. */
  control: MessagePort;
}

/** What a shard's task resolves with when it was shut down. */
export interface ShardExit {
  shard: number;
  incarnation: number;
  /** Transactions still live when it stopped (not finished within the drain time). */
  abandoned: number;
  stats: StatsSnapshot;
}

/** A control-plane result: errors travel as data, so that a TransactionError keeps its code. */
export type Result<T> =
  | { ok: true; value: T }
  | { ok: false; name: string; code: string | undefined; message: string };

/** A thrown value as a control-plane failure (name, code and message survive the clone). */
export function failure(err: unknown): Extract<Result<never>, { ok: false }> {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return {
      ok: false,
      name: err.name,
      code: typeof code === "string" ? code : undefined,
      message: err.message,
    };
  }
  return { ok: false, name: "Error", code: undefined, message: String(err) };
}

/** RequestOptions without the callbacks (those stay on the main thread). */
export type PlainRequestOptions = Omit<
  RequestOptions,
  "onProvisional" | "onResponse" | "onFinal" | "onCancel" | "onTerminated"
>;

export interface RequestFromOptions {
  nextHop?: Destination | string;
  timers?: Partial<TimerConfig>;
}

/** What the main thread learns about a client transaction a shard started for it. */
export interface CreatedRequest {
  id: string;
  callId: string;
  cseq: number;
  method: string;
  branch: string;
  request: Uint8Array;
}

export interface ShardCounters {
  shard: number;
  incarnation: number;
  batches: number;
  messages: number;
  busyMs: number;
  maxBatchMs: number;
  elu: number;
  /** Client transactions started for the main thread and not yet ended. */
  handles: number;
}

/** What the leak check of the tests needs from a shard's engine (`ShardApi.health`). */
export interface ShardHealth {
  shard: number;
  created: number;
  freed: number;
  ctxCreated: number;
  ctxFreed: number;
  /** Transactions still in the table, and timers still armed. */
  table: number;
  armedTimers: number;
  /** Reference faults recorded (with refFaults "count"), as messages. */
  refFaults: string[];
  /** Live transactions, as `engine.audit()` describes them. */
  live: string[];
  /** The engine's longest timer (ms): how far a test must run the clock to see everything end. */
  longestTimer: number;
}

export interface ShardConfig {
  forward: boolean;
  batch: BatchLimits;
}

/**
 * The control plane, exposed by each shard with comlink. Calls are rare
 * (a local request, a cancel, a reply, stats) and request/response shaped.
 */
export interface ShardApi {
  ready(): { shard: number; incarnation: number };
  stats(): StatsSnapshot & ShardCounters;
  audit(): AuditEntry[];
  /** One page of `audit()` (the core engine's `auditPage`). */
  auditPage(after: string | undefined, limit: number): { entries: AuditEntry[]; next: string | undefined };
  health(): ShardHealth;
  request(opts: PlainRequestOptions, handleId: number): Result<CreatedRequest>;
  requestFrom(
    message: Uint8Array | string,
    opts: RequestFromOptions,
    handleId: number,
  ): Result<CreatedRequest>;
  /** Cancel the INVITE started for main-thread handle `handleId`. */
  cancelHandle(handleId: number, reason?: string): CancelResult;
  cancel(callId: string, cseq: number, reason?: string): CancelResult;
  replyById(id: string, status: number, opts?: ReplyOptions): Result<void>;
  replyByCallId(callId: string, cseq: number, status: number, opts?: ReplyOptions): Result<void>;
  ack2xx(handleId: number, answer: Uint8Array): Result<void>;
  config(patch: Partial<ShardConfig>): ShardConfig;
  /**
   * A WebSocket connection the coordinator owns closed: the shard's client
   * transactions sent on it end as a transport error (one control call per
   * closed connection, never per message).
   */
  connectionClosed(source: Source, inbound: boolean): void;
  /** Call the function the route module provided as `name` (`ShardRouteContext.provide`, route-hooks.ts). */
  routeCall(name: string, args: unknown[]): Promise<Result<unknown>>;
  /** Wait until no transaction is live or `timeoutMs` passed; resolves with the live count. */
  drain(timeoutMs: number): Promise<number>;
  /** Close the engine and end the task (its promise resolves with a ShardExit). */
  shutdown(): void;
  /**
   * Test hooks (only with `testHooks`; lockstep.ts): die now; block the thread for `ms`, starting
   * right after the answer; run the periodic report now, answering how many batches' held-back
   * acknowledgements it carried.
   */
  crash(mode: "exit" | "throw"): void;
  block(ms: number): void;
  report(): number;
}
