// The per-source token bucket (transport/ratelimit.ts), on an injected clock.
import { describe, expect, it } from "vitest";
import { SourceRateLimiter } from "../../src/transport/ratelimit.js";

function limiter(rate: number, burst?: number, sources?: number) {
  const clock = { t: 0 };
  const l = new SourceRateLimiter({ rate, burst, sources }, () => clock.t);
  return { l, clock };
}

const take = (l: SourceRateLimiter, source: string, n: number) =>
  Array.from({ length: n }, () => l.allow(source)).filter(Boolean).length;

describe("SourceRateLimiter", () => {
  it("lets a burst through, then refuses a source over its rate; another source is not affected", () => {
    const { l } = limiter(10, 5);
    expect(take(l, "192.0.2.1", 8)).toBe(5);
    expect(l.allow("192.0.2.1")).toBe(false);
    expect(take(l, "192.0.2.2", 5)).toBe(5);
    expect(take(l, "2001:db8::1", 5)).toBe(5);
  });

  it("refills at the rate, never above the burst", () => {
    const { l, clock } = limiter(10, 5);
    expect(take(l, "a", 5)).toBe(5);
    clock.t += 100; // one token
    expect(take(l, "a", 3)).toBe(1);
    clock.t += 250; // two and a half
    expect(take(l, "a", 3)).toBe(2);
    clock.t += 50; // the half left plus a half: one
    expect(take(l, "a", 3)).toBe(1);
    clock.t += 60_000; // long idle: a full bucket, not 600 tokens
    expect(take(l, "a", 100)).toBe(5);
  });

  it("holds a steady rate: 2 per second over ten seconds is 20 (plus the burst)", () => {
    const { l, clock } = limiter(2, 2);
    let passed = 0;
    for (let ms = 0; ms <= 10_000; ms += 10) {
      clock.t = ms;
      if (l.allow("flood")) passed++;
    }
    expect(passed).toBe(2 + 20);
  });

  it("ignores a clock that steps back (no tokens made, none lost)", () => {
    const { l, clock } = limiter(10, 2);
    clock.t = 1000;
    expect(take(l, "a", 2)).toBe(2);
    clock.t = 0;
    expect(l.allow("a")).toBe(false);
    clock.t = 1100;
    expect(take(l, "a", 2)).toBe(1);
  });

  it("defaults the burst to twice the rate", () => {
    const { l } = limiter(3);
    expect(l.burst).toBe(6);
    expect(take(l, "a", 10)).toBe(6);
  });

  it("keeps its table bounded under many sources, forgetting the oldest first", () => {
    let told = 0;
    const l = new SourceRateLimiter(
      { rate: 1, burst: 1, sources: 1000 },
      () => 0,
      () => told++,
    );
    // The first source spends its only token.
    expect(l.allow("10.0.0.0")).toBe(true);
    expect(l.allow("10.0.0.0")).toBe(false);
    for (let i = 1; i < 5000; i++) expect(l.allow(`10.0.${i >> 8}.${i & 255}`)).toBe(true);
    expect(l.size).toBe(1000);
    expect(l.evicted).toBe(4000);
    expect(told).toBe(4000);
    // The oldest were forgotten: the first source starts again with a full bucket…
    expect(l.allow("10.0.0.0")).toBe(true);
    // …while a recent one is still remembered (and empty).
    expect(l.allow("10.0.19.135")).toBe(false);
    expect(l.size).toBe(1000);
  });

  it("refuses a rate that is not positive", () => {
    expect(() => new SourceRateLimiter({ rate: 0 }, () => 0)).toThrow(RangeError);
    expect(() => new SourceRateLimiter({ rate: Number.NaN }, () => 0)).toThrow(RangeError);
  });
});
