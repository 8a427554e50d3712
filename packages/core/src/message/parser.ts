/**
 * parseMessage: the receive fast path.
 *
 * 1. size check against the limits (before any other work);
 * 2. one latin1 conversion: the whole datagram when it is small (a UDP
 *    message rarely exceeds the path MTU, RFC 3261 §18.1.1), else the head
 *    up to the first CRLFCRLF;
 * 3. one pass over the head bytes: each header line's name, value and line
 *    ranges (with folding), the blank line; the transaction headers are
 *    identified by id (names.ts), other names are left for the first lookup;
 * 4. start line, then only the transaction fields: top Via and Via count,
 *    Call-ID, CSeq, From/To tags, Max-Forwards, Content-Length.
 * Everything else is left as byte ranges for lazy access (message.ts).
 *
 * Per-character tests read the Buffer (typed-array loads); strings are only
 * cut from the head string for the values the transaction layer needs.
 */

import { SipParseError, type SipParseErrorKind, toSipParseError } from "./errors.js";
import * as fld from "./fields.js";
import { cseqMethod, latin1Slice, own, viaEnd, viaStrictClean } from "./fields.js";
import * as lay from "./message.js";
import * as ids from "./names.js";
import { TOKEN_CHARS as TOKEN_TABLE, unfold } from "./text.js";
import {
  DEFAULT_PARSE_LIMITS,
  type ParseLimits,
  type ParseOptions,
  type SipMessage,
  type Via,
} from "./types.js";

// Module-local copies of imported constants and functions: V8 folds a
// module's own constants into optimised code (and knows a call's target) but
// re-reads an imported binding, with a TDZ check, at every use, which costs
// in the per-byte and per-line loops. Each hot module keeps its own copies
// (hence the same lines in message.ts and fastcheck.ts), by design.
const checkRequestUri = fld.checkRequestUri;
const countValues = fld.countValues;
const findTag = fld.findTag;
const isSip20 = fld.isSip20;
const isSipSlash = fld.isSipSlash;
const methodString = fld.methodString;
const parseCSeqRange = fld.parseCSeqRange;
const parseDecimal = fld.parseDecimal;
const parseVia = fld.parseVia;
const parsedHeaderId = ids.parsedHeaderId;
const F_FOLDED = lay.F_FOLDED;
const F_VIA_CHECKED = lay.F_VIA_CHECKED;
const HEAD_EXTRA = lay.HEAD_EXTRA;
const ID_SHIFT = lay.ID_SHIFT;
const STRIDE = lay.STRIDE;
const SipRequestImpl = lay.SipRequestImpl;
const SipResponseImpl = lay.SipResponseImpl;
const H_CALL_ID = ids.H_CALL_ID;
const H_CONTENT_LENGTH = ids.H_CONTENT_LENGTH;
const H_CSEQ = ids.H_CSEQ;
const H_FROM = ids.H_FROM;
const H_LAST_EAGER = ids.H_LAST_EAGER;
const H_MAX_FORWARDS = ids.H_MAX_FORWARDS;
const H_TO = ids.H_TO;
const H_VIA = ids.H_VIA;
const MAX_UINT32 = fld.MAX_UINT32;

/** Module-local alias of the token table (read once per byte: see above). */
const TOKEN_CHARS = TOKEN_TABLE;

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

/**
 * Up to this size the whole message is converted to one string (cheaper than
 * searching the blank line natively first); bigger ones convert the head only.
 */
const WHOLE_MESSAGE = 1500;

/**
 * Line records of the message being parsed; copied out (slice) per message.
 * Plain SMI array on purpose; grown when a message is allowed more lines.
 */
let scratch: number[] = [];
for (let i = 0; i < DEFAULT_PARSE_LIMITS.maxHeaders * STRIDE + HEAD_EXTRA; i++) scratch.push(0);

function mergeLimits(l: Partial<ParseLimits>): Readonly<ParseLimits> {
  return {
    maxMessageSize: l.maxMessageSize ?? DEFAULT_PARSE_LIMITS.maxMessageSize,
    maxHeaders: l.maxHeaders ?? DEFAULT_PARSE_LIMITS.maxHeaders,
    maxHeaderLineLength: l.maxHeaderLineLength ?? DEFAULT_PARSE_LIMITS.maxHeaderLineLength,
    maxVias: l.maxVias ?? DEFAULT_PARSE_LIMITS.maxVias,
  };
}

function guessKind(b: Buffer, p: number): SipParseErrorKind {
  if (b.length >= p + 4 && isSipSlash(b, p)) return "response";
  return p < b.length && TOKEN_CHARS[b[p]!] === 1 ? "request" : "unknown";
}

// A compacted message parses its own bytes again on its next header read: they
// parsed before, so under limits that fit them they parse again, to the same
// head and line records.
lay.setReparse((raw, lines, vias) => {
  const limits: ParseLimits = {
    maxMessageSize: raw.length,
    maxHeaders: Math.max(lines, 1),
    maxHeaderLineLength: raw.length,
    maxVias: Math.max(vias, 1),
  };
  return parse(raw, limits, true, "unknown") as unknown as lay.SipMessageImpl;
});

/** The body of a message without one: shared, zero-length. */
const NO_BODY: Buffer = Buffer.alloc(0);

/**
 * Parse one SIP message (a UDP datagram, or a message framed out of a stream
 * with `datagram: false`). Throws SipParseError, and nothing else, for any input.
 */
export function parseMessage(data: Buffer, options?: ParseOptions): SipMessage {
  if (!Buffer.isBuffer(data)) {
    throw new SipParseError("bad-input", "input is not a Buffer", -1, 400, "unknown");
  }
  let limits = DEFAULT_PARSE_LIMITS;
  let datagram = true;
  if (options !== undefined) {
    if (options.limits !== undefined) limits = mergeLimits(options.limits);
    datagram = options.datagram !== false;
  }
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
    return parse(base === 0 ? data : data.subarray(base), limits, datagram, kind);
  } catch (e) {
    throw toSipParseError(e, kind, base);
  }
}

/** Parse the message in b (leading CRLFs already skipped); offsets are relative to b. */
function parse(
  b: Buffer,
  limits: Readonly<ParseLimits>,
  datagram: boolean,
  kind: SipParseErrorKind,
): SipMessage {
  const len = b.length;
  const maxLine = limits.maxHeaderLineLength;
  const maxHeaders = limits.maxHeaders;
  if (scratch.length < maxHeaders * STRIDE + HEAD_EXTRA) {
    const bigger = scratch.slice();
    while (bigger.length < maxHeaders * STRIDE + HEAD_EXTRA) bigger.push(0);
    scratch = bigger;
  }
  const idx = scratch;

  // ---- the head (or the whole message) as one latin1 string ----
  // For a big message the blank line is found natively for CRLF messages; the
  // line scan below finds the real one (a bare-LF message may have it earlier).
  let sl = len;
  if (len > WHOLE_MESSAGE) {
    const crlf2 = b.indexOf(CRLFCRLF);
    if (crlf2 >= 0) sl = crlf2 + 4;
  }
  const s = latin1Slice(b, 0, sl);

  // ---- one pass over the head: line structure ----
  let p = s.indexOf("\n");
  if (p < 0) throw new SipParseError("no-end-of-headers", "no line end after the start line", sl);
  const startLineEnd = p + 1; // after LF
  if (p > maxLine) throw new SipParseError("limit-exceeded", "start line too long", 0);
  p++;
  let n = 0;
  let hEnd = -1; // start of the blank line
  let bodyOff = -1; // start of the body
  while (true) {
    if (p >= sl) {
      // no blank line: tolerated for a datagram whose last header line is complete
      if (!datagram) throw new SipParseError("no-end-of-headers", "no blank line after the headers", p);
      hEnd = sl;
      bodyOff = sl;
      break;
    }
    const c = b[p]!;
    if (c === 10) {
      hEnd = p;
      bodyOff = p + 1;
      break;
    }
    if (c === 13 && p + 1 < sl && b[p + 1] === 10) {
      hEnd = p;
      bodyOff = p + 2;
      break;
    }
    if (c === 32 || c === 9) {
      // continuation of the previous header line (RFC 3261 §7.3.1)
      if (n === 0) throw new SipParseError("bad-header", "folded line before the first header", p);
      const ls = p;
      p = s.indexOf("\n", p);
      if (p < 0) throw new SipParseError("no-end-of-headers", "unterminated header line", sl);
      let ce = p;
      if (ce > ls && b[ce - 1] === 13) ce--;
      p++;
      const r = (n - 1) * STRIDE;
      let ws = ls;
      while (ws < ce && (b[ws] === 32 || b[ws] === 9)) ws++;
      while (ce > ws && (b[ce - 1] === 32 || b[ce - 1] === 9)) ce--;
      if (ce > ws) {
        if (idx[r + 2] === idx[r + 3]) idx[r + 2] = ws; // value starts on a continuation line
        idx[r + 3] = ce;
        idx[r + 4] = idx[r + 4]! | F_FOLDED;
      }
      if (p - idx[r]! > maxLine) throw new SipParseError("limit-exceeded", "header line too long", idx[r]!);
      continue;
    }
    // a new header line: name, optional WS, ':'
    const ls = p;
    while (p < sl && TOKEN_CHARS[b[p]!] === 1) p++;
    const ne = p;
    if (ne === ls) throw new SipParseError("bad-header", "bad header name", ls);
    let d = p < sl ? b[p]! : -1;
    while (d === 32 || d === 9) d = ++p < sl ? b[p]! : -1;
    if (d !== 58) throw new SipParseError("bad-header", "header line without ':'", p);
    d = ++p < sl ? b[p]! : -1;
    while (d === 32 || d === 9) d = ++p < sl ? b[p]! : -1;
    const vs = p;
    p = s.indexOf("\n", p);
    if (p < 0) throw new SipParseError("no-end-of-headers", "unterminated header line", sl);
    let ve = p;
    p++;
    while (ve > vs) {
      const t = b[ve - 1];
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
    idx[r + 4] = parsedHeaderId(b, ls, ne) << ID_SHIFT;
    n++;
  }
  const bodyStart = bodyOff;

  // ---- start line ----
  let sle = startLineEnd - 1;
  if (sle > 0 && b[sle - 1] === 13) sle--;
  let isRequest: boolean;
  let method = "";
  let uri = "";
  let status = 0;
  let reason = "";
  if (sle >= 4 && isSipSlash(b, 0)) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
    isRequest = false;
    kind = "response";
    const sp = s.indexOf(" ", 0);
    if (sp < 0 || sp > sle) throw new SipParseError("bad-start-line", "bad Status-Line", 0, 400, kind);
    checkVersion(b, s, 0, sp, kind);
    const cs = sp + 1;
    const ce = cs + 3;
    if (
      ce > sle ||
      (ce < sle && b[ce] !== 32) ||
      !isDigit(b[cs]!) ||
      !isDigit(b[cs + 1]!) ||
      !isDigit(b[cs + 2]!)
    ) {
      throw new SipParseError("bad-status", "Status-Code must be 3 digits", cs, 400, kind);
    }
    status = (b[cs]! - 48) * 100 + (b[cs + 1]! - 48) * 10 + (b[cs + 2]! - 48);
    if (status < 100 || status > 699) {
      throw new SipParseError("bad-status", "Status-Code out of range 100-699", cs, 400, kind);
    }
    reason = ce < sle ? s.slice(ce + 1, sle) : "";
  } else {
    // Request-Line = Method SP Request-URI SP SIP-Version (single SPs)
    isRequest = true;
    kind = "request";
    let i = 0;
    while (i < sle && TOKEN_CHARS[b[i]!] === 1) i++;
    if (i === 0 || i >= sle || b[i] !== 32) {
      throw new SipParseError("bad-start-line", "bad Method in Request-Line", i, 400, kind);
    }
    method = methodString(b, s, 0, i);
    const us = i + 1;
    const sp2 = s.indexOf(" ", us);
    if (sp2 < 0 || sp2 >= sle) {
      throw new SipParseError("bad-start-line", "Request-Line without SIP-Version", sle, 400, kind);
    }
    if (sp2 === us) throw new SipParseError("bad-start-line", "extra SP in Request-Line", us, 400, kind);
    const vs = sp2 + 1;
    if (vs >= sle)
      throw new SipParseError("bad-start-line", "Request-Line without SIP-Version", vs, 400, kind);
    for (let j = vs; j < sle; j++) {
      const c = b[j];
      if (c === 32 || c === 9) {
        throw new SipParseError("bad-start-line", "extra whitespace in Request-Line", j, 400, kind);
      }
    }
    checkVersion(b, s, vs, sle, kind);
    const bad = checkRequestUri(b, s, us, sp2);
    if (bad !== null) throw new SipParseError("bad-uri", bad, us, 400, kind);
    uri = own(b, s, us, sp2);
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
  // Where the next ',' of the text is, from the last search on (sl: none). Lines
  // come in order, so each search starts past the previous result: linear.
  let nextComma = -1;
  for (let r = 0, rn = n * STRIDE; r < rn; r += STRIDE) {
    const info = idx[r + 4]!;
    const id = info >> ID_SHIFT;
    if (id === 0 || id > H_LAST_EAGER) continue;
    const a = idx[r + 2]!;
    const e = idx[r + 3]!;
    switch (id) {
      case H_VIA:
        if (via === undefined) {
          via = parseVia(b, s, a, e, false, (info & F_FOLDED) !== 0);
          // one via-parm on this line that passes the strict check too: fullParse need not redo it
          if (viaEnd === e && viaStrictClean) idx[r + 4] = info | F_VIA_CHECKED;
          // parseVia stops at a ',' outside quotes: none means this line holds one value
          viaCount += viaEnd === e ? 1 : countValues(b, a, e);
        } else {
          if (nextComma < a) {
            nextComma = s.indexOf(",", a);
            if (nextComma < 0) nextComma = sl;
          }
          // no ',' in the line and a value that starts with a non-blank: one value
          const c = b[a]!;
          viaCount +=
            nextComma >= e && e > a && c !== 32 && c !== 9 && c !== 13 && c !== 10 ? 1 : countValues(b, a, e);
        }
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
      case H_CALL_ID:
        if (callId === undefined) {
          if (e === a) throw new SipParseError("bad-header", "empty Call-ID", a, 400, kind);
          callId = (info & F_FOLDED) !== 0 ? unfold(s.slice(a, e)) : own(b, s, a, e);
        }
        break;
      case H_CSEQ:
        if (cseqSeq < 0) {
          cseqSeq = parseCSeqRange(b, s, a, e, method, 0);
          cseqMeth = cseqMethod;
        }
        break;
      case H_FROM:
        if (!haveFrom) {
          haveFrom = true;
          fromTag = findTag(b, s, a, e);
        }
        break;
      case H_TO:
        if (!haveTo) {
          haveTo = true;
          toTag = findTag(b, s, a, e);
        }
        break;
      case H_MAX_FORWARDS:
        if (maxForwards === undefined) {
          const v = parseDecimal(b, a, e, 255);
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
      case H_CONTENT_LENGTH: {
        const v = parseDecimal(b, a, e, MAX_UINT32);
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
        bodyStart,
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
  const raw = end === len ? b : b.subarray(0, end);
  const body = end > bodyStart ? b.subarray(bodyStart, end) : NO_BODY;
  const r = n * STRIDE;
  idx[r] = startLineEnd;
  idx[r + 1] = hEnd;
  idx[r + 2] = bodyOff;
  const ix = idx.slice(0, r + HEAD_EXTRA);
  const cseq = { seq: cseqSeq, method: cseqMeth };
  // Two calls with 14 positional arguments, kept apart: each call site stays monomorphic and
  // no init object is made per message.
  if (isRequest) {
    return new SipRequestImpl(
      raw,
      s,
      ix,
      body,
      callId,
      cseq,
      via,
      viaCount,
      fromTag,
      toTag,
      maxForwards,
      contentLength,
      method,
      uri,
    );
  }
  return new SipResponseImpl(
    raw,
    s,
    ix,
    body,
    callId,
    cseq,
    via,
    viaCount,
    fromTag,
    toTag,
    maxForwards,
    contentLength,
    status,
    reason,
  );
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** SIP-Version must be "SIP/2.0" (case-insensitive "SIP"): another "SIP/x.y" is 505, anything else 400. */
function checkVersion(b: Uint8Array, s: string, a: number, e: number, kind: SipParseErrorKind): void {
  if (e - a === 7 && isSip20(b, a)) return;
  // SIP/1*DIGIT "." 1*DIGIT ?
  let i = a + 4;
  let ok = e - a > 4 && isSipSlash(b, a);
  if (ok) {
    const d1 = i;
    while (i < e && isDigit(b[i]!)) i++;
    ok = i > d1 && i < e && b[i] === 46;
    if (ok) {
      i++;
      const d2 = i;
      while (i < e && isDigit(b[i]!)) i++;
      ok = i > d2 && i === e;
    }
  }
  if (ok) throw new SipParseError("bad-version", `unsupported SIP version ${s.slice(a, e)}`, a, 505, kind);
  throw new SipParseError("bad-start-line", "bad SIP-Version", a, 400, kind);
}
