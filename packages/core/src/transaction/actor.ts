/**
 * The common shape of the four transaction actors (RFC 3261 §17).
 *
 * An actor is sans-I/O: it reacts to events (a message, a timer, a command
 * from its user, a transport error) and its effects go out through the
 * `TxContext` the engine gives it (send bytes, arm/cancel a timer, tell the
 * user, leave the table). It never reads a clock or touches a socket.
 *
 * Reference ownership: every holder takes a NAMED reference (see refs.ts) —
 * the table ("table"), each armed timer ("timer:A" …), the user's handle
 * ("handle"), a pending CANCEL ("cancel"), a control request ("rpc:…"). The
 * actor is freed only when it is Terminated and the last reference is gone,
 * after it has left every index. Nothing else frees it: cancelling in
 * particular only changes state.
 */
import type { SipRequest, SipResponse } from "../message/types.js";
import type { Destination, SendErrorTarget, Source } from "../transport/types.js";
import type { TimerConfig } from "./config.js";
import type { IctState } from "./ict.js";
import type { IstState } from "./ist.js";
import type { NictState } from "./nict.js";
import type { NistState } from "./nist.js";
import { type RefReporter, RefSet } from "./refs.js";
import type { TimerEntry } from "./timers.js";

/** Timer kinds. Letters are RFC 3261 §17 / RFC 6026 timers; the rest are the engine's own. */
export const Timer = {
  A: 0,
  B: 1,
  D: 2,
  E: 3,
  F: 4,
  G: 5,
  H: 6,
  I: 7,
  J: 8,
  K: 9,
  L: 10,
  M: 11,
  /** Auto 100 Trying for INVITE (RFC 3261 §17.2.1); after a provisional, a ringing request is compacted when it fires. */
  Trying100: 12,
  /** Hard lifetime cap. */
  Lifetime: 13,
  /** fr_inv_timer: final response wait after a provisional (client INVITE). */
  FrInv: 14,
  /** Final response wait after CANCEL was sent (RFC 3261 §9.1). */
  CancelWait: 15,
  /** 2xx retransmission until ACK (RFC 3261 §13.3.1.4) in the server's Accepted state. */
  Retransmit2xx: 16,
  /** Deferred 100 to a non-INVITE (RFC 4320 §4.1). */
  Nist100: 17,
} as const;
export type TimerKind = (typeof Timer)[keyof typeof Timer];
const TIMER_COUNT = 18;

export const TIMER_NAMES: readonly string[] = [
  "A",
  "B",
  "D",
  "E",
  "F",
  "G",
  "H",
  "I",
  "J",
  "K",
  "L",
  "M",
  "100",
  "lifetime",
  "fr_inv",
  "cancel_wait",
  "2xx",
  "nist100",
];
const TIMER_HOLDERS: readonly string[] = TIMER_NAMES.map((n) => `timer:${n}`);

export type TxKind = "ict" | "nict" | "ist" | "nist";

/** Every state of the four figures (the names `audit()` and tm.list show). */
export type TxState = IctState | NictState | IstState | NistState;

/**
 * The end of a `switch (this.state)` that names every state: a compile error
 * when a state is missing, and a thrown error should one ever get here.
 */
export function impossible(state: never): never {
  throw new Error(`transaction in an impossible state: ${String(state)}`);
}

/**
 * What every actor is made with. The engine builds one per transaction; the
 * actor copies the fields it keeps and does not hold on to the object.
 */
export interface TransactionInit {
  /** The engine's id for the transaction (audit, tm.list, handles, control requests). */
  readonly id: string;
  /** The engine side: the only way the actor affects the world. */
  readonly ctx: TxContext;
  /** Timer values for this transaction: the engine's, or the request's overrides. */
  readonly timers: TimerConfig;
  /** The transport is reliable (TCP): A, E, G are not armed and D, I, J, K are zero (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2). */
  readonly reliable: boolean;
}

/** What the engine gives every actor: the only way an actor affects the world. */
export interface TxContext {
  now(): number;
  send(data: Buffer, dest: Destination, onError: SendErrorTarget): void;
  armTimer(tx: Transaction, kind: TimerKind, duration: number): TimerEntry<Transaction>;
  cancelTimer(entry: TimerEntry<Transaction>): boolean;
  /** The actor became Terminated: take it out of every index (releases "table"). */
  leaveIndexes(tx: Transaction): void;
  /** The actor is freed (Terminated and unheld). */
  freed(tx: Transaction): void;
  readonly report: RefReporter;
  readonly stats: TxStats;
  readonly observers: Observers;
  /** Client INVITE: start the CANCEL's own non-INVITE client transaction (§9.1). */
  startCancel(ict: Transaction, cancel: Buffer, dest: Destination): void;
}

/** Mutable counters kept by the engine (Kamailio tm.stats names where they exist). */
export interface TxStats {
  created: number;
  freed: number;
  current: number;
  waiting: number;
  /**
   * Live transactions that only absorb retransmissions until their timer ends
   * them (Timers D, I, K, J, M, and L once the ACK of our 2xx came or none is
   * awaited): they hold no drain at shutdown.
   */
  settled: number;
  total: number;
  total_local: number;
  rpl_received: number;
  rpl_generated: number;
  rpl_sent: number;
  "1xx": number;
  "2xx": number;
  "3xx": number;
  "4xx": number;
  "5xx": number;
  "6xx": number;
  retransmissions: number;
  lifetime_expired: number;
  timeouts: number;
  transport_errors: number;
  ref_faults: number;
  table_full: number;
  /** New requests dropped by the per-source rate limit (`rateLimit`). */
  rate_limited: number;
  /** Sources the rate limit forgot to make room in its bounded table (`rateLimit.sources`). */
  rate_sources_evicted: number;
  parse_errors: number;
  stray_responses: number;
  /** Stray responses and ACKs the stateless forwarding refused (no cookie of ours, not on our route, malformed). */
  stray_dropped: number;
  unmatched_cancels: number;
  merged_requests: number;
  /** Requests relayed statefully (t_relay) and proxy response contexts made/freed. */
  relayed: number;
  ctx_created: number;
  ctx_freed: number;
  /** Exceptions the engine caught while handling a message or a timer (each one is a bug somewhere). */
  internal_errors: number;
}

export function newStats(): TxStats {
  return {
    created: 0,
    freed: 0,
    current: 0,
    waiting: 0,
    settled: 0,
    total: 0,
    total_local: 0,
    rpl_received: 0,
    rpl_generated: 0,
    rpl_sent: 0,
    "1xx": 0,
    "2xx": 0,
    "3xx": 0,
    "4xx": 0,
    "5xx": 0,
    "6xx": 0,
    retransmissions: 0,
    lifetime_expired: 0,
    timeouts: 0,
    transport_errors: 0,
    ref_faults: 0,
    table_full: 0,
    rate_limited: 0,
    rate_sources_evicted: 0,
    parse_errors: 0,
    stray_responses: 0,
    stray_dropped: 0,
    unmatched_cancels: 0,
    merged_requests: 0,
    relayed: 0,
    ctx_created: 0,
    ctx_freed: 0,
    internal_errors: 0,
  };
}

/**
 * Kamailio TMCB_*-style observer callbacks. Each is a plain optional field, so
 * a call site costs one property check when nobody listens.
 */
export interface Observers {
  requestIn?: ((tx: Transaction, req: SipRequest, source: Source) => void) | undefined;
  responseIn?: ((tx: Transaction, res: SipResponse) => void) | undefined;
  responseOut?: ((tx: Transaction, status: number, data: Buffer) => void) | undefined;
  localAck?: ((tx: Transaction, data: Buffer) => void) | undefined;
  destroyed?: ((tx: Transaction) => void) | undefined;
}

/** How a client transaction ended from its user's point of view. */
export interface FinalOutcome {
  readonly status: number;
  readonly reason: string;
  /** The final response, when one was received; absent for local outcomes. */
  readonly response?: SipResponse | undefined;
  /**
   * "response": a final response arrived. "timeout": Timer B/F, fr_inv or the
   * CANCEL wait expired (a local 408). "transport-error": a send failed (a local
   * 503, RFC 3261 §8.1.3.1). "lifetime": the hard lifetime cap ended it.
   */
  readonly cause: "response" | "timeout" | "transport-error" | "lifetime";
}

export abstract class Transaction implements SendErrorTarget {
  abstract readonly kind: TxKind;
  /** Each actor narrows this to its figure's states. */
  abstract state: TxState;
  readonly id: string;
  protected readonly ctx: TxContext;
  readonly timers: TimerConfig;
  readonly reliable: boolean;
  /** The request's Call-ID, CSeq number and method (set by each actor from its init). */
  abstract readonly callId: string;
  abstract readonly cseq: number;
  abstract readonly method: string;
  readonly refs: RefSet;
  readonly createdAt: number;
  /** Table key (§17.1.3 / §17.2.3). */
  key = "";
  /** Secondary index key: Call-ID + CSeq number. */
  dialogKey = "";
  /**
   * Armed timers, at most one per kind, in no order. A transaction has a few
   * armed at once, so a short scan by kind beats one slot per kind (18 slots,
   * kept as long as the transaction lives).
   */
  private readonly armed: Array<TimerEntry<Transaction> | undefined> = [
    undefined,
    undefined,
    undefined,
    undefined,
  ];
  /** True once in any terminal or waiting state counted in stats.waiting. */
  protected countedWaiting = false;
  /** True once counted in stats.settled. */
  private countedSettled = false;

  constructor(init: TransactionInit) {
    const ctx = init.ctx;
    this.id = init.id;
    this.ctx = ctx;
    this.timers = init.timers;
    this.reliable = init.reliable;
    this.refs = new RefSet(init.id, ctx.report);
    this.createdAt = ctx.now();
  }

  get terminated(): boolean {
    return this.state === "terminated";
  }

  // --- references ---------------------------------------------------------
  take(holder: string): void {
    this.refs.take(holder);
  }
  /** Release a named reference; frees the actor when it was the last one and the actor is Terminated. */
  release(holder: string): void {
    const wasFreed = this.refs.freed;
    if (this.refs.release(holder) && !wasFreed && this.state === "terminated") this.free();
  }
  private free(): void {
    this.refs.markFreed();
    this.ctx.freed(this);
  }

  // --- timers ---------------------------------------------------------------
  /** Index in `armed` of the timer of this kind, or -1. */
  private slotOf(kind: TimerKind): number {
    const armed = this.armed;
    for (let i = 0; i < armed.length; i++) if (armed[i]?.kind === kind) return i;
    return -1;
  }
  protected arm(kind: TimerKind, duration: number): void {
    // A send inside the same step may have ended the actor (a synchronous transport error): arm nothing then.
    if (this.state === "terminated") return;
    const armed = this.armed;
    let i = this.slotOf(kind);
    if (i >= 0) {
      // Re-arming: the timer keeps its one reference.
      this.ctx.cancelTimer(armed[i]!);
    } else {
      this.refs.take(TIMER_HOLDERS[kind]!);
      i = armed.indexOf(undefined);
      if (i < 0) i = armed.length;
    }
    armed[i] = this.ctx.armTimer(this, kind, duration);
  }
  protected disarm(kind: TimerKind): void {
    const i = this.slotOf(kind);
    if (i < 0) return;
    const entry = this.armed[i]!;
    this.armed[i] = undefined;
    this.ctx.cancelTimer(entry);
    this.release(TIMER_HOLDERS[kind]!);
  }
  protected isArmed(kind: TimerKind): boolean {
    return this.slotOf(kind) >= 0;
  }
  /** Called by the engine when an armed timer expires. The timer's reference is held until the handler returns. */
  fire(kind: TimerKind): void {
    const i = this.slotOf(kind);
    if (i < 0) return; // cancelled in the same tick
    this.armed[i] = undefined;
    try {
      this.onTimer(kind);
    } finally {
      this.release(TIMER_HOLDERS[kind]!);
    }
  }
  /** Timer names armed now (for audit), in kind order. */
  armedTimers(): string[] {
    const out: string[] = [];
    for (let k = 0; k < TIMER_COUNT; k++) if (this.slotOf(k as TimerKind) >= 0) out.push(TIMER_NAMES[k]!);
    return out;
  }

  /**
   * A timer of ours expired. Each actor answers with one switch on the timer
   * kind, then one on its state. The Lifetime timer (the engine's hard cap,
   * Kamailio max_inv_lifetime / max_noninv_lifetime) ends the transaction
   * whatever its state.
   */
  protected abstract onTimer(kind: TimerKind): void;
  /** A send of ours failed (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2, §8.1.3.1). */
  abstract transportError(err: Error): void;

  /** Counted in stats.waiting until Terminated. Not once Terminated: a send that failed inside the step may have ended it. */
  protected enterWaiting(): void {
    if (!this.countedWaiting && this.state !== "terminated") {
      this.countedWaiting = true;
      this.ctx.stats.waiting++;
    }
  }

  /** Nothing left to do but absorb retransmissions until a timer ends it (counted in stats.settled). */
  protected enterSettled(): void {
    if (!this.countedSettled && this.state !== "terminated") {
      this.countedSettled = true;
      this.ctx.stats.settled++;
    }
  }

  /**
   * Enter Terminated: cancel every timer (each releases its reference), leave
   * every index (releases "table"), then tell the user. Freed when the last
   * holder lets go — possibly right here.
   */
  protected terminate(): void {
    if (this.state === "terminated") return;
    this.state = "terminated";
    if (this.countedWaiting) {
      this.countedWaiting = false;
      this.ctx.stats.waiting--;
    }
    if (this.countedSettled) {
      this.countedSettled = false;
      this.ctx.stats.settled--;
    }
    // Hold a reference of our own while we unwind, so the actor cannot be
    // freed in the middle of its own termination.
    this.refs.take("terminating");
    const armed = this.armed;
    for (let i = 0; i < armed.length; i++) {
      const entry = armed[i];
      if (entry !== undefined) this.disarm(entry.kind as TimerKind);
    }
    this.ctx.leaveIndexes(this);
    this.onTerminated();
    this.release("terminating");
  }
  /** Tell the user (releases "handle" in the handle). */
  protected abstract onTerminated(): void;
}

export function statusClassKey(status: number): "1xx" | "2xx" | "3xx" | "4xx" | "5xx" | "6xx" {
  const c = (status / 100) | 0;
  return c <= 1 ? "1xx" : c === 2 ? "2xx" : c === 3 ? "3xx" : c === 4 ? "4xx" : c === 5 ? "5xx" : "6xx";
}
