import { describe, expect, it } from "vitest";
import { BRANCH_COOKIE, newBranch, newCallId, newTag } from "../../src/message/ids.js";
import { isToken } from "../../src/message/text.js";

const HEX = /^[0-9a-f]+$/;

describe("ids", () => {
  it("branches start with the magic cookie, carry the prefix and >= 96 random bits", () => {
    const b = newBranch();
    expect(b.startsWith(BRANCH_COOKIE)).toBe(true);
    const rand = b.slice(BRANCH_COOKIE.length);
    expect(rand).toMatch(HEX);
    expect(rand.length * 4).toBeGreaterThanOrEqual(96);
    const p = newBranch("px.");
    expect(p.startsWith("z9hG4bKpx.")).toBe(true);
    expect(p.length).toBe(b.length + 3);
    expect(isToken(b)).toBe(true);
  });

  it("tags have >= 64 random bits and are tokens", () => {
    const t = newTag();
    expect(t).toMatch(HEX);
    expect(t.length * 4).toBeGreaterThanOrEqual(64);
    expect(isToken(t)).toBe(true);
  });

  it("Call-IDs, with an optional host", () => {
    expect(newCallId()).toMatch(HEX);
    expect(newCallId("example.com")).toMatch(/^[0-9a-f]{30}@example\.com$/);
  });

  it("unique over 10k ids each, across pool refills", () => {
    for (const gen of [() => newBranch(), newTag, () => newCallId()]) {
      const seen = new Set<string>();
      for (let i = 0; i < 10_000; i++) seen.add(gen());
      expect(seen.size).toBe(10_000);
    }
  });

  it("looks random: every hex digit shows up, none dominates", () => {
    const counts = new Map<string, number>();
    let total = 0;
    for (let i = 0; i < 2000; i++) {
      for (const ch of newTag()) {
        counts.set(ch, (counts.get(ch) ?? 0) + 1);
        total++;
      }
    }
    expect(counts.size).toBe(16);
    for (const n of counts.values()) expect(n / total).toBeLessThan(1.5 / 16);
  });

  // Regression: SIPp finds headers by searching the raw message for their names, and took a 180
  // whose To tag was "9HJag5CSeqC-" for something else, leaving the call hanging until its timeout
  // (the load benchmark, once in some 10^5 calls). With base64url ids about one draw in 20 here
  // spelt one of these names in some case (mostly "to"); a hex id cannot spell any.
  it("never spells a header name, in any case", () => {
    const NAMES = /cseq|call-id|via|from|to|contact|content|route|max-forwards|expires/i;
    // The check catches what it guards against: the base64url To tag that hung SIPp.
    expect(NAMES.test("9HJag5CSeqC-")).toBe(true);
    // Hex cannot spell them: ids stay lowercase hex (a change of alphabet fails here first).
    for (const id of [newTag(), newBranch().slice(BRANCH_COOKIE.length), newCallId()])
      expect(id, id).toMatch(/^[0-9a-f]+$/);
    for (let i = 0; i < 20_000; i++) {
      for (const id of [newTag(), newBranch().slice(BRANCH_COOKIE.length), newCallId()])
        expect(NAMES.test(id), id).toBe(false);
    }
  });
});
