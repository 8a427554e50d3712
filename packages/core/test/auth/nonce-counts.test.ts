import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryNonceCounts } from "../../src/index.js";

describe("MemoryNonceCounts", () => {
  it("each count once per nonce; increasing accepted; late within the window once; below it refused", () => {
    const s = new MemoryNonceCounts({ window: 4 });
    const use = (nc: number, nonce = "n1") => s.use(nonce, nc, 0, 1000, 0);
    expect([use(1), use(1), use(3), use(2), use(2), use(10)]).toEqual([
      "ok",
      "replay",
      "ok",
      "ok",
      "replay",
      "ok",
    ]);
    expect([use(7), use(6), use(5), use(9)]).toEqual(["ok", "replay", "replay", "ok"]); // 6 = 10 - 4: out of the window
    expect(use(1, "n2")).toBe("ok"); // another nonce, its own counts
    expect(use(0)).toBe("replay");
    expect(use(1.5)).toBe("replay");
  });

  it("a jump of 32 or more clears the window", () => {
    const s = new MemoryNonceCounts();
    expect(s.use("n", 1, 0, 1000, 0)).toBe("ok");
    expect(s.use("n", 100, 0, 1000, 0)).toBe("ok");
    expect(s.use("n", 69, 0, 1000, 0)).toBe("ok");
    expect(s.use("n", 68, 0, 1000, 0)).toBe("replay");
    expect(s.use("n", 0xffffffff, 0, 1000, 0)).toBe("ok");
    expect(s.use("n", 0xffffffff, 0, 1000, 0)).toBe("replay");
  });

  it("bounded: the least recently used is forgotten; a nonce issued before it is unknown, one after is new", () => {
    const s = new MemoryNonceCounts({ maxNonces: 2 });
    expect(s.use("a", 1, 10, 1000, 50)).toBe("ok");
    expect(s.use("b", 1, 20, 1000, 50)).toBe("ok");
    expect(s.use("a", 2, 10, 1000, 50)).toBe("ok"); // a is now the most recently used
    expect(s.use("c", 1, 30, 1000, 50)).toBe("ok"); // b forgotten: watermark 20
    expect(s.size).toBe(2);
    expect(s.use("b", 1, 20, 1000, 50)).toBe("unknown"); // could be a replay: not "ok"
    expect(s.use("d", 1, 15, 1000, 50)).toBe("unknown"); // issued before the watermark, never seen
    expect(s.use("e", 1, 21, 1000, 50)).toBe("ok"); // after it: cannot have been forgotten
    expect(s.use("a", 2, 10, 1000, 50)).toBe("unknown"); // a was evicted by e (LRU), watermark stays ≥ 10
  });

  it("expired nonces are dropped without raising the watermark", () => {
    const s = new MemoryNonceCounts({ maxNonces: 2 });
    s.use("old", 1, 100, 200, 150);
    s.use("new", 1, 300, 1000, 350);
    s.use("newer", 1, 400, 1000, 450); // "old" expired: dropped, not forgotten
    expect(s.size).toBe(2);
    expect(s.use("later", 1, 120, 1000, 450)).toBe("ok"); // watermark untouched by the expired one... evicts "new"
    expect(s.use("x", 1, 299, 1000, 450)).toBe("unknown"); // ...whose issue time 300 is the watermark now
  });

  it("never holds more than maxNonces, whatever the sequence (fuzz)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 50 }), fc.integer({ min: 1, max: 40 })), {
          maxLength: 300,
        }),
        (ops) => {
          const s = new MemoryNonceCounts({ maxNonces: 8 });
          const seen = new Set<string>();
          let t = 0;
          for (const [n, nc] of ops) {
            t++;
            const r = s.use(`n${n}`, nc, n, 1_000_000, t);
            // Never "ok" twice for the same nonce and count.
            if (r === "ok") {
              expect(seen.has(`${n}/${nc}`)).toBe(false);
              seen.add(`${n}/${nc}`);
            }
            expect(s.size).toBeLessThanOrEqual(8);
          }
        },
      ),
      { numRuns: 200, seed: 8760 },
    );
  });

  it("rejects bad options", () => {
    expect(() => new MemoryNonceCounts({ maxNonces: 0 })).toThrow(RangeError);
    expect(() => new MemoryNonceCounts({ window: 33 })).toThrow(RangeError);
  });
});
