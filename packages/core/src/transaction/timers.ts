/**
 * Transaction timers without one `setTimeout` per timer.
 *
 * RFC 3261 transaction timers (A..K, plus auto-100, max lifetime, ...) use a
 * handful of fixed durations: T1·2^n, 64·T1, T4, 32 s. For a fixed duration,
 * timers armed later expire later (deadline = now + duration and `now` does
 * not go back), so a plain FIFO per duration is already sorted by deadline.
 *
 * `TimerQueues` therefore keeps a `Map<duration, list>` of intrusive doubly
 * linked lists:
 *  - arm:    append at the tail of the list for its duration          O(1)
 *            (if the deadline is earlier than the tail's, because the
 *            caller passed an older `now`, walk back from the tail to the
 *            right place, so ordering holds in every case)
 *  - cancel: unlink the entry                                         O(1)
 *  - next:   minimum over the list heads                              O(#durations)
 *  - expire: pop the smallest head while it is due                    O(#durations) per fired timer
 *
 * Compared with one `setTimeout` per timer this avoids a Node timer object
 * (and its libuv/timer-list bookkeeping, closure and `clearTimeout`) for
 * every retransmission timer of every transaction; arm and cancel are a few
 * pointer writes on a fixed-shape object, and `TimerService` keeps exactly
 * one clock wakeup per engine, for the earliest deadline. A binary heap
 * would make cancel O(log n) (or lazy, leaving garbage); a timing wheel
 * would need a tick. Per-duration FIFOs get O(1) both ways because the
 * durations are few.
 */
import type { Clock } from "../clock.js";

/** An armed (or formerly armed) timer. Fixed-shape object; compare by identity. */
export interface TimerEntry<T> {
  readonly owner: T;
  /** Caller-defined timer kind (e.g. a `TimerKind` enum value). */
  readonly kind: number;
  /** Absolute deadline, in the clock's milliseconds. */
  readonly deadline: number;
}

/** Internal node: the public entry plus its intrusive links. */
class TimerNode<T> implements TimerEntry<T> {
  readonly owner: T;
  readonly kind: number;
  readonly deadline: number;
  /** Arming sequence number: breaks deadline ties in arming order. */
  readonly seq: number;
  prev: TimerNode<T> | null = null;
  next: TimerNode<T> | null = null;
  /** The list holding this node while armed; null once fired or cancelled. */
  list: DurationList<T> | null;

  constructor(owner: T, kind: number, deadline: number, seq: number, list: DurationList<T>) {
    this.owner = owner;
    this.kind = kind;
    this.deadline = deadline;
    this.seq = seq;
    this.list = list;
  }
}

/** All armed timers of one duration, sorted by (deadline, seq). */
class DurationList<T> {
  duration: number;
  head: TimerNode<T> | null = null;
  tail: TimerNode<T> | null = null;
  /** Position in `TimerQueues.active` while non-empty, else -1. */
  index = -1;
  readonly queues: TimerQueues<T>;

  constructor(queues: TimerQueues<T>, duration: number) {
    this.queues = queues;
    this.duration = duration;
  }
}

/** Empty lists kept for reuse, so a duration that goes empty and back does not allocate. */
const LIST_POOL_MAX = 16;

function isNode<T>(entry: TimerEntry<T>): entry is TimerNode<T> {
  return entry instanceof TimerNode;
}

/** Per-duration FIFO timer queues. Not tied to any clock: `now` is passed in. */
export class TimerQueues<T> {
  private readonly byDuration = new Map<number, DurationList<T>>();
  /** Non-empty lists, for the head scans (no Map iterator allocation). */
  private readonly active: DurationList<T>[] = [];
  private readonly pool: DurationList<T>[] = [];
  private seq = 0;
  private armed = 0;

  /** Number of armed timers. */
  get size(): number {
    return this.armed;
  }

  /** Arm a timer of `duration` ms (>= 0, finite) from `now`: deadline = now + duration. */
  arm(owner: T, kind: number, now: number, duration: number): TimerEntry<T> {
    if (!(duration >= 0) || !Number.isFinite(duration)) {
      throw new RangeError(`timer duration must be a finite number >= 0, got ${duration}`);
    }
    if (!Number.isFinite(now)) throw new RangeError(`timer 'now' must be finite, got ${now}`);
    let list = this.byDuration.get(duration);
    if (list === undefined) {
      list = this.pool.pop();
      if (list === undefined) list = new DurationList<T>(this, duration);
      else list.duration = duration;
      this.byDuration.set(duration, list);
    }
    const node = new TimerNode<T>(owner, kind, now + duration, this.seq++, list);
    const tail = list.tail;
    if (tail === null) {
      list.head = list.tail = node;
      list.index = this.active.length;
      this.active.push(list);
    } else if (tail.deadline <= node.deadline) {
      // The common case: deadlines of one duration grow with `now`.
      node.prev = tail;
      tail.next = node;
      list.tail = node;
    } else {
      // `now` went back (or the caller passed a stale one): walk back from
      // the tail to the last node due no later than this one (ties keep
      // arming order, and this node has the largest seq).
      let at: TimerNode<T> | null = tail.prev;
      while (at !== null && at.deadline > node.deadline) at = at.prev;
      if (at === null) {
        node.next = list.head;
        list.head!.prev = node;
        list.head = node;
      } else {
        node.prev = at;
        node.next = at.next;
        at.next!.prev = node;
        at.next = node;
      }
    }
    this.armed++;
    return node;
  }

  /** Cancel an armed timer in O(1). False if it already fired, was cancelled, or is not ours. */
  cancel(entry: TimerEntry<T>): boolean {
    if (!isNode(entry)) return false;
    const list = entry.list;
    if (list === null || list.queues !== this) return false;
    this.unlink(entry, list);
    return true;
  }

  /** True while the timer is armed in this queue set (not yet fired or cancelled). */
  isArmed(entry: TimerEntry<T>): boolean {
    return isNode(entry) && entry.list !== null && entry.list.queues === this;
  }

  /** Earliest deadline over all armed timers, or undefined if none is armed. */
  nextDeadline(): number | undefined {
    const active = this.active;
    let min: number | undefined;
    for (let i = 0; i < active.length; i++) {
      const d = active[i]!.head!.deadline;
      if (min === undefined || d < min) min = d;
    }
    return min;
  }

  /**
   * Fire every timer with deadline <= now, in deadline order (ties: arming
   * order). Each timer is disarmed before `fire` runs, so `fire` may cancel
   * or arm timers freely: a cancelled timer does not fire, a newly armed one
   * fires in this call if (and only if) its deadline <= now. If `fire`
   * throws, the timers not yet fired stay armed and the error propagates.
   * Returns how many fired.
   */
  expire(now: number, fire: (entry: TimerEntry<T>) => void): number {
    const active = this.active;
    let fired = 0;
    for (;;) {
      let best: TimerNode<T> | null = null;
      for (let i = 0; i < active.length; i++) {
        const head = active[i]!.head!;
        if (
          head.deadline <= now &&
          (best === null ||
            head.deadline < best.deadline ||
            (head.deadline === best.deadline && head.seq < best.seq))
        ) {
          best = head;
        }
      }
      if (best === null) return fired;
      this.unlink(best, best.list!);
      fired++;
      fire(best);
    }
  }

  private unlink(node: TimerNode<T>, list: DurationList<T>): void {
    const prev = node.prev;
    const next = node.next;
    if (prev === null) list.head = next;
    else prev.next = next;
    if (next === null) list.tail = prev;
    else next.prev = prev;
    node.prev = node.next = null;
    node.list = null;
    this.armed--;
    if (list.head === null) this.dropList(list);
  }

  private dropList(list: DurationList<T>): void {
    // Swap-remove from the active array.
    const active = this.active;
    const last = active.pop()!;
    if (last !== list) {
      active[list.index] = last;
      last.index = list.index;
    }
    list.index = -1;
    this.byDuration.delete(list.duration);
    if (this.pool.length < LIST_POOL_MAX) this.pool.push(list);
  }
}

/**
 * Timer queues driven by a `Clock`, keeping exactly one clock wakeup armed,
 * for the earliest deadline. The wakeup is re-armed only when a new timer's
 * deadline is earlier than the armed wakeup, or after an expiry run; a
 * cancel leaves a wakeup in place (when it comes early it fires nothing and
 * re-arms), except that the wakeup is cleared once no timer is armed.
 *
 * One Node timer per engine, instead of one per transaction timer: see the
 * module comment.
 */
export class TimerService<T> {
  private readonly queues = new TimerQueues<T>();
  private readonly clock: Clock;
  private readonly fire: (entry: TimerEntry<T>) => void;
  /** The clock's handle for the armed wakeup (meaningful only while `wakeAt` is set). */
  private handle: unknown = undefined;
  /** Deadline of the armed clock wakeup, or undefined if none is armed. */
  private wakeAt: number | undefined = undefined;
  private expiring = false;
  private isClosed = false;
  private readonly onWake = (): void => this.wake();

  constructor(clock: Clock, fire: (entry: TimerEntry<T>) => void) {
    this.clock = clock;
    this.fire = fire;
  }

  /** Current clock time. */
  now(): number {
    return this.clock.now();
  }

  /** Number of armed timers. */
  get size(): number {
    return this.queues.size;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Earliest armed deadline, or undefined. */
  nextDeadline(): number | undefined {
    return this.queues.nextDeadline();
  }

  /** Arm a timer `duration` ms from now. */
  arm(owner: T, kind: number, duration: number): TimerEntry<T> {
    const entry = this.queues.arm(owner, kind, this.clock.now(), duration);
    // While expiring, the wakeup is re-armed once the run is over.
    if (!this.expiring && (this.wakeAt === undefined || entry.deadline < this.wakeAt)) {
      this.schedule(entry.deadline);
    }
    return entry;
  }

  /** Cancel an armed timer. False if it already fired or was cancelled. */
  cancel(entry: TimerEntry<T>): boolean {
    if (!this.queues.cancel(entry)) return false;
    if (this.queues.size === 0 && !this.expiring) this.unschedule();
    return true;
  }

  isArmed(entry: TimerEntry<T>): boolean {
    return this.queues.isArmed(entry);
  }

  /**
   * Stop driving timers: the clock wakeup is cancelled and no new one is
   * armed. Armed timers stay armed (and cancellable) but never fire.
   */
  close(): void {
    this.isClosed = true;
    this.unschedule();
  }

  private wake(): void {
    this.handle = undefined;
    this.wakeAt = undefined;
    if (this.isClosed) return;
    this.expiring = true;
    try {
      this.queues.expire(this.clock.now(), this.fire);
    } finally {
      this.expiring = false;
      const next = this.queues.nextDeadline();
      if (next !== undefined) this.schedule(next);
    }
  }

  private schedule(at: number): void {
    if (this.isClosed) return;
    if (this.wakeAt !== undefined) this.clock.clearTimer(this.handle);
    this.wakeAt = at;
    this.handle = this.clock.setTimer(at, this.onWake);
  }

  private unschedule(): void {
    if (this.wakeAt !== undefined) this.clock.clearTimer(this.handle);
    this.handle = undefined;
    this.wakeAt = undefined;
  }
}
