/**
 * INVITE client transaction: RFC 3261 §17.1.1 (Figure 5) as updated by
 * RFC 6026 §7.2 (the Accepted state), plus two-phase CANCEL (§9.1).
 *
 *                 start: send INVITE, A=T1 (unreliable), B=64·T1
 *   calling ──1xx──▶ proceeding ──2xx──▶ accepted ──M──▶ terminated
 *      │  A: resend, A*=2       │                 (2xx passed up each time)
 *      │  B: timeout ──────────────────────────────────▶ terminated
 *      └──300-699──▶ completed (send ACK; D) ──D──▶ terminated
 *                    (retransmitted final → resend the same ACK bytes)
 */
import { parseMessage } from "../message/parser.js";
import type { SipRequest, SipResponse } from "../message/types.js";
import type { Destination } from "../transport/types.js";
import { type FinalOutcome, Timer, type TimerKind, Transaction, type TxContext } from "./actor.js";
import {
  type CancelProgress,
  type CancelResult,
  type ClientTu,
  LIFETIME_OUTCOME,
  responseOutcome,
  TIMEOUT_OUTCOME,
  TRANSPORT_ERROR_OUTCOME,
} from "./client.js";
import type { TimerConfig } from "./config.js";
import { buildCancel, buildNon2xxAck } from "./derived.js";

export type IctState = "calling" | "proceeding" | "accepted" | "completed" | "terminated";

export class InviteClientTransaction extends Transaction {
  readonly kind = "ict" as const;
  state: IctState = "calling";
  /** The final outcome once given to the user. */
  outcome: FinalOutcome | undefined;
  /** "none" → "pending" (waiting for a provisional) → "sent"; or "not-sent" when a final came first. */
  cancelState: "none" | "pending" | "sent" | "not-sent" = "none";
  private cancelReason: string | undefined;
  private aInterval: number;
  private ack: Buffer | undefined;
  private parsed: SipRequest | undefined;

  constructor(
    id: string,
    ctx: TxContext,
    timers: TimerConfig,
    reliable: boolean,
    /** The INVITE as sent: retransmissions resend these bytes, never re-encode. */
    readonly request: Buffer,
    readonly dest: Destination,
    callId: string,
    cseq: number,
    readonly branch: string,
    public tu: ClientTu,
  ) {
    super(id, ctx, timers, callId, cseq, "INVITE", reliable);
    this.aInterval = timers.t1;
  }

  /** The INVITE as sent, parsed once when first needed (ACK and CANCEL are derived from it). */
  sentRequest(): SipRequest {
    if (!this.parsed) this.parsed = parseMessage(this.request) as SipRequest;
    return this.parsed;
  }

  start(): void {
    this.arm(Timer.Lifetime, this.timers.maxInviteLifetime);
    if (!this.reliable) this.arm(Timer.A, this.aInterval);
    this.arm(Timer.B, this.timers.timerB);
    this.ctx.send(this.request, this.dest, this);
  }

  receiveResponse(res: SipResponse): void {
    const status = res.status;
    const observers = this.ctx.observers;
    if (observers.responseIn) observers.responseIn(this, res);
    switch (this.state) {
      case "calling":
      case "proceeding":
        if (status < 200) {
          this.state = "proceeding";
          this.disarm(Timer.A);
          this.disarm(Timer.B);
          // Kamailio fr_inv_timer, restarted by each provisional; the CANCEL wait replaces it once cancelled.
          if (this.cancelState !== "sent") this.arm(Timer.FrInv, this.timers.frInvTimer);
          this.tu.onResponse(this, res);
          if (this.cancelState === "pending") this.sendCancel();
        } else if (status < 300) {
          // RFC 6026 §7.2: Accepted, pass every 2xx up, Timer M.
          this.state = "accepted";
          this.leaveActive();
          this.arm(Timer.M, this.timers.timerM);
          this.enterWaiting();
          this.enterSettled();
          this.cancelNotSent();
          this.tu.onResponse(this, res);
          this.giveOutcome(responseOutcome(res));
        } else {
          // §17.1.1.2: Completed, send ACK, Timer D (0 on reliable transports).
          this.state = "completed";
          this.leaveActive();
          this.ack = buildNon2xxAck(this.sentRequest(), res);
          this.sendAck();
          this.cancelNotSent();
          this.tu.onResponse(this, res);
          this.giveOutcome(responseOutcome(res));
          if (this.reliable) this.terminate();
          else {
            this.arm(Timer.D, this.timers.timerD);
            this.enterWaiting();
            this.enterSettled();
          }
        }
        return;
      case "accepted":
        // RFC 6026: retransmissions of the 2xx and 2xx from other forks go to the TU.
        if (status >= 200 && status < 300) this.tu.onResponse(this, res);
        return;
      case "completed":
        // §17.1.1.2: a retransmitted final response gets the ACK again.
        if (status >= 300 && this.ack) {
          this.ctx.stats.retransmissions++;
          this.sendAck();
        }
        return;
      default:
        return;
    }
  }

  /** Leaving Calling/Proceeding for a final state: stop the timers that belonged to them. */
  private leaveActive(): void {
    this.disarm(Timer.A);
    this.disarm(Timer.B);
    this.disarm(Timer.FrInv);
    this.disarm(Timer.CancelWait);
    // The final states have their own bounded timers (D, M): the lifetime cap is not needed any more.
    this.disarm(Timer.Lifetime);
  }

  private sendAck(): void {
    const ack = this.ack!;
    if (this.ctx.observers.localAck) this.ctx.observers.localAck(this, ack);
    this.ctx.send(ack, this.dest, this);
  }

  private giveOutcome(outcome: FinalOutcome): void {
    if (this.outcome) return;
    this.outcome = outcome;
    this.tu.onFinal(this, outcome);
  }

  /**
   * Two-phase cancel (§9.1). Before any provisional the CANCEL waits (the
   * INVITE keeps retransmitting) and goes out when the first provisional
   * arrives; after one it goes out now. Never frees anything.
   */
  cancel(reason?: string): CancelResult {
    switch (this.state) {
      case "calling":
        if (this.cancelState === "none") {
          this.cancelState = "pending";
          this.cancelReason = reason;
          this.take("cancel");
        }
        return "pending";
      case "proceeding":
        if (this.cancelState === "pending") return "pending"; // cannot happen: a provisional sends it
        if (this.cancelState === "none") {
          this.cancelReason = reason;
          this.sendCancel();
        }
        return "sent";
      default:
        return "none";
    }
  }

  private sendCancel(): void {
    const wasPending = this.cancelState === "pending";
    this.cancelState = "sent";
    const cancel = buildCancel(this.sentRequest(), this.cancelReason);
    this.disarm(Timer.FrInv);
    this.arm(Timer.CancelWait, this.timers.cancelTimeout);
    this.ctx.startCancel(this, cancel, this.dest);
    this.notifyCancel({ kind: "sent" });
    if (wasPending) this.release("cancel");
  }

  private cancelNotSent(): void {
    if (this.cancelState !== "pending") return;
    this.cancelState = "not-sent";
    this.notifyCancel({ kind: "not-sent" });
    this.release("cancel");
  }

  /** Progress of the CANCEL, from its own transaction or from here. */
  notifyCancel(progress: CancelProgress): void {
    if (this.tu.onCancel) this.tu.onCancel(this, progress);
  }

  protected onTimer(kind: TimerKind): void {
    switch (kind) {
      case Timer.A:
        if (this.state !== "calling") return;
        this.ctx.stats.retransmissions++;
        this.aInterval *= 2; // §17.1.1.2: A doubles, no cap for INVITE.
        this.arm(Timer.A, this.aInterval);
        this.ctx.send(this.request, this.dest, this);
        return;
      case Timer.B:
        if (this.state !== "calling") return;
        this.timeout(TIMEOUT_OUTCOME);
        return;
      case Timer.FrInv:
        // No final response after a provisional within fr_inv_timer: cancel the
        // branch and end with a timeout once the CANCEL wait is over too.
        if (this.state !== "proceeding") return;
        this.ctx.stats.timeouts++;
        this.giveOutcome(TIMEOUT_OUTCOME);
        if (this.cancelState === "none") this.sendCancel();
        return;
      case Timer.CancelWait:
        // §9.1: no final response within 64·T1 after the CANCEL.
        if (this.state === "calling" || this.state === "proceeding") this.timeout(TIMEOUT_OUTCOME);
        return;
      case Timer.D:
      case Timer.M:
        this.terminate();
        return;
    }
  }

  private timeout(outcome: FinalOutcome): void {
    this.ctx.stats.timeouts++;
    this.cancelNotSent();
    this.giveOutcome(outcome);
    this.terminate();
  }

  protected override lifetimeExpired(): void {
    this.ctx.stats.lifetime_expired++;
    this.cancelNotSent();
    this.giveOutcome(LIFETIME_OUTCOME);
    this.terminate();
  }

  /** §17.1.1.2 / §8.1.3.1: a transport failure ends the transaction; the user sees a 503. */
  transportError(_err: Error): void {
    if (this.state === "terminated") return;
    this.ctx.stats.transport_errors++;
    this.cancelNotSent();
    if (this.state === "calling" || this.state === "proceeding") this.giveOutcome(TRANSPORT_ERROR_OUTCOME);
    this.terminate();
  }

  protected onTerminated(): void {
    this.cancelNotSent();
    this.tu.onTerminated(this);
  }
}
