import { describe, expect, it } from "vitest";
import { SipParseError } from "../../src/message/errors.js";
import { parseMessage } from "../../src/message/parser.js";
import type { SipRequest, SipResponse } from "../../src/message/types.js";

const CRLF = "\r\n";

const HEAD = [
  "INVITE sip:bob@biloxi.example.com SIP/2.0",
  "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP pc33.example.com;branch=z9hG4bKpc",
  "v:  SIP/2.0/TCP  third.example.com ;branch=z9hG4bK3",
  "Max-Forwards: 70",
  "Route: <sip:r1.example.com;lr>,",
  "  <sip:r2.example.com;lr>",
  "To: Bob <sip:bob@biloxi.example.com>",
  "f: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
  "Call-ID: a84b4c76e66710",
  "CSeq: 314159 INVITE",
  "X-Odd-Spacing   :    kept   exactly  ",
  "Content-Type: application/sdp",
  "l: 4",
];

function text(lines: string[], body = "v=0\n"): string {
  return lines.join(CRLF) + CRLF + CRLF + body;
}

function parseReq(s: string): SipRequest {
  const m = parseMessage(Buffer.from(s, "latin1"));
  if (!m.isRequest) throw new Error("request expected");
  return m;
}

/** The message text with line `i` replaced by `repl` lines (none = deleted). */
function withLines(i: number, count: number, ...repl: string[]): string[] {
  const l = [...HEAD];
  l.splice(i, count, ...repl);
  return l;
}

describe("toBuffer", () => {
  it("returns raw itself while unmodified", () => {
    const m = parseReq(text(HEAD));
    expect(m.toBuffer()).toBe(m.raw);
    m.header("Route");
    m.headers();
    expect(m.toBuffer()).toBe(m.raw);
    expect(m.modified).toBe(false);
  });

  it("caches the serialisation until the next edit", () => {
    const m = parseReq(text(HEAD));
    m.setMaxForwards(69);
    const a = m.toBuffer();
    expect(m.toBuffer()).toBe(a);
    m.setMaxForwards(68);
    const b = m.toBuffer();
    expect(b).not.toBe(a);
    expect(m.modified).toBe(true);
  });
});

describe("edits change only what they touch", () => {
  it("setMaxForwards rewrites one line", () => {
    const m = parseReq(text(HEAD));
    m.setMaxForwards(69);
    expect(m.toBuffer().toString("latin1")).toBe(text(withLines(3, 1, "Max-Forwards: 69")));
    expect(m.maxForwards).toBe(69);
  });

  it("setMaxForwards adds the header at the end when absent", () => {
    const m = parseReq(text(withLines(3, 1)));
    m.setMaxForwards(70);
    expect(m.toBuffer().toString("latin1")).toBe(text([...withLines(3, 1), "Max-Forwards: 70"]));
    expect(() => m.setMaxForwards(256)).toThrow(RangeError);
  });

  it("pushVia inserts a line above the first Via and updates via/viaCount", () => {
    const m = parseReq(text(HEAD));
    expect(m.viaCount).toBe(3);
    m.pushVia("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew;rport");
    expect(m.toBuffer().toString("latin1")).toBe(
      text(withLines(1, 0, "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew;rport")),
    );
    expect(m.via.host).toBe("10.0.0.1");
    expect(m.via.branch).toBe("z9hG4bKnew");
    expect(m.viaCount).toBe(4);
  });

  it("pushVia then popVia gives the original bytes back", () => {
    const m = parseReq(text(HEAD));
    m.pushVia("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx");
    expect(m.popVia()).toBe("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx");
    expect(m.toBuffer().equals(m.raw)).toBe(true);
    expect(m.via.branch).toBe("z9hG4bKp1");
    expect(m.viaCount).toBe(3);
  });

  it("popVia on a multi-value line leaves the rest of that line", () => {
    const m = parseReq(text(HEAD));
    expect(m.popVia()).toBe("SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1");
    expect(m.toBuffer().toString("latin1")).toBe(
      text(withLines(1, 1, "Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKpc")),
    );
    expect(m.via.host).toBe("pc33.example.com");
    expect(m.viaCount).toBe(2);
    expect(m.popVia()).toBe("SIP/2.0/UDP pc33.example.com;branch=z9hG4bKpc");
    expect(m.toBuffer().toString("latin1")).toBe(text(withLines(1, 1)));
    expect(m.via.host).toBe("third.example.com");
    expect(m.via.transport).toBe("TCP");
    expect(m.viaCount).toBe(1);
    expect(m.popVia()).toBe("SIP/2.0/TCP  third.example.com ;branch=z9hG4bK3");
    expect(m.viaCount).toBe(0);
    expect(m.popVia()).toBeUndefined();
  });

  it("removeFirstValue on a folded Route line keeps the remaining value", () => {
    const m = parseReq(text(HEAD));
    expect(m.removeFirstValue("Route")).toBe("<sip:r1.example.com;lr>");
    expect(m.toBuffer().toString("latin1")).toBe(text(withLines(4, 2, "Route: <sip:r2.example.com;lr>")));
    expect(m.removeFirstValue("route")).toBe("<sip:r2.example.com;lr>");
    expect(m.has("Route")).toBe(false);
    expect(m.removeFirstValue("Route")).toBeUndefined();
  });

  it("setBody rewrites Content-Length (name as written) and Content-Type", () => {
    const m = parseReq(text(HEAD));
    const body = Buffer.from("hello body");
    m.setBody(body, "text/plain");
    const out = m.toBuffer();
    expect(out.toString("latin1")).toBe(
      text(
        (() => {
          const l = withLines(12, 1, "l: 10");
          l[11] = "Content-Type: text/plain";
          return l;
        })(),
        "hello body",
      ),
    );
    expect(m.contentLength).toBe(10);
    expect(m.body).toBe(body);
    const again = parseMessage(out);
    expect(again.body.toString()).toBe("hello body");
  });

  it("setBody adds Content-Length when absent", () => {
    const m = parseReq(text(withLines(12, 1), ""));
    m.setBody(Buffer.from("abc"));
    expect(m.toBuffer().toString("latin1")).toBe(text([...withLines(12, 1), "Content-Length: 3"], "abc"));
  });

  it("setUri changes only the start line", () => {
    const m = parseReq(text(HEAD));
    m.setUri("sip:bob@192.0.2.4:5062;transport=tcp");
    expect(m.uri).toBe("sip:bob@192.0.2.4:5062;transport=tcp");
    expect(m.toBuffer().toString("latin1")).toBe(
      text(withLines(0, 1, "INVITE sip:bob@192.0.2.4:5062;transport=tcp SIP/2.0")),
    );
    expect(() => m.setUri("sip:a b")).toThrow(RangeError);
  });

  // Each step's whole expected message is written out on purpose (the same form again below): a reader
  // checks the bytes an edit makes, not a diff computed by the test.
  it("prependHeader, appendHeader, setHeader, removeHeader", () => {
    const m = parseReq(text(HEAD));
    m.prependHeader("Route", "<sip:first.example.com;lr>");
    m.appendHeader("X-New", "1");
    m.prependHeader("Record-Route", "<sip:rr.example.com;lr>");
    expect(m.toBuffer().toString("latin1")).toBe(
      text([
        HEAD[0]!,
        "Record-Route: <sip:rr.example.com;lr>",
        ...HEAD.slice(1, 4),
        "Route: <sip:first.example.com;lr>",
        ...HEAD.slice(4),
        "X-New: 1",
      ]),
    );
    expect(m.headerValues("Route")).toEqual([
      "<sip:first.example.com;lr>",
      "<sip:r1.example.com;lr>",
      "<sip:r2.example.com;lr>",
    ]);
    expect(m.removeHeader("route")).toBe(2);
    expect(m.removeHeader("route")).toBe(0);
    m.setHeader("x-odd-spacing", "new");
    m.setHeader("Subject", "hi");
    expect(m.toBuffer().toString("latin1")).toBe(
      text([
        HEAD[0]!,
        "Record-Route: <sip:rr.example.com;lr>",
        ...HEAD.slice(1, 4),
        ...HEAD.slice(6, 10),
        "X-Odd-Spacing: new",
        ...HEAD.slice(11),
        "X-New: 1",
        "Subject: hi",
      ]),
    );
  });

  it("setHeader replaces every line of the header by one, at the first one's place", () => {
    const m = parseReq(text(HEAD));
    m.setHeader("Via", "SIP/2.0/UDP only.example.com;branch=z9hG4bKonly");
    expect(m.toBuffer().toString("latin1")).toBe(
      text(withLines(1, 2, "Via: SIP/2.0/UDP only.example.com;branch=z9hG4bKonly")),
    );
    expect(m.viaCount).toBe(1);
    expect(m.via.host).toBe("only.example.com");
  });

  it("untouched folded lines and odd spacing are copied byte for byte", () => {
    const m = parseReq(text(HEAD));
    m.appendHeader("X-A", "b");
    const out = m.toBuffer().toString("latin1");
    expect(out).toContain("Route: <sip:r1.example.com;lr>,\r\n  <sip:r2.example.com;lr>\r\n");
    expect(out).toContain("X-Odd-Spacing   :    kept   exactly  \r\n");
    expect(out).toContain("v:  SIP/2.0/TCP  third.example.com ;branch=z9hG4bK3\r\n");
  });

  it("eager fields follow edits of their headers", () => {
    const m = parseReq(text(HEAD));
    m.setHeader("To", "Bob <sip:bob@biloxi.example.com>;tag=xyz");
    expect(m.toTag).toBe("xyz");
    m.setHeader("From", "<sip:a@b>");
    expect(m.fromTag).toBeUndefined();
    m.setHeader("Call-ID", "new-id");
    expect(m.callId).toBe("new-id");
    m.setHeader("CSeq", "2 INVITE");
    expect(m.cseq).toEqual({ seq: 2, method: "INVITE" });
    m.removeHeader("Max-Forwards");
    expect(m.maxForwards).toBeUndefined();
    const re = parseMessage(m.toBuffer());
    expect(re.toTag).toBe("xyz");
    expect(re.callId).toBe("new-id");
  });

  it("responses keep method in step with CSeq", () => {
    const r = parseMessage(
      Buffer.from(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nTo: <sip:a@b>;tag=1\r\nFrom: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
      ),
    ) as SipResponse;
    expect(r.method).toBe("INVITE");
    r.setHeader("CSeq", "1 BYE");
    expect(r.method).toBe("BYE");
  });

  it("invalid edits throw and leave the message untouched", () => {
    const m = parseReq(text(HEAD));
    expect(() => m.appendHeader("X-Bad", "a\r\nInjected: yes")).toThrow(RangeError);
    expect(() => m.appendHeader("Bad Name", "a")).toThrow(RangeError);
    expect(() => m.setHeader("CSeq", "garbage")).toThrow(SipParseError);
    expect(() => m.pushVia("not a via")).toThrow(SipParseError);
    expect(() => m.setHeader("Max-Forwards", "300")).toThrow(SipParseError);
    expect(m.modified).toBe(false);
    expect(m.toBuffer()).toBe(m.raw);
  });

  it("a bare-LF message is re-serialised with CRLF for new lines only", () => {
    const s = `${HEAD.join("\n")}\n\nv=0\n`;
    const m = parseReq(s);
    m.setMaxForwards(5);
    expect(m.toBuffer().toString("latin1")).toBe(
      `${withLines(3, 1, "Max-Forwards: 5\r").join("\n")}\n\nv=0\n`,
    );
    expect(parseMessage(m.toBuffer()).maxForwards).toBe(5);
  });
});
