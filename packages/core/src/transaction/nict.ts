/**
 * Non-INVITE client transaction: RFC 3261 §17.1.2 (Figure 6).
 *
 *   trying ──1xx──▶ proceeding ──200-699──▶ completed ──K──▶ terminated
 *   E: resend, E=min(2E,T2) in trying, E=T2 in proceeding (unreliable only)
 *   F: timeout (408 for the user) from trying or proceeding
 *
 * Every event is one `switch (this.state)` naming every state; a timer is a
 * switch on its kind (E and F share one: both live only in Trying and
 * Proceeding), then on the state. The lifetime cap and a transport
 * error are answered alike by both client actors: one switch in client.ts.
 */
import type { SipResponse } from "../message/types.js";
import { impossible, Timer, type TimerKind } from "./actor.js";
import { type ClientInit, ClientTransaction, responseOutcome } from "./client.js";

export type NictState = "trying" | "proceeding" | "completed" | "terminated";

/** What a non-INVITE client transaction is made with: `ClientInit` and the request's method. */
export interface NictInit extends ClientInit {
  /** The request's method (CSeq method; the table key with the branch, §17.1.3). */
  readonly method: string;
}

export class NonInviteClientTransaction extends ClientTransaction {
  readonly kind = "nict" as const;
  state: NictState = "trying";
  readonly method: string;
  private eInterval: number;

  constructor(init: NictInit) {
    super(init);
    this.method = init.method;
    this.eInterval = init.timers.t1;
  }

  /** Figure 6, the initial arrow: request sent, Timer E (unreliable only) and Timer F armed; → Trying. */
  start(): void {
    this.begin(this.timers.maxNonInviteLifetime, Timer.E, Timer.F, this.timers.timerF);
  }

  receiveResponse(res: SipResponse): void {
    if (this.ctx.observers.responseIn) this.ctx.observers.responseIn(this, res);
    switch (this.state) {
      case "trying":
      case "proceeding":
        // Figure 6: Trying/Proceeding —1xx→ Proceeding, passed to the TU; —200-699→ Completed.
        if (res.status < 200) {
          this.state = "proceeding";
          this.tu.onResponse(this, res);
        } else this.complete(res);
        return;
      case "completed":
        // Figure 6: Completed absorbs retransmitted responses.
        return;
      case "terminated":
        return; // out of every index: nothing should reach it
      default:
        impossible(this.state);
    }
  }

  /** Trying/Proceeding —200-699→ Completed: E and F stop, the TU is told, Timer K (§17.1.2.2: T4, zero on reliable). */
  private complete(res: SipResponse): void {
    this.state = "completed";
    this.disarm(Timer.E);
    this.disarm(Timer.F);
    this.disarm(Timer.Lifetime); // K bounds the rest of its life
    this.tu.onResponse(this, res);
    this.giveOutcome(responseOutcome(res));
    if (this.reliable) this.terminate();
    else {
      this.arm(Timer.K, this.timers.t4);
      this.enterWaiting();
      this.enterSettled();
    }
  }

  // Kept apart from the other actors' timer switches, which look alike: each lists Figure 6's own states
  // where a timer is never armed (listed, not guarded: ARCHITECTURE.md).
  protected onTimer(kind: TimerKind): void {
    const state = this.state;
    switch (kind) {
      case Timer.E:
      case Timer.F:
        switch (state) {
          case "trying":
          case "proceeding":
            if (kind === Timer.F) {
              // Figure 6: Trying/Proceeding —Timer F→ Terminated, the TU told of a timeout (408).
              this.timeout();
              return;
            }
            // Figure 6: Trying —Timer E→ Trying, the request again, E = min(2E, T2);
            // Proceeding —Timer E→ Proceeding, the request again, E = T2.
            this.eInterval =
              state === "trying" ? Math.min(2 * this.eInterval, this.timers.t2) : this.timers.t2;
            this.resend(Timer.E, this.eInterval);
            return;
          case "completed":
          case "terminated":
            return; // both disarmed when the final response came
          default:
            impossible(state);
            return;
        }
      case Timer.K:
        switch (state) {
          case "completed":
            // Figure 6: Completed —Timer K→ Terminated.
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
        // The hard cap, whatever the state: as in Figure 5 (client.ts).
        this.lifetimeExpired();
        return;
      default:
        return; // not a timer this actor arms
    }
  }
}
