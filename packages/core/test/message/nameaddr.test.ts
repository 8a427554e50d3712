import { describe, expect, it } from "vitest";
import { parseNameAddr, uriOfNameAddr } from "../../src/message/nameaddr.js";
import { thrownParseError } from "./helpers.js";

function rejects(text: string): void {
  const e = thrownParseError(() => parseNameAddr(text), `expected ${JSON.stringify(text)} to be rejected`);
  expect(e.status).toBe(400);
}

describe("parseNameAddr", () => {
  it("name-addr with a quoted display name and escapes", () => {
    const na = parseNameAddr(
      '"Alice \\"A\\" ;tag=no" <sip:alice@atlanta.example.com;transport=tcp>;tag=1928301774;x',
    );
    expect(na.displayName).toBe('Alice "A" ;tag=no');
    expect(na.quoted).toBe(true);
    expect(na.angle).toBe(true);
    expect(na.tag).toBe("1928301774");
    expect(na.params).toEqual([
      ["tag", "1928301774"],
      ["x", null],
    ]);
    expect(na.uri.type === "sip" && na.uri.params).toEqual([["transport", "tcp"]]);
  });

  it("token display names, with or without LWS before <", () => {
    expect(parseNameAddr("Bob <sips:bob@biloxi.example.com>").displayName).toBe("Bob");
    expect(parseNameAddr("caller<sip:caller@example.com>;tag=323").displayName).toBe("caller");
    expect(parseNameAddr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>").displayName).toBe(
      "token1~` token2'+_ token3*%!.-",
    );
    expect(parseNameAddr("<sip:x@y>").displayName).toBeUndefined();
    expect(parseNameAddr('"" <sip:x@y>').displayName).toBe("");
  });

  it("addr-spec: ';' params after the URI are header params", () => {
    const na = parseNameAddr("sip:+19725552222@gw1.example.net;unknownparam");
    expect(na.angle).toBe(false);
    expect(na.uri.type === "sip" && na.uri.params).toEqual([]);
    expect(na.params).toEqual([["unknownparam", null]]);
    const b = parseNameAddr("<sip:+19725552222@gw1.example.net;unknownparam>");
    expect(b.uri.type === "sip" && b.uri.params).toEqual([["unknownparam", null]]);
    expect(b.params).toEqual([]);
    expect(parseNameAddr("sip:x@example.com ;  tag  =  abc").tag).toBe("abc");
  });

  it("header param values: token, quoted-string, IPv6 reference", () => {
    const na = parseNameAddr(
      '<sip:c@[2001:db8::9:1]:5060>;expires=60;q=0.5;+sip.instance="<urn:uuid:0000>";received=[2001:db8::1]',
    );
    expect(na.params).toEqual([
      ["expires", "60"],
      ["q", "0.5"],
      ["+sip.instance", '"<urn:uuid:0000>"'],
      ["received", "[2001:db8::1]"],
    ]);
  });

  it("escaped headers inside <> are fine", () => {
    const na = parseNameAddr("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>");
    expect(na.uri.type === "sip" && na.uri.headers).toEqual([["Route", "<sip:sip.example.com>"]]);
  });

  it("non-SIP URIs", () => {
    expect(parseNameAddr("isbn:2983792873").uri.scheme).toBe("isbn");
    expect(parseNameAddr("<http://www.example.com>;tag=3234233").tag).toBe("3234233");
    expect(parseNameAddr("<name:John_Smith>").uri.type).toBe("absolute");
  });

  it.each([
    ['"Mr. J. User <sip:j.user@example.com>'],
    ["Bell, Alexander <sip:a.g.bell@example.com>;tag=43"],
    ['"Watson, Thomas" < sip:t.watson@example.org >'],
    ["sip:user@example.com?Route=%3Csip:sip.example.com%3E"],
    ['"Joe" <sip:joe@example.org>;;;;'],
    ["<sip:joe@example.org>;"],
    ["<sip:joe@example.org>;tag"],
    ["<sip:joe@example.org>;a=b c"],
    ["<sip:joe@example.org"],
    ["sip:joe@example.org junk"],
    ["<sip:2001:db8::1>"],
    [""],
    ['"x" sip:a@b'],
  ])("rejects %j", (text) => {
    rejects(text);
  });
});

// Alike in form with text.test.ts's cases (input → expected), different functions: kept as plain expects.
describe("uriOfNameAddr (the one name-addr → URI extractor)", () => {
  it("takes the URI inside <>, trimmed; a quoted display name may hold < and >", () => {
    expect(uriOfNameAddr("<sip:a@h;lr>;p=1")).toBe("sip:a@h;lr");
    expect(uriOfNameAddr('"Bob" < sip:b@h >')).toBe("sip:b@h");
    expect(uriOfNameAddr('"a<b>\\"c" <sip:x@h>;tag=1')).toBe("sip:x@h");
    expect(uriOfNameAddr("Bob <sip:b@h")).toBe("sip:b@h");
  });
  it("an addr-spec ends at its first ';' (the header's parameters, RFC 3261 §20.10)", () => {
    expect(uriOfNameAddr("sip:a@h;tag=1")).toBe("sip:a@h");
    expect(uriOfNameAddr(" sip:a@h ")).toBe("sip:a@h");
    expect(uriOfNameAddr('"unterminated <sip:no@h>')).toBe('"unterminated <sip:no@h>');
  });
});
