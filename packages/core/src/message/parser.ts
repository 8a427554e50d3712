/**
 * parseMessage: the receive fast path.
 *
 * 1. size check against the limits (before any other work);
 * 2. one pass over the bytes: start line end, each header line's name and
 *    value ranges (with folding), the blank line;
 * 3. one latin1 conversion of the head;
 * 4. start line, then only the transaction fields: top Via and Via count,
 *    Call-ID, CSeq, From/To tags, Max-Forwards, Content-Length.
 * Everything else is left as byte ranges for lazy access (message.ts).
 */

import { SipParseError, type SipParseErrorKind, toSipParseError } from "./errors.js";
import {
  checkRequestUri,
  countValues,
  cseqMethod,
  findTag,
  MAX_UINT32,
  parseCSeqRange,
  parseDecimal,
  parseVia,
} from "./fields.js";
import { F_FOLDED, type SipMessageImpl, SipRequestImpl, SipResponseImpl, STRIDE } from "./message.js";
import { TOKEN_CHARS, unfold } from "./text.js";
import {
  DEFAULT_PARSE_LIMITS,
  type ParseLimits,
  type ParseOptions,
  type SipMessage,
  type Via,
} from "./types.js";

// header ids for the eager fields
const H_OTHER = 0;
const H_VIA = 1;
const H_CALLID = 2;
const H_CSEQ = 3;
const H_FROM = 4;
const H_TO = 5;
const H_MAXFWD = 6;
const H_CLEN = 7;

/** Methods this layer knows; a CSeq mismatch on any other method is answered 501 (RFC 4475 §3.1.2.18). */
export const KNOWN_METHODS: ReadonlySet<string> = new Set([
  "INVITE",
  "ACK",
  "BYE",
  "CANCEL",
  "OPTIONS",
  "REGISTER",
  "PRACK",
  "SUBSCRIBE",
  "NOTIFY",
  "PUBLISH",
  "INFO",
  "REFER",
  "MESSAGE",
  "UPDATE",
]);

const CRLFCRLF = Buffer.from("\r\n\r\n", "latin1");

/** Line ranges of the message being parsed; copied out (slice) per message. Plain SMI array on purpose. */
const scratch: number[] = [];
for (let i = 0; i < DEFAULT_PARSE_LIMITS.maxHeaders * STRIDE; i++) scratch.push(0);

function eq(s: string, a: number, lit: string): boolean {
  // lit is lower-case letters and '-'; s[a..] is known to be a token of the same length
  for (let i = 0; i < lit.length; i++) if ((s.charCodeAt(a + i) | 0x20) !== lit.charCodeAt(i)) return false;
  return true;
}

/** Id of the header whose name is s[a, e) (a token). */
function headerId(s: string, a: number, e: number): number {
  switch (e - a) {
    case 1:
      switch (s.charCodeAt(a) | 0x20) {
        case 118:
          return H_VIA;
        case 105:
          return H_CALLID;
        case 102:
          return H_FROM;
        case 116:
          return H_TO;
        case 108:
          return H_CLEN;
      }
      return H_OTHER;
    case 2:
      return eq(s, a, "to") ? H_TO : H_OTHER;
    case 3:
      return eq(s, a, "via") ? H_VIA : H_OTHER;
    case 4:
      if (eq(s, a, "cseq")) return H_CSEQ;
      return eq(s, a, "from") ? H_FROM : H_OTHER;
    case 7:
      return eq(s, a, "call-id") ? H_CALLID : H_OTHER;
    case 12:
      return eq(s, a, "max-forwards") ? H_MAXFWD : H_OTHER;
    case 14:
      return eq(s, a, "content-length") ? H_CLEN : H_OTHER;
  }
  return H_OTHER;
}

function mergeLimits(l: Partial<ParseLimits> | undefined): Readonly<ParseLimits> {
  if (l === undefined) return DEFAULT_PARSE_LIMITS;
  return {
    maxMessageSize: l.maxMessageSize ?? DEFAULT_PARSE_LIMITS.maxMessageSize,
    maxHeaders: l.maxHeaders ?? DEFAULT_PARSE_LIMITS.maxHeaders,
    maxHeaderLineLength: l.maxHeaderLineLength ?? DEFAULT_PARSE_LIMITS.maxHeaderLineLength,
    maxVias: l.maxVias ?? DEFAULT_PARSE_LIMITS.maxVias,
  };
}

function guessKind(b: Buffer, p: number): SipParseErrorKind {
  if (
    b.length >= p + 4 &&
    (b[p]! | 0x20) === 115 &&
    (b[p + 1]! | 0x20) === 105 &&
    (b[p + 2]! | 0x20) === 112 &&
    b[p + 3] === 47
  ) {
    return "response";
  }
  return p < b.length && TOKEN_CHARS[b[p]!] === 1 ? "request" : "unknown";
}

const latin1Slice: (b: Buffer, a: number, e: number) => string =
  typeof (Buffer.prototype as unknown as { latin1Slice?: unknown }).latin1Slice === "function"
    ? (b, a, e) => (b as unknown as { latin1Slice(a: number, e: number): string }).latin1Slice(a, e)
    : (b, a, e) => b.toString("latin1", a, e);

/**
 * Parse one SIP message (a UDP datagram, or a message framed out of a stream
 * with `datagram: false`). Throws SipParseError, and nothing else, for any input.
 */
export function parseMessage(data: Buffer, options?: ParseOptions): SipMessage {
  if (!Buffer.isBuffer(data)) {
    throw new SipParseError("bad-input", "input is not a Buffer", -1, 400, "unknown");
  }
  const limits = mergeLimits(options?.limits);
  const datagram = options?.datagram !== false;
  const len = data.length;
  // RFC 3261 §7.5: CRLFs before the start line are ignored.
  let base = 0;
  while (base < len && (data[base] === 13 || data[base] === 10)) base++;
  const kind = guessKind(data, base);
  if (len > limits.maxMessageSize) {
    throw new SipParseError(
      "too-large",
      `message of ${len} bytes exceeds the limit of ${limits.maxMessageSize}`,
      limits.maxMessageSize,
      513,
      kind,
    );
  }
  if (base >= len) throw new SipParseError("empty", "empty message", -1, 400, kind);
  try {
    return parse(data, base, limits, datagram, kind);
  } catch (e) {
    throw toSipParseError(e, kind, base);
  }
}

function parse(
  b: Buffer,
  base: number,
  limits: Readonly<ParseLimits>,
  datagram: boolean,
  kind: SipParseErrorKind,
): SipMessage {
  const len = b.length;
  const maxLine = limits.maxHeaderLineLength;
  const maxHeaders = limits.maxHeaders;
  const idx = scratch;

  // ---- the head as one latin1 string ----
  // The blank line is found natively for CRLF messages; the line scan below
  // finds the real one (a bare-LF message may have it earlier).
  const crlf2 = b.indexOf(CRLFCRLF, base);
  const s0 = latin1Slice(b, base, crlf2 >= 0 ? crlf2 + 4 : len);
  const sl = s0.length;

  // ---- one pass over the head: line structure (offsets relative to base) ----
  let p = s0.indexOf("\n");
  if (p < 0) throw new SipParseError("no-end-of-headers", "no line end after the start line", sl);
  const startLineEnd = p + 1; // after LF
  if (p > maxLine) throw new SipParseError("limit-exceeded", "start line too long", 0);
  p++;
  let n = 0;
  let hEnd = -1; // start of the blank line
  let bodyOff = -1; // start of the body (relative)
  while (true) {
    if (p >= sl) {
      // no blank line: tolerated for a datagram whose last header line is complete
      if (!datagram) throw new SipParseError("no-end-of-headers", "no blank line after the headers", p);
      hEnd = sl;
      bodyOff = sl;
      break;
    }
    const c = s0.charCodeAt(p);
    if (c === 10) {
      hEnd = p;
      bodyOff = p + 1;
      break;
    }
    if (c === 13 && s0.charCodeAt(p + 1) === 10) {
      hEnd = p;
      bodyOff = p + 2;
      break;
    }
    if (c === 32 || c === 9) {
      // continuation of the previous header line (RFC 3261 §7.3.1)
      if (n === 0) throw new SipParseError("bad-header", "folded line before the first header", p);
      const ls = p;
      p = s0.indexOf("\n", p);
      if (p < 0) throw new SipParseError("no-end-of-headers", "unterminated header line", sl);
      let ce = p;
      if (ce > ls && s0.charCodeAt(ce - 1) === 13) ce--;
      p++;
      const r = (n - 1) * STRIDE;
      let ws = ls;
      while (ws < ce && (s0.charCodeAt(ws) === 32 || s0.charCodeAt(ws) === 9)) ws++;
      while (ce > ws && (s0.charCodeAt(ce - 1) === 32 || s0.charCodeAt(ce - 1) === 9)) ce--;
      if (ce > ws) {
        if (idx[r + 2] === idx[r + 3]) idx[r + 2] = ws; // value starts on a continuation line
        idx[r + 3] = ce;
        idx[r + 5] = idx[r + 5]! | F_FOLDED;
      }
      idx[r + 4] = p;
      if (p - idx[r]! > maxLine) throw new SipParseError("limit-exceeded", "header line too long", idx[r]!);
      continue;
    }
    // a new header line: name, optional WS, ':'
    const ls = p;
    while (TOKEN_CHARS[s0.charCodeAt(p)] === 1) p++;
    const ne = p;
    if (ne === ls) throw new SipParseError("bad-header", "bad header name", ls);
    let d = s0.charCodeAt(p);
    while (d === 32 || d === 9) d = s0.charCodeAt(++p);
    if (d !== 58) throw new SipParseError("bad-header", "header line without ':'", p);
    d = s0.charCodeAt(++p);
    while (d === 32 || d === 9) d = s0.charCodeAt(++p);
    const vs = p;
    p = s0.indexOf("\n", p);
    if (p < 0) throw new SipParseError("no-end-of-headers", "unterminated header line", sl);
    let ve = p;
    p++;
    while (ve > vs) {
      const t = s0.charCodeAt(ve - 1);
      if (t === 13 || t === 32 || t === 9) ve--;
      else break;
    }
    if (n >= maxHeaders)
      throw new SipParseError("limit-exceeded", `more than ${maxHeaders} header lines`, ls);
    if (p - ls > maxLine) throw new SipParseError("limit-exceeded", "header line too long", ls);
    const r = n * STRIDE;
    idx[r] = ls;
    idx[r + 1] = ne;
    idx[r + 2] = vs;
    idx[r + 3] = ve;
    idx[r + 4] = p;
    idx[r + 5] = 0;
    n++;
  }
  const head = bodyOff === sl ? s0 : s0.slice(0, bodyOff);
  const bodyStart = base + bodyOff;

  // ---- start line ----
  let sle = startLineEnd - 1;
  if (sle > 0 && head.charCodeAt(sle - 1) === 13) sle--;
  let isRequest: boolean;
  let method = "";
  let uri = "";
  let status = 0;
  let reason = "";
  if (
    sle >= 4 &&
    (head.charCodeAt(0) | 0x20) === 115 &&
    (head.charCodeAt(1) | 0x20) === 105 &&
    (head.charCodeAt(2) | 0x20) === 112 &&
    head.charCodeAt(3) === 47
  ) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
    isRequest = false;
    kind = "response";
    const sp = head.indexOf(" ", 0);
    if (sp < 0 || sp > sle) throw new SipParseError("bad-start-line", "bad Status-Line", 0, 400, kind);
    checkVersion(head, 0, sp, kind);
    const cs = sp + 1;
    const ce = cs + 3;
    if (
      ce > sle ||
      (ce < sle && head.charCodeAt(ce) !== 32) ||
      !isDigit(head.charCodeAt(cs)) ||
      !isDigit(head.charCodeAt(cs + 1)) ||
      !isDigit(head.charCodeAt(cs + 2))
    ) {
      throw new SipParseError("bad-status", "Status-Code must be 3 digits", cs, 400, kind);
    }
    status =
      (head.charCodeAt(cs) - 48) * 100 + (head.charCodeAt(cs + 1) - 48) * 10 + (head.charCodeAt(cs + 2) - 48);
    if (status < 100 || status > 699) {
      throw new SipParseError("bad-status", "Status-Code out of range 100-699", cs, 400, kind);
    }
    reason = ce < sle ? head.slice(ce + 1, sle) : "";
  } else {
    // Request-Line = Method SP Request-URI SP SIP-Version (single SPs)
    isRequest = true;
    kind = "request";
    let i = 0;
    while (i < sle && TOKEN_CHARS[head.charCodeAt(i)] === 1) i++;
    if (i === 0 || i >= sle || head.charCodeAt(i) !== 32) {
      throw new SipParseError("bad-start-line", "bad Method in Request-Line", i, 400, kind);
    }
    method = head.slice(0, i);
    const us = i + 1;
    const sp2 = head.indexOf(" ", us);
    if (sp2 < 0 || sp2 >= sle) {
      throw new SipParseError("bad-start-line", "Request-Line without SIP-Version", sle, 400, kind);
    }
    if (sp2 === us) throw new SipParseError("bad-start-line", "extra SP in Request-Line", us, 400, kind);
    const vs = sp2 + 1;
    if (vs >= sle)
      throw new SipParseError("bad-start-line", "Request-Line without SIP-Version", vs, 400, kind);
    for (let j = vs; j < sle; j++) {
      const c = head.charCodeAt(j);
      if (c === 32 || c === 9) {
        throw new SipParseError("bad-start-line", "extra whitespace in Request-Line", j, 400, kind);
      }
    }
    checkVersion(head, vs, sle, kind);
    const bad = checkRequestUri(head, us, sp2);
    if (bad !== null) throw new SipParseError("bad-uri", bad, us, 400, kind);
    uri = head.slice(us, sp2);
  }

  // ---- eager header fields ----
  let via: Via | undefined;
  let viaCount = 0;
  let callId: string | undefined;
  let cseqSeq = -1;
  let cseqMeth = "";
  let fromTag: string | undefined;
  let toTag: string | undefined;
  let haveFrom = false;
  let haveTo = false;
  let maxForwards: number | undefined;
  let contentLength: number | undefined;
  for (let k = 0; k < n; k++) {
    const r = k * STRIDE;
    const id = headerId(head, idx[r]!, idx[r + 1]!);
    if (id === H_OTHER) continue;
    const a = idx[r + 2]!;
    const e = idx[r + 3]!;
    switch (id) {
      case H_VIA:
        if (via === undefined) via = parseVia(head, a, e);
        viaCount += countValues(head, a, e);
        if (viaCount > limits.maxVias) {
          throw new SipParseError(
            "limit-exceeded",
            `more than ${limits.maxVias} Via values`,
            idx[r]!,
            400,
            kind,
          );
        }
        break;
      case H_CALLID:
        if (callId === undefined) {
          if (e === a) throw new SipParseError("bad-header", "empty Call-ID", a, 400, kind);
          callId = (idx[r + 5]! & F_FOLDED) !== 0 ? unfold(head.slice(a, e)) : head.slice(a, e);
        }
        break;
      case H_CSEQ:
        if (cseqSeq < 0) {
          cseqSeq = parseCSeqRange(head, a, e);
          cseqMeth = cseqMethod;
        }
        break;
      case H_FROM:
        if (!haveFrom) {
          haveFrom = true;
          fromTag = findTag(head, a, e);
        }
        break;
      case H_TO:
        if (!haveTo) {
          haveTo = true;
          toTag = findTag(head, a, e);
        }
        break;
      case H_MAXFWD:
        if (maxForwards === undefined) {
          const v = parseDecimal(head, a, e, 255);
          if (v < 0) {
            throw new SipParseError(
              "bad-max-forwards",
              v === -2 ? "Max-Forwards above 255" : "Max-Forwards is not a decimal",
              a,
              400,
              kind,
            );
          }
          maxForwards = v;
        }
        break;
      case H_CLEN: {
        const v = parseDecimal(head, a, e, MAX_UINT32);
        if (v === -1) {
          throw new SipParseError(
            "bad-content-length",
            "Content-Length is not a non-negative decimal",
            a,
            400,
            kind,
          );
        }
        if (v === -2 || v > limits.maxMessageSize) {
          throw new SipParseError("too-large", "Content-Length exceeds the message size limit", a, 513, kind);
        }
        if (contentLength !== undefined && contentLength !== v) {
          throw new SipParseError("bad-content-length", "conflicting Content-Length values", a, 400, kind);
        }
        contentLength = v;
        break;
      }
    }
  }
  if (via === undefined) throw new SipParseError("missing-header", "no Via header", -1, 400, kind);
  if (callId === undefined) throw new SipParseError("missing-header", "no Call-ID header", -1, 400, kind);
  if (cseqSeq < 0) throw new SipParseError("missing-header", "no CSeq header", -1, 400, kind);
  if (!haveFrom) throw new SipParseError("missing-header", "no From header", -1, 400, kind);
  if (!haveTo) throw new SipParseError("missing-header", "no To header", -1, 400, kind);
  if (isRequest && cseqMeth !== method) {
    throw new SipParseError(
      "cseq-mismatch",
      `CSeq method ${cseqMeth} differs from the Request-Line method ${method}`,
      -1,
      KNOWN_METHODS.has(method) ? 400 : 501,
      kind,
    );
  }

  // ---- body ----
  const avail = len - bodyStart;
  let end: number;
  if (contentLength !== undefined) {
    if (contentLength > avail) {
      throw new SipParseError(
        "truncated",
        `Content-Length ${contentLength} is larger than the ${avail} body bytes received`,
        bodyStart - base,
        400,
        kind,
      );
    }
    end = bodyStart + contentLength;
  } else {
    if (!datagram) {
      throw new SipParseError("bad-content-length", "Content-Length is required on a stream", -1, 400, kind);
    }
    end = len;
  }
  const raw = base === 0 && end === len ? b : b.subarray(base, end);
  const body = b.subarray(bodyStart, end);
  const ix = idx.slice(0, n * STRIDE);
  const startEnd = startLineEnd;
  let msg: SipMessageImpl;
  if (isRequest) {
    msg = new SipRequestImpl(raw, head, ix, n, startEnd, hEnd, body, method, uri);
  } else {
    const res = new SipResponseImpl(raw, head, ix, n, startEnd, hEnd, body, status, reason);
    res.method = cseqMeth;
    msg = res;
  }
  msg.via = via;
  msg.viaCount = viaCount;
  msg.callId = callId;
  msg.cseq = { seq: cseqSeq, method: cseqMeth };
  msg.fromTag = fromTag;
  msg.toTag = toTag;
  msg.maxForwards = maxForwards;
  msg.contentLength = contentLength;
  return msg as SipRequestImpl | SipResponseImpl;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** SIP-Version must be "SIP/2.0" (case-insensitive "SIP"): another "SIP/x.y" is 505, anything else 400. */
function checkVersion(s: string, a: number, e: number, kind: SipParseErrorKind): void {
  if (
    e - a === 7 &&
    (s.charCodeAt(a) | 0x20) === 115 &&
    (s.charCodeAt(a + 1) | 0x20) === 105 &&
    (s.charCodeAt(a + 2) | 0x20) === 112 &&
    s.charCodeAt(a + 3) === 47 &&
    s.charCodeAt(a + 4) === 50 &&
    s.charCodeAt(a + 5) === 46 &&
    s.charCodeAt(a + 6) === 48
  ) {
    return;
  }
  // SIP/1*DIGIT "." 1*DIGIT ?
  let i = a + 4;
  const looksSip =
    e - a > 4 &&
    (s.charCodeAt(a) | 0x20) === 115 &&
    (s.charCodeAt(a + 1) | 0x20) === 105 &&
    (s.charCodeAt(a + 2) | 0x20) === 112 &&
    s.charCodeAt(a + 3) === 47;
  let ok = looksSip;
  if (ok) {
    const d1 = i;
    while (i < e && isDigit(s.charCodeAt(i))) i++;
    ok = i > d1 && i < e && s.charCodeAt(i) === 46;
    if (ok) {
      i++;
      const d2 = i;
      while (i < e && isDigit(s.charCodeAt(i))) i++;
      ok = i > d2 && i === e;
    }
  }
  if (ok) throw new SipParseError("bad-version", `unsupported SIP version ${s.slice(a, e)}`, a, 505, kind);
  throw new SipParseError("bad-start-line", "bad SIP-Version", a, 400, kind);
}
