/**
 * Message builders. Output is built as one latin1 string (header values are
 * latin1 byte strings, see types.ts) written into one Buffer, body appended:
 * no intermediate object graph.
 */

import { newTag } from "./ids.js";
import { SipMessageImpl } from "./message.js";
import { canonicalName, isToken, properName } from "./text.js";
import type { SipRequest } from "./types.js";

/** Default Reason-Phrases (RFC 3261 §21 and extensions). */
export const REASON_PHRASES: Readonly<Record<number, string>> = Object.freeze({
  100: "Trying",
  180: "Ringing",
  181: "Call Is Being Forwarded",
  182: "Queued",
  183: "Session Progress",
  199: "Early Dialog Terminated",
  200: "OK",
  202: "Accepted",
  204: "No Notification",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Moved Temporarily",
  305: "Use Proxy",
  380: "Alternative Service",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  410: "Gone",
  412: "Conditional Request Failed",
  413: "Request Entity Too Large",
  414: "Request-URI Too Long",
  415: "Unsupported Media Type",
  416: "Unsupported URI Scheme",
  417: "Unknown Resource-Priority",
  420: "Bad Extension",
  421: "Extension Required",
  422: "Session Interval Too Small",
  423: "Interval Too Brief",
  428: "Use Identity Header",
  429: "Provide Referrer Identity",
  430: "Flow Failed",
  433: "Anonymity Disallowed",
  436: "Bad Identity-Info",
  437: "Unsupported Certificate",
  438: "Invalid Identity Header",
  439: "First Hop Lacks Outbound Support",
  440: "Max-Breadth Exceeded",
  469: "Bad Info Package",
  470: "Consent Needed",
  480: "Temporarily Unavailable",
  481: "Call/Transaction Does Not Exist",
  482: "Loop Detected",
  483: "Too Many Hops",
  484: "Address Incomplete",
  485: "Ambiguous",
  486: "Busy Here",
  487: "Request Terminated",
  488: "Not Acceptable Here",
  489: "Bad Event",
  491: "Request Pending",
  493: "Undecipherable",
  494: "Security Agreement Required",
  500: "Server Internal Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Server Time-out",
  505: "Version Not Supported",
  513: "Message Too Large",
  555: "Push Notification Service Not Supported",
  580: "Precondition Failure",
  600: "Busy Everywhere",
  603: "Decline",
  604: "Does Not Exist Anywhere",
  606: "Not Acceptable",
  607: "Unwanted",
  608: "Rejected",
});

/** The default Reason-Phrase of a status code (class default for unknown codes). */
export function reasonPhrase(status: number): string {
  const r = REASON_PHRASES[status];
  if (r !== undefined) return r;
  if (status < 200) return "Session Progress";
  if (status < 300) return "OK";
  if (status < 400) return "Redirection";
  if (status < 500) return "Client Error";
  if (status < 600) return "Server Error";
  return "Global Failure";
}

export interface BuildResponseOptions {
  /** Reason-Phrase; the table default when absent. */
  reason?: string | undefined;
  /** Added as `;tag=` to To when the request's To has none (not on 100 Trying, RFC 3261 §8.2.6.2). */
  toTag?: string | undefined;
  /** Extra header lines, after CSeq, in order. */
  headers?: Array<[string, string]> | undefined;
  /** A string body is written as UTF-8. */
  body?: Buffer | string | undefined;
  /** Content-Type line, written when given (normally with a body). */
  contentType?: string | undefined;
}

export interface BuildRequestOptions {
  method: string;
  uri: string;
  /** One via-parm: "SIP/2.0/UDP host:port;branch=z9hG4bK...". */
  via: string;
  from: string;
  to: string;
  callId: string;
  cseq: number;
  /** Default 70. */
  maxForwards?: number | undefined;
  headers?: Array<[string, string]> | undefined;
  /** A string body is written as UTF-8. */
  body?: Buffer | string | undefined;
  contentType?: string | undefined;
}

/**
 * RFC 3261 §25.1: a header value is printable text, HTAB and (as latin1 bytes) UTF-8; no other
 * control character (CR, LF, NUL, …) and no DEL.
 */
function ctlIn(v: string): number {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127 || c > 255) return i;
  }
  return -1;
}

function checkText(what: string, v: string): void {
  const i = ctlIn(v);
  if (i >= 0) {
    const c = v.charCodeAt(i);
    throw new RangeError(
      `${what} must be latin1 text without control characters (0x${c.toString(16).padStart(2, "0")} at ${i}; RFC 3261 §25.1)`,
    );
  }
}

/**
 * Headers of which a message has at most one (RFC 3261 §7.3.1: only a comma-separated list may be
 * split over several header fields; §20 and the extensions' grammars). Canonical lower-case names.
 */
export const SINGLE_INSTANCE_HEADERS: ReadonlySet<string> = new Set([
  "call-id",
  "content-disposition",
  "content-length",
  "content-type",
  "cseq",
  "date",
  "expires",
  "from",
  "max-forwards",
  "mime-version",
  "min-expires",
  "organization",
  "priority",
  "reply-to",
  "retry-after",
  "server",
  "subject",
  "timestamp",
  "to",
  "user-agent",
  // RFC 3262, RFC 6665, RFC 3515, RFC 3892, RFC 4028, RFC 3891, RFC 3911
  "rseq",
  "rack",
  "event",
  "subscription-state",
  "refer-to",
  "referred-by",
  "session-expires",
  "min-se",
  "replaces",
  "join",
]);

/** What `buildResponse` writes itself (copied from the request, or from its options). */
export const RESPONSE_OWN_HEADERS: ReadonlySet<string> = new Set([
  "via",
  "from",
  "to",
  "call-id",
  "cseq",
  "content-type",
  "content-length",
]);
/** What `buildRequest` writes itself: the same and Max-Forwards; its options, not extra headers, carry these. */
export const REQUEST_OWN_HEADERS: ReadonlySet<string> = new Set([...RESPONSE_OWN_HEADERS, "max-forwards"]);

/**
 * Check header fields given by a caller before they are written: each name a token, each value
 * without control characters (§25.1), none of `own` (what the builder writes itself — compact forms
 * included, §7.3.3), and no single-instance header twice (§7.3.1). Throws RangeError saying which.
 * The builders run it on their extra headers; the control interface on what an operator typed.
 */
export function checkHeaderFields(
  fields: ReadonlyArray<readonly [string, string]>,
  own: ReadonlySet<string>,
): void {
  let seen: Set<string> | undefined;
  for (const [name, value] of fields) {
    if (!isToken(name)) throw new RangeError(`invalid header name ${JSON.stringify(name)}`);
    checkText(`header ${name}`, value);
    const canon = canonicalName(name);
    if (own.has(canon))
      throw new RangeError(`header ${properName(name)} is written by the transaction layer: leave it out`);
    if (SINGLE_INSTANCE_HEADERS.has(canon)) {
      seen ??= new Set();
      if (seen.has(canon))
        throw new RangeError(
          `header ${properName(name)} given twice: a message has at most one (RFC 3261 §7.3.1, §20)`,
        );
      seen.add(canon);
    }
  }
}

function extraHeaders(headers: Array<[string, string]> | undefined, own: ReadonlySet<string>): string {
  let s = "";
  if (headers === undefined) return s;
  checkHeaderFields(headers, own);
  for (const [name, value] of headers) s += `${name}: ${value}\r\n`;
  return s;
}

function finish(s: string, text: Buffer | string | undefined, contentType: string | undefined): Buffer {
  const body = typeof text === "string" ? Buffer.from(text, "utf8") : text;
  if (contentType !== undefined) {
    checkText("Content-Type", contentType);
    s += `Content-Type: ${contentType}\r\n`;
  }
  const bl = body === undefined ? 0 : body.length;
  s += `Content-Length: ${bl}\r\n\r\n`;
  const hl = s.length;
  const out = Buffer.allocUnsafe(hl + bl);
  out.write(s, 0, hl, "latin1");
  if (body !== undefined && bl > 0) body.copy(out, hl);
  return out;
}

/** Lines of a header as written, for any SipRequest implementation. */
function linesOf(req: SipRequest, name: string, label: string): string {
  if (req instanceof SipMessageImpl) return req.headerText(name);
  let s = "";
  for (const v of req.headerLines(name)) s += `${label}: ${v}\r\n`;
  return s;
}

/**
 * Build a response to `req` (RFC 3261 §8.2.6.2): Via lines (all, in order, as
 * written), From, To (+ tag), Call-ID and CSeq copied, then extra headers,
 * Content-Type when given, and Content-Length.
 */
export function buildResponse(req: SipRequest, status: number, opts?: BuildResponseOptions): Buffer {
  if (!Number.isInteger(status) || status < 100 || status > 699) {
    throw new RangeError(`status ${status} is not a SIP status code`);
  }
  const given = opts?.reason;
  // A caller's reason phrase is checked; ours (the RFC's table) needs no check.
  if (given !== undefined) checkText("reason", given);
  const reason = given ?? reasonPhrase(status);
  let s = `SIP/2.0 ${status} ${reason}\r\n`;
  s += linesOf(req, "via", "Via");
  s += linesOf(req, "from", "From");
  const toTag = opts?.toTag;
  if (toTag !== undefined && status !== 100 && req.toTag === undefined) {
    checkText("toTag", toTag);
    let t = linesOf(req, "to", "To");
    const nl = t.indexOf("\r\n", t.indexOf(":"));
    let cut = nl < 0 ? t.length : nl;
    // the first To line (a folded line continues after CRLF + WS)
    while (nl >= 0 && cut + 2 < t.length && (t.charCodeAt(cut + 2) === 32 || t.charCodeAt(cut + 2) === 9)) {
      const nx = t.indexOf("\r\n", cut + 2);
      cut = nx < 0 ? t.length : nx;
    }
    let e = cut;
    while (e > 0 && (t.charCodeAt(e - 1) === 32 || t.charCodeAt(e - 1) === 9)) e--;
    t = t.slice(0, e);
    s += `${t};tag=${toTag}\r\n`;
  } else {
    s += linesOf(req, "to", "To");
  }
  s += linesOf(req, "call-id", "Call-ID");
  s += linesOf(req, "cseq", "CSeq");
  s += extraHeaders(opts?.headers, RESPONSE_OWN_HEADERS);
  return finish(s, opts?.body, opts?.contentType);
}

/**
 * Build a request: Request-Line, then Via, Max-Forwards (default 70), From,
 * To, Call-ID, CSeq, extra headers, Content-Type when given, Content-Length.
 */
export function buildRequest(opts: BuildRequestOptions): Buffer {
  const { method, uri, via, from, to, callId, cseq } = opts;
  if (!isToken(method)) throw new RangeError(`invalid method ${JSON.stringify(method)}`);
  for (let i = 0; i < uri.length; i++) {
    const c = uri.charCodeAt(i);
    if (c <= 32 || c === 127 || c > 255) throw new RangeError("Request-URI must not contain whitespace/CTL");
  }
  if (uri.length === 0) throw new RangeError("empty Request-URI");
  checkText("Via", via);
  checkText("From", from);
  checkText("To", to);
  checkText("Call-ID", callId);
  if (!Number.isInteger(cseq) || cseq < 0 || cseq > 4294967295) throw new RangeError("CSeq out of range");
  const mf = opts.maxForwards ?? 70;
  if (!Number.isInteger(mf) || mf < 0 || mf > 255) throw new RangeError("Max-Forwards out of range");
  let s = `${method} ${uri} SIP/2.0\r\nVia: ${via}\r\nMax-Forwards: ${mf}\r\nFrom: ${from}\r\nTo: ${to}\r\nCall-ID: ${callId}\r\nCSeq: ${cseq} ${method}\r\n`;
  s += extraHeaders(opts.headers, REQUEST_OWN_HEADERS);
  return finish(s, opts.body, opts.contentType);
}

const REJECT_KEEPS: ReadonlySet<string> = new Set([
  "via",
  "v",
  "from",
  "f",
  "to",
  "t",
  "call-id",
  "i",
  "cseq",
]);

/**
 * A stateless response built from a request's raw bytes by a line scan,
 * without the parser: for a request that failed to parse (answered 400 or
 * the status the RFC names) and for one the server turns away before any
 * parse (503 while overloaded). RFC 3261 §8.2.6: Via (every value, in order),
 * From, To (a tag added when it had none, §8.2.6.2), Call-ID and CSeq are
 * copied; folded continuation lines are dropped. Returns undefined when there
 * is no Via or CSeq to answer along (the request is then dropped).
 */
export function buildReject(
  data: Buffer,
  status: number,
  reason: string,
  headers: ReadonlyArray<readonly [string, string]> = [],
): Buffer | undefined {
  let end = data.indexOf("\r\n\r\n");
  if (end < 0) end = Math.min(data.length, 16_384);
  const lines = data.toString("latin1", 0, end).split("\n");
  const out: string[] = [`SIP/2.0 ${status} ${reason.replace(/[\r\n]/g, " ").slice(0, 100)}`];
  let via = false;
  let cseq = false;
  for (let i = 1; i < lines.length; i++) {
    let line = lines[i]!;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line.length === 0) break;
    if (line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) continue; // folded continuation: dropped
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!REJECT_KEEPS.has(name)) continue;
    if (name === "via" || name === "v") via = true;
    else if (name === "cseq") cseq = true;
    if ((name === "to" || name === "t") && !hasTagParam(line.slice(line.lastIndexOf(">") + 1)))
      out.push(`${line};tag=${newTag()}`);
    else out.push(line);
  }
  if (!via || !cseq) return undefined;
  for (const [name, value] of headers) out.push(`${name}: ${value}`);
  out.push("Content-Length: 0", "", "");
  return Buffer.from(out.join("\r\n"), "latin1");
}

/** ";tag=" among header parameters, spaces allowed around "=" (no regex over untrusted text). */
function hasTagParam(params: string): boolean {
  const lower = params.toLowerCase();
  for (let i = lower.indexOf(";"); i >= 0; i = lower.indexOf(";", i + 1)) {
    let j = i + 1;
    while (lower.charCodeAt(j) === 32 || lower.charCodeAt(j) === 9) j++;
    if (!lower.startsWith("tag", j)) continue;
    j += 3;
    while (lower.charCodeAt(j) === 32 || lower.charCodeAt(j) === 9) j++;
    if (lower.charCodeAt(j) === 61) return true;
  }
  return false;
}
