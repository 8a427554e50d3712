import { describe, expect, it } from "vitest";
import { BRANCH_COOKIE, newBranch, newCallId, newTag } from "../../src/message/ids.js";
import { isToken } from "../../src/message/text.js";

const B64URL = /^[A-Za-z0-9_-]+$/;

describe("ids", () => {
  it("branches start with the magic cookie, carry the prefix and >= 96 random bits", () => {
    const b = newBranch();
    expect(b.startsWith(BRANCH_COOKIE)).toBe(true);
    const rand = b.slice(BRANCH_COOKIE.length);
    expect(rand).toMatch(B64URL);
    expect(rand.length * 6).toBeGreaterThanOrEqual(96);
    const p = newBranch("px.");
    expect(p.startsWith("z9hG4bKpx.")).toBe(true);
    expect(p.length).toBe(b.length + 3);
    expect(isToken(b)).toBe(true);
  });

  it("tags have >= 64 random bits and are tokens", () => {
    const t = newTag();
    expect(t).toMatch(B64URL);
    expect(t.length * 6).toBeGreaterThanOrEqual(64);
    expect(isToken(t)).toBe(true);
  });

  it("Call-IDs, with an optional host", () => {
    expect(newCallId()).toMatch(B64URL);
    expect(newCallId("example.com")).toMatch(/^[A-Za-z0-9_-]{20}@example\.com$/);
  });

  it("unique over 10k ids each, across pool refills", () => {
    for (const gen of [() => newBranch(), newTag, () => newCallId()]) {
      const seen = new Set<string>();
      for (let i = 0; i < 10_000; i++) seen.add(gen());
      expect(seen.size).toBe(10_000);
    }
  });

  it("looks random: every base64url character shows up, none dominates", () => {
    const counts = new Map<string, number>();
    let total = 0;
    for (let i = 0; i < 2000; i++) {
      for (const ch of newTag()) {
        counts.set(ch, (counts.get(ch) ?? 0) + 1);
        total++;
      }
    }
    expect(counts.size).toBe(64);
    for (const n of counts.values()) expect(n / total).toBeLessThan(3 / 64);
  });
});
