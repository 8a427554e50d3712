/**
 * Time is injected: nothing in the engine reads the wall clock or calls
 * setTimeout directly. A Clock gives `now()` in milliseconds (monotonic) and
 * single-shot wakeups. The engine keeps at most one wakeup armed at a time
 * (for its earliest timer), so timers cost no `setTimeout` each.
 */
export interface Clock {
  now(): number;
  /** Call `fn` once at (or soon after) absolute time `at`. */
  setTimer(at: number, fn: () => void): unknown;
  clearTimer(handle: unknown): void;
}

/** The real clock: performance.now() and one setTimeout per wakeup. */
export class RealClock implements Clock {
  now(): number {
    return performance.now();
  }
  setTimer(at: number, fn: () => void): unknown {
    const t = setTimeout(fn, Math.max(0, at - performance.now()));
    t.unref?.();
    return t;
  }
  clearTimer(handle: unknown): void {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  }
}

interface VTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A virtual clock for tests: time moves only when `advance` or `advanceTo`
 * is called, and due timers run in deadline order (ties in arming order).
 * A 32 s Timer D takes microseconds.
 */
export class VirtualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: VTimer[] = [];

  constructor(start = 0) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  setTimer(at: number, fn: () => void): unknown {
    const timer: VTimer = { at, seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return timer;
  }
  clearTimer(handle: unknown): void {
    const timer = handle as VTimer | undefined;
    if (timer) timer.cancelled = true;
  }
  /** Number of timers still pending. */
  get pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }
  /** The deadline of the earliest pending timer, or undefined when none is pending. */
  nextDue(): number | undefined {
    let next: number | undefined;
    for (const timer of this.timers)
      if (!timer.cancelled && (next === undefined || timer.at < next)) next = timer.at;
    return next;
  }
  /** Move time forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void {
    this.advanceTo(this.t + ms);
  }
  /** Move time to `target`, running due timers in order; each runs with now() equal to its deadline. */
  advanceTo(target: number): void {
    while (this.runNext(target)) {}
    this.timers = this.timers.filter((t) => !t.cancelled);
    if (target > this.t) this.t = target;
  }
  /**
   * Run only the earliest timer due at or before `target` (time moves to its
   * deadline); false when none is due. Lets a caller settle what one timer set
   * off — elsewhere — before the next runs.
   */
  runNext(target: number): boolean {
    let next: VTimer | undefined;
    let nextIndex = -1;
    for (let i = 0; i < this.timers.length; i++) {
      const timer = this.timers[i]!;
      if (timer.cancelled) continue;
      if (
        timer.at <= target &&
        (!next || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))
      ) {
        next = timer;
        nextIndex = i;
      }
    }
    if (!next) return false;
    this.timers.splice(nextIndex, 1);
    if (next.at > this.t) this.t = next.at;
    next.fn();
    return true;
  }
  /** Run timers that are due now without moving time. */
  runDue(): void {
    this.advanceTo(this.t);
  }
}
