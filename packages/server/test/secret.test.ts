// Keys derived from the server's secret (secret.ts): HMAC-SHA256(secret, label), truncated.
import { describe, expect, it } from "vitest";
import {
  BRANCH_COOKIE_LABEL,
  deriveKey,
  FLOW_TOKEN_LABEL,
  SHARD_HASH_LABEL,
  secretOf,
} from "../src/secret.js";

const hex = (u: Uint8Array) => Buffer.from(u).toString("hex");

describe("deriveKey", () => {
  it("is HMAC-SHA256 of the label under the secret (RFC 4231 test case 2), truncated", () => {
    const full = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    expect(hex(deriveKey("Jefe", "what do ya want for nothing?", 32))).toBe(full);
    expect(hex(deriveKey("Jefe", "what do ya want for nothing?"))).toBe(full.slice(0, 32));
  });
  it("gives every node the same key for a label, and another key for another label or secret", () => {
    const secret = "a-secret-all-nodes-share";
    const k = deriveKey(secret, SHARD_HASH_LABEL);
    expect(k).toHaveLength(16);
    expect(hex(deriveKey(secret, SHARD_HASH_LABEL))).toBe(hex(k));
    expect(hex(deriveKey(secret, "branch-cookie"))).not.toBe(hex(k));
    expect(hex(deriveKey(`${secret}!`, SHARD_HASH_LABEL))).not.toBe(hex(k));
  });
  it("refuses a length outside 1 to 32 bytes", () => {
    expect(() => deriveKey("x", "y", 0)).toThrow(RangeError);
    expect(() => deriveKey("x", "y", 33)).toThrow(RangeError);
  });
});

describe("the server's secret when none is configured", () => {
  it("is made once per process: every key derived from it is the same at each call (one thread and every shard)", () => {
    expect(secretOf(undefined)).toBe(secretOf(undefined));
    expect(secretOf(undefined)).toMatch(/^[0-9a-f]{64}$/);
    expect(secretOf("configured-secret-xyz")).toBe("configured-secret-xyz");
    const flow = deriveKey(secretOf(undefined), FLOW_TOKEN_LABEL, 32);
    expect(flow).toEqual(deriveKey(secretOf(undefined), FLOW_TOKEN_LABEL, 32));
    expect(flow).not.toEqual(deriveKey(secretOf(undefined), BRANCH_COOKIE_LABEL, 32));
  });
});
