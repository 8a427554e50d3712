/**
 * Non-INVITE server transaction: RFC 3261 §17.2.2 (Figure 8) with RFC 4320's
 * rules: no provisional other than 100, no 100 over an unreliable transport
 * before Timer E would have reached T2, and never a 408.
 *
 *   trying ──1xx──▶ proceeding ──200-699──▶ completed ──J──▶ terminated
 *   (retransmitted request: absorbed in trying, last response again after)
 */
import type { SipRequest } from "../message/types.js";
import type { Destination, Source } from "../transport/types.js";
import { Timer, type TimerKind, type TxContext } from "./actor.js";
import type { TimerConfig } from "./config.js";
import { TransactionError } from "./errors.js";
import { type ReplyOptions, ServerTransaction, type ServerTu } from "./server.js";

export type NistState = "trying" | "proceeding" | "completed" | "terminated";

export class NonInviteServerTransaction extends ServerTransaction {
  readonly kind = "nist" as const;
  state: NistState = "trying";
  /** A 100 asked for before T2 had passed (RFC 4320 §4.1), sent when it has. */
  private deferred100: Buffer | undefined;

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
  }

  start(): void {
    this.arm(Timer.Lifetime, this.timers.maxNonInviteLifetime);
  }

  receiveRequest(_req: SipRequest): void {
    // §17.2.2: absorbed in Trying; the last response again in Proceeding and Completed.
    if (this.state === "proceeding" || this.state === "completed") this.retransmitLast();
  }

  override reply(status: number, opts?: ReplyOptions): void {
    this.checkReply(status);
    if (status < 200 && status !== 100)
      throw new TransactionError(
        "not-allowed",
        "RFC 4320 §4.1: no provisional other than 100 to a non-INVITE",
        this.id,
      );
    if (status === 408)
      throw new TransactionError("not-allowed", "RFC 4320 §4.1: no 408 to a non-INVITE request", this.id);
    const data = this.build(status, opts);
    if (status === 100 && !this.reliable) {
      const earliest = this.createdAt + this.timers.t2;
      const now = this.ctx.now();
      if (now < earliest) {
        if (!this.deferred100) {
          this.deferred100 = data;
          this.arm(Timer.Nist100, earliest - now);
        }
        return;
      }
    }
    this.sendResponse(status, data, true);
  }

  sendResponse(status: number, data: Buffer, generated: boolean): void {
    if (this.state !== "trying" && this.state !== "proceeding") return;
    if (status < 200) {
      this.state = "proceeding";
      this.transmit(status, data, generated);
      return;
    }
    this.disarm(Timer.Nist100);
    this.deferred100 = undefined;
    this.state = "completed";
    this.transmit(status, data, generated);
    this.disarm(Timer.Lifetime);
    if (this.tu.onFinalSent) this.tu.onFinalSent(this, status);
    if (this.terminated) return; // the send failed and ended it
    // §17.2.2: Timer J = 64·T1 on unreliable transports, zero on reliable ones.
    if (this.reliable) this.terminate();
    else {
      this.arm(Timer.J, this.timers.timerJ);
      this.enterWaiting();
      this.enterSettled();
      this.settle();
    }
  }

  protected onTimer(kind: TimerKind): void {
    switch (kind) {
      case Timer.Nist100:
        if (this.deferred100 && this.state === "trying") this.sendResponse(100, this.deferred100, true);
        this.deferred100 = undefined;
        return;
      case Timer.J:
        this.terminate();
        return;
    }
  }
}
