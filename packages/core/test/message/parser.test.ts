import { describe, expect, it } from "vitest";
import { SipParseError } from "../../src/message/errors.js";
import { parseMessage } from "../../src/message/parser.js";
import type { SipMessage, SipRequest, SipResponse } from "../../src/message/types.js";
import { thrownParseError } from "./helpers.js";

const msg = (lines: string[], body = ""): Buffer =>
  Buffer.from(`${lines.join("\r\n")}\r\n\r\n${body}`, "latin1");

const OPTIONS = "OPTIONS sip:x@example.com SIP/2.0";

/** The five mandatory header lines of a small message, each one replaceable. */
function fields({
  via = ["Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1"],
  to = "To: <sip:x@example.com>",
  from = "From: <sip:y@example.com>;tag=f1",
  cseq = "CSeq: 1 OPTIONS",
}: {
  via?: string[];
  to?: string;
  from?: string;
  cseq?: string;
} = {}): string[] {
  return [...via, to, from, "Call-ID: c1", cseq];
}

const INVITE = [
  "INVITE sip:bob@biloxi.example.com SIP/2.0",
  "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport;received=192.0.2.1",
  "Max-Forwards: 70",
  "To: Bob <sip:bob@biloxi.example.com>",
  "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
  "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
  "CSeq: 314159 INVITE",
  "Contact: <sip:alice@pc33.atlanta.example.com>",
  "Content-Type: application/sdp",
  "Content-Length: 4",
];

function req(data: Buffer): SipRequest {
  const m = parseMessage(data);
  if (!m.isRequest) throw new Error("expected a request");
  return m;
}

function res(data: Buffer): SipResponse {
  const m = parseMessage(data);
  if (m.isRequest) throw new Error("expected a response");
  return m;
}

function parseError(data: Buffer, options?: Parameters<typeof parseMessage>[1]): SipParseError {
  return thrownParseError(() => parseMessage(data, options), "expected a SipParseError");
}

describe("parseMessage: requests", () => {
  it("extracts the transaction fields", () => {
    const data = msg(INVITE, "v=0\n");
    const m = req(data);
    expect(m.isRequest).toBe(true);
    expect(m.method).toBe("INVITE");
    expect(m.uri).toBe("sip:bob@biloxi.example.com");
    expect(m.version).toBe("SIP/2.0");
    expect(m.callId).toBe("a84b4c76e66710@pc33.atlanta.example.com");
    expect(m.cseq).toEqual({ seq: 314159, method: "INVITE" });
    expect(m.fromTag).toBe("1928301774");
    expect(m.toTag).toBeUndefined();
    expect(m.maxForwards).toBe(70);
    expect(m.contentLength).toBe(4);
    expect(m.body.toString()).toBe("v=0\n");
    expect(m.raw).toBe(data);
    expect(m.viaCount).toBe(1);
    const v = m.via;
    // params is built on first read, from raw: compare the fields, not the object's own properties
    expect({
      transport: v.transport,
      host: v.host,
      port: v.port,
      branch: v.branch,
      received: v.received,
      rport: v.rport,
      maddr: v.maddr,
      ttl: v.ttl,
      params: v.params,
      raw: v.raw,
    }).toEqual({
      transport: "UDP",
      host: "pc33.atlanta.example.com",
      port: 5060,
      branch: "z9hG4bK776asdhds",
      received: "192.0.2.1",
      rport: null,
      maddr: undefined,
      ttl: undefined,
      params: [
        ["branch", "z9hG4bK776asdhds"],
        ["rport", null],
        ["received", "192.0.2.1"],
      ],
      raw: "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport;received=192.0.2.1",
    });
    expect(m.modified).toBe(false);
  });

  it("the body is a view of the input, not a copy", () => {
    const data = msg(INVITE, "v=0\n");
    const m = req(data);
    expect(m.body.buffer).toBe(data.buffer);
    expect(m.body.byteOffset).toBe(data.byteOffset + data.length - 4);
  });

  it("reads Via parameters: rport with value, maddr, ttl, unknown transport kept upper-cased", () => {
    const m = req(
      msg([
        OPTIONS,
        ...fields({
          via: ["Via: SIP/2.0/sctp host.example.com;RPORT=5070;Branch=z9hG4bKa;maddr=224.2.0.1;ttl=16;x-y"],
        }),
      ]),
    );
    expect(m.via.transport).toBe("SCTP");
    expect(m.via.rport).toBe(5070);
    expect(m.via.branch).toBe("z9hG4bKa");
    expect(m.via.maddr).toBe("224.2.0.1");
    expect(m.via.ttl).toBe(16);
    expect(m.via.port).toBeUndefined();
    expect(m.via.params.at(-1)).toEqual(["x-y", null]);
    expect(m.maxForwards).toBeUndefined();
    expect(m.contentLength).toBeUndefined();
    expect(m.body.length).toBe(0);
  });

  it("builds Via params on first read, the same as written, once", () => {
    const m = req(
      msg([
        OPTIONS,
        ...fields({
          via: [
            'Via: SIP/2.0/UDP a.example.com:5062 ;Branch=z9hG4bKq ; X-Q="a;b,c"',
            " ;received=192.0.2.7;flag;rport=1;ttl=3;x=1, SIP/2.0/TCP b.example.com;branch=z9hG4bKr",
          ],
        }),
      ]),
    );
    const p = m.via.params;
    expect(p).toEqual([
      ["branch", "z9hG4bKq"],
      ["x-q", '"a;b,c"'],
      ["received", "192.0.2.7"],
      ["flag", null],
      ["rport", "1"],
      ["ttl", "3"],
      ["x", "1"],
    ]);
    expect(m.via.params).toBe(p);
    expect(m.via.branch).toBe("z9hG4bKq");
    expect(m.via.received).toBe("192.0.2.7");
    expect(m.via.rport).toBe(1);
    expect(m.via.ttl).toBe(3);
    expect(m.viaCount).toBe(2);
  });

  it("compact forms and case-insensitive names", () => {
    const m = req(
      msg([
        "OPTIONS sip:x@example.com SIP/2.0",
        "v: SIP/2.0/TCP a.example.com;branch=z9hG4bK1",
        "t: <sip:x@example.com>;TAG=to1",
        "f: <sip:y@example.com>;tag=from1",
        "i: compact-call-id",
        "cSeQ: 7 OPTIONS",
        "MAX-FORWARDS: 3",
        "m: <sip:y@host>",
        "k: 100rel",
        "l: 0",
      ]),
    );
    expect(m.via.transport).toBe("TCP");
    expect(m.toTag).toBe("to1");
    expect(m.fromTag).toBe("from1");
    expect(m.callId).toBe("compact-call-id");
    expect(m.cseq.seq).toBe(7);
    expect(m.maxForwards).toBe(3);
    expect(m.contentLength).toBe(0);
    expect(m.header("Contact")).toBe("<sip:y@host>");
    expect(m.header("CONTACT")).toBe("<sip:y@host>");
    expect(m.header("m")).toBe("<sip:y@host>");
    expect(m.header("Supported")).toBe("100rel");
    expect(m.header("call-id")).toBe("compact-call-id");
    expect(m.has("Max-Forwards")).toBe(true);
    expect(m.has("Route")).toBe(false);
    expect(m.header("Route")).toBeUndefined();
    expect(m.headers()[0]).toEqual(["v", "SIP/2.0/TCP a.example.com;branch=z9hG4bK1"]);
  });

  it("line folding: values continue on lines starting with SP/HT and are returned unfolded", () => {
    const m = req(
      msg([
        "INVITE sip:x@example.com SIP/2.0",
        "TO :",
        " sip:x@example.com ;   tag    = 1918181833n",
        'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
        "  ;",
        "  tag = 98asjd8",
        "MaX-fOrWaRdS: 0068",
        // Written out line by line on purpose (as the other torture cases below): the bytes are the test.
        "Call-ID: fold@192.0.2.1",
        "cseq: 0009",
        "  INVITE",
        "Via  : SIP  /   2.0",
        " /UDP",
        "    192.0.2.2;branch=390skdjuw",
        "Subject: first part",
        "\tsecond part",
        "s :",
      ]),
    );
    expect(m.toTag).toBe("1918181833n");
    expect(m.fromTag).toBe("98asjd8");
    expect(m.maxForwards).toBe(68);
    expect(m.cseq).toEqual({ seq: 9, method: "INVITE" });
    expect(m.via.host).toBe("192.0.2.2");
    expect(m.via.branch).toBe("390skdjuw");
    expect(m.via.transport).toBe("UDP");
    expect(m.header("to")).toBe("sip:x@example.com ;   tag    = 1918181833n");
    expect(m.headerLines("subject")).toEqual(["first part second part", ""]);
    expect(m.header("Via")).toBe("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw");
  });

  it("several Via values in one line and across lines", () => {
    const m = req(
      msg([
        OPTIONS,
        ...fields({
          via: [
            "Via: SIP/2.0/UDP first.example.com;branch=z9hG4bK1 , SIP/2.0/TCP second.example.com;branch=z9hG4bK2",
            "Via: SIP/2.0/UDP third.example.com;branch=z9hG4bK3",
            "v: SIP/2.0/UDP fourth.example.com;branch=z9hG4bK4,SIP/2.0/UDP fifth.example.com",
          ],
        }),
      ]),
    );
    expect(m.viaCount).toBe(5);
    expect(m.via.host).toBe("first.example.com");
    expect(m.via.raw).toBe("SIP/2.0/UDP first.example.com;branch=z9hG4bK1");
    expect(m.headerLines("via")).toHaveLength(3);
    expect(m.headerValues("Via")).toEqual([
      "SIP/2.0/UDP first.example.com;branch=z9hG4bK1",
      "SIP/2.0/TCP second.example.com;branch=z9hG4bK2",
      "SIP/2.0/UDP third.example.com;branch=z9hG4bK3",
      "SIP/2.0/UDP fourth.example.com;branch=z9hG4bK4",
      "SIP/2.0/UDP fifth.example.com",
    ]);
  });

  it("IPv6 references in Via sent-by and received, and in the Request-URI", () => {
    const m = req(
      msg([
        "BYE sip:[2001:db8::10]:5070 SIP/2.0",
        ...fields({
          via: [
            "Via: SIP/2.0/TLS [2001:db8::9:1]:6050;branch=z9hG4bKas3;received=[2001:db8::9:255]",
            "Via: SIP/2.0/UDP [2001:db8::1];received=2001:db8::9:255;branch=z9hG4bK2",
          ],
          to: "To: <sip:x@example.com>;tag=t",
          from: "From: <sip:y@example.com>;tag=f",
          cseq: "CSeq: 1 BYE",
        }),
      ]),
    );
    expect(m.uri).toBe("sip:[2001:db8::10]:5070");
    expect(m.via.host).toBe("[2001:db8::9:1]");
    expect(m.via.port).toBe(6050);
    expect(m.via.received).toBe("[2001:db8::9:255]");
    expect(m.viaCount).toBe(2);
  });

  it("a quoted display name hides ';tag=' and escaped quotes from the tag search", () => {
    const m = req(
      msg([
        OPTIONS,
        ...fields({
          to: 'To: "Bob \\";tag=fake\\" <x>" <sip:x@example.com>',
          from: 'From: "A;tag=nope, \\"q\\"" <sip:y@example.com;tag=uri-param>;tag=real',
        }),
      ]),
    );
    expect(m.toTag).toBeUndefined();
    expect(m.fromTag).toBe("real");
  });

  it("addr-spec From/To: ';' params after the URI are header params", () => {
    const m = req(
      msg([
        OPTIONS,
        ...fields({
          to: "To: sip:x@example.com;tag=abc",
          from: "From: sip:y@example.com ; foo=bar ; tag = def",
        }),
      ]),
    );
    expect(m.toTag).toBe("abc");
    expect(m.fromTag).toBe("def");
  });

  // Each torture case writes its message out line by line on purpose (as the folding case above): the bytes are the test.
  it("unknown methods, unusual tokens and unknown URI schemes parse", () => {
    const m = req(
      msg([
        "!interesting-Method0123456789_*+`.%indeed'~ urn:service:sos SIP/2.0",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
        "To: <tel:+1-201-555-0123>",
        "From: <sip:y@example.com>;tag=_token~1'+`*%!-.",
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
      ]),
    );
    expect(m.method).toBe("!interesting-Method0123456789_*+`.%indeed'~");
    expect(m.uri).toBe("urn:service:sos");
    expect(m.fromTag).toBe("_token~1'+`*%!-.");
    expect(m.callId).toBe("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
  });

  it("binary bodies with NUL bytes are framed by Content-Length", () => {
    const body = Buffer.from([0, 1, 2, 13, 10, 13, 10, 0, 255]);
    const head = Buffer.from(
      `${INVITE.slice(0, -1).join("\r\n")}\r\nContent-Length: ${body.length}\r\n\r\n`,
      "latin1",
    );
    const m = req(Buffer.concat([head, body]));
    expect(m.body.equals(body)).toBe(true);
  });

  it("accepts bare LF line ends", () => {
    const data = Buffer.from(`${INVITE.join("\n")}\n\nv=0\n`, "latin1");
    const m = req(data);
    expect(m.callId).toBe("a84b4c76e66710@pc33.atlanta.example.com");
    expect(m.body.toString()).toBe("v=0\n");
    expect(m.header("Contact")).toBe("<sip:alice@pc33.atlanta.example.com>");
  });

  it("ignores CRLFs before the start line (RFC 3261 §7.5)", () => {
    const inner = msg(INVITE, "v=0\n");
    const m = req(Buffer.concat([Buffer.from("\r\n\r\n"), inner]));
    expect(m.raw.equals(inner)).toBe(true);
    expect(m.toBuffer().equals(inner)).toBe(true);
  });
});

describe("parseMessage: responses", () => {
  it("status, reason, method from CSeq", () => {
    const m = res(
      msg([
        "SIP/2.0 180 Ringing",
        ...fields({
          via: ["Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;received=192.0.2.1"],
          to: "To: <sip:x@example.com>;tag=t1",
          cseq: "CSeq: 5 INVITE",
        }),
        "Content-Length: 0",
      ]),
    );
    expect(m.isRequest).toBe(false);
    expect(m.status).toBe(180);
    expect(m.reason).toBe("Ringing");
    expect(m.method).toBe("INVITE");
    expect(m.toTag).toBe("t1");
  });

  it("empty and unusual reason phrases", () => {
    const lines = fields({ cseq: "CSeq: 5 INVITE" });
    expect(res(msg(["SIP/2.0 100 ", ...lines])).reason).toBe("");
    expect(res(msg(["SIP/2.0 100", ...lines])).reason).toBe("");
    const utf8 = Buffer.from("Très bien — OK", "utf8").toString("latin1");
    expect(res(msg([`SIP/2.0 200 ${utf8}`, ...lines])).reason).toBe(utf8);
  });

  it("rejects bad status codes with status 0 and kind response", () => {
    const lines = fields({ cseq: "CSeq: 5 INVITE" });
    for (const start of [
      "SIP/2.0 4294967301 big",
      "SIP/2.0 099 low",
      "SIP/2.0 700 high",
      "SIP/2.0 20 x",
      "SIP/2.0  200 OK",
    ]) {
      const e = parseError(msg([start, ...lines]));
      expect(e.kind).toBe("response");
      expect(e.status).toBe(0);
      expect(e.code).toBe("bad-status");
    }
    const v = parseError(msg(["SIP/3.0 200 OK", ...lines]));
    expect(v).toMatchObject({ kind: "response", status: 0, code: "bad-version" });
    const cs = parseError(
      msg(["SIP/2.0 200 OK", ...lines.slice(0, 4), "CSeq: 9292394834772304023312 OPTIONS"]),
    );
    expect(cs).toMatchObject({ kind: "response", status: 0, code: "bad-cseq" });
  });
});

describe("parseMessage: rejects", () => {
  const base = (start: string, extra: string[] = [], drop = ""): Buffer =>
    msg([
      start,
      ...[...fields(), "Max-Forwards: 70"].filter((l) => drop === "" || !l.startsWith(drop)),
      ...extra,
    ]);

  it.each([
    ["OPTIONS  sip:x@example.com SIP/2.0", "bad-start-line"],
    ["OPTIONS sip:x@example.com  SIP/2.0", "bad-start-line"],
    ["OPTIONS sip:x@example.com SIP/2.0 ", "bad-start-line"],
    ["OPTIONS sip:x@example.com", "bad-start-line"],
    ["OPTIONS sip:x@example.com; lr SIP/2.0", "bad-start-line"],
    ["OPTIONS <sip:x@example.com> SIP/2.0", "bad-uri"],
    ["OPTIONS sip:2001:db8::10 SIP/2.0", "bad-uri"],
    ["OPTIONS sip:[2001:db8::10 SIP/2.0", "bad-uri"],
    ["OPTIONS sip: SIP/2.0", "bad-uri"],
    ["OPTIONS x SIP/2.0", "bad-uri"],
    ["OPTIONS sip:x@example.com HTTP/1.1", "bad-start-line"],
    ["OPTIONS sip:x@example.com SIP/2", "bad-start-line"],
  ])("start line %j → 400 %s", (start, code) => {
    const e = parseError(base(start));
    expect(e.status).toBe(400);
    expect(e.code).toBe(code);
    expect(e.kind).toBe("request");
    expect(e.name).toBe("SipParseError");
  });

  it("other SIP versions → 505", () => {
    const e = parseError(base("OPTIONS sip:x@example.com SIP/7.0"));
    expect(e).toMatchObject({ status: 505, code: "bad-version", kind: "request" });
  });

  it.each(["Via", "To", "From", "Call-ID", "CSeq"])("missing %s → 400", (h) => {
    const e = parseError(base(OPTIONS, [], `${h}:`));
    expect(e).toMatchObject({ status: 400, code: "missing-header" });
  });

  it("CSeq method differing from the Request-Line: 400, or 501 for an unknown method", () => {
    expect(parseError(base("INVITE sip:x@example.com SIP/2.0"))).toMatchObject({
      status: 400,
      code: "cseq-mismatch",
    });
    expect(parseError(base("NEWMETHOD sip:x@example.com SIP/2.0"))).toMatchObject({
      status: 501,
      code: "cseq-mismatch",
    });
  });

  it("scalar limits: CSeq > 2^32-1, Max-Forwards > 255", () => {
    const big = msg([OPTIONS, ...fields({ cseq: "CSeq: 4294967296 OPTIONS" })]);
    expect(parseError(big)).toMatchObject({ status: 400, code: "bad-cseq" });
    const max = msg([OPTIONS, ...fields({ cseq: "CSeq: 4294967295 OPTIONS" })]);
    expect(parseMessage(max).cseq.seq).toBe(4294967295);
    expect(parseError(base(OPTIONS, ["Max-Forwards: 256"], "Max-Forwards"))).toMatchObject({
      status: 400,
      code: "bad-max-forwards",
    });
  });

  it("Content-Length: negative, non-numeric, conflicting, larger than the datagram", () => {
    const s = OPTIONS;
    for (const cl of ["-1", "abc", "1 2", ""]) {
      expect(parseError(base(s, [`Content-Length: ${cl}`]))).toMatchObject({
        status: 400,
        code: "bad-content-length",
      });
    }
    expect(parseError(base(s, ["Content-Length: 13", "l: 5"]))).toMatchObject({
      status: 400,
      code: "bad-content-length",
    });
    // the same value twice is not a conflict
    expect(parseMessage(base(s, ["Content-Length: 0", "l: 0"])).contentLength).toBe(0);
    expect(parseError(base(s, ["Content-Length: 9999"]))).toMatchObject({ status: 400, code: "truncated" });
  });

  it("a header line without a colon, or a bad header name", () => {
    expect(parseError(base(OPTIONS, ["Foobar roobar"]))).toMatchObject({
      status: 400,
      code: "bad-header",
    });
    expect(parseError(base(OPTIONS, ["Bad Name: x"]))).toMatchObject({
      code: "bad-header",
    });
    expect(parseError(base(OPTIONS, [": x"]))).toMatchObject({
      code: "bad-header",
    });
  });

  it("no blank line: a stream message is refused, a complete datagram accepted", () => {
    const data = Buffer.from(
      "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nTo: <sip:x@example.com>\r\nFrom: <sip:y@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n",
    );
    expect(parseMessage(data).callId).toBe("c");
    expect(parseError(data, { datagram: false }).code).toBe("no-end-of-headers");
    expect(parseError(data.subarray(0, data.length - 2)).code).toBe("no-end-of-headers");
  });

  it("never throws anything but SipParseError, even for non-Buffer input", () => {
    for (const bad of [undefined, null, "INVITE", 42, {}, new Uint8Array(3)]) {
      expect(() => parseMessage(bad as unknown as Buffer)).toThrow(SipParseError);
    }
    expect(parseError(Buffer.alloc(0)).code).toBe("empty");
    expect(parseError(Buffer.from("\r\n\r\n")).code).toBe("empty");
    expect(parseError(Buffer.from([0, 1, 2, 3])).kind).toBe("unknown");
  });
});

describe("parseMessage: datagram and stream framing", () => {
  const head = (cl?: number) =>
    [
      "REGISTER sip:example.com SIP/2.0",
      "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492",
      "To: <sip:u@example.com>",
      "From: <sip:u@example.com>;tag=43251j3j324",
      "Call-ID: dblreq",
      "CSeq: 8 REGISTER",
      ...(cl === undefined ? [] : [`Content-Length: ${cl}`]),
    ].join("\r\n");

  it("octets after Content-Length are ignored and excluded from raw", () => {
    const first = Buffer.from(`${head(0)}\r\n\r\n`);
    const data = Buffer.concat([first, Buffer.from("INVITE sip:joe@example.com SIP/2.0\r\n\r\n")]);
    const m = parseMessage(data);
    expect(m.raw.equals(first)).toBe(true);
    expect(m.toBuffer().equals(first)).toBe(true);
    expect(m.body.length).toBe(0);
  });

  it("without Content-Length the body is the rest of the datagram", () => {
    const data = Buffer.from(`${head()}\r\n\r\nv=0\r\nrest`);
    const m = parseMessage(data);
    expect(m.contentLength).toBeUndefined();
    expect(m.body.toString()).toBe("v=0\r\nrest");
    expect(m.raw).toBe(data);
  });

  it("stream mode requires Content-Length", () => {
    const data = Buffer.from(`${head()}\r\n\r\n`);
    expect(parseError(data, { datagram: false })).toMatchObject({ status: 400, code: "bad-content-length" });
    expect(parseMessage(Buffer.from(`${head(0)}\r\n\r\n`), { datagram: false }).contentLength).toBe(0);
  });
});

describe("parseMessage: limits", () => {
  const lines = [OPTIONS, ...fields()];

  it("oversize input → 513 before anything else", () => {
    const data = Buffer.concat([msg(lines), Buffer.alloc(70000, 0x41)]);
    expect(parseError(data)).toMatchObject({ status: 513, code: "too-large" });
    expect(parseError(msg(lines), { limits: { maxMessageSize: 50 } })).toMatchObject({ status: 513 });
    // garbage that is too large is refused for its size, not its content
    expect(parseError(Buffer.alloc(100000))).toMatchObject({ code: "too-large" });
  });

  it("too many headers, too long a line, too many Vias → 400", () => {
    const many = [...lines, ...Array.from({ length: 300 }, (_, i) => `X-H${i}: v`)];
    expect(parseError(msg(many))).toMatchObject({ status: 400, code: "limit-exceeded" });
    expect(parseMessage(msg(many), { limits: { maxHeaders: 400 } }).header("X-H299")).toBe("v");
    const long = [...lines, `X-Long: ${"a".repeat(9000)}`];
    expect(parseError(msg(long))).toMatchObject({ status: 400, code: "limit-exceeded" });
    const vias = [
      ...lines,
      ...Array.from({ length: 4 }, (_, i) => `Via: SIP/2.0/UDP h${i};branch=z9hG4bK${i}`),
    ];
    expect(parseError(msg(vias), { limits: { maxVias: 4 } })).toMatchObject({ code: "limit-exceeded" });
    expect(parseMessage(msg(vias), { limits: { maxVias: 5 } }).viaCount).toBe(5);
    const oneLine = [...lines, `Via: ${Array.from({ length: 5 }, (_, i) => `SIP/2.0/UDP h${i}`).join(", ")}`];
    expect(parseError(msg(oneLine), { limits: { maxVias: 5 } })).toMatchObject({ code: "limit-exceeded" });
  });
});

describe("lazy header access", () => {
  it("headerValues splits outside quotes and <>, headerLines keeps lines", () => {
    const m: SipMessage = parseMessage(
      msg([
        OPTIONS,
        ...fields(),
        'Contact: "A, B" <sip:a@x;p=1,2>;q=0.5, <sip:b@y>',
        "Contact: sip:c@z",
        "Allow: INVITE,ACK ,  BYE",
        "Route: <sip:p1;lr>,<sip:p2;lr>",
      ]),
    );
    expect(m.headerValues("contact")).toEqual(['"A, B" <sip:a@x;p=1,2>;q=0.5', "<sip:b@y>", "sip:c@z"]);
    expect(m.headerLines("m")).toEqual(['"A, B" <sip:a@x;p=1,2>;q=0.5, <sip:b@y>', "sip:c@z"]);
    expect(m.header("Contact")).toBe('"A, B" <sip:a@x;p=1,2>;q=0.5, <sip:b@y>');
    expect(m.headerValues("Allow")).toEqual(["INVITE", "ACK", "BYE"]);
    expect(m.headerValues("Route")).toEqual(["<sip:p1;lr>", "<sip:p2;lr>"]);
    expect(m.headerValues("X-None")).toEqual([]);
    expect(m.headers().map(([n]) => n)).toEqual([
      "Via",
      "To",
      "From",
      "Call-ID",
      "CSeq",
      "Contact",
      "Contact",
      "Allow",
      "Route",
    ]);
  });
});
