/**
 * The engine's private side: what the transaction actors and the proxy reach
 * (the `TxContext` every actor is given, and the narrow host `relay()` and the
 * stateless forwarding use). Users never see this object: `Engine` keeps it
 * in a private field, and siblings inside siptm reach it through
 * `internals(engine)` from `@siptm/core/internal`.
 *
 * It owns the transaction table, the one timer service, the counters, the
 * reference-fault reporter and the list of terminated actors not yet freed.
 */
import type { Clock } from "../clock.js";
import type { Engine } from "../engine.js";
import { newBranch } from "../message/ids.js";
import { flat } from "../message/text.js";
import type { SipRequest, SipResponse } from "../message/types.js";
import { BranchCookie } from "../proxy/cookie.js";
import {
  newStats,
  type Observers,
  type TimerKind,
  type Transaction,
  type TxContext,
  type TxStats,
} from "../transaction/actor.js";
import type { ClientTu } from "../transaction/client.js";
import type { TimerConfig } from "../transaction/config.js";
import type { SafeCall } from "../transaction/handles.js";
import { InviteClientTransaction } from "../transaction/ict.js";
import type { InviteServerTransaction } from "../transaction/ist.js";
import { type NictInit, NonInviteClientTransaction } from "../transaction/nict.js";
import { RefError, type RefReporter, throwingReporter } from "../transaction/refs.js";
import { clientKey, TransactionTable } from "../transaction/table.js";
import { type TimerEntry, TimerService } from "../transaction/timers.js";
import { TransportSendError } from "../transport/errors.js";
import type { Destination, SendErrorTarget, Source } from "../transport/types.js";
import type { Addressing } from "./addressing.js";

/** Either client actor (what `startClient` makes). */
type ClientTransaction = InviteClientTransaction | NonInviteClientTransaction;

/**
 * The connection a send goes on: its id; a WebSocket send without one, the
 * peer's address and port (its only way there); undefined: none (UDP, or a
 * TCP/TLS send that opens or finds a connection by address).
 */
function connectionKey(d: {
  readonly protocol: string;
  readonly address: string;
  readonly port: number;
  readonly connectionId?: number | undefined;
}): number | string | undefined {
  if (d.protocol === "UDP") return undefined;
  if (d.connectionId !== undefined) return d.connectionId;
  return d.protocol === "WS" || d.protocol === "WSS" ? `${d.protocol} ${d.address} ${d.port}` : undefined;
}

let reach: ((engine: Engine) => EngineContext) | undefined;

/** Engine registers, once, how its private context is read (engine.ts, a static block). */
export function registerContextReader(read: (engine: Engine) => EngineContext): void {
  reach = read;
}

/**
 * The engine's private context, for siblings inside siptm (the proxy, the
 * shards, the server's metrics): exported by `@siptm/core/internal` only.
 */
export function internals(engine: Engine): EngineContext {
  return reach!(engine);
}

export interface EngineLogger {
  warn(obj: object, msg: string): void;
  debug?(obj: object, msg: string): void;
}

/** What `startClient` needs: bytes already built, and who hears the responses. */
export interface ClientStart {
  data: Buffer;
  dest: Destination;
  method: string;
  callId: string;
  cseq: number;
  branch: string;
  tu: ClientTu;
  timers?: TimerConfig | undefined;
  /** Counted in `total_local` (default true). */
  local?: boolean;
  /** The caller calls `start()` itself (after it attached a handle). */
  defer?: boolean;
}

export class EngineContext implements TxContext {
  readonly stats: TxStats = newStats();
  readonly observers: Observers = {};
  readonly table = new TransactionTable();
  readonly report: RefReporter;
  readonly refFaults: RefError[] = [];
  readonly branchCookie: BranchCookie;
  readonly timers: TimerService<Transaction>;
  /** Terminated actors not yet freed: audit() shows them, so a leak names its holders. */
  readonly unfreed = new Set<Transaction>();
  userErrors = 0;
  private seq = 0;

  constructor(
    readonly id: string,
    readonly clock: Clock,
    readonly timerConfig: TimerConfig,
    readonly addressing: Addressing,
    /** Extra text after the magic cookie in our branches (a shard id), before the random part. */
    private readonly branchPrefix: string,
    cookieKey: Uint8Array | string | undefined,
    refFaults: "throw" | "count" | undefined,
    readonly logger: EngineLogger | undefined,
  ) {
    this.branchCookie = new BranchCookie(cookieKey);
    this.report =
      refFaults === "throw"
        ? throwingReporter
        : (err: RefError) => {
            this.stats.ref_faults++;
            if (this.refFaults.length < 100) this.refFaults.push(err);
            this.logger?.warn(
              { fault: err.fault, holder: err.holder, tx: err.owner },
              "transaction reference fault",
            );
          };
    this.timers = new TimerService<Transaction>(clock, (entry) => {
      try {
        entry.owner.fire(entry.kind as TimerKind);
      } catch (err) {
        this.contain(err, "timer");
      }
    });
  }

  // --- TxContext ----------------------------------------------------------------------
  now(): number {
    return this.clock.now();
  }
  send(data: Buffer, dest: Destination, onError: SendErrorTarget): void {
    const t = this.addressing.transportFor(dest.protocol, dest.connectionId);
    if (!t) {
      onError.transportError(new Error(`no ${dest.protocol} transport`));
      return;
    }
    t.send(data, dest, onError);
  }
  armTimer(tx: Transaction, kind: TimerKind, duration: number): TimerEntry<Transaction> {
    return this.timers.arm(tx, kind, duration);
  }
  cancelTimer(entry: TimerEntry<Transaction>): boolean {
    return this.timers.cancel(entry);
  }
  leaveIndexes(tx: Transaction): void {
    this.unfreed.add(tx);
    this.table.remove(tx);
  }
  freed(tx: Transaction): void {
    this.unfreed.delete(tx);
    if (tx.kind === "ict" || tx.kind === "nict") this.offConnection(tx as ClientTransaction);
    this.stats.freed++;
    this.stats.current--;
    if (this.observers.destroyed) this.observers.destroyed(tx);
  }
  /** Client INVITE: start the CANCEL's own non-INVITE client transaction (§9.1). */
  startCancel(ict: Transaction, cancel: Buffer, dest: Destination): void {
    const invite = ict as InviteClientTransaction;
    this.startClient({
      data: cancel,
      dest,
      method: "CANCEL",
      callId: invite.callId,
      cseq: invite.cseq,
      branch: invite.branch,
      tu: new CancelTu(invite),
      timers: invite.timers,
    });
  }

  // --- what the engine and the proxy share --------------------------------------------
  created(local: boolean): void {
    this.stats.created++;
    this.stats.current++;
    this.stats.total++;
    if (local) this.stats.total_local++;
  }
  nextId(): string {
    return flat(`${this.id}.${(++this.seq).toString(36)}`);
  }
  /** A new branch id: the magic cookie, the engine's prefix (a shard id), `extra`, then ≥ 96 random bits. */
  newBranch(extra = ""): string {
    return newBranch(this.branchPrefix + extra);
  }
  /** Send bytes without any transaction (a stateless response, the ACK of a 2xx). */
  sendStateless(data: Buffer, dest: Destination): void {
    const t = this.addressing.transportFor(dest.protocol, dest.connectionId);
    if (t) t.send(data, dest);
  }

  /**
   * Start a client transaction for bytes already built (a proxy branch, a
   * request from the user). The caller's `tu` hears its responses.
   */
  startClient(p: ClientStart): InviteClientTransaction | NonInviteClientTransaction {
    // One init for both kinds: the INVITE client transaction ignores `method`.
    const init: NictInit = {
      id: this.nextId(),
      ctx: this,
      timers: p.timers ?? this.timerConfig,
      reliable: this.addressing.isReliable(p.dest.protocol),
      request: p.data,
      dest: p.dest,
      callId: p.callId,
      cseq: p.cseq,
      method: p.method,
      branch: p.branch,
      tu: p.tu,
    };
    const tx =
      p.method === "INVITE" ? new InviteClientTransaction(init) : new NonInviteClientTransaction(init);
    tx.key = clientKey(p.branch, p.method);
    this.onConnection(tx);
    this.created(p.local ?? true);
    this.table.insert(tx);
    if (!p.defer) tx.start();
    return tx;
  }

  /**
   * Client transactions whose request went on a connection, by its id (or, a
   * WebSocket send without one, by the peer's address and port). When a
   * connection the peer had opened closes — a WebSocket client (RFC 7118 §5:
   * a browser is reachable over its own connection only), a phone or trunk on
   * its own TCP/TLS flow (RFC 5626 §5.3) — nobody can open a new one to it, so
   * they end at once as a transport error (a local 503: §8.1.3.1) rather than
   * at Timer B/F. On a connection we opened, the server may still answer on a
   * new one to our sent-by (RFC 3261 §18.2.2): they wait.
   */
  private readonly byConnection = new Map<number | string, Set<ClientTransaction>>();

  private onConnection(tx: ClientTransaction): void {
    const key = connectionKey(tx.dest);
    if (key === undefined) return;
    const set = this.byConnection.get(key);
    if (set) set.add(tx);
    else this.byConnection.set(key, new Set([tx]));
  }

  private offConnection(tx: ClientTransaction): void {
    const key = connectionKey(tx.dest);
    if (key === undefined) return;
    const set = this.byConnection.get(key);
    if (!set?.delete(tx) || set.size > 0) return;
    this.byConnection.delete(key);
  }

  /** A connection closed: what was sent on it and waits for an answer fails now, when the peer had opened it. */
  connectionClosed(source: Source, inbound: boolean): void {
    if (this.byConnection.size === 0) return;
    for (const key of [source.connectionId, connectionKey({ ...source, connectionId: undefined })]) {
      if (key === undefined) continue;
      const set = this.byConnection.get(key);
      if (!set) continue;
      this.byConnection.delete(key);
      if (!inbound && source.protocol !== "WS" && source.protocol !== "WSS") continue;
      for (const tx of set) {
        const err = new TransportSendError("ECONNRESET", tx.dest, "the peer's connection closed");
        try {
          tx.transportError(err);
        } catch (e) {
          this.contain(e, "connection closed");
        }
      }
    }
  }

  /** Run a user callback; a throw is counted and logged, never propagated into the engine. */
  readonly safe: SafeCall = (what, fn) => {
    try {
      fn();
    } catch (err) {
      this.userThrew(what, err);
    }
  };
  userThrew(what: string, err: unknown): void {
    this.letOutTestFault(err);
    this.userErrors++;
    this.logger?.warn({ err, callback: what }, "user callback threw");
  }
  /**
   * An exception escaped while handling a message or a timer (a bug in a route
   * or in siptm): counted in `internal_errors` and logged, never a crashed
   * process. A reference fault in throwing mode (tests) is let out.
   */
  contain(err: unknown, where: string): void {
    this.letOutTestFault(err);
    this.stats.internal_errors++;
    this.logger?.warn({ err, where }, "exception contained by the engine");
  }
  /** A reference fault in throwing mode is an engine bug found by a test: let it out. */
  private letOutTestFault(err: unknown): void {
    if (err instanceof RefError && this.report === throwingReporter) throw err;
  }

  /**
   * True when this ACK (of a 2xx, no transaction of its own) belongs to an
   * INVITE we relayed whose server transaction is still Accepted (RFC 6026,
   * Timer L): same Call-ID, CSeq and From tag. Such an ACK may be forwarded
   * even without a Route naming us (a UA that sends everything to its
   * proxy's address).
   */
  relayedAck(ack: SipRequest): boolean {
    return this.table.findInDialog(ack.callId, ack.cseq.seq, relayedFor, ack) !== undefined;
  }

  /**
   * Run `fn` on a transaction found by id, holding the named reference
   * `holder` for the duration (control requests: tm.reply, tm.list…).
   */
  withTransaction<R>(id: string, holder: string, fn: (tx: Transaction) => R): R | undefined {
    const tx = this.table.getById(id);
    if (!tx) return undefined;
    tx.take(holder);
    try {
      return fn(tx);
    } finally {
      tx.release(holder);
    }
  }
}

/** `tx` is a proxy's INVITE server transaction that relayed a 2xx (RFC 6026 Accepted) to the sender of this ACK. */
function relayedFor(tx: Transaction, ack: SipRequest): boolean {
  if (tx.kind !== "ist") return false;
  const ist = tx as InviteServerTransaction;
  return ist.state === "accepted" && ist.proxy !== undefined && ist.request.fromTag === ack.fromTag;
}

/** The CANCEL's own client transaction reports to its INVITE, holding "cancel-txn" until its final response. */
class CancelTu implements ClientTu {
  private held = true;
  constructor(private readonly invite: InviteClientTransaction) {
    invite.take("cancel-txn");
  }
  onResponse(): void {}
  onFinal(
    _tx: Transaction,
    outcome: { status: number; cause: string; response?: SipResponse | undefined },
  ): void {
    if (outcome.cause === "response" && outcome.response)
      this.invite.notifyCancel({ kind: "answered", status: outcome.status, response: outcome.response });
    else
      this.invite.notifyCancel({
        kind: "failed",
        cause: outcome.cause === "transport-error" ? "transport-error" : "timeout",
      });
    this.let();
  }
  onTerminated(): void {
    this.let();
  }
  private let(): void {
    if (!this.held) return;
    this.held = false;
    this.invite.release("cancel-txn");
  }
}
