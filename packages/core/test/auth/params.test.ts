import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseCredentials, quote } from "../../src/auth/params.js";

describe("parseCredentials (RFC 3261 §25.1 credentials, hand-written scanner)", () => {
  it("tokens and quoted strings with escapes; names lowercased; empty list elements allowed", () => {
    const p = parseCredentials('Digest Username="a \\"b\\" \\\\c", realm="r,x" ,, nc=00000001,qop=auth ');
    expect(p).toEqual({
      ok: true,
      scheme: "Digest",
      params: new Map([
        ["username", 'a "b" \\c'],
        ["realm", "r,x"],
        ["nc", "00000001"],
        ["qop", "auth"],
      ]),
    });
  });

  it.each([
    ["", "auth scheme expected"],
    ["Digest=x", "whitespace expected"],
    ["Digest a", '"=" expected'],
    ["Digest a=", "parameter value expected"],
    ['Digest a="x', "unterminated"],
    ['Digest a="x\\', "unterminated"],
    ['Digest a="x\\\r"', "CR or LF escaped"],
    ['Digest a="x\u0000"', "control character"],
    ["Digest a=b c=d", '"," expected'],
    ["Digest a=b, A=c", "repeated"],
    ["Digest a=b;c", '"," expected'],
  ])("%j → %s", (text, error) => {
    const p = parseCredentials(text);
    expect(p.ok).toBe(false);
    if (!p.ok) expect(p.error).toContain(error);
  });

  it("quote round-trips through the parser (fuzz)", () => {
    fc.assert(
      fc.property(
        fc.string().filter((s) => !/[\u0000-\u0008\u000a-\u001f\u007f]/.test(s)),
        (s) => {
          const p = parseCredentials(`Digest v=${quote(s)}`);
          expect(p.ok && p.params.get("v")).toBe(s);
        },
      ),
      { numRuns: 500, seed: 3261 },
    );
  });

  it("linear time on hostile input: long runs of quotes, backslashes, commas", () => {
    for (const s of [
      `Digest a="${"\\\\".repeat(4000)}"`,
      `Digest ${",".repeat(8000)}`,
      `Digest a="${'\\"'.repeat(4000)}`,
    ]) {
      expect(() => parseCredentials(s)).not.toThrow();
    }
    expect(parseCredentials(`Digest ${"x".repeat(9000)}`)).toMatchObject({
      ok: false,
      error: "credentials too long",
    });
  });
});
