import { describe, expect, it } from "vitest";
import { SipParseError } from "../../src/message/errors.js";
import { isIPv6, parseUri, pctDecode, type SipUri, uriEquals, uriParam } from "../../src/message/uri.js";
import { thrownParseError } from "./helpers.js";

function sip(text: string): SipUri {
  const u = parseUri(text);
  if (u.type !== "sip") throw new Error("sip URI expected");
  return u;
}

function rejects(text: string): SipParseError {
  const e = thrownParseError(() => parseUri(text), `expected ${text} to be rejected`);
  expect(e.status).toBe(400);
  return e;
}

describe("parseUri: SIP/SIPS", () => {
  it("all parts", () => {
    const u = sip(
      "SIPS:alice:secret@Atlanta.Example.com:5061;Transport=TCP;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent",
    );
    expect(u).toMatchObject({
      scheme: "sips",
      user: "alice",
      password: "secret",
      host: "Atlanta.Example.com",
      hostType: "hostname",
      port: 5061,
    });
    expect(u.params).toEqual([
      ["transport", "TCP"],
      ["lr", null],
      ["maddr", "239.255.255.1"],
    ]);
    expect(u.headers).toEqual([
      ["subject", "project x"],
      ["priority", "urgent"],
    ]);
    expect(uriParam(u, "Transport")).toBe("TCP");
    expect(uriParam(u, "lr")).toBeNull();
    expect(uriParam(u, "none")).toBeUndefined();
  });

  it("host forms", () => {
    expect(sip("sip:192.0.2.1").hostType).toBe("ipv4");
    expect(sip("sip:example.com.").hostType).toBe("hostname");
    expect(sip("sip:[2001:db8::10]").hostType).toBe("ipv6");
    expect(sip("sip:[2001:db8::10]:5070")).toMatchObject({ host: "[2001:db8::10]", port: 5070 });
    expect(sip("sip:[2001:db8::10:5070]")).toMatchObject({ host: "[2001:db8::10:5070]", port: undefined });
    expect(sip("sip:user@[2001:db8:::192.0.2.1]").host).toBe("[2001:db8:::192.0.2.1]");
    expect(sip("sip:user@[2001:db8::192.0.2.1]").host).toBe("[2001:db8::192.0.2.1]");
    expect(sip("sip:user@[::ffff:192.0.2.10]:19823").port).toBe(19823);
    expect(sip("sip:[::1]").host).toBe("[::1]");
  });

  it("rejects bad hosts and ports", () => {
    for (const bad of [
      "sip:2001:db8::10",
      "sip:[2001:db8::10",
      "sip:[2001:db8::10::1]",
      "sip:[2001:db8:1:2:3:4:5:6:7]",
      "sip:[2001:db8::g]",
      "sip:user@",
      "sip:",
      "sip:-bad.example.com",
      "sip:example.123",
      "sip:a..b",
      "sip:host:",
      "sip:host:99999",
      "sip:host:12a",
      "sip:user@host;",
      "sip:user@host;=v",
      "sip:user@host;p=",
      "sip:user@host?",
      "sip:us er@host",
      "sip:user@host>",
      "sip:@host",
    ]) {
      rejects(bad);
    }
  });

  it("%HH decoding in user and params, never recursive; raw kept", () => {
    const u = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
    expect(u.user).toBe("caller");
    expect(u.rawUser).toBe("cal%6Cer");
    expect(u.params).toEqual([
      ["lr", null],
      ["name", "value%41"],
    ]);
    expect(u.raw).toBe("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
    expect(sip("sip:sips%3Auser%40example.com@example.net").user).toBe("sips:user@example.com");
    expect(sip("sip:null-%00-null@example.com").user).toBe("null-\u0000-null");
    expect(sip("sip:%00%00@host").user).toBe("\u0000\u0000");
    rejects("sip:bad%zzuser@host");
    rejects("sip:bad%4@host");
    expect(pctDecode("a%2541")).toBe("a%41");
  });

  it("user parts with ';' '?' and other user-unreserved characters", () => {
    expect(sip("sip:user;par=u%40example.net@example.com")).toMatchObject({
      user: "user;par=u@example.net",
      host: "example.com",
      params: [],
    });
    const u = sip(
      "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
    );
    expect(u.user).toBe("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    expect(u.password).toBe("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    expect(sip("sip:+1-212-555-1212:1234@gateway.com;user=phone").user).toBe("+1-212-555-1212");
  });
});

describe("parseUri: tel and absolute URIs", () => {
  it("tel", () => {
    const u = parseUri("tel:+1-201-555-0123;phone-context=example.com");
    expect(u).toMatchObject({ type: "tel", scheme: "tel", number: "+1-201-555-0123" });
    expect(u.params).toEqual([["phone-context", "example.com"]]);
    rejects("tel:");
    rejects("tel:+1 201");
  });

  it("absolute", () => {
    expect(parseUri("nobodyKnowsThisScheme:totallyopaquecontent")).toMatchObject({
      type: "absolute",
      scheme: "nobodyknowsthisscheme",
      opaque: "totallyopaquecontent",
    });
    expect(parseUri("soap.beep://192.0.2.103:3002").scheme).toBe("soap.beep");
    expect(parseUri("urn:service:sos").type).toBe("absolute");
    expect(parseUri("http://www.example.com").type).toBe("absolute");
    rejects("isbn:");
    rejects("1abc:x");
    rejects("noscheme");
    rejects("http://a b");
    rejects("");
    rejects("<sip:a@b>");
  });

  it("never throws anything but SipParseError", () => {
    expect(() => parseUri(undefined as unknown as string)).toThrow(SipParseError);
    expect(() => parseUri(42 as unknown as string)).toThrow(SipParseError);
  });
});

describe("isIPv6", () => {
  it.each([
    ["::", true],
    ["::1", true],
    ["2001:db8::", true],
    ["2001:db8:0:0:0:0:0:1", true],
    ["2001:db8:0:0:0:0:0:0:1", false],
    ["2001:db8:0:0:0:0:0", false],
    ["::ffff:192.0.2.1", true],
    ["2001:db8:::192.0.2.1", true],
    ["2001:db8::::192.0.2.1", false],
    ["1:2:3:4:5:6:192.0.2.1", true],
    ["1:2:3:4:5:6:7:192.0.2.1", false],
    ["::192.0.2.256", false],
    ["12345::", false],
    [":1", false],
    ["1:", false],
  ])("%s → %s", (a, ok) => {
    expect(isIPv6(a)).toBe(ok);
  });
});

describe("uriEquals (RFC 3261 §19.1.4)", () => {
  it.each([
    ["sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"],
    ["sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"],
    ["sip:carol@chicago.com", "sip:carol@chicago.com;security=on"],
    [
      "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
      "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ],
    [
      "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
      "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ],
    ["tel:+1-201-555-0123", "tel:+12015550123"],
  ])("equal: %s = %s", (a, b) => {
    expect(uriEquals(a, b)).toBe(true);
    expect(uriEquals(b, a)).toBe(true);
  });

  it.each([
    ["SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"],
    ["sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"],
    ["sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"],
    ["sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"],
    ["sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"],
    ["sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"],
    ["sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"],
    ["sip:a@b", "sips:a@b"],
    ["sip:a@b", "not a uri"],
  ])("different: %s ≠ %s", (a, b) => {
    expect(uriEquals(a, b)).toBe(false);
    expect(uriEquals(b, a)).toBe(false);
  });
});
