/**
 * One shared timer wheel for routes, on the engine's clock: every pending
 * callback (an answer-after delay, …) sits in the core's TimerService, which
 * keeps a single clock wakeup for the earliest one — not one setTimeout each.
 */
import type { Clock } from "@siptm/core";
import { type TimerEntry, TimerService } from "@siptm/core/internal";

export class Scheduler {
  private readonly service: TimerService<() => void>;

  constructor(clock: Clock, onError: (err: unknown) => void) {
    this.service = new TimerService<() => void>(clock, (entry) => {
      try {
        entry.owner();
      } catch (err) {
        onError(err);
      }
    });
  }

  /** Run `fn` once after `ms`; the returned function cancels it (true when it was still pending). */
  after(ms: number, fn: () => void): () => boolean {
    const entry: TimerEntry<() => void> = this.service.arm(fn, 0, ms);
    return () => this.service.cancel(entry);
  }

  /** Pending callbacks. */
  get size(): number {
    return this.service.size;
  }

  /** Stop: nothing pending runs any more. */
  close(): void {
    this.service.close();
  }
}
