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
 *
 * Every event is one `switch (this.state)` naming every state; a timer is a
 * switch on its kind (A and B share one: both live only in Calling), then on
 * the state. The lifetime cap and a transport error are answered alike by both
 * client actors: one switch in client.ts.
 */
import { parseMessage } from "../message/parser.js";
import type { SipRequest, SipResponse } from "../message/types.js";
import { impossible, Timer, type TimerKind } from "./actor.js";
import {
  type CancelProgress,
  type CancelResult,
  type ClientInit,
  ClientTransaction,
  responseOutcome,
  TIMEOUT_OUTCOME,
} from "./client.js";
import { buildCancel, buildNon2xxAck } from "./derived.js";

export type IctState = "calling" | "proceeding" | "accepted" | "completed" | "terminated";

/** What an INVITE client transaction is made with (every field is documented on `ClientInit`). */
export type IctInit = ClientInit;

export class InviteClientTransaction extends ClientTransaction {
  readonly kind = "ict" as const;
  state: IctState = "calling";
  readonly method = "INVITE";
  /** "none" → "pending" (waiting for a provisional) → "sent"; or "not-sent" when a final came first. */
  cancelState: "none" | "pending" | "sent" | "not-sent" = "none";
  private cancelReason: string | undefined;
  private aInterval: number;
  private ack: Buffer | undefined;
  private parsed: SipRequest | undefined;

  constructor(init: IctInit) {
    super(init);
    this.aInterval = init.timers.t1;
  }

  /** The INVITE as sent, parsed once when first needed (ACK and CANCEL are derived from it). */
  sentRequest(): SipRequest {
    if (!this.parsed) this.parsed = parseMessage(this.request) as SipRequest;
    return this.parsed;
  }

  /** Figure 5, the initial arrow: INVITE sent, Timer A (unreliable only) and Timer B armed; → Calling. */
  start(): void {
    this.begin(this.timers.maxInviteLifetime, Timer.A, Timer.B, this.timers.timerB);
  }

  receiveResponse(res: SipResponse): void {
    const status = res.status;
    const observers = this.ctx.observers;
    if (observers.responseIn) observers.responseIn(this, res);
    switch (this.state) {
      case "calling":
      case "proceeding":
        // Figure 5: Calling/Proceeding —1xx→ Proceeding; —2xx→ Accepted (RFC 6026 §7.2); —300-699→ Completed.
        if (status < 200) this.provisional(res);
        else if (status < 300) this.accept(res);
        else this.complete(res);
        return;
      case "accepted":
        // RFC 6026 §7.2: Accepted —2xx→ Accepted, passed to the TU (retransmissions, other forks); the rest is absorbed.
        if (status >= 200 && status < 300) this.tu.onResponse(this, res);
        return;
      case "completed":
        // Figure 5: Completed —300-699→ Completed, the same ACK again (§17.1.1.2); 1xx and 2xx are absorbed.
        if (status >= 300 && this.ack) {
          this.ctx.stats.retransmissions++;
          this.sendAck();
        }
        return;
      case "terminated":
        // Out of every index: nothing should reach it; absorbed.
        return;
      default:
        impossible(this.state);
    }
  }

  /** Calling/Proceeding —1xx→ Proceeding: A and B stop, fr_inv (re)starts, the TU is told, a pending CANCEL goes. */
  private provisional(res: SipResponse): void {
    this.state = "proceeding";
    this.disarm(Timer.A);
    this.disarm(Timer.B);
    // Kamailio fr_inv_timer, restarted by each provisional; the CANCEL wait replaces it once cancelled.
    if (this.cancelState !== "sent") this.arm(Timer.FrInv, this.timers.frInvTimer);
    this.tu.onResponse(this, res);
    if (this.cancelState === "pending") this.sendCancel();
  }

  /** Calling/Proceeding —2xx→ Accepted (RFC 6026 §7.2): pass every 2xx up, Timer M. */
  private accept(res: SipResponse): void {
    this.state = "accepted";
    this.leaveActive();
    this.arm(Timer.M, this.timers.timerM);
    this.enterWaiting();
    this.enterSettled();
    this.cancelNotSent();
    this.tu.onResponse(this, res);
    this.giveOutcome(responseOutcome(res));
  }

  /** Calling/Proceeding —300-699→ Completed (§17.1.1.2): send the ACK, Timer D (0 on reliable: → Terminated). */
  private complete(res: SipResponse): void {
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

  /**
   * Two-phase cancel (§9.1). Before any provisional the CANCEL waits (the
   * INVITE keeps retransmitting) and goes out when the first provisional
   * arrives; after one it goes out now. Never frees anything.
   */
  cancel(reason?: string): CancelResult {
    switch (this.state) {
      case "calling":
        // §9.1: no provisional yet: the CANCEL waits for one (held as "cancel"); state unchanged.
        if (this.cancelState === "none") {
          this.cancelState = "pending";
          this.cancelReason = reason;
          this.take("cancel");
        }
        return "pending";
      case "proceeding":
        // §9.1: the CANCEL goes out now (once); state unchanged, the CANCEL wait replaces fr_inv.
        if (this.cancelState === "pending") return "pending"; // cannot happen: a provisional sends it
        if (this.cancelState === "none") {
          this.cancelReason = reason;
          this.sendCancel();
        }
        return "sent";
      case "accepted":
      case "completed":
      case "terminated":
        // A final response came: nothing to cancel.
        return "none";
      default:
        return impossible(this.state);
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

  protected override dropPendingCancel(): void {
    this.cancelNotSent();
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

  // Kept apart from the other actors' timer switches, which look alike: each lists Figure 5's own states
  // where a timer is never armed (listed, not guarded: ARCHITECTURE.md).
  protected onTimer(kind: TimerKind): void {
    const state = this.state;
    switch (kind) {
      case Timer.A:
      case Timer.B:
        switch (state) {
          case "calling":
            if (kind === Timer.A) {
              // Figure 5: Calling —Timer A→ Calling, the INVITE again, A doubled (§17.1.1.2: no cap for INVITE).
              this.aInterval *= 2;
              this.resend(Timer.A, this.aInterval);
            } else {
              // Figure 5: Calling —Timer B→ Terminated, the TU told of a timeout (408).
              this.timeout();
            }
            return;
          case "proceeding":
          case "accepted":
          case "completed":
          case "terminated":
            return; // both disarmed when Calling is left
          default:
            impossible(state);
            return;
        }
      case Timer.FrInv:
        switch (state) {
          case "proceeding":
            // No final response after a provisional within fr_inv_timer: the TU gets a 408 now, the
            // branch is cancelled (§9.1) and ends when the CANCEL wait is over; state unchanged.
            this.ctx.stats.timeouts++;
            this.giveOutcome(TIMEOUT_OUTCOME);
            if (this.cancelState === "none") this.sendCancel();
            return;
          case "calling":
          case "accepted":
          case "completed":
          case "terminated":
            return; // armed only in Proceeding
          default:
            impossible(state);
            return;
        }
      case Timer.CancelWait:
        switch (state) {
          case "calling":
          case "proceeding":
            // §9.1: no final response within 64·T1 after the CANCEL: → Terminated, 408 for the TU.
            this.timeout();
            return;
          case "accepted":
          case "completed":
          case "terminated":
            return; // disarmed by the final response
          default:
            impossible(state);
            return;
        }
      case Timer.D:
        switch (state) {
          case "completed":
            // Figure 5: Completed —Timer D→ Terminated.
            this.terminate();
            return;
          case "calling":
          case "proceeding":
          case "accepted":
          case "terminated":
            return; // armed only in Completed
          default:
            impossible(state);
            return;
        }
      case Timer.M:
        switch (state) {
          case "accepted":
            // RFC 6026 §7.2: Accepted —Timer M→ Terminated.
            this.terminate();
            return;
          case "calling":
          case "proceeding":
          case "completed":
          case "terminated":
            return; // armed only in Accepted
          default:
            impossible(state);
            return;
        }
      case Timer.Lifetime:
        // The hard cap, whatever the state: as in Figure 6 (client.ts).
        this.lifetimeExpired();
        return;
      default:
        return; // not a timer this actor arms
    }
  }
}
