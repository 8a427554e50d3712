import { describe, expect, it } from "vitest";
import { parseMessage } from "../../src/message/parser.js";
import type { SipRequest, Via } from "../../src/message/types.js";
import { BranchCookie } from "../../src/proxy/cookie.js";

function viaOf(line: string): Via {
  const req = parseMessage(
    Buffer.from(
      `INVITE sip:b@y SIP/2.0\r\nVia: ${line}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\n` +
        "Call-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
      "latin1",
    ),
  ) as SipRequest;
  return req.via;
}

const UPSTREAM = viaOf("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKup;rport=5062;received=192.0.2.7");

describe("BranchCookie", () => {
  it("verifies what it sealed, for the same upstream Via and Call-ID only", () => {
    const c = new BranchCookie("a shared cluster secret");
    const branch = c.seal("z9hG4bKs1.0a1b2c3d.ffee", UPSTREAM, "call-1");
    expect(branch.startsWith("z9hG4bKs1.0a1b2c3d.ffee.")).toBe(true);
    expect(c.verify(branch, UPSTREAM, "call-1")).toBe(true);
    expect(c.verify(branch, UPSTREAM, "call-2")).toBe(false);
    for (const other of [
      "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKup;rport=5062;received=192.0.2.8",
      "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKup;rport=5063;received=192.0.2.7",
      "SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKup;rport=5062;received=192.0.2.7",
      "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKother;rport=5062;received=192.0.2.7",
      "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKup;rport=5062;received=192.0.2.7",
    ])
      expect(c.verify(branch, viaOf(other), "call-1"), other).toBe(false);
  });

  it("two nodes with one secret verify each other's branches; another key, a cut or missing tag does not", () => {
    const a = new BranchCookie("a shared cluster secret");
    const b = new BranchCookie(Buffer.from("a shared cluster secret"));
    const branch = a.seal("z9hG4bKx", UPSTREAM, "c");
    expect(b.verify(branch, UPSTREAM, "c")).toBe(true);
    expect(new BranchCookie().verify(branch, UPSTREAM, "c")).toBe(false);
    expect(a.verify(branch.slice(0, -1), UPSTREAM, "c")).toBe(false);
    expect(a.verify("z9hG4bKx", UPSTREAM, "c")).toBe(false);
    expect(a.verify(`${branch.slice(0, -1)}${branch.endsWith("0") ? "1" : "0"}`, UPSTREAM, "c")).toBe(false);
  });

  it("refuses a key shorter than 16 bytes", () => {
    expect(() => new BranchCookie("short")).toThrow(RangeError);
  });
});
