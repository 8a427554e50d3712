import { describe, expect, it } from "vitest";
import { buildReject, buildRequest, buildResponse, reasonPhrase } from "../../src/message/build.js";
import { parseMessage } from "../../src/message/parser.js";
import type { SipRequest } from "../../src/message/types.js";
import { fullParse } from "../../src/message/validate.js";

const REQ = [
  "INVITE sip:bob@biloxi.example.com SIP/2.0",
  "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1;received=192.0.2.9, SIP/2.0/UDP pc33.example.com;branch=z9hG4bKpc",
  "v:  SIP/2.0/TCP  third.example.com ;branch=z9hG4bK3",
  "Max-Forwards: 70",
  "TO :",
  " Bob <sip:bob@biloxi.example.com>  ",
  "f: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
  "i: a84b4c76e66710",
  "CSeq:   314159   INVITE",
  "Record-Route: <sip:rr.example.com;lr>",
  "Contact: <sip:alice@pc33.example.com>",
  "Content-Length: 0",
  "",
  "",
].join("\r\n");

function parseReq(s: string): SipRequest {
  const m = parseMessage(Buffer.from(s, "latin1"));
  if (!m.isRequest) throw new Error("request expected");
  return m;
}

/** A small valid request for the cases that spoil one field of it. */
const OPTIONS_REQ = {
  method: "OPTIONS",
  uri: "sip:b@x",
  via: "SIP/2.0/UDP h;branch=z9hG4bK1",
  from: "<sip:a@x>;tag=1",
  to: "<sip:b@x>",
  callId: "c",
  cseq: 1,
};

describe("buildResponse", () => {
  it("copies Via lines, From, To, Call-ID and CSeq as written, adds the To tag", () => {
    const req = parseReq(REQ);
    const out = buildResponse(req, 180, { toTag: "tt1" });
    expect(out.toString("latin1")).toBe(
      [
        "SIP/2.0 180 Ringing",
        "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1;received=192.0.2.9, SIP/2.0/UDP pc33.example.com;branch=z9hG4bKpc",
        "v:  SIP/2.0/TCP  third.example.com ;branch=z9hG4bK3",
        "f: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        "TO :",
        " Bob <sip:bob@biloxi.example.com>;tag=tt1",
        "i: a84b4c76e66710",
        "CSeq:   314159   INVITE",
        "Content-Length: 0",
        "",
        "",
      ].join("\r\n"),
    );
    const r = parseMessage(out);
    expect(r.isRequest).toBe(false);
    expect(r.toTag).toBe("tt1");
    expect(r.fromTag).toBe("1928301774");
    expect(r.viaCount).toBe(3);
    expect(r.via.branch).toBe("z9hG4bKp1");
    expect(r.cseq).toEqual({ seq: 314159, method: "INVITE" });
    expect(r.method).toBe("INVITE");
    fullParse(r);
  });

  it("no To tag on 100 Trying, nor when the request's To already has one", () => {
    const req = parseReq(REQ);
    const trying = parseMessage(buildResponse(req, 100, { toTag: "x" }));
    expect(trying.toTag).toBeUndefined();
    const inDialog = parseReq(
      REQ.replace("Bob <sip:bob@biloxi.example.com>  ", "Bob <sip:bob@biloxi.example.com>;tag=abc"),
    );
    expect(parseMessage(buildResponse(inDialog, 200, { toTag: "other" })).toTag).toBe("abc");
  });

  it("reason, extra headers, body and Content-Type", () => {
    const req = parseReq(REQ);
    const body = Buffer.from("v=0\r\n");
    const out = buildResponse(req, 200, {
      reason: "Fine",
      toTag: "t",
      headers: [
        ["Record-Route", "<sip:rr.example.com;lr>"],
        ["Contact", "<sip:bob@192.0.2.4>"],
      ],
      body,
      contentType: "application/sdp",
    });
    const s = out.toString("latin1");
    expect(s.startsWith("SIP/2.0 200 Fine\r\n")).toBe(true);
    expect(
      s.endsWith(
        "Record-Route: <sip:rr.example.com;lr>\r\nContact: <sip:bob@192.0.2.4>\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n",
      ),
    ).toBe(true);
    const r = parseMessage(out);
    expect(r.body.equals(body)).toBe(true);
    expect(r.header("Contact")).toBe("<sip:bob@192.0.2.4>");
  });

  it("default reason phrases", () => {
    const req = parseReq(REQ);
    expect(buildResponse(req, 481).toString("latin1").split("\r\n")[0]).toBe(
      "SIP/2.0 481 Call/Transaction Does Not Exist",
    );
    expect(reasonPhrase(200)).toBe("OK");
    expect(reasonPhrase(487)).toBe("Request Terminated");
    expect(reasonPhrase(513)).toBe("Message Too Large");
    expect(reasonPhrase(199)).toBe("Early Dialog Terminated");
    expect(reasonPhrase(299)).toBe("OK");
    expect(() => buildResponse(req, 99)).toThrow(RangeError);
    expect(() => buildResponse(req, 200, { headers: [["X", "a\r\nb"]] })).toThrow(RangeError);
  });

  it("copies the current (edited) Vias of a modified request", () => {
    const req = parseReq(REQ);
    req.popVia();
    const r = parseMessage(buildResponse(req, 200, { toTag: "t" }));
    expect(r.viaCount).toBe(2);
    expect(r.via.host).toBe("pc33.example.com");
  });
});

describe("buildRequest", () => {
  it("writes the headers in order and parses back", () => {
    const out = buildRequest({
      method: "OPTIONS",
      uri: "sip:bob@192.0.2.4",
      via: "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport",
      from: "<sip:alice@example.com>;tag=ft",
      to: "<sip:bob@example.com>",
      callId: "cid@host",
      cseq: 7,
      headers: [["Accept", "application/sdp"]],
    });
    expect(out.toString("latin1")).toBe(
      [
        "OPTIONS sip:bob@192.0.2.4 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport",
        "Max-Forwards: 70",
        "From: <sip:alice@example.com>;tag=ft",
        "To: <sip:bob@example.com>",
        "Call-ID: cid@host",
        "CSeq: 7 OPTIONS",
        "Accept: application/sdp",
        "Content-Length: 0",
        "",
        "",
      ].join("\r\n"),
    );
    const m = parseMessage(out);
    expect(m.isRequest && m.method).toBe("OPTIONS");
    expect(m.via.rport).toBeNull();
    expect(m.fromTag).toBe("ft");
    expect(m.maxForwards).toBe(70);
    fullParse(m);
  });

  it("body, Content-Type and Max-Forwards", () => {
    const body = Buffer.from([1, 2, 3, 0]);
    const out = buildRequest({
      method: "MESSAGE",
      uri: "sip:bob@example.com",
      via: "SIP/2.0/TCP h;branch=z9hG4bK1",
      from: "<sip:a@example.com>;tag=1",
      to: "<sip:bob@example.com>",
      callId: "c",
      cseq: 1,
      maxForwards: 10,
      body,
      contentType: "application/octet-stream",
    });
    const m = parseMessage(out, { datagram: false });
    expect(m.maxForwards).toBe(10);
    expect(m.body.equals(body)).toBe(true);
    expect(m.header("Content-Type")).toBe("application/octet-stream");
  });

  it("rejects injection and bad values", () => {
    // The bare minimum: no branch, no From tag.
    const ok = { ...OPTIONS_REQ, via: "SIP/2.0/UDP h", from: "<sip:a@x>" };
    expect(() => buildRequest({ ...ok, method: "BAD METHOD" })).toThrow(RangeError);
    expect(() => buildRequest({ ...ok, uri: "sip:a b" })).toThrow(RangeError);
    expect(() => buildRequest({ ...ok, from: "x\r\nVia: evil" })).toThrow(RangeError);
    expect(() => buildRequest({ ...ok, cseq: -1 })).toThrow(RangeError);
    expect(() => buildRequest({ ...ok, maxForwards: 300 })).toThrow(RangeError);
  });

  it("extra headers: no control character but HTAB (§25.1), none the builder writes (compact forms too, §7.3.3), no single-instance header twice (§7.3.1)", () => {
    const ok = OPTIONS_REQ;
    const refused: Array<Array<[string, string]>> = [
      [["Via", "SIP/2.0/UDP evil;branch=z9hG4bKx"]],
      [["v", "SIP/2.0/UDP evil"]],
      [["Content-Length", "0"]],
      [["l", "0"]],
      [["Call-ID", "other"]],
      [["i", "other"]],
      [["f", "<sip:evil@x>"]],
      [["T", "<sip:evil@x>"]],
      [["CSeq", "2 OPTIONS"]],
      [["c", "text/plain"]],
      [
        ["Expires", "1"],
        ["expires", "2"],
      ],
      [
        ["Subject", "a"],
        ["s", "b"],
      ],
      [["X-A", "a\u0000b"]],
      [["X-A", "a\u001bb"]],
      [["X-A", "a\u007f"]],
      [["X-A", "a\rb"]],
      [["X A", "b"]],
    ];
    for (const headers of refused) {
      expect(() => buildRequest({ ...ok, headers }), JSON.stringify(headers)).toThrow(RangeError);
      expect(() => buildResponse(parseReq(REQ), 200, { headers }), JSON.stringify(headers)).toThrow(
        RangeError,
      );
    }
    // The request's own Max-Forwards comes from its option; a response has none of its own.
    expect(() => buildRequest({ ...ok, headers: [["Max-Forwards", "1"]] })).toThrow(RangeError);
    expect(() => buildRequest({ ...ok, from: "<sip:a@x>\u0000" })).toThrow(/control characters \(0x00/);
    expect(() => buildResponse(parseReq(REQ), 200, { reason: "O\u0000K" })).toThrow(RangeError);
    // Lists may be split over several fields; HTAB and UTF-8 (as latin1 bytes) are text.
    const fine: Array<[string, string]> = [
      ["Route", "<sip:p1;lr>"],
      ["Route", "<sip:p2;lr>"],
      ["X-A", "1"],
      ["x-a", "2"],
      ["Subject", "a\tb \u00c3\u00a9"],
    ];
    const m = parseMessage(buildRequest({ ...ok, headers: fine }), { datagram: false });
    expect(m.headerValues("route")).toHaveLength(2);
    expect(m.header("subject")).toBe("a\tb \u00c3\u00a9");
  });
});

describe("buildReject (a stateless answer from raw bytes, no parser)", () => {
  const raw = (lines: string[]) =>
    Buffer.from(`INVITE sip:b@h SIP/2.0\r\n${lines.join("\r\n")}\r\n\r\nbody`, "latin1");
  it("copies Via (all), From, To, Call-ID, CSeq; adds a To tag; drops folded lines and the rest", () => {
    const out = buildReject(
      raw([
        "Via: SIP/2.0/UDP a;branch=z9hG4bK1",
        "v: SIP/2.0/UDP b;branch=z9hG4bK2",
        "From: <sip:a@h>;tag=f",
        "To: <sip:b@h>",
        " ;folded=1",
        "Call-ID: c1",
        "CSeq: 1 INVITE",
        "Contact: <sip:a@h>",
      ]),
      400,
      "Bad\r\nRequest",
      [["Retry-After", "5"]],
    )!.toString("latin1");
    const lines = out.split("\r\n");
    expect(lines[0]).toBe("SIP/2.0 400 Bad  Request");
    expect(lines.filter((l) => /^(via|v):/i.test(l))).toHaveLength(2);
    expect(lines.find((l) => l.startsWith("To:"))).toMatch(/^To: <sip:b@h>;tag=[0-9a-f]+$/);
    expect(out).not.toContain("folded");
    expect(out).not.toContain("Contact");
    expect(out.endsWith("Retry-After: 5\r\nContent-Length: 0\r\n\r\n")).toBe(true);
  });
  it("keeps a To tag written with spaces around '='; nothing without a Via or a CSeq", () => {
    const out = buildReject(
      raw(["Via: SIP/2.0/UDP a;branch=z9hG4bK1", "To: <sip:b@h> ; tag = t1", "CSeq: 1 INVITE"]),
      503,
      "x",
    )!.toString("latin1");
    expect(out).toContain("To: <sip:b@h> ; tag = t1\r\n");
    expect(buildReject(raw(["To: <sip:b@h>", "CSeq: 1 INVITE"]), 400, "x")).toBeUndefined();
    expect(buildReject(raw(["Via: SIP/2.0/UDP a;branch=z9hG4bK1"]), 400, "x")).toBeUndefined();
  });
});
