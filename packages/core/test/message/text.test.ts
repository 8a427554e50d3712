import { describe, expect, it } from "vitest";
// The names message/index.ts also exports, imported from text.ts itself: a list of names, alike by nature.
import {
  canonicalName,
  compactCode,
  isToken,
  latin1,
  properName,
  unfold,
  utf8,
} from "../../src/message/text.js";

// One test per helper, written out: the tables of different helpers look alike (name → expected) but each
// checks its own function; a shared loop would hide which helper a failing row belongs to.
describe("text helpers", () => {
  it("canonicalName maps compact forms and lower-cases", () => {
    for (const [name, canonical] of [
      ["v", "via"],
      ["I", "call-id"],
      ["CALL-ID", "call-id"],
      ["o", "event"],
      ["n", "identity-info"],
      ["z", "z"],
      ["X-Custom", "x-custom"],
    ]) {
      expect(canonicalName(name!)).toBe(canonical);
    }
    expect(compactCode("content-length")).toBe("l".charCodeAt(0));
    expect(compactCode("cseq")).toBe(0);
  });

  it("properName gives the usual spelling", () => {
    for (const [name, spelling] of [
      ["call-id", "Call-ID"],
      ["cseq", "CSeq"],
      ["www-authenticate", "WWW-Authenticate"],
      ["x-my-header", "X-My-Header"],
      ["m", "Contact"],
    ]) {
      expect(properName(name!)).toBe(spelling);
    }
  });

  it("utf8 / latin1 round trip", () => {
    const s = "Jürgen — 日本";
    const bytes = latin1(s);
    expect(Buffer.from(bytes, "latin1").toString("utf8")).toBe(s);
    expect(utf8(bytes)).toBe(s);
    expect(latin1("ascii")).toBe("ascii");
    expect(utf8("ascii")).toBe("ascii");
  });

  it("unfold replaces line folds with one SP", () => {
    expect(unfold("a  \r\n   b\r\n\tc")).toBe("a b c");
    expect(unfold("no folds")).toBe("no folds");
    expect(unfold("\r\n x")).toBe(" x");
  });

  it("isToken", () => {
    expect(isToken("INVITE")).toBe(true);
    expect(isToken("!interesting-Method0123456789_*+`.%indeed'~")).toBe(true);
    expect(isToken("a b")).toBe(false);
    expect(isToken("")).toBe(false);
    expect(isToken("a,b")).toBe(false);
  });
});
