/**
 * INVITE server transaction: RFC 3261 §17.2.1 (Figure 7) as updated by
 * RFC 6026 §7.1 (the Accepted state), with §9.2 CANCEL handling.
 *
 *   proceeding ──2xx──▶ accepted ──L──▶ terminated   (2xx resent until ACK, §13.3.1.4)
 *       │ (100 after autoInv100 ms; retransmitted INVITE → last provisional again;
 *       │  still ringing autoInv100 ms after a provisional → the request is compacted)
 *       └──300-699──▶ completed ──ACK──▶ confirmed ──I──▶ terminated
 *                     G: resend final, G=min(2G,T2); H: no ACK → terminated
 */
import type { SipRequest } from "../message/types.js";
import type { Destination, Source } from "../transport/types.js";
import { Timer, type TimerKind, type TxContext } from "./actor.js";
import type { TimerConfig } from "./config.js";
import { TransactionError } from "./errors.js";
import { type ReplyOptions, ServerTransaction, type ServerTu } from "./server.js";

export type IstState = "proceeding" | "accepted" | "completed" | "confirmed" | "terminated";

export class InviteServerTransaction extends ServerTransaction {
  readonly kind = "ist" as const;
  state: IstState = "proceeding";
  /** A CANCEL matched before a final response (§9.2). A later final from the user is refused. */
  cancelled = false;
  private gInterval: number;
  private retransmit2xxInterval: number;

  constructor(
    id: string,
    ctx: TxContext,
    timers: TimerConfig,
    reliable: boolean,
    request: SipRequest,
    source: Source,
    dest: Destination,
    tu: ServerTu,
  ) {
    super(id, ctx, timers, reliable, request, source, dest, tu);
    this.gInterval = timers.t1;
    this.retransmit2xxInterval = timers.t1;
  }

  /** How long a ringing INVITE waits before its request is compacted: the auto 100's wait, else T1. */
  private get idleWait(): number {
    const auto = this.timers.autoInv100;
    return auto > 0 ? auto : this.timers.t1;
  }

  start(): void {
    this.arm(Timer.Lifetime, this.timers.maxInviteLifetime);
    const auto = this.timers.autoInv100;
    if (auto === 0) this.sendResponse(100, this.build(100, undefined), true);
    else if (auto > 0) this.arm(Timer.Trying100, auto);
  }

  /** A request matched this transaction: a retransmitted INVITE, or an ACK (§17.2.1). */
  receiveRequest(req: SipRequest): void {
    if (req.method === "ACK") {
      if (this.state === "completed") {
        // §17.2.1: ACK for the non-2xx final → Confirmed, Timer I (T4; 0 on reliable).
        this.state = "confirmed";
        this.disarm(Timer.G);
        this.disarm(Timer.H);
        if (this.reliable) this.terminate();
        else {
          this.arm(Timer.I, this.timers.t4);
          this.enterSettled();
        }
      } else if (this.state === "accepted") {
        this.ack2xx(req);
      }
      return;
    }
    // A retransmitted INVITE: the last response again (Proceeding, Completed); absorbed in Accepted/Confirmed.
    if (this.state === "proceeding" || this.state === "completed") this.retransmitLast();
  }

  /** The ACK for our 2xx arrived: stop retransmitting it and tell the user. */
  ack2xx(ack: SipRequest): void {
    if (this.state !== "accepted") return;
    const first = this.isArmed(Timer.Retransmit2xx) || this.reliable;
    this.disarm(Timer.Retransmit2xx);
    this.enterSettled();
    if (first && this.tu.onAck) this.tu.onAck(this, ack);
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

  sendResponse(status: number, data: Buffer, generated: boolean): void {
    if (this.state !== "proceeding") {
      // RFC 6026: in Accepted, further 2xx from the TU (a proxy relaying other forks) are sent too.
      if (this.state === "accepted" && status >= 200 && status < 300) this.transmit(status, data, generated);
      return;
    }
    if (status < 200) {
      // Ringing: the request is compacted if no final follows within the wait of the auto 100.
      if (status > 100 && !this.isArmed(Timer.Trying100)) this.arm(Timer.Trying100, this.idleWait);
      this.transmit(status, data, generated);
      return;
    }
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
    if (this.state !== "proceeding" || this.cancelled) return false;
    this.cancelled = true;
    if (this.tu.onCancel) this.tu.onCancel(this, cancelReq);
    // §16.10: a proxy cancels its branches; the final response comes from them.
    if (this.proxy) {
      this.proxy.upstreamCancel(cancelReq);
      return true;
    }
    if (auto487 && !this.finalSent && this.state === "proceeding")
      this.sendResponse(487, this.build(487, undefined), true);
    return true;
  }

  protected onTimer(kind: TimerKind): void {
    switch (kind) {
      case Timer.Trying100:
        if (this.state !== "proceeding") return;
        // §17.2.1: a 100 if the TU has not answered within 200 ms.
        if (!this.lastResponse) this.sendResponse(100, this.build(100, undefined), true);
        // Still ringing after a provisional: nothing to build until the final response, which
        // may be minutes away; the request waits compacted (a read parses it again).
        else if (this.lastStatus > 100) this.request.compact();
        return;
      case Timer.G:
        if (this.state !== "completed") return;
        this.gInterval = Math.min(2 * this.gInterval, this.timers.t2);
        this.arm(Timer.G, this.gInterval);
        this.retransmitLast();
        return;
      case Timer.Retransmit2xx:
        if (this.state !== "accepted") return;
        this.retransmit2xxInterval = Math.min(2 * this.retransmit2xxInterval, this.timers.t2);
        this.arm(Timer.Retransmit2xx, this.retransmit2xxInterval);
        this.retransmitLast();
        return;
      case Timer.H:
        // §17.2.1: no ACK within 64·T1.
        if (this.state !== "completed") return;
        this.endCause = "ack-timeout";
        this.terminate();
        return;
      case Timer.L:
        // §13.3.1.4: a 2xx never ACKed is an "ack-timeout" for the user (who should send BYE).
        if (this.isArmed(Timer.Retransmit2xx)) this.endCause = "ack-timeout";
        this.terminate();
        return;
      case Timer.I:
        this.terminate();
        return;
    }
  }
}
