/**
 * Transaction timer values (RFC 3261 §17, Table 4; RFC 6026 §8.4 for L and M)
 * and the engine's own safety timers. All in milliseconds, all configurable
 * per engine and per transaction (like Kamailio's t_set_fr / OpenSIPS
 * $T_fr_timeout).
 */
export interface TimerConfig {
  /** RTT estimate (RFC 3261 §17.1.1.1). Default 500 ms. */
  t1: number;
  /** Maximum retransmit interval for non-INVITE requests and INVITE responses. Default 4 s. */
  t2: number;
  /** Maximum duration a message remains in the network. Default 5 s. */
  t4: number;
  /** INVITE transaction timeout (Timer B). Default 64·T1. */
  timerB: number;
  /** Wait time for response retransmits (Timer D). Default 32 s, at least 32 s for UDP; 0 for reliable. */
  timerD: number;
  /** Non-INVITE transaction timeout (Timer F). Default 64·T1. */
  timerF: number;
  /** Wait time for ACK receipt (Timer H). Default 64·T1. */
  timerH: number;
  /** Non-INVITE server wait (Timer J). Default 64·T1 for unreliable transports. */
  timerJ: number;
  /** Accepted-state lifetimes (RFC 6026 Timers L and M). Default 64·T1. */
  timerL: number;
  timerM: number;
  /**
   * Kamailio's fr_inv_timer, RFC 3261's Timer C: after a provisional, how long
   * an INVITE client transaction waits for a final response before ending with
   * a timeout — a local INVITE's and, unless `relay()` is given `timerC`, every
   * proxied branch's (restarted by each provisional there, §16.6 item 11).
   * Default 181 s: §16.6 item 11 wants Timer C "larger than 3 minutes".
   */
  frInvTimer: number;
  /** After a CANCEL is sent, how long to wait for the INVITE's final response (RFC 3261 §9.1: 64·T1). */
  cancelTimeout: number;
  /**
   * Send 100 Trying for an INVITE if the user has not answered within this
   * many ms (RFC 3261 §17.2.1: 200 ms; Kamailio auto_inv_100). 0 sends it at
   * once; a negative value turns it off.
   */
  autoInv100: number;
  /**
   * Hard limit of an INVITE transaction's life, whatever its state (Kamailio
   * max_inv_lifetime). Default 214 s: past the default fr_inv wait and a
   * CANCEL's 64·T1 after it.
   */
  maxInviteLifetime: number;
  /** Hard limit of a non-INVITE transaction's life (Kamailio max_noninv_lifetime). Default 64·T1 + T4 + 5 s. */
  maxNonInviteLifetime: number;
}

export function defaultTimers(t1 = 500, t2 = 4000, t4 = 5000): TimerConfig {
  return {
    t1,
    t2,
    t4,
    timerB: 64 * t1,
    timerD: 32_000,
    timerF: 64 * t1,
    timerH: 64 * t1,
    timerJ: 64 * t1,
    timerL: 64 * t1,
    timerM: 64 * t1,
    frInvTimer: 181_000,
    cancelTimeout: 64 * t1,
    autoInv100: 200,
    maxInviteLifetime: 214_000,
    maxNonInviteLifetime: 64 * t1 + t4 + 5_000,
  };
}

/**
 * Fill a partial timer configuration. Values derived from T1 (B, F, H, J, L, M,
 * the cancel timeout) follow a T1 that was given, unless given themselves.
 */
export function resolveTimers(partial: Partial<TimerConfig> | undefined, base?: TimerConfig): TimerConfig {
  if (!partial) return base ?? defaultTimers();
  const t1 = partial.t1 ?? base?.t1 ?? 500;
  const derived =
    base && partial.t1 === undefined
      ? base
      : defaultTimers(t1, partial.t2 ?? base?.t2, partial.t4 ?? base?.t4);
  const out: TimerConfig = { ...derived };
  for (const key of Object.keys(partial) as Array<keyof TimerConfig>) {
    const v = partial[key];
    if (v !== undefined) {
      if (typeof v !== "number" || !Number.isFinite(v))
        throw new TypeError(`timer ${key} must be a finite number`);
      out[key] = v;
    }
  }
  return out;
}

/** The longest any timer can keep a transaction alive: what a leak check must wait past. */
export function longestLifetime(t: TimerConfig): number {
  return Math.max(t.maxInviteLifetime, t.maxNonInviteLifetime) + t.timerD + t.timerH + t.t4 + 1;
}
