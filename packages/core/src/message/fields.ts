/**
 * Scanners for the header fields the parser extracts eagerly (Via, CSeq,
 * tags, Max-Forwards, Content-Length) and for comma-separated lists. All work
 * on a range [a, e) of a latin1 string with charCodeAt, no regular
 * expressions, linear time. Whitespace inside a range includes CR and LF,
 * which only occur there as line folds.
 *
 * Errors are thrown as SipParseError with offsets relative to the string.
 */

import { SipParseError } from "./errors.js";
import { TOKEN_CHARS, unfold } from "./text.js";
import type { Via } from "./types.js";

export const MAX_UINT32 = 4294967295;

export function isWs(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

export function skipWs(s: string, i: number, e: number): number {
  while (i < e) {
    const c = s.charCodeAt(i);
    if (c === 32 || c === 9 || c === 13 || c === 10) i++;
    else break;
  }
  return i;
}

export function trimEnd(s: string, a: number, e: number): number {
  while (e > a) {
    const c = s.charCodeAt(e - 1);
    if (c === 32 || c === 9 || c === 13 || c === 10) e--;
    else break;
  }
  return e;
}

export function scanToken(s: string, i: number, e: number): number {
  while (i < e) {
    const c = s.charCodeAt(i);
    if (c < 256 && TOKEN_CHARS[c] === 1) i++;
    else break;
  }
  return i;
}

/**
 * Skip a quoted-string starting at s[i] === '"'. Returns the index after the
 * closing quote, or -1 when it is not terminated within [i, e).
 */
export function skipQuoted(s: string, i: number, e: number): number {
  i++;
  while (i < e) {
    const c = s.charCodeAt(i);
    if (c === 34) return i + 1;
    if (c === 92) i += 2;
    else i++;
  }
  return -1;
}

/** Parse an unsigned decimal in [a, e) (digits only, leading zeros allowed); -1 when not digits, -2 when above max. */
export function parseDecimal(s: string, a: number, e: number, max: number): number {
  if (a >= e) return -1;
  let n = 0;
  for (let i = a; i < e; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
    if (n > max) {
      // keep validating the rest is digits so "-1"-like junk is reported as such
      for (let j = i + 1; j < e; j++) {
        const d2 = s.charCodeAt(j) - 48;
        if (d2 < 0 || d2 > 9) return -1;
      }
      return -2;
    }
  }
  return n;
}

// ---------------------------------------------------------------- Via

/** s[a, e) lower-cased; no case conversion call when it already is. */
function lowerSlice(s: string, a: number, e: number): string {
  for (let i = a; i < e; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.slice(a, e).toLowerCase();
  }
  return s.slice(a, e);
}

/** s[a, e) upper-cased; no case conversion call when it already is. */
function upperSlice(s: string, a: number, e: number): string {
  for (let i = a; i < e; i++) {
    const c = s.charCodeAt(i);
    if (c >= 97 && c <= 122) return s.slice(a, e).toUpperCase();
  }
  return s.slice(a, e);
}

/** Where the last parseVia stopped: the index of the ',' ending the value, or the range end. */
export let viaEnd = 0;

function hostChar(c: number): boolean {
  return (
    (c >= 97 && c <= 122) ||
    (c >= 65 && c <= 90) ||
    (c >= 48 && c <= 57) ||
    c === 45 ||
    c === 46 ||
    c === 95 ||
    c === 126
  );
}

/** Scan a host (hostname, IPv4 or bracketed IPv6 reference) from i; returns its end or -1. */
export function scanHost(s: string, i: number, e: number): number {
  if (i >= e) return -1;
  if (s.charCodeAt(i) === 91) {
    let j = i + 1;
    while (j < e) {
      const c = s.charCodeAt(j);
      if (c === 93) break;
      if (!((c >= 48 && c <= 58) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70) || c === 46)) return -1;
      j++;
    }
    if (j >= e || j === i + 1) return -1;
    return j + 1;
  }
  const st = i;
  while (i < e && hostChar(s.charCodeAt(i))) i++;
  return i === st ? -1 : i;
}

function viaError(reason: string, at: number): SipParseError {
  return new SipParseError("bad-via", `Via: ${reason}`, at);
}

/**
 * Parse one via-parm starting at `a` (leading whitespace allowed). Stops at a
 * ',' outside quotes or at `e`; `viaEnd` tells where. Liberal about empty
 * parameters (";;"): the strict check is validate.ts's job.
 */
export function parseVia(s: string, a: number, e: number, strict = false): Via {
  let i = skipWs(s, a, e);
  const start = i;
  let j = scanToken(s, i, e);
  if (j === i) throw viaError("missing sent-protocol", i);
  const protoEnd = j;
  const protoStart = i;
  i = skipWs(s, j, e);
  if (s.charCodeAt(i) !== 47 || i >= e) throw viaError("bad sent-protocol", i);
  i = skipWs(s, i + 1, e);
  j = scanToken(s, i, e);
  if (j === i) throw viaError("bad sent-protocol version", i);
  const verStart = i;
  const verEnd = j;
  i = skipWs(s, j, e);
  if (s.charCodeAt(i) !== 47 || i >= e) throw viaError("bad sent-protocol", i);
  i = skipWs(s, i + 1, e);
  j = scanToken(s, i, e);
  if (j === i) throw viaError("missing transport", i);
  if (
    protoEnd - protoStart !== 3 ||
    (s.charCodeAt(protoStart) | 0x20) !== 115 ||
    (s.charCodeAt(protoStart + 1) | 0x20) !== 105 ||
    (s.charCodeAt(protoStart + 2) | 0x20) !== 112 ||
    verEnd - verStart !== 3 ||
    s.charCodeAt(verStart) !== 50 ||
    s.charCodeAt(verStart + 1) !== 46 ||
    s.charCodeAt(verStart + 2) !== 48
  ) {
    throw viaError("sent-protocol is not SIP/2.0", protoStart);
  }
  const transport = upperSlice(s, i, j);
  i = skipWs(s, j, e);
  const hostStart = i;
  const hostEnd = scanHost(s, i, e);
  if (hostEnd < 0) throw viaError("bad sent-by host", i);
  const host = s.slice(hostStart, hostEnd);
  i = skipWs(s, hostEnd, e);
  let port: number | undefined;
  if (i < e && s.charCodeAt(i) === 58) {
    i = skipWs(s, i + 1, e);
    j = i;
    while (j < e) {
      const c = s.charCodeAt(j);
      if (c >= 48 && c <= 57) j++;
      else break;
    }
    const p = parseDecimal(s, i, j, 65535);
    if (p < 0) throw viaError("bad sent-by port", i);
    port = p;
    i = skipWs(s, j, e);
  }
  let branch: string | undefined;
  let received: string | undefined;
  let rport: number | null | undefined;
  let maddr: string | undefined;
  let ttl: number | undefined;
  const params: Array<readonly [string, string | null]> = [];
  while (i < e) {
    const c = s.charCodeAt(i);
    if (c === 44) break;
    if (c !== 59) throw viaError("unexpected character", i);
    i = skipWs(s, i + 1, e);
    const ns = i;
    const ne = scanToken(s, i, e);
    if (ne === ns) {
      const d = s.charCodeAt(i);
      if (!strict && (i >= e || d === 59 || d === 44)) continue; // empty parameter, tolerated here
      throw viaError(i >= e || d === 59 || d === 44 ? "empty parameter" : "bad parameter name", i);
    }
    const name = lowerSlice(s, ns, ne);
    i = skipWs(s, ne, e);
    let value: string | null = null;
    if (i < e && s.charCodeAt(i) === 61) {
      i = skipWs(s, i + 1, e);
      const vs = i;
      if (i < e && s.charCodeAt(i) === 34) {
        const q = skipQuoted(s, i, e);
        if (q < 0) throw viaError("unterminated quoted string", i);
        i = q;
      } else {
        while (i < e) {
          const d = s.charCodeAt(i);
          if (d === 59 || d === 44 || d === 32 || d === 9 || d === 13 || d === 10 || d === 34) break;
          i++;
        }
      }
      if (i === vs) throw viaError(`empty value for parameter ${name}`, vs);
      if (strict && s.charCodeAt(vs) !== 34 && !viaValueOk(s, vs, i)) {
        throw viaError(`invalid value for parameter ${name}`, vs);
      }
      value = s.slice(vs, i);
      i = skipWs(s, i, e);
    }
    params.push([name, value]);
    switch (name) {
      case "branch":
        if (branch === undefined) branch = value ?? "";
        break;
      case "received":
        if (received === undefined && value !== null) received = value;
        break;
      case "rport":
        if (rport === undefined) {
          if (value === null) rport = null;
          else {
            const r = parseDecimal(value, 0, value.length, 65535);
            if (r < 0) throw viaError("bad rport", ns);
            rport = r;
          }
        }
        break;
      case "maddr":
        if (maddr === undefined && value !== null) maddr = value;
        break;
      case "ttl":
        if (ttl === undefined) {
          const t = value === null ? -1 : parseDecimal(value, 0, value.length, 255);
          if (t < 0) throw viaError("bad ttl", ns);
          ttl = t;
        }
        break;
    }
  }
  viaEnd = i;
  const rawEnd = trimEnd(s, start, i);
  let raw = s.slice(start, rawEnd);
  if (raw.indexOf("\n") >= 0) raw = unfold(raw);
  return { transport, host, port, branch, received, rport, maddr, ttl, params, raw };
}

/** gen-value that is a token, a bracketed IPv6 reference, or an unbracketed IPv6 (received, RFC 5118 §4.5). */
function viaValueOk(s: string, a: number, e: number): boolean {
  if (s.charCodeAt(a) === 91) {
    if (s.charCodeAt(e - 1) !== 93) return false;
    a++;
    e--;
    if (a >= e) return false;
  }
  for (let i = a; i < e; i++) {
    const c = s.charCodeAt(i);
    if (c !== 58 && (c > 255 || TOKEN_CHARS[c] !== 1)) return false;
  }
  return true;
}

// ---------------------------------------------------------------- lists

/**
 * Split [a, e) at commas outside quoted strings and <...>. Pushes trimmed
 * [start, end) pairs into `out` (empty elements included, as start === end).
 */
export function splitCommas(s: string, a: number, e: number, out: number[]): void {
  let segStart = a;
  let i = a;
  while (i < e) {
    const c = s.charCodeAt(i);
    if (c === 34) {
      const q = skipQuoted(s, i, e);
      i = q < 0 ? e : q;
      continue;
    }
    if (c === 60) {
      // '<' ... '>': commas inside a URI are not separators
      let j = i + 1;
      while (j < e && s.charCodeAt(j) !== 62) j++;
      i = j < e ? j + 1 : e;
      continue;
    }
    if (c === 44) {
      const st = skipWs(s, segStart, i);
      out.push(st, trimEnd(s, st, i));
      segStart = i + 1;
    }
    i++;
  }
  const st = skipWs(s, segStart, e);
  out.push(st, trimEnd(s, st, e));
}

/** Number of non-empty comma-separated values in [a, e) (quotes respected). */
export function countValues(s: string, a: number, e: number): number {
  let n = 0;
  let nonEmpty = false;
  let i = a;
  while (i < e) {
    const c = s.charCodeAt(i);
    if (c === 44) {
      if (nonEmpty) n++;
      nonEmpty = false;
      i++;
      continue;
    }
    if (c === 34) {
      const q = skipQuoted(s, i, e);
      i = q < 0 ? e : q;
      nonEmpty = true;
      continue;
    }
    if (!isWs(c)) nonEmpty = true;
    i++;
  }
  if (nonEmpty) n++;
  return n;
}

// ---------------------------------------------------------------- CSeq

export let cseqMethod = "";

/** Parse "number LWS method" in [a, e); returns the number and sets `cseqMethod`. */
export function parseCSeqRange(s: string, a: number, e: number): number {
  let i = skipWs(s, a, e);
  let j = i;
  while (j < e) {
    const c = s.charCodeAt(j);
    if (c >= 48 && c <= 57) j++;
    else break;
  }
  const n = parseDecimal(s, i, j, MAX_UINT32);
  if (n === -1) throw new SipParseError("bad-cseq", "CSeq: missing sequence number", i);
  if (n === -2) throw new SipParseError("bad-cseq", "CSeq: sequence number above 2^32-1", i);
  i = skipWs(s, j, e);
  if (i === j) throw new SipParseError("bad-cseq", "CSeq: missing LWS after the number", i);
  const ms = i;
  const me = scanToken(s, i, e);
  if (me === ms) throw new SipParseError("bad-cseq", "CSeq: missing method", i);
  if (skipWs(s, me, e) !== e) throw new SipParseError("bad-cseq", "CSeq: junk after the method", me);
  cseqMethod = s.slice(ms, me);
  return n;
}

// ---------------------------------------------------------------- tags

/**
 * Index where the header parameters of a name-addr / addr-spec value start
 * (the ';' after '>' or, for an addr-spec, the first ';'), or -1 when none.
 * Quoted display names are skipped, so a ";tag=" inside quotes is not seen.
 */
export function headerParamsStart(s: string, a: number, e: number): number {
  let i = a;
  while (i < e) {
    const c = s.charCodeAt(i);
    if (c === 34) {
      const q = skipQuoted(s, i, e);
      if (q < 0) return -1;
      i = q;
      continue;
    }
    if (c === 60) {
      let j = i + 1;
      while (j < e && s.charCodeAt(j) !== 62) j++;
      if (j >= e) return -1;
      i = j + 1;
      while (i < e && s.charCodeAt(i) !== 59) {
        if (s.charCodeAt(i) === 44) return -1;
        i++;
      }
      return i < e ? i : -1;
    }
    if (c === 59) return i;
    i++;
  }
  return -1;
}

/** Value of the `tag` header parameter in a From/To value range, undefined when none. */
export function findTag(s: string, a: number, e: number): string | undefined {
  let i = headerParamsStart(s, a, e);
  if (i < 0) return undefined;
  while (i < e) {
    // s[i] === ';'
    i = skipWs(s, i + 1, e);
    const ns = i;
    const ne = scanToken(s, i, e);
    i = skipWs(s, ne, e);
    let vs = -1;
    let ve = -1;
    if (i < e && s.charCodeAt(i) === 61) {
      i = skipWs(s, i + 1, e);
      vs = i;
      if (i < e && s.charCodeAt(i) === 34) {
        const q = skipQuoted(s, i, e);
        i = q < 0 ? e : q;
      } else {
        while (i < e) {
          const d = s.charCodeAt(i);
          if (d === 59 || d === 44 || d === 32 || d === 9 || d === 13 || d === 10) break;
          i++;
        }
      }
      ve = i;
      i = skipWs(s, i, e);
    }
    if (
      ne - ns === 3 &&
      (s.charCodeAt(ns) | 0x20) === 116 &&
      (s.charCodeAt(ns + 1) | 0x20) === 97 &&
      (s.charCodeAt(ns + 2) | 0x20) === 103 &&
      vs >= 0
    ) {
      return s.slice(vs, ve);
    }
    while (i < e && s.charCodeAt(i) !== 59) {
      const d = s.charCodeAt(i);
      if (d === 34) {
        const q = skipQuoted(s, i, e);
        i = q < 0 ? e : q;
      } else i++;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- Request-URI (cheap structural check)

/** Length of the URI scheme at a (ALPHA *(ALPHA / DIGIT / + - .)) followed by ':', or -1. */
export function schemeLength(s: string, a: number, e: number): number {
  let i = a;
  if (i >= e) return -1;
  let c = s.charCodeAt(i) | 0x20;
  if (c < 97 || c > 122) return -1;
  i++;
  while (i < e) {
    c = s.charCodeAt(i);
    if (c === 58) return i - a;
    const l = c | 0x20;
    if ((l >= 97 && l <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46) i++;
    else return -1;
  }
  return -1;
}

/**
 * Cheap structural check of a Request-URI in [a, e): no whitespace or
 * control characters, not wrapped in <>, has a scheme, and sip/sips URIs have
 * a well-formed host and port. Returns an error reason or null.
 */
export function checkRequestUri(s: string, a: number, e: number): string | null {
  if (a >= e) return "empty Request-URI";
  if (s.charCodeAt(a) === 60) return "Request-URI enclosed in <>";
  for (let i = a; i < e; i++) {
    const c = s.charCodeAt(i);
    if (c <= 32 || c === 127) return "control character or whitespace in Request-URI";
  }
  const sl = schemeLength(s, a, e);
  if (sl < 0) return "Request-URI has no scheme";
  const isSip =
    (sl === 3 || (sl === 4 && (s.charCodeAt(a + 3) | 0x20) === 115)) &&
    (s.charCodeAt(a) | 0x20) === 115 &&
    (s.charCodeAt(a + 1) | 0x20) === 105 &&
    (s.charCodeAt(a + 2) | 0x20) === 112;
  if (!isSip) return null;
  let h = a + sl + 1;
  for (let i = h; i < e; i++) {
    if (s.charCodeAt(i) === 64) {
      h = i + 1;
      break;
    }
  }
  const he = scanHost(s, h, e);
  if (he < 0) return "bad host in SIP Request-URI";
  let i = he;
  if (i < e && s.charCodeAt(i) === 58) {
    let j = i + 1;
    while (j < e) {
      const c = s.charCodeAt(j);
      if (c >= 48 && c <= 57) j++;
      else break;
    }
    if (parseDecimal(s, i + 1, j, 65535) < 0) return "bad port in SIP Request-URI";
    i = j;
  }
  if (i < e) {
    const c = s.charCodeAt(i);
    if (c !== 59 && c !== 63) return "bad host in SIP Request-URI";
  }
  return null;
}
