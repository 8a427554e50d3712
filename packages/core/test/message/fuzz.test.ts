/**
 * Property tests for the message layer (fast-check, fixed seeds so a failure
 * reproduces; fast-check prints the seed, path and shrunk counterexample).
 *
 * The rule everywhere: for ANY input, the parsing entry points (parseMessage,
 * fullParse, parseUri, parseNameAddr, StreamFramer.push) either return or
 * throw a SipParseError, never anything else, and never hang.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SipParseError } from "../../src/message/errors.js";
import { parseNameAddr } from "../../src/message/nameaddr.js";
import { parseMessage } from "../../src/message/parser.js";
import { StreamFramer } from "../../src/message/stream.js";
import { DEFAULT_PARSE_LIMITS, type SipMessage } from "../../src/message/types.js";
import { parseUri } from "../../src/message/uri.js";
import { fullParse } from "../../src/message/validate.js";

const SEED = 0x51_7e_4d;
/** 2 shared cores: keep runs moderate. */
const RUNS = 300;

// ---------------------------------------------------------------- corpus

const TORTURE = fileURLToPath(new URL("../fixtures/torture/", import.meta.url));

/**
 * "valid-syntax" files the parser answers with 400 by design (see torture.test.ts):
 * insuf (no Call-ID/From/To), multi01 (duplicate single-value headers).
 */
const REJECTED_VALID_SYNTAX = new Set(["insuf.dat", "multi01.dat"]);

/** RFC 4475 / RFC 5118 files that parse (the valid ones, per INDEX.tsv). */
function validTortureFiles(): Buffer[] {
  const out: Buffer[] = [];
  for (const [dir, fileDir] of [
    ["rfc4475", "rfc4475/"],
    ["rfc5118", "rfc5118/wire/"],
  ] as const) {
    const rows = readFileSync(`${TORTURE}${dir}/INDEX.tsv`, "utf8").split("\n").slice(1);
    for (const row of rows) {
      const [file, , validity] = row.split("\t");
      if (!file || !validity?.startsWith("valid") || REJECTED_VALID_SYNTAX.has(file)) continue;
      out.push(readFileSync(`${TORTURE}${fileDir}${file}`));
    }
  }
  return out;
}

const crlf = (lines: string[], body = ""): Buffer =>
  Buffer.from(`${lines.join("\r\n")}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, "utf8");

const SDP =
  "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

const TYPICAL: Buffer[] = [
  crlf(
    [
      "INVITE sip:bob@biloxi.example.com SIP/2.0",
      "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport",
      "Via: SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK-2;received=192.0.2.9, SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK3",
      "Max-Forwards: 70",
      "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
      "To: Bob <sip:bob@biloxi.example.com>",
      'From: "Alice \\"A\\"" <sip:alice@atlanta.example.com>;tag=1928301774',
      "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
      "CSeq: 314159 INVITE",
      "Contact: <sip:alice@pc33.atlanta.example.com;transport=tcp>;expires=60",
      "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS",
      "Supported: replaces, timer",
      "Content-Type: application/sdp",
    ],
    SDP,
  ),
  crlf([
    "SIP/2.0 180 Ringing",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.1",
    "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:bob@192.0.2.4>",
  ]),
  crlf(
    [
      "SIP/2.0 200 OK",
      "v: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;received=192.0.2.1",
      "t: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
      "f: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
      "i: a84b4c76e66710@pc33.atlanta.example.com",
      "CSeq: 314159 INVITE",
      "m: <sip:bob@192.0.2.4>",
      "c: application/sdp",
    ],
    SDP,
  ),
  crlf([
    "REGISTER sip:registrar.biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>",
    "From: Bob <sip:bob@biloxi.example.com>;tag=456248",
    "Call-ID: 843817637684230@998sdasdh09",
    "CSeq: 1826 REGISTER",
    "Contact: <sip:bob@192.0.2.4>;expires=7200",
    "Expires: 7200",
  ]),
];

const CORPUS: Buffer[] = [...TYPICAL, ...validTortureFiles()];

const URIS = [
  "sip:alice@atlanta.example.com",
  "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=project%20x&priority=urgent",
  "sip:+1-212-555-1212:1234@gateway.com;user=phone",
  "sip:%61lice@atlanta.com;maddr=239.255.255.1;ttl=15",
  "sip:[2001:db8::10:5070]",
  "sip:user@[::ffff:192.0.2.10]:19823",
  "tel:+1-201-555-0123;phone-context=example.com",
  "mailto:someone@example.com",
  "urn:service:sos",
];

const NAME_ADDRS = [
  '"Alice \\"A\\"" <sip:alice@atlanta.example.com>;tag=1928301774',
  "Bob <sips:bob@biloxi.example.com>",
  "sip:+19725552222@gw1.example.net;unknownparam",
  "<sip:caller@[2001:db8::9:1]:5060;transport=udp>;expires=60;q=0.5",
  'caller<sip:caller@example.com>;tag=323;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"',
];

// ---------------------------------------------------------------- the rule

function describeError(e: unknown): string {
  return e instanceof Error
    ? `${e.constructor.name}: ${e.stack ?? e.message}`
    : `non-Error thrown: ${String(e)}`;
}

/** Run fn; a SipParseError counts as a valid outcome, anything else fails the property. */
function onlySipParseError<T>(what: string, fn: () => T): T | SipParseError {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SipParseError) {
      // A well-formed error: a status to answer with (0 only for responses) and a code.
      if (typeof e.code !== "string" || e.code === "") throw new Error(`${what}: SipParseError without code`);
      if (e.kind === "response" ? e.status !== 0 : !(e.status >= 400 && e.status <= 599)) {
        throw new Error(`${what}: SipParseError with status ${e.status} for kind ${e.kind}`);
      }
      return e;
    }
    throw new Error(`${what} threw something other than SipParseError: ${describeError(e)}`);
  }
}

/** parseUri and parseNameAddr throw nothing but a well-formed SipParseError for any string of `arb`. */
function uriParsersThrowOnlySipParseError(arb: fc.Arbitrary<string>, seed: number): void {
  fc.assert(
    fc.property(arb, (text) => {
      onlySipParseError("parseUri", () => parseUri(text));
      onlySipParseError("parseNameAddr", () => parseNameAddr(text));
    }),
    { seed, numRuns: RUNS },
  );
}

/**
 * Every parsing entry point on one input. A message that parses must also
 * serialise to its own raw bytes.
 */
function exercise(data: Buffer): void {
  for (const datagram of [true, false]) {
    const m = onlySipParseError(`parseMessage(datagram=${datagram})`, () => parseMessage(data, { datagram }));
    if (m instanceof SipParseError) continue;
    touch(m);
    onlySipParseError("fullParse", () => fullParse(m));
    expect(m.toBuffer()).toBe(m.raw);
  }
  const text = data.toString("latin1");
  onlySipParseError("parseUri", () => parseUri(text));
  onlySipParseError("parseNameAddr", () => parseNameAddr(text));
  // The same bytes as a TCP stream, in one chunk and in three; framed messages parse (or not) by the same rule.
  for (const chunks of [
    [data],
    [
      data.subarray(0, data.length >> 2),
      data.subarray(data.length >> 2, data.length >> 1),
      data.subarray(data.length >> 1),
    ],
  ]) {
    const framer = new StreamFramer();
    const framed: Buffer[] = [];
    onlySipParseError("StreamFramer.push", () => {
      for (const c of chunks) framer.push(c, (msg) => framed.push(msg));
    });
    for (const msg of framed) {
      const m = onlySipParseError("parseMessage(framed)", () => parseMessage(msg, { datagram: false }));
      if (!(m instanceof SipParseError)) onlySipParseError("fullParse(framed)", () => fullParse(m));
    }
  }
}

/** The lazy accessors must not throw anything either. */
function touch(m: SipMessage): void {
  void m.callId;
  void m.via.branch;
  for (const name of ["Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "X-Unknown"]) {
    m.header(name);
    m.headerLines(name);
    m.headerValues(name);
    m.has(name);
  }
  m.headers();
}

// ---------------------------------------------------------------- generators

const bytesArb = fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a));

/** SIP-flavoured noise: pieces of grammar glued together at random. */
const sipishArb = fc
  .array(
    fc.constantFrom(
      "INVITE ",
      "SIP/2.0",
      "SIP/2.0 200 OK",
      " ",
      "\t",
      "\r\n",
      "\n",
      "\r",
      "\r\n\r\n",
      "\r\n ",
      "Via: ",
      "v:",
      "SIP/2.0/UDP ",
      "[2001:db8::1]",
      "192.0.2.1",
      ":5060",
      ";branch=z9hG4bK",
      ";received=",
      ";rport",
      "Call-ID: ",
      "CSeq: ",
      "1 INVITE",
      "4294967296",
      "From: ",
      "To: ",
      ";tag=",
      "Max-Forwards: ",
      "Content-Length: ",
      "l:",
      "0",
      "-1",
      "99999999999999999999",
      "sip:",
      "sips:",
      "tel:",
      "user",
      "@",
      "example.com",
      "<",
      ">",
      '"',
      "\\",
      ";",
      ",",
      "=",
      "?",
      "&",
      "%",
      "%00",
      "%zz",
      "[",
      "]",
      ":",
      "\x00",
      "\xff",
      "\xc3\xa9",
    ),
    { maxLength: 120 },
  )
  .map((parts) => Buffer.from(parts.join(""), "latin1"));

type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "set"; at: number; byte: number }
  | { op: "insert"; at: number; bytes: Buffer }
  | { op: "delete"; at: number; len: number }
  | { op: "dupLine"; line: number }
  | { op: "truncate"; at: number }
  | { op: "huge"; at: number; ch: string; count: number };

const SPECIAL_BYTES = [0, 9, 10, 13, 32, 34, 37, 44, 58, 59, 60, 62, 64, 91, 92, 93, 127, 128, 255];
const HUGE_CHARS = [";", "<", '"', " ", "%", "\r", "\n", ",", "\\", "\r\n ", "a", "[", ":"];

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({
    op: fc.constant("set" as const),
    at: fc.nat(),
    byte: fc.oneof(fc.constantFrom(...SPECIAL_BYTES), fc.integer({ min: 0, max: 255 })),
  }),
  fc.record({
    op: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map((a) => Buffer.from(a)),
      sipishArb,
    ),
  }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant("dupLine" as const), line: fc.nat() }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    op: fc.constant("huge" as const),
    at: fc.nat(),
    ch: fc.constantFrom(...HUGE_CHARS),
    count: fc.constantFrom(100, 1000, 8000, 20_000, 60_000),
  }),
);

function mutate(input: Buffer, m: Mutation): Buffer {
  const len = input.length;
  const pos = (at: number): number => (len === 0 ? 0 : at % (len + 1));
  switch (m.op) {
    case "flip": {
      if (len === 0) return input;
      const out = Buffer.from(input);
      const i = m.at % len;
      out[i] = out[i]! ^ (1 << m.bit);
      return out;
    }
    case "set": {
      if (len === 0) return input;
      const out = Buffer.from(input);
      out[m.at % len] = m.byte;
      return out;
    }
    case "insert": {
      const i = pos(m.at);
      return Buffer.concat([input.subarray(0, i), m.bytes, input.subarray(i)]);
    }
    case "delete": {
      const i = pos(m.at);
      return Buffer.concat([input.subarray(0, i), input.subarray(Math.min(len, i + m.len))]);
    }
    case "dupLine": {
      // Duplicate one CRLF-terminated line of the head (or of the body).
      const starts = [0];
      for (let i = input.indexOf(10); i >= 0; i = input.indexOf(10, i + 1)) starts.push(i + 1);
      const k = m.line % starts.length;
      const a = starts[k]!;
      const b = starts[k + 1] ?? len;
      return Buffer.concat([input.subarray(0, b), input.subarray(a, b), input.subarray(b)]);
    }
    case "truncate":
      return input.subarray(0, pos(m.at));
    case "huge": {
      const i = pos(m.at);
      return Buffer.concat([
        input.subarray(0, i),
        Buffer.from(m.ch.repeat(m.count), "latin1"),
        input.subarray(i),
      ]);
    }
  }
}

const mutatedArb = fc
  .tuple(fc.constantFrom(...CORPUS), fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
  .map(([base, muts]) => muts.reduce(mutate, base));

// A generator of valid messages (for the round-trip property).

const tokenArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}$/);
/** URI user part: unreserved characters only (a '%' would have to start an escape). */
const userArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9.!*_+'~()-]{0,11}$/);
const hostArb = fc.oneof(
  fc.stringMatching(/^[a-z]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,6}[a-z0-9])?){0,2}\.example\.com$/),
  fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join(".")),
  fc.constantFrom("[2001:db8::1]", "[::1]", "[2001:db8::9:255]", "[::ffff:192.0.2.1]"),
);
const portArb = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined });
const wsArb = fc.constantFrom("", " ", "  ", "\t");
const METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "INFO", "UPDATE"];
const methodArb = fc.constantFrom(...METHODS);
/** Extension header value: visible text with inner spaces, optionally folded. */
const textArb = fc
  .array(fc.stringMatching(/^[!-~]{1,10}$/), { minLength: 1, maxLength: 5 })
  .chain((words) => fc.constantFrom(words.join(" "), words.join("\r\n ")));

const viaArb = fc
  .record({
    transport: fc.constantFrom("UDP", "TCP", "TLS", "SCTP", "WS"),
    host: hostArb,
    port: portArb,
    branch: tokenArb,
    extra: fc.constantFrom("", ";rport", ";received=192.0.2.7", ";rport=5060;received=192.0.2.8"),
  })
  .map(
    (v) =>
      `SIP/2.0/${v.transport} ${v.host}${v.port === undefined ? "" : `:${v.port}`};branch=z9hG4bK${v.branch}${v.extra}`,
  );

const nameAddrArb = fc
  .record({
    display: fc.constantFrom("", "Alice ", '"Bob B." ', '"q\\"uote" '),
    user: userArb,
    host: hostArb,
    tag: fc.option(tokenArb, { nil: undefined }),
  })
  .map((a) => `${a.display}<sip:${a.user}@${a.host}>${a.tag === undefined ? "" : `;tag=${a.tag}`}`);

interface GeneratedMessage {
  readonly bytes: Buffer;
  readonly vias: number;
}

const validMessageArb: fc.Arbitrary<GeneratedMessage> = fc
  .record({
    request: fc.boolean(),
    method: methodArb,
    ruriUser: userArb,
    ruriHost: hostArb,
    status: fc.integer({ min: 100, max: 699 }),
    reason: fc.constantFrom("OK", "Ringing", "", "Not Found", "Weird \xc3\xa9 reason"),
    vias: fc.array(fc.array(viaArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }),
    viaName: fc.constantFrom("Via", "v", "VIA", "via"),
    from: nameAddrArb.map((s) => (s.includes(";tag=") ? s : `${s};tag=f1`)),
    to: nameAddrArb,
    callId: fc.stringMatching(/^[A-Za-z0-9.!%*_+`'~()<>:\\"/[\]?{}-]{1,20}(@[a-z0-9.]{1,10})?$/),
    seq: fc.nat(),
    maxForwards: fc.option(fc.nat(255), { nil: undefined }),
    extra: fc.array(
      fc.tuple(
        tokenArb.map((t) => `X-${t}`),
        textArb,
      ),
      { maxLength: 6 },
    ),
    sep: fc.tuple(wsArb, wsArb),
    body: fc.option(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      { nil: undefined },
    ),
    order: fc.nat(),
  })
  .map((g) => {
    const method = g.method;
    const start = g.request
      ? `${method} sip:${g.ruriUser}@${g.ruriHost} SIP/2.0`
      : `SIP/2.0 ${g.status} ${g.reason}`;
    const [s1, s2] = g.sep;
    const h = (name: string, value: string): string => `${name}${s1}:${s2}${value}`;
    const lines = [
      ...g.vias.map((vs) => h(g.viaName, vs.join(", "))),
      h("From", g.from),
      h("To", g.to),
      h("Call-ID", g.callId),
      h("CSeq", `${g.seq} ${method}`),
      ...(g.maxForwards === undefined ? [] : [h("Max-Forwards", String(g.maxForwards))]),
      ...g.extra.map(([n, v]) => h(n, v)),
    ];
    // Rotate the header order (Via lines stay together and in order).
    const k = g.order % lines.length;
    const rotated = [...lines.slice(k), ...lines.slice(0, k)];
    const body = g.body ?? Buffer.alloc(0);
    const head = [
      start,
      ...rotated,
      ...(body.length > 0 ? ["Content-Type: application/octet-stream"] : []),
      `Content-Length: ${body.length}`,
      "",
      "",
    ].join("\r\n");
    return {
      bytes: Buffer.concat([Buffer.from(head, "latin1"), body]),
      vias: g.vias.reduce((n, vs) => n + vs.length, 0),
    };
  });

// ---------------------------------------------------------------- (a) random input

describe("fuzz (a): arbitrary input never throws anything but SipParseError", () => {
  it("random bytes", () => {
    fc.assert(
      fc.property(bytesArb, (data) => exercise(data)),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it("SIP-flavoured noise", () => {
    fc.assert(
      fc.property(sipishArb, (data) => exercise(data)),
      { seed: SEED + 1, numRuns: RUNS },
    );
  });

  it("random strings through parseUri and parseNameAddr", () => {
    const strArb = fc.oneof(
      fc.string({ unit: "binary-ascii", maxLength: 200 }),
      fc.string({ unit: "grapheme", maxLength: 50 }),
      sipishArb.map((b) => b.toString("latin1")),
    );
    uriParsersThrowOnlySipParseError(strArb, SEED + 2);
  });

  it("non-Buffer input to parseMessage is a SipParseError too", () => {
    for (const bad of [undefined, null, "INVITE sip:a@b SIP/2.0\r\n\r\n", 42, {}, new Uint16Array(4)]) {
      const r = onlySipParseError("parseMessage(non-Buffer)", () => parseMessage(bad as unknown as Buffer));
      expect(r).toBeInstanceOf(SipParseError);
    }
  });
});

// ---------------------------------------------------------------- (b) mutations of valid messages

describe("fuzz (b): mutated valid messages", () => {
  it("the corpus itself parses, passes fullParse and serialises to itself", () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(30);
    for (const data of CORPUS) {
      const m = parseMessage(data);
      fullParse(m);
      expect(m.toBuffer()).toBe(m.raw);
    }
  });

  it("byte flips, inserts, deletes, duplicated lines, truncation, huge runs: only SipParseError", () => {
    fc.assert(
      fc.property(mutatedArb, (data) => exercise(data)),
      { seed: SEED + 3, numRuns: RUNS },
    );
  });

  it("truncation at every offset of every corpus message", () => {
    for (const data of CORPUS) {
      for (let cut = 0; cut <= data.length; cut++) {
        const part = data.subarray(0, cut);
        for (const datagram of [true, false]) {
          const m = onlySipParseError(`parseMessage(cut ${cut})`, () => parseMessage(part, { datagram }));
          if (!(m instanceof SipParseError)) onlySipParseError(`fullParse(cut ${cut})`, () => fullParse(m));
        }
      }
    }
  });

  it("StreamFramer: a message split in two at every offset is framed whole, once", () => {
    let checked = 0;
    for (const data of CORPUS) {
      // Stream messages need Content-Length (inv2543 has none); trailing octets (dblreq) are not one message.
      const m = onlySipParseError("parseMessage(stream)", () => parseMessage(data, { datagram: false }));
      if (m instanceof SipParseError || m.raw.length !== data.length) continue;
      checked++;
      for (let cut = 0; cut <= data.length; cut++) {
        const framer = new StreamFramer();
        const framed: Buffer[] = [];
        framer.push(data.subarray(0, cut), (msg) => framed.push(msg));
        framer.push(data.subarray(cut), (msg) => framed.push(msg));
        expect(framed).toHaveLength(1);
        expect(framed[0]!.equals(data)).toBe(true);
        expect(framer.buffered).toBe(0);
      }
    }
    expect(checked).toBeGreaterThan(20);
  });

  it("the URI and name-addr corpus parses", () => {
    for (const u of URIS) expect(parseUri(u).raw).toBe(u);
    for (const n of NAME_ADDRS) expect(parseNameAddr(n).uri.scheme).toMatch(/^sips?$/);
  });

  it("mutated URIs and name-addrs: parseUri and parseNameAddr throw only SipParseError", () => {
    const arb = fc
      .tuple(fc.constantFrom(...URIS, ...NAME_ADDRS), fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
      .map(([base, muts]) => muts.reduce(mutate, Buffer.from(base, "latin1")).toString("latin1"));
    uriParsersThrowOnlySipParseError(arb, SEED + 6);
  });

  it("huge runs of one character in each corpus message (head and body)", () => {
    for (const [i, data] of CORPUS.slice(0, 8).entries()) {
      const headEnd = data.indexOf("\r\n\r\n");
      const startLineEnd = data.indexOf("\r\n");
      for (const ch of HUGE_CHARS) {
        for (const at of [startLineEnd - 2, startLineEnd + 8, headEnd, data.length]) {
          for (const count of [8000, 60_000]) {
            exercise(mutate(data, { op: "huge", at, ch, count }));
          }
        }
      }
      expect(i).toBeLessThan(8);
    }
  });
});

// ---------------------------------------------------------------- (c) limits and no pathological work

const PATHOLOGICAL = [";", "<", '"', " ", "%", ",", "\\", "[", ":", "=", "\r\n ", '\\"', "<sip:", ";a="];

function messageWithLine(value: string): Buffer {
  return Buffer.from(
    "OPTIONS sip:a@example.com SIP/2.0\r\n" +
      "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
      "From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n" +
      "Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n" +
      `Contact: ${value}\r\n` +
      "Content-Length: 0\r\n\r\n",
    "latin1",
  );
}

describe("fuzz (c): limits refuse oversize input early; pathological input within limits completes", () => {
  it("a 64 KiB header line is refused by the size/line limits with a SipParseError", () => {
    for (const ch of PATHOLOGICAL) {
      const value = ch.repeat(Math.ceil(65536 / ch.length));
      const e = onlySipParseError("parseMessage(64 KiB line)", () => parseMessage(messageWithLine(value)));
      expect(e).toBeInstanceOf(SipParseError);
      expect(["too-large", "limit-exceeded"]).toContain((e as SipParseError).code);
      // Within the message size limit but over the line limit: refused as well.
      const under = ch.repeat(Math.ceil((DEFAULT_PARSE_LIMITS.maxHeaderLineLength + 16) / ch.length));
      const e2 = onlySipParseError("parseMessage(line > maxHeaderLineLength)", () =>
        parseMessage(messageWithLine(under)),
      );
      expect(e2).toBeInstanceOf(SipParseError);
      expect((e2 as SipParseError).code).toBe("limit-exceeded");
    }
  });

  it("more header lines than maxHeaders, more Vias than maxVias: refused", () => {
    const many = Array.from({ length: DEFAULT_PARSE_LIMITS.maxHeaders + 1 }, () => "X-A: 1").join("\r\n");
    const e1 = onlySipParseError("parseMessage(too many headers)", () =>
      parseMessage(messageWithLine(`<sip:a@b>\r\n${many}`)),
    );
    expect((e1 as SipParseError).code).toBe("limit-exceeded");
    const vias = Array.from(
      { length: DEFAULT_PARSE_LIMITS.maxVias + 1 },
      (_, i) => `SIP/2.0/UDP 192.0.2.${i % 250};branch=z9hG4bK${i}`,
    ).join(", ");
    const e2 = onlySipParseError("parseMessage(too many Vias)", () =>
      parseMessage(messageWithLine(`<sip:a@b>\r\nVia: ${vias}`)),
    );
    expect((e2 as SipParseError).code).toBe("limit-exceeded");
  });

  it("pathological values of size n and 8n (limits raised) complete: return or SipParseError", () => {
    const limits = { maxMessageSize: 1 << 20, maxHeaderLineLength: 1 << 20 };
    for (const ch of PATHOLOGICAL) {
      for (const n of [1000, 8000, 64_000]) {
        const data = messageWithLine(ch.repeat(n));
        const m = onlySipParseError("parseMessage(raised limits)", () => parseMessage(data, { limits }));
        if (m instanceof SipParseError) continue;
        onlySipParseError("fullParse(raised limits)", () => fullParse(m));
        touch(m);
        const v = m.header("Contact") ?? "";
        onlySipParseError("parseNameAddr(pathological)", () => parseNameAddr(v));
        onlySipParseError("parseUri(pathological)", () => parseUri(v));
      }
    }
  });

  it("k repeated headers within limits parse (k up to maxHeaders)", () => {
    for (const k of [1, 16, 64, 128, DEFAULT_PARSE_LIMITS.maxHeaders - 8]) {
      const lines = Array.from(
        { length: k },
        (_, i) => `Contact: <sip:u${i}@example.com;a=${i}>;q=0.${i % 10}`,
      );
      const data = messageWithLine(`<sip:a@b>\r\n${lines.join("\r\n")}`);
      const m = parseMessage(data);
      fullParse(m);
      expect(m.headerValues("Contact")).toHaveLength(k + 1);
      // Pathological but legal-length values on every line.
      for (const ch of PATHOLOGICAL) {
        const bad = Array.from({ length: k }, () => `X-P: ${ch.repeat(Math.floor(4000 / k) + 1)}`);
        const d2 = messageWithLine(`<sip:a@b>\r\n${bad.join("\r\n")}`);
        const r = onlySipParseError("parseMessage(k pathological)", () => parseMessage(d2));
        if (!(r instanceof SipParseError)) {
          onlySipParseError("fullParse(k pathological)", () => fullParse(r));
          touch(r);
        }
      }
    }
  });

  it("Via values up to maxVias within one line and across lines parse", () => {
    const n = DEFAULT_PARSE_LIMITS.maxVias - 1;
    const vias = Array.from({ length: n }, (_, i) => `SIP/2.0/UDP h${i}.example.com;branch=z9hG4bK${i}`);
    const m = parseMessage(messageWithLine(`<sip:a@b>\r\nVia: ${vias.join(", ")}`));
    expect(m.viaCount).toBe(n + 1);
    const m2 = parseMessage(messageWithLine(`<sip:a@b>\r\n${vias.map((v) => `v: ${v}`).join("\r\n")}`));
    expect(m2.viaCount).toBe(n + 1);
  });
});

// ---------------------------------------------------------------- (d) round trip

const PUSHED_VIA = "SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK-roundtrip-1";

/**
 * toBuffer() of an unmodified message is its raw bytes (same object); after
 * pushVia + popVia the bytes are the original's again. The second part
 * applies to well-formed messages: a datagram accepted without the empty line
 * after its headers gets one when it is re-serialised after an edit.
 */
function roundTrip(data: Buffer): void {
  const m = parseMessage(data);
  expect(m.modified).toBe(false);
  const out = m.toBuffer();
  expect(out).toBe(m.raw); // unmodified: the same Buffer object, no copy
  // raw is the input minus CRLFs before the start line (RFC 3261 §7.5) and octets after the body.
  let lead = 0;
  while (data[lead] === 13 || data[lead] === 10) lead++;
  expect(out.equals(data.subarray(lead, lead + m.raw.length))).toBe(true);

  if (!(m.raw.includes("\n\r\n") || m.raw.includes("\n\n"))) return; // no empty line: not well-formed
  const viaCount = m.viaCount;
  const topBranch = m.via.branch;
  m.pushVia(PUSHED_VIA);
  expect(m.viaCount).toBe(viaCount + 1);
  expect(m.via.branch).toBe("z9hG4bK-roundtrip-1");
  expect(m.popVia()).toBe(PUSHED_VIA);
  expect(m.viaCount).toBe(viaCount);
  expect(m.via.branch).toBe(topBranch);
  expect(m.toBuffer().equals(m.raw)).toBe(true);
}

describe("fuzz (d): round trip", () => {
  it("corpus: toBuffer() is the input itself; pushVia+popVia gives the same bytes", () => {
    for (const data of CORPUS) roundTrip(data);
  });

  it("generated valid messages parse, validate, and round-trip byte for byte", () => {
    fc.assert(
      fc.property(validMessageArb, ({ bytes, vias }) => {
        const m = parseMessage(bytes);
        fullParse(m);
        expect(m.viaCount).toBe(vias);
        expect(m.raw.equals(bytes)).toBe(true);
        roundTrip(bytes);
      }),
      { seed: SEED + 4, numRuns: RUNS },
    );
  });

  it("mutated messages that still parse also round-trip", () => {
    fc.assert(
      fc.property(mutatedArb, (data) => {
        const m = onlySipParseError("parseMessage", () => parseMessage(data));
        if (m instanceof SipParseError || m.viaCount === 0) return;
        roundTrip(data);
      }),
      { seed: SEED + 5, numRuns: RUNS },
    );
  });
});

/** The top Via as plain data (its `params` is built on read). */
function viaView(m: SipMessage): unknown {
  const v = m.via;
  return { ...v, params: v.params, _p: undefined };
}

/** Everything a reader can see of a message, as plain data. */
function view(m: SipMessage): unknown {
  const out: Record<string, unknown> = {
    startLine: (m as unknown as { readonly startLine: string }).startLine, // the implementation's own view
    callId: m.callId,
    cseq: m.cseq,
    via: viaView(m),
    viaCount: m.viaCount,
    fromTag: m.fromTag,
    toTag: m.toTag,
    body: m.body.toString("latin1"),
    headers: m.headers(),
    bytes: m.toBuffer().toString("latin1"),
  };
  for (const name of [
    "Via",
    "v",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Route",
    "Record-Route",
    "X-Unknown",
  ]) {
    out[`h:${name}`] = [m.header(name), m.headerLines(name), m.headerValues(name), m.has(name)];
  }
  return out;
}

/** A message compacted before each read answers as one never compacted; so does an edit after compact. */
function compactAgrees(data: Buffer, datagram: boolean): void {
  const plain = onlySipParseError("parseMessage", () => parseMessage(data, { datagram }));
  if (plain instanceof SipParseError) return;
  const before = view(plain);
  const m = parseMessage(data, { datagram }) as SipMessage & { compacted: boolean };
  m.compact();
  expect(m.compacted).toBe(true);
  // The top Via alone parses again without bringing the head back.
  expect(viaView(m)).toEqual(viaView(plain));
  expect(m.compacted).toBe(true);
  m.compact();
  expect(view(m)).toEqual(before);
  expect(m.compacted).toBe(false); // a read parsed the bytes again
  m.compact();
  expect(m.toBuffer()).toBe(m.raw); // an unedited message serialises to its bytes without a parse
  if (m.viaCount === 0) return;
  // An edit on a compacted message, and compact() after an edit: the edits are folded into raw.
  plain.pushVia("SIP/2.0/UDP 192.0.2.250:5060;branch=z9hG4bKcompact");
  m.pushVia("SIP/2.0/UDP 192.0.2.250:5060;branch=z9hG4bKcompact");
  m.compact();
  expect(m.compacted).toBe(true);
  expect(m.raw.equals(plain.toBuffer())).toBe(true);
  expect(m.modified).toBe(true);
  expect(view(m)).toEqual(view(plain));
  // Edits after the fold apply to the folded bytes, and fold again.
  plain.popVia();
  m.popVia();
  plain.setHeader("X-Unknown", "after fold");
  m.setHeader("X-Unknown", "after fold");
  m.compact();
  expect(view(m)).toEqual(view(plain));
  // The body is a view of the folded bytes: the datagram it was parsed from is not kept.
  if (m.body.length > 0) expect(m.body.buffer).toBe(m.raw.buffer);
}

describe("compact(): a compacted message reads the same", () => {
  it("every corpus message, as a datagram and framed", () => {
    for (const data of CORPUS) for (const datagram of [true, false]) compactAgrees(data, datagram);
  });

  it("generated valid messages", () => {
    fc.assert(
      fc.property(validMessageArb, ({ bytes }) => compactAgrees(bytes, true)),
      { seed: SEED + 6, numRuns: RUNS },
    );
  });

  it("mutated messages that still parse", () => {
    fc.assert(
      fc.property(mutatedArb, (data) => compactAgrees(data, true)),
      { seed: SEED + 7, numRuns: RUNS },
    );
  });
});
