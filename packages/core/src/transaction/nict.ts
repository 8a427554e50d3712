/**
 * Non-INVITE client transaction: RFC 3261 §17.1.2 (Figure 6).
 *
 *   trying ──1xx──▶ proceeding ──200-699──▶ completed ──K──▶ terminated
 *   E: resend, E=min(2E,T2) in trying, E=T2 in proceeding (unreliable only)
 *   F: timeout (408 for the user) from trying or proceeding
 */
import type { SipResponse } from "../message/types.js";
import type { Destination } from "../transport/types.js";
import { type FinalOutcome, Timer, type TimerKind, Transaction, type TxContext } from "./actor.js";
import {
  type ClientTu,
  LIFETIME_OUTCOME,
  responseOutcome,
  TIMEOUT_OUTCOME,
  TRANSPORT_ERROR_OUTCOME,
} from "./client.js";
import type { TimerConfig } from "./config.js";

export type NictState = "trying" | "proceeding" | "completed" | "terminated";

export class NonInviteClientTransaction extends Transaction {
  readonly kind = "nict" as const;
  state: NictState = "trying";
  outcome: FinalOutcome | undefined;
  private eInterval: number;

  constructor(
    id: string,
    ctx: TxContext,
    timers: TimerConfig,
    reliable: boolean,
    /** The request as sent: retransmissions resend these bytes. */
    readonly request: Buffer,
    readonly dest: Destination,
    callId: string,
    cseq: number,
    method: string,
    readonly branch: string,
    public tu: ClientTu,
  ) {
    super(id, ctx, timers, callId, cseq, method, reliable);
    this.eInterval = timers.t1;
  }

  start(): void {
    this.arm(Timer.Lifetime, this.timers.maxNonInviteLifetime);
    if (!this.reliable) this.arm(Timer.E, this.eInterval);
    this.arm(Timer.F, this.timers.timerF);
    this.ctx.send(this.request, this.dest, this);
  }

  receiveResponse(res: SipResponse): void {
    if (this.ctx.observers.responseIn) this.ctx.observers.responseIn(this, res);
    if (this.state !== "trying" && this.state !== "proceeding") return; // Completed absorbs retransmissions
    if (res.status < 200) {
      this.state = "proceeding";
      this.tu.onResponse(this, res);
      return;
    }
    this.state = "completed";
    this.disarm(Timer.E);
    this.disarm(Timer.F);
    this.disarm(Timer.Lifetime); // K bounds the rest of its life
    this.tu.onResponse(this, res);
    this.giveOutcome(responseOutcome(res));
    // §17.1.2.2: Timer K = T4 on unreliable transports, zero on reliable ones.
    if (this.reliable) this.terminate();
    else {
      this.arm(Timer.K, this.timers.t4);
      this.enterWaiting();
      this.enterSettled();
    }
  }

  private giveOutcome(outcome: FinalOutcome): void {
    if (this.outcome) return;
    this.outcome = outcome;
    this.tu.onFinal(this, outcome);
  }

  protected onTimer(kind: TimerKind): void {
    switch (kind) {
      case Timer.E:
        if (this.state === "trying") this.eInterval = Math.min(2 * this.eInterval, this.timers.t2);
        else if (this.state === "proceeding") this.eInterval = this.timers.t2;
        else return;
        this.ctx.stats.retransmissions++;
        this.arm(Timer.E, this.eInterval);
        this.ctx.send(this.request, this.dest, this);
        return;
      case Timer.F:
        if (this.state !== "trying" && this.state !== "proceeding") return;
        this.ctx.stats.timeouts++;
        this.giveOutcome(TIMEOUT_OUTCOME);
        this.terminate();
        return;
      case Timer.K:
        this.terminate();
        return;
    }
  }

  protected override lifetimeExpired(): void {
    this.ctx.stats.lifetime_expired++;
    this.giveOutcome(LIFETIME_OUTCOME);
    this.terminate();
  }

  transportError(_err: Error): void {
    if (this.state === "terminated") return;
    this.ctx.stats.transport_errors++;
    if (this.state !== "completed") this.giveOutcome(TRANSPORT_ERROR_OUTCOME);
    this.terminate();
  }

  protected onTerminated(): void {
    this.tu.onTerminated(this);
  }
}
