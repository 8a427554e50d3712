/**
 * RFC 4475 (SIP torture messages) and RFC 5118 (IPv6 torture messages)
 * against the message layer. The fixtures are the RFCs' archive bytes,
 * checked by SHA-256 first; the expected behaviour of every file comes from
 * its INDEX.tsv row (read at test time) plus the value checks below, which
 * were written from reading each message.
 *
 * Every message is handled as a UDP datagram (RFC 4475 §1: the messages are
 * meant to be delivered as datagrams): no Content-Length means "body = rest of
 * the datagram", and octets after Content-Length are ignored.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SipParseError } from "../../src/message/errors.js";
import { parseNameAddr } from "../../src/message/nameaddr.js";
import { parseMessage } from "../../src/message/parser.js";
import { StreamFramer } from "../../src/message/stream.js";
import type { SipMessage, SipRequest, SipResponse } from "../../src/message/types.js";
import { parseUri } from "../../src/message/uri.js";
import { fullParse } from "../../src/message/validate.js";

const ROOT = fileURLToPath(new URL("../fixtures/torture/", import.meta.url));
const DATAGRAM = { datagram: true } as const;

function read(rel: string): Buffer {
  return readFileSync(`${ROOT}${rel}`);
}

// ---------------------------------------------------------------- helpers

interface IndexRow {
  readonly file: string;
  readonly section: string;
  readonly validity: string;
  readonly behaviour: string;
  readonly title: string;
}

function readIndex(dir: string): IndexRow[] {
  const lines = read(`${dir}/INDEX.tsv`).toString("utf8").split("\n");
  const header = lines[0]?.split("\t");
  expect(header).toEqual(["file", "rfc_section", "valid_or_invalid", "expected_behaviour", "title"]);
  return lines
    .slice(1)
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const c = l.split("\t");
      if (c.length !== 5) throw new Error(`${dir}/INDEX.tsv: bad row ${JSON.stringify(l)}`);
      const [file, section, validity, behaviour, title] = c as [string, string, string, string, string];
      return { file, section, validity, behaviour, title };
    });
}

function sums(rel: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of read(rel).toString("utf8").split("\n")) {
    if (line.trim() === "") continue;
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (!m) throw new Error(`${rel}: bad line ${JSON.stringify(line)}`);
    out.set(m[2]!, m[1]!);
  }
  return out;
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Normalise linear white space (folds included) for comparing header values. */
const lws = (s: string | undefined): string | undefined => s?.replace(/[ \t]*\r?\n[ \t]+/g, " ").trim();

/** Where the head ends (index just past the empty line). */
function headEnd(data: Buffer): number {
  const i = data.indexOf("\r\n\r\n");
  expect(i).toBeGreaterThan(0);
  return i + 4;
}

/** Run `fn`; return what it threw (asserting it is a SipParseError), or undefined. */
function thrown(fn: () => unknown): SipParseError | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof SipParseError)) {
      throw new Error(`expected only SipParseError, got ${e instanceof Error ? e.stack : String(e)}`);
    }
    return e;
  }
}

/** parseMessage then fullParse; whichever throws, the error (always a SipParseError). */
function parseAndValidate(data: Buffer): { msg?: SipMessage; error?: SipParseError } {
  let msg: SipMessage | undefined;
  const e1 = thrown(() => {
    msg = parseMessage(data, DATAGRAM);
  });
  if (e1) return { error: e1 };
  const e2 = thrown(() => fullParse(msg!));
  return e2 ? { msg: msg!, error: e2 } : { msg: msg! };
}

function req(m: SipMessage): SipRequest {
  expect(m.isRequest).toBe(true);
  return m as SipRequest;
}

function res(m: SipMessage): SipResponse {
  expect(m.isRequest).toBe(false);
  return m as SipResponse;
}

/** latin1 (byte) string → UTF-8 text. */
const utf8 = (s: string): string => Buffer.from(s, "latin1").toString("utf8");

// ---------------------------------------------------------------- expectations

type Check = (m: SipMessage, data: Buffer) => void;

interface Accept {
  readonly outcome: "parse";
  readonly check: Check;
}

interface Reject {
  readonly outcome: "reject";
  /** SIP status the error carries: what a UAS answers (0 for a response: dropped silently). */
  readonly status: number;
  /** Message kind the error must be attributed to (undefined: not asserted). */
  readonly kind: "request" | "response" | undefined;
  /** Acceptable SipParseError codes: rejected for the right reason (empty: not asserted). */
  readonly codes: readonly string[];
  readonly why: string;
}

type Expectation = Accept | Reject;

const parses = (check: Check): Accept => ({ outcome: "parse", check });
const rejects = (
  status: number,
  codes: string | readonly string[],
  why: string,
  kind: "request" | "response" | undefined = status === 0 ? "response" : "request",
): Reject => ({ outcome: "reject", status, codes: typeof codes === "string" ? [codes] : codes, kind, why });

/** The body must be exactly the Content-Length octets after the empty line. */
function bodyByContentLength(m: SipMessage, data: Buffer, length: number): void {
  expect(m.contentLength).toBe(length);
  expect(m.body.length).toBe(length);
  const start = headEnd(data);
  expect(m.body.equals(data.subarray(start, start + length))).toBe(true);
}

/** Top Via fields. */
function topVia(
  m: SipMessage,
  v: { transport: string; host: string; port?: number; branch?: string; received?: string },
): void {
  expect(m.via.transport).toBe(v.transport);
  expect(m.via.host).toBe(v.host);
  expect(m.via.port).toBe(v.port);
  expect(m.via.branch).toBe(v.branch);
  if ("received" in v) expect(m.via.received).toBe(v.received);
}

/** The parts of a URI the checks look at (SIP/SIPS fields; other schemes only have a scheme). */
interface UriParts {
  readonly scheme: string;
  readonly user: string | undefined;
  readonly password: string | undefined;
  readonly host: string;
  readonly port: number | undefined;
  readonly params: ReadonlyArray<readonly [string, string | null]>;
  /** URI headers after "?", %-decoded. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
}

/** A name-addr / addr-spec as the checks see it: display name, URI as written, header params. */
interface NameAddrParts {
  readonly display: string | undefined;
  readonly uri: string;
  readonly params: ReadonlyArray<readonly [string, string | null]>;
}

const uriChecks = {
  uri(text: string): UriParts {
    const u = parseUri(text);
    if (u.type === "sip") {
      const { scheme, user, password, host, port, params, headers } = u;
      return { scheme, user, password, host, port, params, headers };
    }
    return {
      scheme: u.scheme,
      user: undefined,
      password: undefined,
      host: "",
      port: undefined,
      params: u.params,
      headers: [],
    };
  },
  nameAddr(text: string): NameAddrParts {
    const n = parseNameAddr(text);
    return { display: n.displayName, uri: n.uri.raw, params: n.params };
  },
};

const RFC4475: Record<string, Expectation> = {
  wsinv: parses((m, data) => {
    const r = req(m);
    expect(r.method).toBe("INVITE");
    expect(r.uri).toBe("sip:vivekg@chair-dnrc.example.com;unknownparam");
    expect(m.callId).toBe("wsinv.ndaksdj@192.0.2.1");
    expect(m.cseq).toEqual({ seq: 9, method: "INVITE" });
    expect(m.maxForwards).toBe(68);
    expect(m.toTag).toBe("1918181833n");
    expect(m.fromTag).toBe("98asjd8");
    topVia(m, { transport: "UDP", host: "192.0.2.2", branch: "390skdjuw" });
    expect(m.viaCount).toBe(3);
    const vias = m.headerValues("Via").map(lws);
    expect(vias).toHaveLength(3);
    expect(vias[1]).toMatch(
      /^SIP\s*\/\s*2\.0\s*\/\s*TCP\s+spindle\.example\.com\s*;\s*branch\s*=\s*z9hG4bK9ikj8$/,
    );
    expect(vias[2]).toMatch(/^SIP\s*\/\s*2\.0\s*\/\s*UDP\s+192\.168\.255\.111\s*;\s*branch=\s*z9hG4bK30239$/);
    bodyByContentLength(m, data, 150);
    // Empty Subject (compact "s") is present with an empty value.
    expect(m.has("Subject")).toBe(true);
    expect(m.header("subject")).toBe("");
    expect(lws(m.header("NewFangledHeader"))).toBe("newfangled value continued newfangled value");
    // Opaque unknown header: forwarded unchanged, never split.
    expect(m.header("UnknownHeaderWithUnusualValue")).toBe(";;,,;;,;");
    expect(m.headerLines("unknownheaderwithunusualvalue")).toEqual([";;,,;;,;"]);
    expect(lws(m.header("Route"))).toBe("<sip:services.example.com;lr;unknownwith=value;unknown-no-value>");
    expect(m.header("Content-Type")).toBe("application/sdp");
    expect(m.headerValues("Contact")).toHaveLength(1);
    expect(m.header("m")).toBe(m.header("Contact"));
    expect(lws(m.header("TO"))).toMatch(/^sip:vivekg@chair-dnrc\.example\.com ;\s+tag\s+= 1918181833n$/);
    const from = uriChecks.nameAddr(lws(m.header("From"))!);
    expect(from.display).toBe('J Rosenberg \\"');
    expect(from.uri).toBe("sip:jdrosen@example.com");
    const contact = uriChecks.nameAddr(lws(m.header("Contact"))!);
    expect(contact.display).toBe('Quoted string ""');
    expect(contact.uri).toBe("sip:jdrosen@example.com");
    expect(contact.params.map(([k]) => k)).toEqual(["newparam", "secondparam", "q"]);
    expect(contact.params[0]?.[1]).toBe("newvalue");
    expect(contact.params[2]?.[1]).toBe("0.33");
  }),

  intmeth: parses((m) => {
    const method = "!interesting-Method0123456789_*+`.%indeed'~";
    const r = req(m);
    expect(r.method).toBe(method);
    expect(m.cseq).toEqual({ seq: 139122385, method });
    expect(m.maxForwards).toBe(255);
    // % is not an escape in Call-ID, tags, branch.
    expect(m.callId).toBe("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    expect(m.fromTag).toBe("_token~1'+`*%!-.");
    expect(m.toTag).toBeUndefined();
    topVia(m, { transport: "TCP", host: "host1.example.com", branch: "z9hG4bK-.!%66*_+`'~" });
    const ext = m.header("extensionHeader-!.%*+_`'~");
    expect(ext).toBeDefined();
    expect(utf8(ext!)).toBe("\uFEFF\u5927\u505C\u96FB");
    // quoted-pair with BEL, NUL and DEL in the To display name, kept as bytes.
    expect(m.header("To")).toBe(
      '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@example.com>',
    );
    const uri = uriChecks.uri(r.uri);
    expect(uri.scheme).toBe("sip");
    expect(uri.user).toBe("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    expect(uri.password).toBe("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    expect(uri.host).toBe("example.com");
    const from = uriChecks.nameAddr(m.header("From")!);
    expect(from.display).toBe("token1~` token2'+_ token3*%!.-");
    expect(from.uri).toBe("sip:mundane@example.com");
    expect(utf8(from.params.find(([k]) => k === "fromparam''~+*_!.-%")?.[1] ?? "")).toBe(
      '"\u0440\u0430\u0431\u043E\u0442\u0430\u044E\u0449\u0438\u0439"',
    );
  }),

  esc01: parses((m, data) => {
    const r = req(m);
    expect(r.uri).toBe("sip:sips%3Auser%40example.com@example.net");
    const ruri = uriChecks.uri(r.uri);
    expect(ruri.user).toBe("sips:user@example.com");
    expect(ruri.host).toBe("example.net");
    expect(uriChecks.uri(m.header("To")!).user).toBe("user");
    expect(uriChecks.uri(uriChecks.nameAddr(m.header("From")!).uri).user).toBe("I have spaces");
    expect(m.callId).toBe("esc01.239409asdfakjkn23onasd0-3234");
    expect(m.cseq).toEqual({ seq: 234234, method: "INVITE" });
    expect(m.maxForwards).toBe(87);
    expect(m.fromTag).toBe("938");
    expect(m.header("Content-Type")).toBe("application/sdp");
    bodyByContentLength(m, data, 150);
    const contact = uriChecks.nameAddr(lws(m.header("Contact"))!);
    expect(contact.uri).toBe("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
    expect(uriChecks.uri(contact.uri).user).toBe("caller");
    // Never recursive: the parameter value decodes once, to "value%41".
    checkUriParams(contact.uri, [
      ["lr", null],
      ["name", "value%41"],
    ]);
  }),

  escnull: parses((m) => {
    expect(req(m).method).toBe("REGISTER");
    expect(uriChecks.uri(m.header("To")!).user).toBe("null-\x00-null");
    expect(m.fromTag).toBe("839923423");
    expect(m.callId).toBe("escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd");
    expect(m.cseq).toEqual({ seq: 14398234, method: "REGISTER" });
    expect(m.contentLength).toBe(0);
    expect(m.body.length).toBe(0);
    const contacts = m.headerValues("Contact");
    expect(contacts).toEqual(["<sip:%00@host5.example.com>", "<sip:%00%00@host5.example.com>"]);
    const users = contacts.map((c) => uriChecks.uri(uriChecks.nameAddr(c).uri).user);
    // Unescaping must not truncate: two distinct bindings.
    expect(users).toEqual(["\x00", "\x00\x00"]);
  }),

  esc02: parses((m) => {
    // Not REGISTER: % is not an escape in a method.
    expect(req(m).method).toBe("RE%47IST%45R");
    expect(m.cseq).toEqual({ seq: 29344, method: "RE%47IST%45R" });
    topVia(m, { transport: "TCP", host: "host.example.com", branch: "z9hG4bK209%fzsnel234" });
    // C%6Fntact is an unknown header, not Contact.
    expect(m.headerValues("Contact")).toEqual([
      "<sip:alias1@host1.example.com>",
      "<sip:alias3@host3.example.com>",
    ]);
    expect(m.header("C%6Fntact")).toBe("<sip:alias2@host2.example.com>");
    expect(uriChecks.nameAddr(m.header("To")!).display).toBe("%Z%45");
    expect(m.fromTag).toBe("f232jadfj23");
    expect(m.contentLength).toBe(0);
  }),

  lwsdisp: parses((m) => {
    expect(req(m).method).toBe("OPTIONS");
    expect(m.fromTag).toBe("323");
    const from = uriChecks.nameAddr(m.header("From")!);
    expect(from.display).toBe("caller");
    expect(from.uri).toBe("sip:caller@example.com");
    expect(m.cseq).toEqual({ seq: 60, method: "OPTIONS" });
  }),

  longreq: parses((m, data) => {
    expect(req(m).method).toBe("INVITE");
    expect(m.viaCount).toBe(34);
    topVia(m, { transport: "TCP", host: "sip33.example.com", branch: undefined });
    const vias = m.headerValues("Via");
    expect(vias).toHaveLength(34);
    expect(vias.slice(0, 33).map((v) => /sip\d+/.exec(v)?.[0])).toEqual(
      Array.from({ length: 33 }, (_, i) => `sip${33 - i}`),
    );
    expect(vias[33]).toMatch(/;branch=verylong(long)+branchvalue$/);
    expect(m.callId).toBe(`longreq.one${"really".repeat(20)}longcallid`);
    expect(m.fromTag).toBe(`12${"982".repeat(50)}424`);
    expect(m.toTag).toBeUndefined();
    expect(m.maxForwards).toBe(70);
    expect(m.cseq).toEqual({ seq: 3882340, method: "INVITE" });
    bodyByContentLength(m, data, 150);
    const to = uriChecks.nameAddr(m.header("To")!);
    expect(to.display).toBe(`I have a user name of ${"extreme".repeat(10)} proportion`);
    const toUri = uriChecks.uri(to.uri);
    expect(toUri.host).toBe("example.com");
    expect(toUri.port).toBe(6000);
    expect(m.header(`Unknown-${"Long".repeat(20)}-Name`)).toMatch(/^unknown-(long)+-value; /);
  }),

  dblreq: parses((m, data) => {
    const end = headEnd(data);
    expect(req(m).method).toBe("REGISTER");
    // Only the REGISTER: the trailing INVITE octets are not part of the message.
    expect(m.raw.length).toBe(end);
    expect(m.raw.equals(data.subarray(0, end))).toBe(true);
    expect(m.toBuffer().equals(data.subarray(0, end))).toBe(true);
    expect(m.toBuffer().includes("INVITE")).toBe(false);
    expect(m.contentLength).toBe(0);
    expect(m.body.length).toBe(0);
    expect(m.callId).toBe("dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    expect(m.cseq).toEqual({ seq: 8, method: "REGISTER" });
    expect(m.maxForwards).toBe(8);
    topVia(m, { transport: "UDP", host: "192.0.2.125", branch: "z9hG4bKkdjuw23492" });
    expect(m.fromTag).toBe("43251j3j324");
    expect(m.header("Contact")).toBe("sip:j.user@host.example.com");
  }),

  semiuri: parses((m) => {
    const r = req(m);
    expect(r.uri).toBe("sip:user;par=u%40example.net@example.com");
    const uri = uriChecks.uri(r.uri);
    expect(uri.user).toBe("user;par=u@example.net");
    expect(uri.host).toBe("example.com");
    expect(m.headerValues("Accept").map(lws)).toEqual([
      "application/sdp",
      "application/pkcs7-mime",
      "multipart/mixed",
      "multipart/signed",
      "message/sip",
      "message/sipfrag",
    ]);
    expect(m.maxForwards).toBe(3);
  }),

  transports: parses((m) => {
    expect(m.callId).toBe("transports.kijh4akdnaqjkwendsasfdj");
    expect(m.viaCount).toBe(5);
    topVia(m, { transport: "UDP", host: "t1.example.com", branch: "z9hG4bKkdjuw" });
    expect(m.headerValues("Via").map((v) => /^SIP\/2\.0\/(\S+) /.exec(v)?.[1])).toEqual([
      "UDP",
      "SCTP",
      "TLS",
      "UNKNOWN",
      "TCP",
    ]);
    // An unknown transport is kept as written, like any other (seen once it is the top Via).
    for (let i = 0; i < 3; i++) m.popVia();
    expect(m.viaCount).toBe(2);
    expect(m.via.transport).toBe("UNKNOWN");
    expect(m.via.host).toBe("t4.example.com");
    expect(m.via.branch).toBe("z9hG4bKasd0f3en");
  }),

  mpart01: parses((m, data) => {
    expect(req(m).method).toBe("MESSAGE");
    // Binary body with NUL octets: framed by Content-Length only.
    bodyByContentLength(m, data, 553);
    expect(m.body.includes(0)).toBe(true);
    expect(m.body.subarray(-24).toString("latin1")).toBe("\r\n--7a9cbec02ceef655--\r\n");
    topVia(m, {
      transport: "UDP",
      host: "127.0.0.1",
      port: 5070,
      branch: "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-",
    });
    expect(m.via.rport).toBeNull();
    expect(m.header("Content-Type")).toBe("multipart/mixed;boundary=7a9cbec02ceef655");
    expect(m.fromTag).toBe("2fb0dcc9");
    expect(m.callId).toBe("3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..");
    expect(m.cseq).toEqual({ seq: 1, method: "MESSAGE" });
  }),

  unreason: parses((m, data) => {
    const r = res(m);
    expect(r.status).toBe(200);
    expect(utf8(r.reason)).toBe(
      "= 2**3 * 5**2 \u043D\u043E \u0441\u0442\u043E \u0434\u0435\u0432\u044F\u043D\u043E\u0441\u0442\u043E " +
        "\u0434\u0435\u0432\u044F\u0442\u044C - \u043F\u0440\u043E\u0441\u0442\u043E\u0435",
    );
    expect(r.method).toBe("INVITE");
    expect(m.cseq).toEqual({ seq: 35, method: "INVITE" });
    expect(m.toTag).toBe("2229");
    expect(m.fromTag).toBe("11141343");
    bodyByContentLength(m, data, 154);
  }),

  noreason: parses((m) => {
    const r = res(m);
    expect(r.status).toBe(100);
    expect(r.reason).toBe("");
    expect(m.toTag).toBe("902jndnke3");
    topVia(m, { transport: "UDP", host: "192.0.2.105", branch: "z9hG4bK2398ndaoe" });
  }),

  badinv01: rejects(400, "bad-via", "stray ; and , in Via and Contact"),
  clerr: rejects(400, "truncated", "Content-Length larger than the datagram"),
  ncl: rejects(400, "bad-content-length", "negative Content-Length"),
  scalar02: rejects(400, "bad-cseq", "CSeq > 2^32-1"),
  scalarlg: rejects(0, "bad-cseq", "response with CSeq > 2^32-1: dropped"),
  quotbal: rejects(400, "bad-header", "unterminated quoted string"),
  ltgtruri: rejects(400, "bad-uri", "<> around the Request-URI"),
  lwsruri: rejects(400, ["bad-start-line", "bad-uri"], "LWS inside the Request-URI"),
  lwsstart: rejects(400, "bad-start-line", "several SP between Request-Line elements"),
  trws: rejects(400, "bad-start-line", "SP after SIP-Version"),
  escruri: rejects(400, "bad-uri", "escaped headers in the Request-URI"),
  baddate: rejects(400, "bad-header", "non-GMT Date"),
  regbadct: rejects(400, "bad-header", "Contact URI with '?' not in <>"),
  badaspec: rejects(400, "bad-header", "spaces inside addr-spec"),
  baddn: rejects(400, "bad-header", "unquoted non-token display names (and no empty line)"),
  badvers: rejects(505, "bad-version", "SIP/7.0"),
  mismatch01: rejects(400, "cseq-mismatch", "Request-Line method differs from CSeq method"),
  mismatch02: rejects(501, "cseq-mismatch", "unknown method and a different CSeq method (501 preferred)"),
  bigcode: rejects(0, "bad-status", "status code > 699: dropped"),

  badbranch: parses((m) => {
    expect(m.via.branch).toBe("z9hG4bK");
    expect(m.cseq).toEqual({ seq: 8, method: "OPTIONS" });
    expect(m.callId).toBe("badbranch.sadonfo23i420jv0as0derf3j3n");
  }),

  // Index: "valid-syntax/application-reject ... Must not crash; ideally respond
  // 400". A message without Call-ID/From/To cannot be a SipMessage (callId is
  // mandatory), so the parser answers 400 itself.
  insuf: rejects(400, "missing-header", "no Call-ID, From or To"),

  unkscm: parses((m) => {
    const r = req(m);
    expect(r.uri).toBe("nobodyKnowsThisScheme:totallyopaquecontent");
    // What the application needs for 416: the scheme.
    expect(uriChecks.uri(r.uri).scheme.toLowerCase()).toBe("nobodyknowsthisscheme");
    expect(m.cseq).toEqual({ seq: 3923423, method: "OPTIONS" });
  }),

  novelsc: parses((m) => {
    const r = req(m);
    expect(r.uri).toBe("soap.beep://192.0.2.103:3002");
    expect(uriChecks.uri(r.uri).scheme.toLowerCase()).toBe("soap.beep");
  }),

  unksm2: parses((m) => {
    expect(req(m).method).toBe("REGISTER");
    // A registrar rejects because To is not a SIP/SIPS AOR: it needs the schemes.
    expect(uriChecks.uri(uriChecks.nameAddr(m.header("To")!).uri).scheme.toLowerCase()).toBe("isbn");
    expect(uriChecks.uri(uriChecks.nameAddr(m.header("From")!).uri).scheme.toLowerCase()).toBe("http");
    expect(uriChecks.nameAddr(m.header("Contact")!).uri).toBe("name:John_Smith");
    expect(m.fromTag).toBe("3234233");
  }),

  bext01: parses((m) => {
    expect(m.headerValues("Require")).toEqual(["nothingSupportsThis", "nothingSupportsThisEither"]);
    expect(m.headerValues("Proxy-Require")).toEqual(["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]);
    topVia(m, { transport: "TLS", host: "fold-and-staple.example.com", branch: "z9hG4bKkdjuw" });
  }),

  invut: parses((m, data) => {
    expect(m.header("Content-Type")).toBe("application/unknownformat");
    bodyByContentLength(m, data, 40);
    expect(m.body.toString("latin1")).toBe('<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n');
  }),

  regaut01: parses((m) => {
    expect(m.header("Authorization")).toBe("NoOneKnowsThisScheme opaque-data=here");
    expect(m.contentLength).toBe(0);
    topVia(m, { transport: "TCP", host: "192.0.2.253", branch: "z9hG4bKkdjuw" });
  }),

  // Index: "Must not crash; respond 400 Bad Request."
  multi01: rejects(400, "duplicate-header", "several Call-ID, To, From, Max-Forwards and CSeq values"),

  mcl01: rejects(400, "bad-content-length", "conflicting Content-Length values"),

  bcast: parses((m, data) => {
    const r = res(m);
    expect(r.status).toBe(200);
    expect(m.viaCount).toBe(2);
    // What a UA/proxy checks before dropping it: the 2nd Via's sent-by.
    expect(m.headerValues("Via")[1]).toBe("SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23");
    topVia(m, { transport: "UDP", host: "192.0.2.198", branch: "z9hG4bK1324923" });
    bodyByContentLength(m, data, 154);
  }),

  zeromf: parses((m) => {
    expect(m.maxForwards).toBe(0);
    expect(req(m).method).toBe("OPTIONS");
  }),

  cparam01: parses((m) => {
    // addr-spec form: ";unknownparam" is a contact parameter, not a URI parameter.
    const c = uriChecks.nameAddr(m.header("Contact")!);
    expect(c.uri).toBe("sip:+19725552222@gw1.example.net");
    expect(c.params).toEqual([["unknownparam", null]]);
  }),

  cparam02: parses((m) => {
    const c = uriChecks.nameAddr(m.header("Contact")!);
    expect(c.uri).toBe("sip:+19725552222@gw1.example.net;unknownparam");
    expect(c.params).toEqual([]);
  }),

  regescrt: parses((m) => {
    expect(m.headerValues("Contact")).toEqual(["<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"]);
    const c = uriChecks.nameAddr(m.header("Contact")!);
    // The stored contact keeps its escaped header.
    expect(c.uri).toBe("sip:user@example.com?Route=%3Csip:sip.example.com%3E");
    expect(uriChecks.uri(c.uri).host).toBe("example.com");
    expect(uriChecks.uri(c.uri).headers).toEqual([["Route", "<sip:sip.example.com>"]]);
    expect(m.contentLength).toBe(0);
  }),

  sdp01: parses((m, data) => {
    expect(m.header("Accept")).toBe("text/nobodyKnowsThis");
    expect(m.header("Content-Type")).toBe("application/sdp");
    bodyByContentLength(m, data, 150);
  }),

  inv2543: parses((m, data) => {
    // No Content-Length: the body is the rest of the datagram.
    const start = headEnd(data);
    expect(m.contentLength).toBeUndefined();
    expect(m.body.equals(data.subarray(start))).toBe(true);
    expect(m.body.length).toBe(105);
    expect(m.raw.equals(data)).toBe(true);
    expect(m.via.branch).toBeUndefined();
    expect(m.fromTag).toBeUndefined();
    expect(m.toTag).toBeUndefined();
    expect(m.maxForwards).toBeUndefined();
    expect(m.viaCount).toBe(1);
    topVia(m, { transport: "UDP", host: "iftgw.example.com" });
    expect(m.cseq).toEqual({ seq: 56, method: "INVITE" });
    expect(lws(m.header("Record-Route"))).toBe("<sip:UserB@example.com;maddr=ss1.example.com>");
  }),

  // Not in any RFC section: no SIP-Version, a header line without colon, no Via/CSeq.
  test: rejects(400, [], "malformed (not described by the RFC)", undefined),
};

/** URI parameters, names lower-cased and values %-decoded once. */
function checkUriParams(uri: string, expected: Array<[string, string | null]>): void {
  expect(uriChecks.uri(uri).params).toEqual(expected);
}

const RFC5118_WIRE: Record<string, Expectation> = {
  "ipv6-good": parses((m) => {
    const r = req(m);
    expect(r.uri).toBe("sip:[2001:db8::10]");
    const u = uriChecks.uri(r.uri);
    expect(u.host).toBe("[2001:db8::10]");
    expect(u.port).toBeUndefined();
    topVia(m, { transport: "UDP", host: "[2001:db8::9:1]", branch: "z9hG4bKas3-111" });
    const c = uriChecks.nameAddr(m.header("Contact")!);
    expect(c.display).toBe("Caller");
    expect(uriChecks.uri(c.uri).host).toBe("[2001:db8::1]");
  }),
  "ipv6-bad": rejects(400, "bad-uri", "IPv6 address without [] in the Request-URI"),
  "port-ambiguous": parses((m) => {
    const u = uriChecks.uri(req(m).uri);
    // The whole bracket content is the address: no port.
    expect(u.host).toBe("[2001:db8::10:5070]");
    expect(u.port).toBeUndefined();
  }),
  "port-unambiguous": parses((m) => {
    const u = uriChecks.uri(req(m).uri);
    expect(u.host).toBe("[2001:db8::10]");
    expect(u.port).toBe(5070);
  }),
  "via-received-param-with-delim": parses((m) => {
    expect(req(m).method).toBe("BYE");
    topVia(m, {
      transport: "UDP",
      host: "[2001:db8::9:1]",
      branch: "z9hG4bKas3-111",
      received: "[2001:db8::9:255]",
    });
    expect(m.toTag).toBe("bd76ya");
  }),
  "via-received-param-no-delim": parses((m) => {
    topVia(m, {
      transport: "UDP",
      host: "[2001:db8::9:1]",
      branch: "z9hG4bKas3",
      received: "2001:db8::9:255",
    });
  }),
  "ipv6-in-sdp": parses((m, data) => {
    bodyByContentLength(m, data, 251);
    expect(m.body.toString("latin1")).toContain("c=IN IP6 2001:db8::20\r\n");
    topVia(m, { transport: "UDP", host: "[2001:db8::20]", branch: "z9hG4bKas3-111" });
    expect(uriChecks.uri(req(m).uri).host).toBe("[2001:db8::10]");
  }),
  "mult-ip-in-header": parses((m) => {
    expect(req(m).method).toBe("BYE");
    topVia(m, { transport: "UDP", host: "[2001:db8::9:1]", port: 6050, branch: "z9hG4bKas3-111" });
    expect(m.viaCount).toBe(3);
    expect(m.headerValues("Via")[2]).toBe(
      "SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200",
    );
    expect(m.toTag).toBe("9817--94");
  }),
  "mult-ip-in-sdp": parses((m, data) => {
    bodyByContentLength(m, data, 189);
    expect(m.body.toString("latin1")).toContain("c=IN IP6 2001:db8::1\r\n");
  }),
  "ipv4-mapped-ipv6": parses((m, data) => {
    topVia(m, { transport: "UDP", host: "[::ffff:192.0.2.10]", port: 19823, branch: "z9hG4bKbh19" });
    expect(m.viaCount).toBe(2);
    const c = uriChecks.nameAddr(m.header("Contact")!);
    expect(c.display).toBe("T. desk phone");
    expect(uriChecks.uri(c.uri).host).toBe("[::ffff:192.0.2.2]");
    bodyByContentLength(m, data, 245);
  }),
  "ipv6-bug-abnf-3-colons": parses((m) => {
    expect(uriChecks.uri(req(m).uri).host).toBe("[2001:db8:::192.0.2.1]");
    expect(uriChecks.uri(m.header("To")!).host).toBe("[2001:db8:::192.0.2.1]");
  }),
  "ipv6-correct-abnf-2-colons": parses((m) => {
    expect(uriChecks.uri(req(m).uri).host).toBe("[2001:db8::192.0.2.1]");
    expect(uriChecks.uri(m.header("To")!).host).toBe("[2001:db8::192.0.2.1]");
  }),
};

// ---------------------------------------------------------------- tests

describe("torture fixtures are intact", () => {
  const sets: Array<[string, string, string]> = [
    ["rfc4475", "rfc4475/SHA256SUMS", "rfc4475/"],
    ["rfc5118", "rfc5118/SHA256SUMS", "rfc5118/"],
    ["rfc5118/wire", "rfc5118/wire.SHA256SUMS", "rfc5118/wire/"],
  ];
  for (const [name, sumsFile, dir] of sets) {
    it(`${name}: every file matches ${sumsFile}`, () => {
      const expected = sums(sumsFile);
      expect(expected.size).toBeGreaterThan(10);
      for (const [file, hash] of expected) expect(sha256(read(`${dir}${file}`)), file).toBe(hash);
      // And no message file is left unchecked.
      const present = readdirSync(`${ROOT}${dir}`, { withFileTypes: true })
        .filter((d) => d.isFile() && !/^(INDEX\.tsv|SHA256SUMS|wire\.SHA256SUMS|README\.txt)$/.test(d.name))
        .map((d) => d.name)
        .sort();
      expect(present).toEqual([...expected.keys()].sort());
    });
  }

  it("every INDEX.tsv row names a checksummed file and vice versa", () => {
    expect(
      readIndex("rfc4475")
        .map((r) => r.file)
        .sort(),
    ).toEqual([...sums("rfc4475/SHA256SUMS").keys()].sort());
    expect(
      readIndex("rfc5118")
        .map((r) => r.file)
        .sort(),
    ).toEqual([...sums("rfc5118/SHA256SUMS").keys()].sort());
    expect([...sums("rfc5118/wire.SHA256SUMS").keys()].sort()).toEqual(
      [...sums("rfc5118/SHA256SUMS").keys()].sort(),
    );
  });
});

/** The outcome the INDEX row implies; the table above must agree with it (or say why not). */
function indexOutcome(row: IndexRow): "parse" | "reject" {
  if (row.validity.startsWith("valid")) return "parse";
  return "reject";
}

/** Files whose table outcome deliberately differs from the index's category. */
const OVERRIDES = new Set(["insuf", "multi01"]);

function runExpectation(e: Expectation, data: Buffer): void {
  const { msg, error } = parseAndValidate(data);
  if (e.outcome === "parse") {
    if (error)
      throw new Error(`expected to parse, got SipParseError ${error.status} ${error.code}: ${error.message}`);
    const m = msg!;
    // Unmodified: the bytes it came from, the same Buffer object.
    expect(m.modified).toBe(false);
    expect(m.toBuffer()).toBe(m.raw);
    expect(data.subarray(0, m.raw.length).equals(m.raw)).toBe(true);
    e.check(m, data);
    return;
  }
  expect(error, `expected SipParseError (${e.why}), but it parsed`).toBeInstanceOf(SipParseError);
  expect(error!.status, `${error!.code}: ${error!.message}`).toBe(e.status);
  if (e.kind) expect(error!.kind).toBe(e.kind);
  if (e.codes.length > 0) expect(e.codes, `${error!.code}: ${error!.message}`).toContain(error!.code);
}

describe("RFC 4475 torture messages (INDEX.tsv)", () => {
  const rows = readIndex("rfc4475");

  it("the expectation table covers exactly the indexed files", () => {
    expect(Object.keys(RFC4475).sort()).toEqual(rows.map((r) => r.file.replace(/\.dat$/, "")).sort());
  });

  for (const row of rows) {
    const name = row.file.replace(/\.dat$/, "");
    it(`${row.file} (§${row.section}, ${row.validity}): ${row.title}`, () => {
      const e = RFC4475[name];
      expect(e, `no expectation for ${row.file}`).toBeDefined();
      if (!OVERRIDES.has(name)) expect(e!.outcome).toBe(indexOutcome(row));
      runExpectation(e!, read(`rfc4475/${row.file}`));
    });
  }
});

describe("RFC 5118 IPv6 torture messages (wire copies, INDEX.tsv)", () => {
  const rows = readIndex("rfc5118");

  it("the expectation table covers exactly the indexed files", () => {
    expect(Object.keys(RFC5118_WIRE).sort()).toEqual(rows.map((r) => r.file).sort());
  });

  for (const row of rows) {
    it(`wire/${row.file} (§${row.section}, ${row.validity}): ${row.title}`, () => {
      const e = RFC5118_WIRE[row.file];
      expect(e, `no expectation for ${row.file}`).toBeDefined();
      expect(e!.outcome).toBe(indexOutcome(row));
      runExpectation(e!, read(`rfc5118/wire/${row.file}`));
    });
  }

  for (const row of rows) {
    it(`archive ${row.file} (bare LF, original Content-Length): parses or throws SipParseError only`, () => {
      const data = read(`rfc5118/${row.file}`);
      const { msg, error } = parseAndValidate(data);
      expect(msg !== undefined || error instanceof SipParseError).toBe(true);
      if (row.file === "ipv6-bad") expect(error?.status).toBe(400);
    });
  }
});

describe("RFC 4475 framing faults over a stream (StreamFramer)", () => {
  function frame(data: Buffer): { framed: Buffer[]; error: SipParseError | undefined; framer: StreamFramer } {
    const framer = new StreamFramer();
    const framed: Buffer[] = [];
    const error = thrown(() => framer.push(data, (m) => framed.push(m)));
    return { framed, error, framer };
  }

  it("clerr.dat: Content-Length larger than what arrived: keep waiting, no message, no error", () => {
    const data = read("rfc4475/clerr.dat");
    const { framed, error, framer } = frame(data);
    expect(error).toBeUndefined();
    expect(framed).toHaveLength(0);
    expect(framer.buffered).toBe(data.length);
  });

  it("ncl.dat: negative Content-Length is an unrecoverable framing error (close the connection)", () => {
    const { framed, error } = frame(read("rfc4475/ncl.dat"));
    expect(framed).toHaveLength(0);
    expect(error).toBeInstanceOf(SipParseError);
    expect(error!.code).toBe("bad-content-length");
  });

  it("mcl01.dat: conflicting Content-Length values are a framing error", () => {
    const { framed, error } = frame(read("rfc4475/mcl01.dat"));
    expect(framed).toHaveLength(0);
    expect(error).toBeInstanceOf(SipParseError);
    expect(error!.code).toBe("bad-content-length");
  });

  it("a valid message (wsinv.dat) is framed whole, byte for byte, and parses as a stream message", () => {
    const data = read("rfc4475/wsinv.dat");
    const { framed, error } = frame(data);
    expect(error).toBeUndefined();
    expect(framed).toHaveLength(1);
    expect(framed[0]!.equals(data)).toBe(true);
    const m = parseMessage(framed[0]!, { datagram: false });
    expect(m.callId).toBe("wsinv.ndaksdj@192.0.2.1");
  });

  it("inv2543.dat over a stream: no Content-Length, so parseMessage(datagram=false) refuses it", () => {
    const e = thrown(() => parseMessage(read("rfc4475/inv2543.dat"), { datagram: false }));
    expect(e).toBeInstanceOf(SipParseError);
    expect(e!.status).toBe(400);
  });
});
