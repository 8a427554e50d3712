import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/clock.js";
import { type TimerEntry, TimerQueues, TimerService } from "../../src/transaction/timers.js";
import { mulberry32 } from "../../src/transport/memory.js";

type Fired = [owner: string, kind: number, deadline: number];

function collect(q: TimerQueues<string>, now: number): Fired[] {
  const out: Fired[] = [];
  q.expire(now, (e) => out.push([e.owner, e.kind, e.deadline]));
  return out;
}

/** Naive reference model: an unsorted array, sorted on demand by (deadline, arming order). */
class ModelQueues {
  private seq = 0;
  armed: { id: number; deadline: number; seq: number }[] = [];
  arm(id: number, now: number, duration: number): void {
    this.armed.push({ id, deadline: now + duration, seq: this.seq++ });
  }
  cancel(id: number): boolean {
    const i = this.armed.findIndex((r) => r.id === id);
    if (i < 0) return false;
    this.armed.splice(i, 1);
    return true;
  }
  nextDeadline(): number | undefined {
    let min: number | undefined;
    for (const r of this.armed) if (min === undefined || r.deadline < min) min = r.deadline;
    return min;
  }
  /** Remove and return the earliest due timer, if any. */
  popFirst(now: number): number | undefined {
    let best = -1;
    for (let i = 0; i < this.armed.length; i++) {
      const r = this.armed[i]!;
      if (r.deadline > now) continue;
      const b = this.armed[best];
      if (!b || r.deadline < b.deadline || (r.deadline === b.deadline && r.seq < b.seq)) best = i;
    }
    if (best < 0) return undefined;
    return this.armed.splice(best, 1)[0]!.id;
  }
  expire(now: number): number[] {
    const due = this.armed.filter((r) => r.deadline <= now);
    this.armed = this.armed.filter((r) => r.deadline > now);
    due.sort((x, y) => x.deadline - y.deadline || x.seq - y.seq);
    return due.map((r) => r.id);
  }
}

describe("TimerQueues", () => {
  it("starts empty", () => {
    const q = new TimerQueues<string>();
    expect(q.size).toBe(0);
    expect(q.nextDeadline()).toBeUndefined();
    expect(collect(q, 1e9)).toEqual([]);
  });

  it("fires in deadline order across several durations", () => {
    const q = new TimerQueues<string>();
    // T1=500: A (500), B (32000), E (500), F (32000), K (5000), G (500), plus 64*T1.
    q.arm("tx1", 1, 0, 32_000);
    q.arm("tx2", 2, 0, 500);
    q.arm("tx3", 3, 10, 5_000);
    q.arm("tx4", 4, 20, 500);
    q.arm("tx5", 5, 30, 1_000);
    q.arm("tx6", 6, 40, 2_000);
    q.arm("tx7", 7, 50, 32_000);
    expect(q.size).toBe(7);
    expect(q.nextDeadline()).toBe(500);
    expect(collect(q, 499)).toEqual([]);
    expect(collect(q, 1_030)).toEqual([
      ["tx2", 2, 500],
      ["tx4", 4, 520],
      ["tx5", 5, 1_030],
    ]);
    expect(q.size).toBe(4);
    expect(q.nextDeadline()).toBe(2_040);
    expect(collect(q, 100_000)).toEqual([
      ["tx6", 6, 2_040],
      ["tx3", 3, 5_010],
      ["tx1", 1, 32_000],
      ["tx7", 7, 32_050],
    ]);
    expect(q.size).toBe(0);
    expect(q.nextDeadline()).toBeUndefined();
  });

  it("breaks deadline ties by arming order, within and across durations", () => {
    const q = new TimerQueues<string>();
    q.arm("a", 0, 500, 500); // 1000
    q.arm("b", 0, 0, 1_000); // 1000
    q.arm("c", 0, 500, 500); // 1000
    q.arm("d", 0, 1_000, 0); // 1000
    q.arm("e", 0, 900, 100); // 1000
    q.arm("f", 0, 0, 1_000); // 1000
    expect(collect(q, 1_000).map((f) => f[0])).toEqual(["a", "b", "c", "d", "e", "f"]);
  });

  it("fires a zero-duration timer at once", () => {
    const q = new TimerQueues<string>();
    q.arm("z", 9, 42, 0);
    expect(q.nextDeadline()).toBe(42);
    expect(collect(q, 42)).toEqual([["z", 9, 42]]);
  });

  it("returns how many fired", () => {
    const q = new TimerQueues<string>();
    for (let i = 0; i < 10; i++) q.arm(`t${i}`, 0, i, 100);
    expect(q.expire(104, () => {})).toBe(5);
    expect(q.expire(104, () => {})).toBe(0);
    expect(q.expire(1_000, () => {})).toBe(5);
  });

  it("cancel is honoured, reports false when already fired or cancelled", () => {
    const q = new TimerQueues<string>();
    const a = q.arm("a", 0, 0, 100);
    const b = q.arm("b", 0, 0, 200);
    expect(q.isArmed(a)).toBe(true);
    expect(q.cancel(a)).toBe(true);
    expect(q.isArmed(a)).toBe(false);
    expect(q.cancel(a)).toBe(false);
    expect(q.size).toBe(1);
    expect(collect(q, 1_000)).toEqual([["b", 0, 200]]);
    expect(q.isArmed(b)).toBe(false);
    expect(q.cancel(b)).toBe(false);
    expect(q.size).toBe(0);
  });

  it("ignores entries that belong to another queue set, or are not entries", () => {
    const q1 = new TimerQueues<string>();
    const q2 = new TimerQueues<string>();
    const e = q1.arm("x", 0, 0, 10);
    expect(q2.isArmed(e)).toBe(false);
    expect(q2.cancel(e)).toBe(false);
    expect(q1.isArmed(e)).toBe(true);
    const fake: TimerEntry<string> = { owner: "x", kind: 0, deadline: 10 };
    expect(q1.cancel(fake)).toBe(false);
    expect(q1.isArmed(fake)).toBe(false);
    expect(q1.size).toBe(1);
  });

  it("tracks nextDeadline through cancels of heads, middles and tails", () => {
    const q = new TimerQueues<string>();
    const a = q.arm("a", 0, 0, 100); // 100
    const b = q.arm("b", 0, 10, 100); // 110
    const c = q.arm("c", 0, 20, 100); // 120
    const d = q.arm("d", 0, 0, 500); // 500
    const e = q.arm("e", 0, 5, 50); // 55
    expect(q.nextDeadline()).toBe(55);
    q.cancel(e);
    expect(q.nextDeadline()).toBe(100);
    q.cancel(b);
    expect(q.nextDeadline()).toBe(100);
    q.cancel(a);
    expect(q.nextDeadline()).toBe(120);
    q.cancel(c);
    expect(q.nextDeadline()).toBe(500);
    expect(q.size).toBe(1);
    q.cancel(d);
    expect(q.nextDeadline()).toBeUndefined();
    expect(q.size).toBe(0);
    // Lists emptied and refilled still work (pool reuse).
    q.arm("f", 0, 1_000, 50);
    q.arm("g", 0, 1_000, 500);
    expect(q.nextDeadline()).toBe(1_050);
    expect(collect(q, 2_000).map((f) => f[0])).toEqual(["f", "g"]);
  });

  it("inserts out-of-order deadlines (now going back) at the right place", () => {
    const q = new TimerQueues<string>();
    q.arm("t100", 0, 100, 1_000); // 1100
    q.arm("t300", 0, 300, 1_000); // 1300
    q.arm("t200", 0, 200, 1_000); // 1200: middle
    q.arm("t50", 0, 50, 1_000); // 1050: new head
    q.arm("t300b", 0, 300, 1_000); // 1300 tie with tail: after it
    q.arm("t200b", 0, 200, 1_000); // 1200 tie in the middle: after t200
    q.arm("t400", 0, 400, 1_000); // 1400: tail
    expect(q.nextDeadline()).toBe(1_050);
    expect(collect(q, 5_000).map((f) => f[0])).toEqual([
      "t50",
      "t100",
      "t200",
      "t200b",
      "t300",
      "t300b",
      "t400",
    ]);
  });

  it("cancel from inside fire: a cancelled timer does not fire, cancelling oneself is false", () => {
    const q = new TimerQueues<string>();
    const order: string[] = [];
    const entries = new Map<string, TimerEntry<string>>();
    for (const [name, dur] of [
      ["a", 100],
      ["b", 200],
      ["c", 100],
      ["d", 300],
      ["e", 400],
    ] as const) {
      entries.set(name, q.arm(name, 0, 0, dur));
    }
    const selfCancel: boolean[] = [];
    q.expire(1_000, (e) => {
      order.push(e.owner);
      selfCancel.push(q.cancel(e));
      // "a" cancels "b" (other duration) and "c" (same duration, next in its list).
      if (e.owner === "a") {
        expect(q.cancel(entries.get("b")!)).toBe(true);
        expect(q.cancel(entries.get("c")!)).toBe(true);
      }
      // "d" cancels "e", which is due in this same run.
      if (e.owner === "d") expect(q.cancel(entries.get("e")!)).toBe(true);
    });
    expect(order).toEqual(["a", "d"]);
    expect(selfCancel).toEqual([false, false]);
    expect(q.size).toBe(0);
  });

  it("arm from inside fire: fires in the same call only if already due", () => {
    const q = new TimerQueues<string>();
    const order: Fired[] = [];
    q.arm("first", 1, 0, 100);
    q.arm("later", 1, 0, 300);
    q.expire(200, (e) => {
      order.push([e.owner, e.kind, e.deadline]);
      if (e.owner === "first") {
        q.arm("zero", 2, 200, 0); // deadline 200 <= 200: fires now
        q.arm("past", 3, 50, 100); // deadline 150 <= 200: fires now, before "zero"
        q.arm("future", 4, 200, 1); // deadline 201: not now
        q.arm("tie", 5, 100, 100); // deadline 200 == now: fires, after "zero"
      }
    });
    expect(order).toEqual([
      ["first", 1, 100],
      ["past", 3, 150],
      ["zero", 2, 200],
      ["tie", 5, 200],
    ]);
    expect(q.size).toBe(2);
    expect(q.nextDeadline()).toBe(201);
    expect(collect(q, 1_000).map((f) => f[0])).toEqual(["future", "later"]);
  });

  it("a timer re-armed from its own fire with duration 0 at a fixed now fires once per call", () => {
    const q = new TimerQueues<string>();
    q.arm("loop", 0, 0, 10);
    let n = 0;
    // Re-arm at now + 1 each time: must stop when the deadline passes `now`.
    q.expire(5_000, (e) => {
      n++;
      q.arm(e.owner, 0, e.deadline, 1);
    });
    expect(n).toBe(4_991); // deadlines 10..5000
    expect(q.size).toBe(1);
    expect(q.nextDeadline()).toBe(5_001);
  });

  it("keeps unfired timers armed when fire throws", () => {
    const q = new TimerQueues<string>();
    q.arm("a", 0, 0, 10);
    q.arm("b", 0, 0, 20);
    q.arm("c", 0, 0, 30);
    const seen: string[] = [];
    expect(() =>
      q.expire(100, (e) => {
        seen.push(e.owner);
        if (e.owner === "b") throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(seen).toEqual(["a", "b"]);
    expect(q.size).toBe(1);
    expect(collect(q, 100).map((f) => f[0])).toEqual(["c"]);
  });

  it("rejects negative, NaN and infinite durations", () => {
    const q = new TimerQueues<string>();
    expect(() => q.arm("x", 0, 0, -1)).toThrow(RangeError);
    expect(() => q.arm("x", 0, 0, Number.NaN)).toThrow(RangeError);
    expect(() => q.arm("x", 0, 0, Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(() => q.arm("x", 0, Number.NaN, 1)).toThrow(RangeError);
    expect(q.size).toBe(0);
  });

  it("handles many distinct durations coming and going", () => {
    const q = new TimerQueues<string>();
    const model = new ModelQueues();
    let now = 0;
    for (let round = 0; round < 50; round++) {
      for (let d = 0; d < 40; d++) {
        const id = round * 100 + d;
        q.arm(String(id), 0, now, (d * 7 + round) % 53);
        model.arm(id, now, (d * 7 + round) % 53);
      }
      now += 30;
      expect(collect(q, now).map((f) => Number(f[0]))).toEqual(model.expire(now));
      expect(q.nextDeadline()).toBe(model.nextDeadline());
    }
  });

  it("100k arm/cancel/expire in random order agree with a naive model", () => {
    const rand = mulberry32(0xc0ffee); // deterministic, for the large randomized run
    const durations = [0, 500, 1_000, 2_000, 4_000, 4_000, 5_000, 32_000, 32_000, 64 * 500];
    const q = new TimerQueues<number>();
    const model = new ModelQueues();
    const live: { id: number; entry: TimerEntry<number> }[] = [];
    let now = 0;
    let nextId = 0;
    let fired = 0;
    for (let op = 0; op < 100_000; op++) {
      const r = rand();
      if (r < 0.55 || live.length === 0) {
        const id = nextId++;
        // Mostly the current time; sometimes a stale `now` to exercise out-of-order insertion.
        const at = rand() < 0.05 ? Math.max(0, now - Math.floor(rand() * 3_000)) : now;
        const dur =
          rand() < 0.9 ? durations[Math.floor(rand() * durations.length)]! : Math.floor(rand() * 10_000);
        live.push({ id, entry: q.arm(id, 0, at, dur) });
        model.arm(id, at, dur);
      } else if (r < 0.95) {
        const i = Math.floor(rand() * live.length);
        const { id, entry } = live[i]!;
        live[i] = live[live.length - 1]!;
        live.pop();
        expect(q.cancel(entry)).toBe(model.cancel(id));
      } else {
        now += Math.floor(rand() * 2_000);
        const got: number[] = [];
        q.expire(now, (e) => got.push(e.owner));
        const want = model.expire(now);
        expect(got).toEqual(want);
        fired += got.length;
      }
      if ((op & 1023) === 0) {
        expect(q.size).toBe(model.armed.length);
        expect(q.nextDeadline()).toBe(model.nextDeadline());
      }
    }
    expect(q.size).toBe(model.armed.length);
    expect(fired).toBeGreaterThan(1_000);
    const rest: number[] = [];
    q.expire(Number.MAX_SAFE_INTEGER, (e) => rest.push(e.owner));
    expect(rest).toEqual(model.expire(Number.MAX_SAFE_INTEGER));
    expect(q.size).toBe(0);
  });

  type Op =
    | { t: "arm"; dt: number; dur: number; back: number }
    | { t: "cancel"; pick: number }
    | { t: "expire"; dt: number }
    | { t: "fireArm"; dur: number }
    | { t: "fireCancel"; pick: number };

  const opArb: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        t: fc.constant("arm" as const),
        dt: fc.nat(50),
        dur: fc.oneof(fc.constantFrom(0, 5, 10, 20, 40, 80, 160), fc.nat(200)),
        back: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(100) }),
      }),
    },
    { weight: 3, arbitrary: fc.record({ t: fc.constant("cancel" as const), pick: fc.nat() }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("expire" as const), dt: fc.nat(120) }) },
    {
      weight: 1,
      arbitrary: fc.record({ t: fc.constant("fireArm" as const), dur: fc.constantFrom(0, 0, 1, 10, 20) }),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("fireCancel" as const), pick: fc.nat() }) },
  );

  it("property: matches a sorted-array model, including arm/cancel from inside fire", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
        const q = new TimerQueues<number>();
        const model = new ModelQueues();
        const entries = new Map<number, TimerEntry<number>>();
        let now = 0;
        let nextId = 0;
        // An action to run from inside the next expiry's first fire.
        let fireAction: Op | undefined;
        const arm = (at: number, dur: number): void => {
          const id = nextId++;
          entries.set(id, q.arm(id, 0, at, dur));
          model.arm(id, at, dur);
        };
        const cancelPick = (pick: number): void => {
          const ids = [...entries.keys()].filter((id) => q.isArmed(entries.get(id)!));
          expect(ids.length).toBe(model.armed.length);
          if (ids.length === 0) return;
          const id = ids[pick % ids.length]!;
          expect(q.cancel(entries.get(id)!)).toBe(true);
          expect(model.cancel(id)).toBe(true);
          expect(q.cancel(entries.get(id)!)).toBe(false);
        };
        for (const op of ops) {
          switch (op.t) {
            case "arm":
              now += op.dt;
              arm(Math.max(0, now - op.back), op.dur);
              break;
            case "cancel":
              cancelPick(op.pick);
              break;
            case "fireArm":
            case "fireCancel":
              fireAction = op;
              break;
            case "expire": {
              now += op.dt;
              // Step the model in lockstep: each fire must be the model's earliest due
              // timer; the pending action runs inside the first fire, on both sides.
              const action = fireAction;
              fireAction = undefined;
              let first = true;
              let count = 0;
              const n = q.expire(now, (e) => {
                count++;
                expect(q.isArmed(e)).toBe(false);
                expect(model.popFirst(now)).toBe(e.owner);
                if (first && action) {
                  if (action.t === "fireArm") arm(e.deadline, action.dur);
                  else if (action.t === "fireCancel") cancelPick(action.pick);
                }
                first = false;
              });
              expect(model.popFirst(now)).toBeUndefined();
              expect(n).toBe(count);
              break;
            }
          }
          expect(q.size).toBe(model.armed.length);
          expect(q.nextDeadline()).toBe(model.nextDeadline());
        }
      }),
      { numRuns: 150 },
    );
  });
});

/** A VirtualClock that counts how often the service arms and clears wakeups. */
class CountingClock extends VirtualClock {
  sets = 0;
  clears = 0;
  override setTimer(at: number, fn: () => void): unknown {
    this.sets++;
    return super.setTimer(at, fn);
  }
  override clearTimer(handle: unknown): void {
    this.clears++;
    super.clearTimer(handle);
  }
}

describe("TimerService", () => {
  it("fires at the deadline, with exactly one clock wakeup pending", () => {
    const clock = new CountingClock();
    const fired: [string, number][] = [];
    const svc = new TimerService<string>(clock, (e) => {
      expect(clock.pending).toBeLessThanOrEqual(1);
      fired.push([e.owner, clock.now()]);
    });
    expect(clock.pending).toBe(0);
    svc.arm("b", 0, 32_000);
    expect(clock.pending).toBe(1);
    svc.arm("a", 0, 500);
    expect(clock.pending).toBe(1);
    svc.arm("c", 0, 5_000);
    svc.arm("d", 0, 500);
    expect(clock.pending).toBe(1);
    expect(svc.size).toBe(4);
    expect(svc.nextDeadline()).toBe(500);
    clock.advance(499);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual([
      ["a", 500],
      ["d", 500],
    ]);
    expect(clock.pending).toBe(1);
    clock.advance(100_000);
    expect(fired).toEqual([
      ["a", 500],
      ["d", 500],
      ["c", 5_000],
      ["b", 32_000],
    ]);
    expect(clock.pending).toBe(0);
    expect(svc.size).toBe(0);
  });

  // Tests of the same form (arm, advance, the fired list) with their own deadlines: each is its own case.
  it("re-arms the clock only when the earliest deadline moves earlier, or after expiry", () => {
    const clock = new CountingClock();
    const svc = new TimerService<string>(clock, () => {});
    svc.arm("x", 0, 1_000);
    expect(clock.sets).toBe(1);
    svc.arm("later", 0, 2_000);
    svc.arm("same", 0, 1_000);
    expect(clock.sets).toBe(1);
    svc.arm("earlier", 0, 10);
    expect(clock.sets).toBe(2);
    expect(clock.clears).toBe(1);
    expect(clock.pending).toBe(1);
    clock.advance(10); // fires "earlier", re-arms for 1000
    expect(clock.sets).toBe(3);
    expect(clock.pending).toBe(1);
    clock.advance(990); // fires "x" and "same", re-arms for 2000
    expect(clock.sets).toBe(4);
    clock.advance(1_000);
    expect(clock.sets).toBe(4);
    expect(clock.pending).toBe(0);
  });

  it("a wakeup left by cancelled timers fires nothing and re-arms for the next one", () => {
    const clock = new CountingClock();
    const fired: string[] = [];
    const svc = new TimerService<string>(clock, (e) => fired.push(e.owner));
    const a = svc.arm("a", 0, 100);
    svc.arm("b", 0, 400);
    expect(svc.cancel(a)).toBe(true);
    expect(svc.cancel(a)).toBe(false);
    expect(svc.isArmed(a)).toBe(false);
    expect(clock.pending).toBe(1);
    clock.advance(100);
    expect(fired).toEqual([]);
    expect(clock.pending).toBe(1);
    clock.advance(300);
    expect(fired).toEqual(["b"]);
  });

  it("clears the wakeup when the last timer is cancelled", () => {
    const clock = new VirtualClock();
    const svc = new TimerService<string>(clock, () => {
      throw new Error("must not fire");
    });
    const a = svc.arm("a", 0, 100);
    const b = svc.arm("b", 0, 200);
    svc.cancel(b);
    expect(clock.pending).toBe(1);
    svc.cancel(a);
    expect(clock.pending).toBe(0);
    clock.advance(1_000);
    // A new timer after going idle arms a fresh wakeup.
    const fired: number[] = [];
    const svc2 = new TimerService<string>(clock, () => fired.push(clock.now()));
    svc2.arm("c", 0, 50);
    clock.advance(50);
    expect(fired).toEqual([1_050]);
  });

  it("drives a Timer A retransmission schedule armed from inside fire", () => {
    const T1 = 500;
    const clock = new VirtualClock(1_000);
    const sent: number[] = [];
    let interval = T1;
    let timerA: TimerEntry<string> | undefined;
    let timedOut = -1;
    const svc: TimerService<string> = new TimerService<string>(clock, (e) => {
      expect(clock.pending).toBe(0); // the service re-arms after the run
      if (e.kind === 1) {
        sent.push(clock.now());
        interval *= 2;
        timerA = svc.arm(e.owner, 1, interval);
      } else {
        timedOut = clock.now();
        if (timerA) svc.cancel(timerA);
      }
    });
    timerA = svc.arm("inv", 1, interval);
    const timerB = svc.arm("inv", 2, 64 * T1);
    for (let t = 0; t < 40_000; t += 100) {
      clock.advance(100);
      expect(clock.pending).toBeLessThanOrEqual(1);
    }
    expect(sent).toEqual([1_500, 2_500, 4_500, 8_500, 16_500, 32_500]);
    expect(timedOut).toBe(33_000);
    expect(svc.isArmed(timerB)).toBe(false);
    expect(svc.size).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it("a zero-duration timer armed from fire runs in the same wakeup", () => {
    const clock = new CountingClock();
    const fired: [string, number][] = [];
    const svc: TimerService<string> = new TimerService<string>(clock, (e) => {
      fired.push([e.owner, clock.now()]);
      if (e.owner === "a") svc.arm("now", 0, 0);
    });
    // The same form as the tests above (arm, advance, the fired list), with this case's own deadlines.
    svc.arm("a", 0, 100);
    svc.arm("b", 0, 100);
    clock.advance(100);
    expect(fired).toEqual([
      ["a", 100],
      ["b", 100],
      ["now", 100],
    ]);
    expect(clock.sets).toBe(1);
    expect(clock.pending).toBe(0);
  });

  it("stays armed for the remaining timers when fire throws", () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    const svc = new TimerService<string>(clock, (e) => {
      fired.push(e.owner);
      if (e.owner === "bad") throw new Error("handler failed");
    });
    svc.arm("bad", 0, 10);
    svc.arm("same-time", 0, 10);
    svc.arm("good", 0, 20);
    expect(() => clock.advance(10)).toThrow("handler failed");
    expect(clock.pending).toBe(1);
    clock.advance(100);
    expect(fired).toEqual(["bad", "same-time", "good"]);
    expect(clock.pending).toBe(0);
  });

  it("close() cancels the wakeup; nothing fires afterwards", () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    const svc = new TimerService<string>(clock, (e) => fired.push(e.owner));
    svc.arm("a", 0, 10);
    expect(svc.now()).toBe(0);
    svc.close();
    expect(svc.closed).toBe(true);
    expect(clock.pending).toBe(0);
    const b = svc.arm("b", 0, 5);
    expect(clock.pending).toBe(0);
    clock.advance(1_000);
    expect(fired).toEqual([]);
    expect(svc.size).toBe(2);
    expect(svc.cancel(b)).toBe(true);
    expect(svc.size).toBe(1);
  });

  it("property: with a VirtualClock, fires each timer at its deadline, in order, one wakeup at most", () => {
    type SOp = { t: "arm"; dur: number } | { t: "cancel"; pick: number } | { t: "advance"; dt: number };
    const sop: fc.Arbitrary<SOp> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          t: fc.constant("arm" as const),
          dur: fc.oneof(fc.constantFrom(0, 500, 1_000, 2_000, 4_000, 32_000), fc.nat(5_000)),
        }),
      },
      { weight: 2, arbitrary: fc.record({ t: fc.constant("cancel" as const), pick: fc.nat() }) },
      { weight: 3, arbitrary: fc.record({ t: fc.constant("advance" as const), dt: fc.nat(3_000) }) },
    );
    fc.assert(
      fc.property(fc.array(sop, { maxLength: 100 }), (ops) => {
        const clock = new VirtualClock();
        const model = new ModelQueues();
        const fired: [number, number][] = [];
        const svc = new TimerService<number>(clock, (e) => {
          expect(clock.now()).toBe(e.deadline);
          fired.push([e.owner, e.deadline]);
        });
        const entries: TimerEntry<number>[] = [];
        let expectedFired: number[] = [];
        for (const op of ops) {
          if (op.t === "arm") {
            const id = entries.length;
            entries.push(svc.arm(id, 0, op.dur));
            model.arm(id, clock.now(), op.dur);
          } else if (op.t === "cancel") {
            if (entries.length === 0) continue;
            const id = op.pick % entries.length;
            expect(svc.cancel(entries[id]!)).toBe(model.cancel(id));
          } else {
            clock.advance(op.dt);
            expectedFired = expectedFired.concat(model.expire(clock.now()));
          }
          expect(clock.pending).toBeLessThanOrEqual(1);
          expect(clock.pending).toBe(svc.size > 0 ? 1 : 0);
          expect(svc.size).toBe(model.armed.length);
          expect(fired.map((f) => f[0])).toEqual(expectedFired);
        }
        clock.advance(1_000_000);
        expect(fired.map((f) => f[0])).toEqual(expectedFired.concat(model.expire(clock.now())));
        expect(clock.pending).toBe(0);
      }),
      { numRuns: 150 },
    );
  });
});
