import { describe, expect, it } from "vitest";
import type { SipParseError } from "../../src/message/errors.js";
import { parseMessage } from "../../src/message/parser.js";
import { fullParse } from "../../src/message/validate.js";
import { thrownParseError } from "./helpers.js";

const BASE = [
  "INVITE sip:bob@biloxi.example.com SIP/2.0",
  "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
  "Max-Forwards: 70",
  "To: Bob <sip:bob@biloxi.example.com>",
  "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
  "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
  "CSeq: 314159 INVITE",
  "Contact: <sip:alice@pc33.atlanta.example.com>;expires=3600;q=0.7",
  "Content-Length: 0",
];

function build(replace: Record<string, string | null>, extra: string[] = [], start?: string): Buffer {
  const lines = BASE.map((l) => {
    const name = l.split(":")[0]!;
    return name in replace ? replace[name] : l;
  }).filter((l): l is string => l !== null);
  if (start !== undefined) lines[0] = start;
  return Buffer.from(`${[...lines, ...extra].join("\r\n")}\r\n\r\n`, "latin1");
}

function fault(data: Buffer): SipParseError {
  const m = parseMessage(data);
  return thrownParseError(() => fullParse(m), "expected fullParse to fail");
}

describe("fullParse", () => {
  it("accepts a well-formed message", () => {
    fullParse(
      parseMessage(
        build({}, [
          "Route: <sip:p1.example.com;lr>, <sip:p2;lr>",
          "Supported: 100rel, timer",
          "Require: 100rel",
          "Allow: INVITE, ACK",
          "Expires: 60",
          "Content-Type: application/sdp;charset=utf-8",
          "Date: Sat, 13 Nov 2010 23:29:00 GMT",
          'Warning: 399 host "text"',
          "Reply-To: Bob <sip:bob@biloxi.example.com>",
          "X-Anything: ;;,,;;,;",
        ]),
      ),
    );
    fullParse(
      parseMessage(build({ Contact: "Contact: *", "Content-Length": "Content-Length: 0" }, ["Expires: 0"])),
    );
  });

  it.each([
    ["stray separators in Via", { Via: "Via: SIP/2.0/UDP 192.0.2.15;;,;,," }, "bad-via"],
    ["empty Via param", { Via: "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bK1;" }, "bad-via"],
    ["stray separators in Contact", { Contact: 'Contact: "Joe" <sip:joe@example.org>;;;;' }, "bad-header"],
    ["empty Contact element", { Contact: "Contact: <sip:a@b>, , <sip:c@d>" }, "bad-header"],
    ["Contact * with others", { Contact: "Contact: *, <sip:a@b>" }, "bad-header"],
    ["contact expires > 2^32-1", { Contact: "Contact: <sip:a@b>;expires=280297596632815" }, "bad-header"],
    ["bad q", { Contact: "Contact: <sip:a@b>;q=1.5" }, "bad-header"],
    ["unterminated quote", { To: 'To: "Mr. J. User <sip:j.user@example.com>' }, "bad-header"],
    [
      "non-token display name",
      { From: "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43" },
      "bad-header",
    ],
    ["spaces in addr-spec", { To: 'To: "Watson, Thomas" < sip:t.watson@example.org >' }, "bad-header"],
    [
      "addr-spec with ? headers",
      { Contact: "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E" },
      "bad-header",
    ],
    ["bad Call-ID", { "Call-ID": "Call-ID: a b" }, "bad-header"],
  ] as const)("%s → 400", (_name, replace, code) => {
    const e = fault(build(replace as Record<string, string>));
    expect(e.status).toBe(400);
    expect(e.kind).toBe("request");
    expect(e.code).toBe(code);
  });

  it("duplicate single-value headers → 400", () => {
    for (const extra of [
      "To: <sip:other@example.net>",
      "From: <sip:x@y>;tag=2",
      "Call-ID: another",
      "CSeq: 59 INVITE",
      "Max-Forwards: 5",
    ]) {
      const e = fault(build({}, [extra]));
      expect(e).toMatchObject({ status: 400, code: "duplicate-header" });
    }
  });

  it("Expires above 2^32-1, non-GMT Date, bad Warning code, bad Content-Type", () => {
    expect(fault(build({}, [`Expires: 1${"0".repeat(40)}`])).status).toBe(400);
    expect(fault(build({}, ["Date: Fri, 01 Jan 2010 16:00:00 EST"])).status).toBe(400);
    expect(fault(build({}, ['Warning: 1812 overture "In Progress"'])).status).toBe(400);
    expect(fault(build({}, ["Content-Type: application"])).status).toBe(400);
    expect(fault(build({}, ["Require: a b"])).status).toBe(400);
  });

  it("Request-URI: escaped headers are refused, Route must be a name-addr", () => {
    expect(
      fault(build({}, [], "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0")),
    ).toMatchObject({
      status: 400,
      code: "bad-uri",
    });
    expect(fault(build({}, ["Route: sip:p1.example.com;lr"])).status).toBe(400);
  });

  it("unknown Request-URI schemes and non-SIP header URIs are well-formed", () => {
    fullParse(parseMessage(build({}, [], "INVITE nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0")));
    fullParse(parseMessage(build({ To: "To: isbn:2983792873", Contact: "Contact: <name:John_Smith>" })));
  });

  it("responses fail with status 0 and kind response", () => {
    const r = Buffer.from(
      "SIP/2.0 503 Service Unavailable\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nRetry-After: 949302838503028349304023988\r\nContent-Length: 0\r\n\r\n",
    );
    const e = fault(r);
    expect(e).toMatchObject({ status: 0, kind: "response" });
  });
});

describe("fullParse options", () => {
  it("schemes: a Request-URI scheme outside the list → 416", () => {
    const m = parseMessage(build({}, [], "INVITE nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0"));
    try {
      fullParse(m, { schemes: ["sip", "sips"] });
      throw new Error("expected 416");
    } catch (e) {
      expect(e).toMatchObject({ status: 416, code: "unsupported-scheme" });
    }
    fullParse(parseMessage(build({})), { schemes: ["sip", "sips"] });
  });
});
