/**
 * INVITE server transaction: RFC 3261 §17.2.1 (Figure 7) as updated by
 * RFC 6026 §7.1 (the Accepted state), with §9.2 CANCEL handling.
 *
 *   proceeding ──2xx──▶ accepted ──L──▶ terminated   (2xx resent until ACK, §13.3.1.4)
 *       │ (100 after autoInv100 ms; retransmitted INVITE → last provisional again;
 *       │  still ringing autoInv100 ms after a provisional → the request is compacted)
 *       └──300-699──▶ completed ──ACK──▶ confirmed ──I──▶ terminated
 *                     G: resend final, G=min(2G,T2); H: no ACK → terminated
 *
 * Every event is one `switch (this.state)` naming every state; a timer is a
 * switch on its kind (G and H share one, both live only in Completed; the 2xx
 * timer and L, both only in Accepted), then on the state. The lifetime cap and
 * a transport error are answered alike by both server actors: one switch in
 * server.ts.
 */
import type { SipRequest } from "../message/types.js";
import { impossible, Timer, type TimerKind } from "./actor.js";
import { TransactionError } from "./errors.js";
import { type ReplyOptions, type ServerInit, ServerTransaction } from "./server.js";

export type IstState = "proceeding" | "accepted" | "completed" | "confirmed" | "terminated";

/** What an INVITE server transaction is made with (every field is documented on `ServerInit`). */
export type IstInit = ServerInit;

export class InviteServerTransaction extends ServerTransaction {
  readonly kind = "ist" as const;
  state: IstState = "proceeding";
  /** A CANCEL matched before a final response (§9.2). A later final from the user is refused. */
  cancelled = false;
  private gInterval: number;
  private retransmit2xxInterval: number;

  constructor(init: IstInit) {
    super(init);
    this.gInterval = init.timers.t1;
    this.retransmit2xxInterval = init.timers.t1;
  }

  /** How long a ringing INVITE waits before its request is compacted: the auto 100's wait, else T1. */
  private get idleWait(): number {
    const auto = this.timers.autoInv100;
    return auto > 0 ? auto : this.timers.t1;
  }

  /** Figure 7, the initial arrow: INVITE passed to the TU, → Proceeding; a 100 now or after autoInv100 (§17.2.1). */
  start(): void {
    this.arm(Timer.Lifetime, this.timers.maxInviteLifetime);
    const auto = this.timers.autoInv100;
    if (auto === 0) this.sendResponse(100, this.build(100, undefined), true);
    else if (auto > 0) this.arm(Timer.Trying100, auto);
  }

  /** A request matched this transaction: a retransmitted INVITE, or an ACK (§17.2.1). */
  receiveRequest(req: SipRequest): void {
    switch (this.state) {
      case "proceeding":
        // Figure 7: Proceeding —INVITE→ Proceeding, the last provisional again. An ACK here is absorbed.
        if (req.method !== "ACK") this.retransmitLast();
        return;
      case "completed":
        // Figure 7: Completed —ACK→ Confirmed; Completed —INVITE→ Completed, the final again.
        if (req.method === "ACK") this.confirm();
        else this.retransmitLast();
        return;
      case "accepted":
        // RFC 6026 §7.1: Accepted —ACK→ Accepted, passed to the TU; a retransmitted INVITE is absorbed.
        if (req.method === "ACK") this.ack2xx(req);
        return;
      case "confirmed":
        // Figure 7: Confirmed absorbs ACKs and INVITEs.
        return;
      case "terminated":
        return; // out of every index: nothing should reach it
      default:
        impossible(this.state);
    }
  }

  /** Completed —ACK→ Confirmed (§17.2.1): G and H stop, Timer I (T4; zero on reliable: → Terminated). */
  private confirm(): void {
    this.state = "confirmed";
    this.disarm(Timer.G);
    this.disarm(Timer.H);
    if (this.reliable) this.terminate();
    else {
      this.arm(Timer.I, this.timers.t4);
      this.enterSettled();
    }
  }

  /** The ACK for our 2xx arrived (§13.3.1.4; also matched by dialog): stop resending the 2xx, tell the TU once. */
  ack2xx(ack: SipRequest): void {
    switch (this.state) {
      case "accepted": {
        // RFC 6026 §7.1: Accepted —ACK→ Accepted; only the first ACK reaches the TU.
        const first = this.isArmed(Timer.Retransmit2xx) || this.reliable;
        this.disarm(Timer.Retransmit2xx);
        this.enterSettled();
        if (first && this.tu.onAck) this.tu.onAck(this, ack);
        return;
      }
      case "proceeding":
      case "completed":
      case "confirmed":
      case "terminated":
        return; // no 2xx of ours to acknowledge
      default:
        impossible(this.state);
    }
  }

  /** True while the ACK of our 2xx is awaited (for the engine's dialog-based ACK matching). */
  get awaitingAck(): boolean {
    return this.state === "accepted" && this.isArmed(Timer.Retransmit2xx);
  }

  override reply(status: number, opts?: ReplyOptions): void {
    // After an automatic 487 the user's final is refused with a clear reason; with
    // autoCancel487 off the user answers the cancelled INVITE itself.
    if (this.cancelled && this.finalSent && !this.proxy)
      throw new TransactionError(
        "cancelled",
        `the INVITE was cancelled: the final response was ${this.lastStatus}`,
        this.id,
      );
    super.reply(status, opts);
  }

  /** A response from the TU (the user's reply, a proxy's relayed one, or the engine's 100/487). */
  sendResponse(status: number, data: Buffer, generated: boolean): void {
    switch (this.state) {
      case "proceeding":
        // Figure 7: Proceeding —1xx from TU→ Proceeding; —2xx→ Accepted (RFC 6026); —300-699→ Completed.
        if (status < 200) this.sendProvisional(status, data, generated);
        else this.sendFinal(status, data, generated);
        return;
      case "accepted":
        // RFC 6026 §7.1: Accepted —2xx from TU→ Accepted, sent (a proxy relaying other forks); the rest dropped.
        if (status >= 200 && status < 300) this.transmit(status, data, generated);
        return;
      case "completed":
      case "confirmed":
      case "terminated":
        return; // a final response went out: nothing more is sent
      default:
        impossible(this.state);
    }
  }

  private sendProvisional(status: number, data: Buffer, generated: boolean): void {
    // Ringing: the request is compacted if no final follows within the wait of the auto 100.
    if (status > 100 && !this.isArmed(Timer.Trying100)) this.arm(Timer.Trying100, this.idleWait);
    this.transmit(status, data, generated);
  }

  private sendFinal(status: number, data: Buffer, generated: boolean): void {
    this.disarm(Timer.Trying100);
    this.transmit(status, data, generated);
    if (this.terminated) {
      // The send failed and ended the transaction.
      if (this.tu.onFinalSent) this.tu.onFinalSent(this, status);
      return;
    }
    this.disarm(Timer.Lifetime); // the final states have their own bounded timers
    if (status < 300) {
      // RFC 6026 §7.1: Accepted, Timer L; the 2xx is resent until the ACK (§13.3.1.4).
      this.state = "accepted";
      this.arm(Timer.L, this.timers.timerL);
      // §13.3.1.4: a UAS resends its own 2xx until the ACK. A 2xx a proxy relays is never
      // resent by the proxy (RFC 6026 §8.5: no 2xx retransmissions of its own in Accepted).
      if (!this.reliable && generated && !this.proxy)
        this.arm(Timer.Retransmit2xx, this.retransmit2xxInterval);
      else this.enterSettled(); // no 2xx of ours to resend: only Timer L is left
    } else {
      // §17.2.1: Completed, G (unreliable), H.
      this.state = "completed";
      if (!this.reliable) this.arm(Timer.G, this.gInterval);
      this.arm(Timer.H, this.timers.timerH);
    }
    this.enterWaiting();
    if (this.tu.onFinalSent) this.tu.onFinalSent(this, status);
    if (!this.terminated) this.settle();
  }

  /**
   * A CANCEL matched this INVITE (§9.2). Returns true when the INVITE had no
   * final response yet (it is now cancelled); the caller answers the CANCEL 200
   * either way. With `auto487` the 487 goes out here.
   */
  cancel(cancelReq: SipRequest, auto487: boolean): boolean {
    switch (this.state) {
      case "proceeding":
        // §9.2: Proceeding —CANCEL→ the TU is told; the 487 (auto) takes it to Completed.
        if (this.cancelled) return false;
        this.cancelled = true;
        if (this.tu.onCancel) this.tu.onCancel(this, cancelReq);
        // §16.10: a proxy cancels its branches; the final response comes from them.
        if (this.proxy) {
          this.proxy.upstreamCancel(cancelReq);
          return true;
        }
        // The user may have answered (or the transaction ended) inside onCancel.
        if (auto487 && !this.finalSent && this.state === "proceeding")
          this.sendResponse(487, this.build(487, undefined), true);
        return true;
      case "accepted":
      case "completed":
      case "confirmed":
      case "terminated":
        return false; // §9.2: a final response went out: the CANCEL has no effect here
      default:
        return impossible(this.state);
    }
  }

  // Kept apart from the other actors' timer switches, which look alike: each lists Figure 7's own states
  // where a timer is never armed (listed, not guarded: ARCHITECTURE.md).
  protected onTimer(kind: TimerKind): void {
    const state = this.state;
    switch (kind) {
      case Timer.Trying100:
        switch (state) {
          case "proceeding":
            // §17.2.1: Proceeding —no answer within 200 ms→ Proceeding, a 100 sent.
            if (!this.lastResponse) this.sendResponse(100, this.build(100, undefined), true);
            // Still ringing after a provisional: nothing to build until the final response, which
            // may be minutes away; the request waits compacted (a read parses it again).
            else if (this.lastStatus > 100) this.request.compact();
            return;
          case "accepted":
          case "completed":
          case "confirmed":
          case "terminated":
            return; // disarmed by the final response
          default:
            impossible(state);
            return;
        }
      case Timer.G:
      case Timer.H:
        switch (state) {
          case "completed":
            if (kind === Timer.G) {
              // Figure 7: Completed —Timer G→ Completed, the final again, G = min(2G, T2).
              this.gInterval = this.resendBackedOff(Timer.G, this.gInterval);
            } else {
              // Figure 7: Completed —Timer H→ Terminated: no ACK within 64·T1.
              this.endCause = "ack-timeout";
              this.terminate();
            }
            return;
          case "proceeding":
          case "accepted":
          case "confirmed":
          case "terminated":
            return; // both armed only in Completed
          default:
            impossible(state);
            return;
        }
      case Timer.Retransmit2xx:
      case Timer.L:
        switch (state) {
          case "accepted":
            if (kind === Timer.Retransmit2xx) {
              // §13.3.1.4: Accepted —2xx timer→ Accepted, our 2xx again, interval doubled up to T2.
              this.retransmit2xxInterval = this.resendBackedOff(
                Timer.Retransmit2xx,
                this.retransmit2xxInterval,
              );
            } else {
              // RFC 6026 §7.1: Accepted —Timer L→ Terminated. A 2xx never ACKed is an "ack-timeout"
              // for the user, who should send BYE (§13.3.1.4).
              if (this.isArmed(Timer.Retransmit2xx)) this.endCause = "ack-timeout";
              this.terminate();
            }
            return;
          case "proceeding":
          case "completed":
          case "confirmed":
          case "terminated":
            return; // both armed only in Accepted
          default:
            impossible(state);
            return;
        }
      case Timer.I:
        switch (state) {
          case "confirmed":
            // Figure 7: Confirmed —Timer I→ Terminated.
            this.terminate();
            return;
          case "proceeding":
          case "accepted":
          case "completed":
          case "terminated":
            return; // armed only in Confirmed
          default:
            impossible(state);
            return;
        }
      case Timer.Lifetime:
        // The hard cap, whatever the state: as in Figure 8 (server.ts).
        this.lifetimeExpired();
        return;
      default:
        return; // not a timer this actor arms
    }
  }

  /** G or the 2xx timer fired: the interval doubled up to T2, re-armed, the last response again; returns the new interval. */
  private resendBackedOff(kind: TimerKind, interval: number): number {
    const next = Math.min(2 * interval, this.timers.t2);
    this.arm(kind, next);
    this.retransmitLast();
    return next;
  }
}
