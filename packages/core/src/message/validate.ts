/**
 * fullParse: the strict grammar check (RFC 3261 §25) of every header this
 * layer knows, run on demand (a UAS or registrar before acting on a request;
 * the parse fast path only checks what the transaction layer needs).
 * Unknown headers are opaque and never checked.
 *
 * Two implementations of one check: fastcheck.ts answers "well-formed" for a
 * parsed, unedited message straight from its bytes, allocation-free; this
 * file is the reference, run when the fast one is not sure (a fault, an
 * edited message, rare constructs such as folded lines). The reference is
 * what reports faults, so they read the same whichever path ran.
 */

import { SipParseError } from "./errors.js";
import { fastValid, isSipDate } from "./fastcheck.js";
import {
  bytesOf,
  cseqMethod,
  elEnd,
  elStart,
  MAX_UINT32,
  nextElement,
  parseCSeqRange,
  parseDecimal,
  parseTrimmedDecimal,
  parseVia,
  skipWs,
  trimEnd,
  viaEnd,
} from "./fields.js";
import { SipMessageImpl } from "./message.js";
import { parseGenericParams, parseNameAddr } from "./nameaddr.js";
import { KNOWN_METHODS } from "./parser.js";
import { isToken, TOKEN_CHARS } from "./text.js";
import type { SipMessage } from "./types.js";
import { parseUri } from "./uri.js";

class Fault extends Error {
  constructor(
    readonly code: string,
    readonly why: string,
    readonly status = 400,
  ) {
    super(why);
  }
}

function bad(header: string, reason: string, code = "bad-header", status = 400): never {
  throw new Fault(code, `${header}: ${reason}`, status);
}

/** Run a sub-parser; turn its SipParseError into a fault naming the header. */
function check<T>(header: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SipParseError) bad(header, e.reason, e.code === "bad-uri" ? "bad-uri" : "bad-header");
    throw e;
  }
}

function elements(msg: SipMessage, name: string, header: string): string[] {
  const out: string[] = [];
  for (const v of msg.headerLines(name)) {
    const b = bytesOf(v);
    let i = 0;
    do {
      i = nextElement(b, i, v.length);
      if (elEnd === elStart) bad(header, "empty list element (stray ',')");
      out.push(v.slice(elStart, elEnd));
    } while (i >= 0);
  }
  return out;
}

function single(msg: SipMessage, name: string, header: string, required: boolean): string | undefined {
  const lines = msg.headerLines(name);
  if (lines.length > 1) bad(header, "must appear once", "duplicate-header");
  if (lines.length === 0 && required) bad(header, "missing", "missing-header");
  return lines[0];
}

function deltaSeconds(v: string, header: string): number {
  const b = bytesOf(v);
  const a = skipWs(b, 0, v.length);
  const e = trimEnd(b, a, v.length);
  const n = parseDecimal(b, a, e, MAX_UINT32);
  if (n === -2) bad(header, "value above 2^32-1");
  if (n < 0) bad(header, "not a delta-seconds value");
  return n;
}

/** Call-ID = word [ "@" word ] */
function checkCallId(v: string): void {
  let at = 0;
  if (v.length === 0) bad("Call-ID", "empty");
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 64) {
      at++;
      if (at > 1 || i === 0 || i === v.length - 1) bad("Call-ID", "bad '@'");
      continue;
    }
    const ok =
      (c < 256 && TOKEN_CHARS[c] === 1) ||
      c === 40 ||
      c === 41 ||
      c === 60 ||
      c === 62 ||
      c === 58 ||
      c === 92 ||
      c === 34 ||
      c === 47 ||
      c === 91 ||
      c === 93 ||
      c === 63 ||
      c === 123 ||
      c === 125;
    if (!ok) bad("Call-ID", "invalid character");
  }
}

/** qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
function isQValue(v: string): boolean {
  const n = v.length;
  if (n === 0 || n > 5) return false;
  const c0 = v.charCodeAt(0);
  if (c0 !== 48 && c0 !== 49) return false;
  if (n === 1) return true;
  if (v.charCodeAt(1) !== 46) return false;
  for (let i = 2; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c0 === 49 ? c !== 48 : c < 48 || c > 57) return false;
  }
  return true;
}

function checkContacts(msg: SipMessage): void {
  const values = elements(msg, "contact", "Contact");
  if (values.length === 1 && values[0] === "*") return;
  for (const v of values) {
    if (v === "*") bad("Contact", "'*' must be the only Contact value");
    const na = check("Contact", () => parseNameAddr(v));
    for (const [name, value] of na.params) {
      if (name === "expires") {
        if (value === null) bad("Contact", "expires without value");
        deltaSeconds(value, "Contact expires");
      } else if (name === "q") {
        if (value === null || !isQValue(value)) bad("Contact", "bad q value");
      }
    }
  }
}

function checkRouteList(msg: SipMessage, name: string, header: string): void {
  for (const v of elements(msg, name, header)) {
    const na = check(header, () => parseNameAddr(v));
    if (!na.angle) bad(header, "value must be a name-addr (<uri>)");
  }
}

function checkTokenList(msg: SipMessage, name: string, header: string, allowEmpty: boolean): void {
  for (const line of msg.headerLines(name)) {
    const b = bytesOf(line);
    let i = nextElement(b, 0, line.length);
    // one empty element: an empty line
    if (i < 0 && elStart === elEnd && allowEmpty) continue;
    while (true) {
      if (!isToken(line.slice(elStart, elEnd))) bad(header, "expected a token list");
      if (i < 0) break;
      i = nextElement(b, i, line.length);
    }
  }
}

function checkMediaType(v: string): void {
  const e = v.length;
  const b = bytesOf(v);
  let i = skipWs(b, 0, e);
  let j = i;
  while (j < e && TOKEN_CHARS[v.charCodeAt(j)] === 1) j++;
  if (j === i) bad("Content-Type", "missing type");
  i = skipWs(b, j, e);
  if (v.charCodeAt(i) !== 47) bad("Content-Type", "missing '/'");
  i = skipWs(b, i + 1, e);
  j = i;
  while (j < e && TOKEN_CHARS[v.charCodeAt(j)] === 1) j++;
  if (j === i) bad("Content-Type", "missing subtype");
  const params: Array<readonly [string, string | null]> = [];
  check("Content-Type", () => parseGenericParams(v, j, params));
}

function checkWarning(msg: SipMessage): void {
  for (const v of elements(msg, "warning", "Warning")) {
    // warn-code SP warn-agent SP warn-text
    let i = 0;
    while (i < v.length && v.charCodeAt(i) >= 48 && v.charCodeAt(i) <= 57) i++;
    if (i !== 3 || v.charCodeAt(3) !== 32) bad("Warning", "warn-code must be 3 digits");
  }
}

/** SIP-date = rfc1123-date in GMT (fastcheck.ts). */
function checkDate(v: string): void {
  if (!isSipDate(v)) bad("Date", "not an RFC 1123 date in GMT");
}

function checkVias(msg: SipMessage): void {
  const lines = msg.headerLines("via");
  if (lines.length === 0) bad("Via", "missing", "missing-header");
  for (const line of lines) {
    const b = bytesOf(line);
    let next = 0;
    while (next >= 0) {
      next = nextElement(b, next, line.length);
      const a = elStart;
      const e = elEnd;
      if (a === e) bad("Via", "empty value (stray ',')", "bad-via");
      try {
        parseVia(b, line, a, e, true);
      } catch (err) {
        if (err instanceof SipParseError) bad("Via", err.reason, "bad-via");
        throw err;
      }
      if (viaEnd !== e) bad("Via", "junk after the value", "bad-via");
    }
  }
}

export interface FullParseOptions {
  /**
   * Request-URI schemes this element serves (lower case, e.g. ["sip", "sips", "tel"]).
   * When given, a request for another scheme fails with 416 Unsupported URI Scheme
   * (RFC 3261 §8.2.2.1). Without it any well-formed scheme passes.
   */
  schemes?: ReadonlyArray<string>;
}

function run(msg: SipMessage, opts: FullParseOptions | undefined): void {
  if (msg.isRequest) {
    const uri = check("Request-URI", () => parseUri(msg.uri));
    if (opts?.schemes !== undefined && !opts.schemes.includes(uri.scheme)) {
      bad("Request-URI", `unsupported URI scheme ${uri.scheme}`, "unsupported-scheme", 416);
    }
    if (uri.type === "sip" && uri.headers.length > 0) {
      bad("Request-URI", "headers (?...) are not allowed in a Request-URI", "bad-uri");
    }
  }
  checkVias(msg);

  const from = single(msg, "from", "From", true)!;
  const fna = check("From", () => parseNameAddr(from));
  void fna;
  const to = single(msg, "to", "To", true)!;
  check("To", () => parseNameAddr(to));

  const callId = single(msg, "call-id", "Call-ID", true)!;
  checkCallId(callId.trim());

  const cseq = single(msg, "cseq", "CSeq", true)!;
  const seq = check("CSeq", () => parseCSeqRange(bytesOf(cseq), cseq, 0, cseq.length));
  void seq;
  if (!isToken(cseqMethod)) bad("CSeq", "bad method");
  if (msg.isRequest && cseqMethod !== msg.method) {
    bad(
      "CSeq",
      `method ${cseqMethod} differs from the Request-Line method ${msg.method}`,
      "cseq-mismatch",
      KNOWN_METHODS.has(msg.method) ? 400 : 501,
    );
  }

  const mf = single(msg, "max-forwards", "Max-Forwards", false);
  if (mf !== undefined) {
    const n = parseTrimmedDecimal(bytesOf(mf), 0, mf.length, 255);
    if (n < 0) bad("Max-Forwards", "must be 0-255", "bad-max-forwards");
  }
  const cl = msg.headerLines("content-length");
  for (const v of cl) {
    if (parseTrimmedDecimal(bytesOf(v), 0, v.length, MAX_UINT32) < 0) {
      bad("Content-Length", "not a decimal", "bad-content-length");
    }
  }
  const expires = single(msg, "expires", "Expires", false);
  if (expires !== undefined) deltaSeconds(expires, "Expires");
  const minExpires = single(msg, "min-expires", "Min-Expires", false);
  if (minExpires !== undefined) deltaSeconds(minExpires, "Min-Expires");
  const retryAfter = single(msg, "retry-after", "Retry-After", false);
  if (retryAfter !== undefined) {
    let e = 0;
    while (e < retryAfter.length && retryAfter.charCodeAt(e) >= 48 && retryAfter.charCodeAt(e) <= 57) e++;
    deltaSeconds(retryAfter.slice(0, e), "Retry-After");
  }

  checkContacts(msg);
  checkRouteList(msg, "route", "Route");
  checkRouteList(msg, "record-route", "Record-Route");
  const replyTo = single(msg, "reply-to", "Reply-To", false);
  if (replyTo !== undefined) check("Reply-To", () => parseNameAddr(replyTo));

  const date = single(msg, "date", "Date", false);
  if (date !== undefined) checkDate(date.trim());
  const ct = single(msg, "content-type", "Content-Type", false);
  if (ct !== undefined) checkMediaType(ct);
  checkTokenList(msg, "require", "Require", false);
  checkTokenList(msg, "proxy-require", "Proxy-Require", false);
  checkTokenList(msg, "supported", "Supported", true);
  checkTokenList(msg, "unsupported", "Unsupported", false);
  checkTokenList(msg, "allow", "Allow", true);
  checkWarning(msg);
}

/**
 * Strict grammar check of every known header of a parsed message. Throws
 * SipParseError (status 400; 501 for an unknown method whose CSeq differs;
 * 416 for a Request-URI scheme outside `opts.schemes`; 0 for responses);
 * returns normally when the message is well-formed.
 */
export function fullParse(msg: SipMessage, opts?: FullParseOptions): void {
  // The byte-level check answers for a well-formed parsed message; anything
  // else (a fault, an edited message, rare constructs) gets the reference
  // check below, which reports the precise fault.
  if (msg instanceof SipMessageImpl && fastValid(msg, opts?.schemes)) return;
  referenceParse(msg, opts);
}

/**
 * The reference check alone (no byte-level fast path): what `fullParse` falls
 * back to. Exported so a test can hold the fast path to it.
 */
export function referenceParse(msg: SipMessage, opts?: FullParseOptions): void {
  const kind = msg.isRequest ? "request" : "response";
  try {
    run(msg, opts);
  } catch (e) {
    if (e instanceof Fault) throw new SipParseError(e.code, e.why, -1, e.status, kind);
    if (e instanceof SipParseError) throw e.withKind(kind);
    throw new SipParseError(
      "internal",
      `malformed message (${e instanceof Error ? e.message : String(e)})`,
      -1,
      400,
      kind,
    );
  }
}
