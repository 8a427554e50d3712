import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type CountingReporter,
  countingReporter,
  RefError,
  type RefFault,
  type RefReporter,
  RefSet,
  throwingReporter,
} from "../../src/transaction/refs.js";

const OWNER = "z9hG4bK-tx-42";

function expectFault(fn: () => unknown, fault: RefFault, holder: string, owner = OWNER): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(RefError);
  const err = caught as RefError;
  expect(err).toBeInstanceOf(Error);
  expect(err.name).toBe("RefError");
  expect(err.fault).toBe(fault);
  expect(err.holder).toBe(holder);
  expect(err.owner).toBe(owner);
  expect(err.message).toContain(fault);
  expect(err.message).toContain(holder);
  expect(err.message).toContain(owner);
}

/** A RefSet of OWNER reporting to `reporter`, with these references taken in order. */
function refSet(reporter: RefReporter, ...holders: string[]): RefSet {
  const refs = new RefSet(OWNER, reporter);
  for (const h of holders) refs.take(h);
  return refs;
}

/** The same over a fresh counting reporter. */
function counted(...holders: string[]): { reporter: CountingReporter; refs: RefSet } {
  const reporter = countingReporter();
  return { reporter, refs: refSet(reporter, ...holders) };
}

describe("RefSet", () => {
  it("starts empty and unfreed", () => {
    const refs = new RefSet(OWNER, throwingReporter);
    expect(refs.ownerId).toBe(OWNER);
    expect(refs.count).toBe(0);
    expect(refs.holders()).toEqual([]);
    expect(refs.holds("table")).toBe(false);
    expect(refs.countOf("table")).toBe(0);
    expect(refs.freed).toBe(false);
  });

  it("release returns true exactly when the total count drops to zero", () => {
    const refs = refSet(throwingReporter, "table", "timer:A", "handle");
    expect(refs.count).toBe(3);
    expect(refs.release("timer:A")).toBe(false);
    expect(refs.release("table")).toBe(false);
    expect(refs.count).toBe(1);
    expect(refs.release("handle")).toBe(true);
    expect(refs.count).toBe(0);
    // Taking again after reaching zero (not freed) is legal and counts again.
    refs.take("rpc:cancel");
    expect(refs.release("rpc:cancel")).toBe(true);
  });

  it("is a multiset: the same holder may hold several references", () => {
    const refs = refSet(throwingReporter, "table", "timer:A", "handle", "timer:A", "timer:A");
    expect(refs.countOf("timer:A")).toBe(3);
    expect(refs.countOf("table")).toBe(1);
    expect(refs.countOf("cancel")).toBe(0);
    expect(refs.count).toBe(5);
    expect(refs.holders()).toEqual(["table", "timer:A", "handle", "timer:A", "timer:A"]);
    // A release drops that holder's most recent reference.
    expect(refs.release("timer:A")).toBe(false);
    expect(refs.holders()).toEqual(["table", "timer:A", "handle", "timer:A"]);
    expect(refs.release("timer:A")).toBe(false);
    expect(refs.holders()).toEqual(["table", "timer:A", "handle"]);
    expect(refs.holds("timer:A")).toBe(true);
    expect(refs.release("timer:A")).toBe(false);
    expect(refs.holds("timer:A")).toBe(false);
    expect(refs.holders()).toEqual(["table", "handle"]);
    expect(refs.release("table")).toBe(false);
    expect(refs.release("handle")).toBe(true);
  });

  it("holders() returns a copy", () => {
    const refs = refSet(throwingReporter, "table");
    const list = refs.holders();
    list.push("bogus");
    expect(refs.holders()).toEqual(["table"]);
    expect(refs.count).toBe(1);
  });

  it("reports double-release of a holder that never took a reference", () => {
    const refs = refSet(throwingReporter, "table");
    expectFault(() => refs.release("handle"), "double-release", "handle");
    expect(refs.count).toBe(1);
    expect(refs.holders()).toEqual(["table"]);
  });

  it("reports double-release when a holder releases more than it took", () => {
    const refs = refSet(throwingReporter, "timer:B", "table", "timer:B");
    refs.release("timer:B");
    refs.release("timer:B");
    expectFault(() => refs.release("timer:B"), "double-release", "timer:B");
    expect(refs.holders()).toEqual(["table"]);
  });

  it("with a non-throwing reporter, a double-release returns false and changes nothing", () => {
    const { reporter, refs } = counted();
    expect(refs.release("cancel")).toBe(false);
    refs.take("table");
    expect(refs.release("cancel")).toBe(false);
    expect(refs.count).toBe(1);
    expect(reporter.faults.map((f) => [f.fault, f.holder, f.owner])).toEqual([
      ["double-release", "cancel", OWNER],
      ["double-release", "cancel", OWNER],
    ]);
    expect(reporter.counts["double-release"]).toBe(2);
    expect(refs.release("table")).toBe(true);
  });

  it("reports take-after-free and takes nothing", () => {
    const refs = refSet(throwingReporter, "table");
    refs.release("table");
    refs.markFreed();
    expect(refs.freed).toBe(true);
    expectFault(() => refs.take("timer:K"), "take-after-free", "timer:K");
    expect(refs.count).toBe(0);
    expect(refs.holds("timer:K")).toBe(false);
  });

  it("reports release-after-free and returns false", () => {
    const { reporter, refs } = counted();
    refs.markFreed();
    expect(refs.release("handle")).toBe(false);
    expect(reporter.faults).toHaveLength(1);
    expect(reporter.faults[0]!.fault).toBe("release-after-free");
    expect(reporter.faults[0]!.holder).toBe("handle");
    expect(reporter.faults[0]!.owner).toBe(OWNER);

    const strict = new RefSet("tx-7", throwingReporter);
    strict.markFreed();
    expectFault(() => strict.release("rpc:cancel"), "release-after-free", "rpc:cancel", "tx-7");
  });

  it("reports every reference still held at free as a leak, with its holder", () => {
    const { reporter, refs } = counted("table", "timer:D", "timer:D");
    refs.release("table");
    refs.markFreed();
    expect(refs.freed).toBe(true);
    expect(reporter.faults.map((f) => [f.fault, f.holder, f.owner])).toEqual([
      ["leak", "timer:D", OWNER],
      ["leak", "timer:D", OWNER],
    ]);
    expect(reporter.counts.leak).toBe(2);
    // The leaked references stay visible for audit; they cannot be released any more.
    expect(refs.holders()).toEqual(["timer:D", "timer:D"]);
    expect(refs.release("timer:D")).toBe(false);
    expect(reporter.counts["release-after-free"]).toBe(1);

    const strict = new RefSet("tx-8", throwingReporter);
    strict.take("handle");
    expectFault(() => strict.markFreed(), "leak", "handle", "tx-8");
    expect(strict.freed).toBe(true);
  });

  it("reportLeaks audits outstanding references without freeing", () => {
    const { reporter, refs } = counted();
    expect(refs.reportLeaks()).toBe(0);
    refs.take("table");
    refs.take("handle");
    expect(refs.reportLeaks()).toBe(2);
    expect(reporter.faults.map((f) => f.holder)).toEqual(["table", "handle"]);
    expect(refs.freed).toBe(false);
    expect(refs.release("table")).toBe(false);
    expect(refs.release("handle")).toBe(true);
  });

  it("reports a second markFreed", () => {
    const { reporter, refs } = counted();
    refs.markFreed();
    expect(reporter.total).toBe(0);
    refs.markFreed();
    expect(reporter.faults.map((f) => [f.fault, f.holder])).toEqual([["release-after-free", "(free)"]]);
  });

  it("a clean lifecycle reports nothing", () => {
    const { reporter, refs } = counted("table", "handle", "timer:A", "timer:B");
    refs.release("timer:A");
    refs.release("handle");
    refs.release("timer:B");
    expect(refs.release("table")).toBe(true);
    refs.markFreed();
    expect(reporter.total).toBe(0);
    expect(reporter.faults).toEqual([]);
  });

  it("property: agrees with a counting model; release is true exactly at zero", () => {
    const holderArb = fc.constantFrom("table", "timer:A", "timer:B", "handle", "cancel", "rpc:cancel");
    const opArb = fc.oneof(
      fc.record({ t: fc.constant("take" as const), h: holderArb }),
      fc.record({ t: fc.constant("release" as const), h: holderArb }),
      fc.record({ t: fc.constant("free" as const) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const { reporter, refs } = counted();
        const model = new Map<string, number>();
        let order: string[] = [];
        let freed = false;
        const expected: [RefFault, string][] = [];
        const total = () => [...model.values()].reduce((a, b) => a + b, 0);
        for (const op of ops) {
          if (op.t === "take") {
            refs.take(op.h);
            if (freed) expected.push(["take-after-free", op.h]);
            else {
              model.set(op.h, (model.get(op.h) ?? 0) + 1);
              order.push(op.h);
            }
          } else if (op.t === "release") {
            const last = refs.release(op.h);
            if (freed) {
              expected.push(["release-after-free", op.h]);
              expect(last).toBe(false);
            } else if ((model.get(op.h) ?? 0) === 0) {
              expected.push(["double-release", op.h]);
              expect(last).toBe(false);
            } else {
              model.set(op.h, model.get(op.h)! - 1);
              const i = order.lastIndexOf(op.h);
              order = [...order.slice(0, i), ...order.slice(i + 1)];
              expect(last).toBe(total() === 0);
            }
          } else {
            refs.markFreed();
            if (freed) expected.push(["release-after-free", "(free)"]);
            else for (const h of order) expected.push(["leak", h]);
            freed = true;
          }
          expect(refs.count).toBe(total());
          expect(refs.holders()).toEqual(order);
          expect(refs.freed).toBe(freed);
          for (const h of ["table", "timer:A", "handle"]) {
            expect(refs.countOf(h)).toBe(model.get(h) ?? 0);
            expect(refs.holds(h)).toBe((model.get(h) ?? 0) > 0);
          }
        }
        expect(reporter.faults.map((f) => [f.fault, f.holder])).toEqual(expected);
        expect(reporter.faults.every((f) => f.owner === OWNER)).toBe(true);
        expect(reporter.total).toBe(expected.length);
      }),
      { numRuns: 200 },
    );
  });
});

describe("reporters", () => {
  it("throwingReporter throws the error it is given", () => {
    const err = new RefError("leak", "handle", OWNER);
    expect(() => throwingReporter(err)).toThrow(err);
  });

  it("countingReporter counts per fault, logs, and keeps a bounded list", () => {
    const logged: string[] = [];
    const reporter = countingReporter({ log: (e) => logged.push(e.holder), keep: 2 });
    const refs = new RefSet(OWNER, reporter);
    refs.release("a");
    refs.release("b");
    refs.take("c");
    refs.markFreed();
    refs.take("d");
    refs.release("e");
    expect(reporter.total).toBe(5);
    expect(reporter.counts).toEqual({
      "double-release": 2,
      "take-after-free": 1,
      "release-after-free": 1,
      leak: 1,
    });
    expect(reporter.faults.map((f) => f.holder)).toEqual(["a", "b"]);
    expect(logged).toEqual(["a", "b", "c", "d", "e"]);
  });

  it("separate countingReporters do not share state", () => {
    const r1 = countingReporter();
    const r2 = countingReporter();
    new RefSet("x", r1).release("h");
    expect(r1.total).toBe(1);
    expect(r2.total).toBe(0);
    expect(r2.faults).toEqual([]);
    expect(r2.counts["double-release"]).toBe(0);
  });
});
