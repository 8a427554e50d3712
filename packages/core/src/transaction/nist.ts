/**
 * Non-INVITE server transaction: RFC 3261 §17.2.2 (Figure 8) with RFC 4320's
 * rules: no provisional other than 100, no 100 over an unreliable transport
 * before Timer E would have reached T2, and never a 408.
 *
 *   trying ──1xx──▶ proceeding ──200-699──▶ completed ──J──▶ terminated
 *   (retransmitted request: absorbed in trying, last response again after)
 *
 * Every event is one `switch (this.state)` naming every state; a timer is a
 * switch on its kind, then on the state. The lifetime cap and a transport
 * error are answered alike by both server actors: one switch in server.ts.
 */
import type { SipRequest } from "../message/types.js";
import { impossible, Timer, type TimerKind } from "./actor.js";
import { TransactionError } from "./errors.js";
import { type ReplyOptions, type ServerInit, ServerTransaction } from "./server.js";

export type NistState = "trying" | "proceeding" | "completed" | "terminated";

/** What a non-INVITE server transaction is made with (every field is documented on `ServerInit`). */
export type NistInit = ServerInit;

/** Made with a `NistInit` (the server base's constructor). */
export class NonInviteServerTransaction extends ServerTransaction {
  readonly kind = "nist" as const;
  state: NistState = "trying";
  /** A 100 asked for before T2 had passed (RFC 4320 §4.1), sent when it has. */
  private deferred100: Buffer | undefined;

  /** Figure 8, the initial arrow: request passed to the TU, → Trying. */
  start(): void {
    this.arm(Timer.Lifetime, this.timers.maxNonInviteLifetime);
  }

  receiveRequest(_req: SipRequest): void {
    switch (this.state) {
      case "trying":
        // Figure 8: Trying absorbs a retransmitted request.
        return;
      case "proceeding":
      case "completed":
        // Figure 8: Proceeding/Completed —request→ the same state, the last response again.
        this.retransmitLast();
        return;
      case "terminated":
        return; // out of every index: nothing should reach it
      default:
        impossible(this.state);
    }
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

  /** A response from the TU (the user's reply, or a proxy's relayed one). */
  sendResponse(status: number, data: Buffer, generated: boolean): void {
    switch (this.state) {
      case "trying":
      case "proceeding":
        // Figure 8: Trying/Proceeding —1xx from TU→ Proceeding; —200-699 from TU→ Completed.
        if (status < 200) {
          this.state = "proceeding";
          this.transmit(status, data, generated);
        } else this.sendFinal(status, data, generated);
        return;
      case "completed":
      case "terminated":
        return; // a final response went out: nothing more is sent
      default:
        impossible(this.state);
    }
  }

  /** Trying/Proceeding —final→ Completed: Timer J (§17.2.2: 64·T1, zero on reliable: → Terminated). */
  private sendFinal(status: number, data: Buffer, generated: boolean): void {
    this.disarm(Timer.Nist100);
    this.deferred100 = undefined;
    this.state = "completed";
    this.transmit(status, data, generated);
    this.disarm(Timer.Lifetime);
    if (this.tu.onFinalSent) this.tu.onFinalSent(this, status);
    if (this.terminated) return; // the send failed and ended it
    if (this.reliable) this.terminate();
    else {
      this.arm(Timer.J, this.timers.timerJ);
      this.enterWaiting();
      this.enterSettled();
      this.settle();
    }
  }

  // Kept apart from the other actors' timer switches, which look alike: each lists Figure 8's own states
  // where a timer is never armed (listed, not guarded: ARCHITECTURE.md).
  protected onTimer(kind: TimerKind): void {
    const state = this.state;
    switch (kind) {
      case Timer.Nist100:
        switch (state) {
          case "trying":
            // RFC 4320 §4.1: T2 has passed: Trying —the deferred 100→ Proceeding.
            if (this.deferred100) this.sendResponse(100, this.deferred100, true);
            this.deferred100 = undefined;
            return;
          case "proceeding":
          case "completed":
          case "terminated":
            this.deferred100 = undefined; // a response went out meanwhile: the 100 is not needed
            return;
          default:
            impossible(state);
            return;
        }
      case Timer.J:
        switch (state) {
          case "completed":
            // Figure 8: Completed —Timer J→ Terminated.
            this.terminate();
            return;
          case "trying":
          case "proceeding":
          case "terminated":
            return; // armed only in Completed
          default:
            impossible(state);
            return;
        }
      case Timer.Lifetime:
        // The hard cap, whatever the state: as in Figure 7 (server.ts).
        this.lifetimeExpired();
        return;
      default:
        return; // not a timer this actor arms
    }
  }
}
