import { describe, expect, it } from "vitest";
import {
  canonicalName,
  compactCode,
  isToken,
  latin1,
  properName,
  unfold,
  utf8,
} from "../../src/message/text.js";

describe("text helpers", () => {
  it("canonicalName maps compact forms and lower-cases", () => {
    expect(canonicalName("v")).toBe("via");
    expect(canonicalName("I")).toBe("call-id");
    expect(canonicalName("CALL-ID")).toBe("call-id");
    expect(canonicalName("o")).toBe("event");
    expect(canonicalName("n")).toBe("identity-info");
    expect(canonicalName("z")).toBe("z");
    expect(canonicalName("X-Custom")).toBe("x-custom");
    expect(compactCode("content-length")).toBe("l".charCodeAt(0));
    expect(compactCode("cseq")).toBe(0);
  });

  it("properName gives the usual spelling", () => {
    expect(properName("call-id")).toBe("Call-ID");
    expect(properName("cseq")).toBe("CSeq");
    expect(properName("www-authenticate")).toBe("WWW-Authenticate");
    expect(properName("x-my-header")).toBe("X-My-Header");
    expect(properName("m")).toBe("Contact");
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
