/**
 * The fast path of fullParse (validate.ts): the same strict grammar check,
 * done on the bytes of an unedited parsed message in one pass over its header
 * line records, with no strings or objects built.
 *
 * It answers only "certainly well-formed" (true) or "not sure" (false). On
 * false, validate.ts runs its reference check, which throws the precise
 * error (or passes: rare constructs such as folded lines are simply left to
 * it). So every predicate here must never accept what the reference check
 * refuses; refusing more only costs time. Each one mirrors the function of
 * validate.ts / nameaddr.ts / uri.ts it names.
 *
 * Every byte loop is bounded by the end of its element, and the native
 * searches for '@' and '>' resume past their previous result (atIn, gtIn), so
 * the check is linear in the message size.
 */

import * as fld from "./fields.js";
import { elEnd, elStart, viaEnd } from "./fields.js";
import type { SipMessageImpl } from "./message.js";
import * as lay from "./message.js";
import * as ids from "./names.js";
import { TOKEN_CHARS as TOKEN_TABLE } from "./text.js";
import type { SipMessage } from "./types.js";
import * as uri from "./uri.js";

// Module-local copies of imported constants and functions: V8 folds a
// module's own constants into optimised code (and knows a call's target) but
// re-reads an imported binding, with a TDZ check, at every use, which costs
// in the per-byte and per-line loops. Each hot module keeps its own copies
// (hence the same lines in parser.ts and message.ts), by design.
const checkVia = fld.checkVia;
const parseDecimal = fld.parseDecimal;
const nextElement = fld.nextElement;
const isIPv4 = uri.isIPv4;
const isIPv6 = uri.isIPv6;
const F_FOLDED = lay.F_FOLDED;
const F_VIA_CHECKED = lay.F_VIA_CHECKED;
const HEAD_EXTRA = lay.HEAD_EXTRA;
const ID_SHIFT = lay.ID_SHIFT;
const STRIDE = lay.STRIDE;
const H_ALLOW = ids.H_ALLOW;
const H_CALL_ID = ids.H_CALL_ID;
const H_CONTACT = ids.H_CONTACT;
const H_CONTENT_TYPE = ids.H_CONTENT_TYPE;
const H_CSEQ = ids.H_CSEQ;
const H_DATE = ids.H_DATE;
const H_EXPIRES = ids.H_EXPIRES;
const H_FROM = ids.H_FROM;
const H_MAX_FORWARDS = ids.H_MAX_FORWARDS;
const H_MIN_EXPIRES = ids.H_MIN_EXPIRES;
const H_PROXY_REQUIRE = ids.H_PROXY_REQUIRE;
const H_RECORD_ROUTE = ids.H_RECORD_ROUTE;
const H_REPLY_TO = ids.H_REPLY_TO;
const H_REQUIRE = ids.H_REQUIRE;
const H_RETRY_AFTER = ids.H_RETRY_AFTER;
const H_ROUTE = ids.H_ROUTE;
const H_SUPPORTED = ids.H_SUPPORTED;
const H_TO = ids.H_TO;
const H_UNSUPPORTED = ids.H_UNSUPPORTED;
const H_VIA = ids.H_VIA;
const H_WARNING = ids.H_WARNING;
const MAX_UINT32 = fld.MAX_UINT32;
const C_ALNUM = uri.C_ALNUM;
const C_HNV = uri.C_HNV;
const C_MARK = uri.C_MARK;
const C_PARAM = uri.C_PARAM;
const C_PASS = uri.C_PASS;
const C_URIC = uri.C_URIC;
const C_USER = uri.C_USER;
const CLASS = uri.CLASS;

/** Module-local alias of the token table (read once per byte: see above). */
const TOKEN_CHARS = TOKEN_TABLE;

/*
 * Per-message search state (the check is not re-entrant): where the next '@'
 * and '>' of the head are, from the last search on (INF: none). URIs are
 * checked in increasing offset order, so each native search starts past the
 * previous result and all of them together stay linear.
 */
const INF = 0x7fffffff;
let nextAt = -1;
let nextGt = -1;

/** Index of the first '@' in [p, e) of the head, -1 when none. */
function atIn(s: string, p: number, e: number): number {
  if (nextAt < p) {
    nextAt = s.indexOf("@", p);
    if (nextAt < 0) nextAt = INF;
  }
  return nextAt < e ? nextAt : -1;
}

/** Index of the first '>' in [p, e) of the head, -1 when none. */
function gtIn(s: string, p: number, e: number): number {
  if (nextGt < p) {
    nextGt = s.indexOf(">", p);
    if (nextGt < 0) nextGt = INF;
  }
  return nextGt < e ? nextGt : -1;
}

function isWs(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

function skipWs(b: Uint8Array, i: number, e: number): number {
  while (i < e && isWs(b[i]!)) i++;
  return i;
}

/** What String.prototype.trim removes, among latin1 chars. */
function isJsSpace(c: number): boolean {
  return (c >= 9 && c <= 13) || c === 32 || c === 160;
}

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

/** b[a, e) is the lower-case ASCII `lit`, ignoring case (b[a, e) is a token). */
function nameIs(b: Uint8Array, a: number, e: number, lit: string): boolean {
  if (e - a !== lit.length) return false;
  for (let i = 0; i < lit.length; i++) if ((b[a + i]! | 0x20) !== lit.charCodeAt(i)) return false;
  return true;
}

// ---------------------------------------------------------------- URIs (uri.ts)

/** checkChars: only `allowed` classes (unreserved always) and valid %HH escapes. */
function charsOk(b: Uint8Array, a: number, e: number, allowed: number): boolean {
  const mask = C_ALNUM | C_MARK | allowed;
  for (let i = a; i < e; i++) {
    const c = b[i]!;
    if (c === 37) {
      if (i + 2 >= e || !isHex(b[i + 1]!) || !isHex(b[i + 2]!)) return false;
      i += 2;
      continue;
    }
    if ((CLASS[c]! & mask) === 0) return false;
  }
  return true;
}

/**
 * From i, the end of a run of `allowed` chars and %HH escapes that stops at a
 * delimiter d1/d2/d3 (or e); -1 at any other char. Same verdict as finding
 * the delimiter first and then checkChars on the run: the two hex digits of
 * an escape are never delimiters.
 */
function runEnd(
  b: Uint8Array,
  i: number,
  e: number,
  allowed: number,
  d1: number,
  d2: number,
  d3: number,
): number {
  const mask = C_ALNUM | C_MARK | allowed;
  while (i < e) {
    const c = b[i]!;
    if (c === d1 || c === d2 || c === d3) return i;
    if (c === 37) {
      if (i + 2 >= e || !isHex(b[i + 1]!) || !isHex(b[i + 2]!)) return -1;
      i += 3;
      continue;
    }
    if ((CLASS[c]! & mask) === 0) return -1;
    i++;
  }
  return e;
}

/**
 * In the host of a SIP URI: 0 a hostname label character (alphanum '-' '_',
 * isHostname), 1 '.', 2 what ends the host (':' ';' '?'), 3 anything else.
 */
const HOST_CLASS = (() => {
  const t = new Uint8Array(256).fill(3);
  for (let c = 0; c < 256; c++) if ((CLASS[c]! & C_ALNUM) !== 0 || c === 45 || c === 95) t[c] = 0;
  t[46] = 1;
  t[58] = t[59] = t[63] = 2;
  return t;
})();

/**
 * The host of a SIP URI from h: it ends at ':' ';' '?' or e and must be an
 * IPv4 address or a hostname (isIPv4 || isHostname of uri.ts). Returns its
 * end, or -1.
 * The hostname rules are checked in the same pass that finds the end.
 */
function hostEnd(b: Uint8Array, s: string, h: number, e: number): number {
  let i = h;
  let ls = h; // start of the current label
  let top = 0; // first char of the last complete label
  let ok = true;
  while (i < e) {
    const k = HOST_CLASS[b[i]!]!;
    if (k === 0) {
      i++;
      continue;
    }
    if (k === 2) break;
    if (k === 3) return -1; // neither a hostname nor an IPv4 address
    // '.'
    if (i === ls || b[ls] === 45 || b[i - 1] === 45) ok = false;
    top = b[ls]!;
    ls = ++i;
  }
  if (i === h) return -1;
  if (ls < i) {
    // the last label (a trailing '.' closed it already)
    if (b[ls] === 45 || b[i - 1] === 45) ok = false;
    top = b[ls]!;
  }
  const f = top | 0x20;
  if (ok && f >= 97 && f <= 122) return i;
  // uri.ts's own isIPv4 on the head string (latin1: one character a byte)
  return isIPv4(s, h, i) ? i : -1;
}

/** parseParams: ";name[=value]"... from b[i] === ';' up to `stop` or e; the index after them, or -1. */
function uriParamsOk(b: Uint8Array, i: number, e: number, stop: number): number {
  while (i < e && b[i] === 59) {
    const ns = i + 1;
    i = runEnd(b, ns, e, C_PARAM, 59, 61, stop);
    if (i <= ns) return -1;
    if (i < e && b[i] === 61) {
      const vs = i + 1;
      i = runEnd(b, vs, e, C_PARAM, 59, stop, stop);
      if (i <= vs) return -1;
    }
  }
  return i;
}

// Plain numbered constants and counters, alike on purpose (here and in fastValid's header counts): V8 folds each
// module-local const into the optimised loop; an enum object or a counter array would be read through memory.
const U_BAD = 0;
const U_SIP = 1;
const U_SIP_HEADERS = 2;
const U_TEL = 3;
const U_ABSOLUTE = 4;

/** parseSip from p (after "sip:" / "sips:"). */
function sipOk(b: Uint8Array, s: string, p: number, e: number): number {
  // userinfo ends at the first '@' of the URI (uri.ts); the user at its first ':'
  const at = atIn(s, p, e);
  let h = p;
  if (at >= 0) {
    const ue = runEnd(b, p, at, C_USER, 58, 58, 58);
    if (ue <= p) return U_BAD;
    if (ue < at && runEnd(b, ue + 1, at, C_PASS, -1, -1, -1) < 0) return U_BAD;
    h = at + 1;
  }
  let he: number;
  if (h < e && b[h] === 91) {
    he = h;
    while (he < e && b[he] !== 93) he++;
    if (he >= e || !isIPv6(s, h + 1, he)) return U_BAD;
    he++;
  } else {
    he = hostEnd(b, s, h, e);
    if (he < 0) return U_BAD;
  }
  let i = he;
  if (i < e && b[i] === 58) {
    i++;
    const ps = i;
    let v = 0;
    while (i < e) {
      const c = b[i]!;
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      if (v > 65535) return U_BAD;
      i++;
    }
    if (i === ps) return U_BAD;
  }
  if (i < e && b[i] === 59) {
    i = uriParamsOk(b, i, e, 63);
    if (i < 0) return U_BAD;
  }
  let headers = false;
  if (i < e && b[i] === 63) {
    headers = true;
    i++;
    while (true) {
      const ns = i;
      i = runEnd(b, ns, e, C_HNV, 61, 38, 38);
      if (i <= ns) return U_BAD;
      if (i >= e || b[i] !== 61) return U_BAD;
      i = runEnd(b, i + 1, e, C_HNV, 38, 38, 38);
      if (i < 0) return U_BAD;
      if (i >= e) break;
      i++; // '&'
    }
  }
  if (i < e) return U_BAD;
  return headers ? U_SIP_HEADERS : U_SIP;
}

/** parseTel from p (after "tel:"). */
function telOk(b: Uint8Array, p: number, e: number): number {
  let i = p;
  while (i < e && b[i] !== 59) {
    const c = b[i]!;
    const ok = isHex(c) || c === 42 || c === 35 || c === 43 || c === 45 || c === 46 || c === 40 || c === 41;
    if (!ok) return U_BAD;
    i++;
  }
  if (i === p) return U_BAD;
  if (i < e) i = uriParamsOk(b, i, e, -1);
  return i === e ? U_TEL : U_BAD;
}

/** parseUri of b[a, e): U_BAD, or what kind of URI it is. */
function uriOk(b: Uint8Array, s: string, a: number, e: number): number {
  if (a >= e) return U_BAD;
  const f = b[a]! | 0x20;
  if (f < 97 || f > 122) return U_BAD;
  let i = a;
  while (i < e) {
    const c = b[i]!;
    if (c === 58) break;
    const l = c | 0x20;
    if (!((l >= 97 && l <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) return U_BAD;
    i++;
  }
  if (i >= e) return U_BAD;
  const n = i - a;
  if (
    (n === 3 || (n === 4 && (b[a + 3]! | 0x20) === 115)) &&
    (b[a]! | 0x20) === 115 &&
    (b[a + 1]! | 0x20) === 105 &&
    (b[a + 2]! | 0x20) === 112
  ) {
    return sipOk(b, s, i + 1, e);
  }
  if (n === 3 && (b[a]! | 0x20) === 116 && (b[a + 1]! | 0x20) === 101 && (b[a + 2]! | 0x20) === 108) {
    return telOk(b, i + 1, e);
  }
  if (i + 1 >= e || !charsOk(b, i + 1, e, C_URIC)) return U_BAD;
  return U_ABSOLUTE;
}

// ---------------------------------------------------------------- name-addr (nameaddr.ts)

// What genericParamsAt / nameAddrAt check besides the grammar. In every
// name-addr (parseNameAddr) the first tag parameter needs a value; the
// parameters of a media type (parseGenericParams alone) have no such rule.
const P_MEDIA = 0;
const P_NAME_ADDR = 1;
const P_CONTACT = 2; // and expires, q values
const P_ROUTE = 3; // and the URI in <>

/** In a quoted string: 0 qdtext, 1 '"', 2 '\\', 3 refused (controls other than HT CR LF, and DEL). */
const QUOTED_CLASS = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 32; c++) if (c !== 9 && c !== 13 && c !== 10) t[c] = 3;
  t[127] = 3;
  t[34] = 1;
  t[92] = 2;
  return t;
})();

/** scanQuotedString at b[i] === '"': the index after the closing quote, or -1. */
function quotedEnd(b: Uint8Array, i: number, e: number): number {
  i++;
  while (i < e) {
    const k = QUOTED_CLASS[b[i]!]!;
    if (k === 0) {
      i++;
      continue;
    }
    if (k === 1) return i + 1;
    if (k === 3) return -1;
    // quoted-pair
    if (i + 1 >= e) return -1;
    const d = b[i + 1]!;
    if (d === 10 || d === 13 || d > 0x7f) return -1;
    i += 2;
  }
  return -1;
}

/** isQValue. */
function qOk(b: Uint8Array, a: number, e: number): boolean {
  const n = e - a;
  if (n === 0 || n > 5) return false;
  const c0 = b[a]!;
  if (c0 !== 48 && c0 !== 49) return false;
  if (n === 1) return true;
  if (b[a + 1] !== 46) return false;
  for (let i = a + 2; i < e; i++) {
    const c = b[i]!;
    if (c0 === 49 ? c !== 48 : c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * parseGenericParams from i, plus the checks `mode` asks for; they end at e or
 * at a ',' (a list separator). Returns where they ended, or -1.
 */
// Kept apart from fields.ts's findTag and Via parameter loop, which scan alike: this one is the strict
// grammar's fast path and answers only yes/no; they are the lenient parse that cuts values out.
function genericParamsAt(b: Uint8Array, s: string, i: number, e: number, mode: number): number {
  if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
  let tagSeen = false;
  while (i < e) {
    const c = b[i]!;
    if (c === 44) return i;
    if (c !== 59) return -1;
    i++;
    if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
    const ns = i;
    while (i < e && TOKEN_CHARS[b[i]!] === 1) i++;
    if (i === ns) return -1;
    const ne = i;
    if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
    let vs = -1;
    let ve = -1;
    if (i < e && b[i] === 61) {
      i++;
      if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
      vs = i;
      if (i < e && b[i] === 34) {
        i = quotedEnd(b, i, e);
        if (i < 0) return -1;
      } else if (i < e && b[i] === 91) {
        let close = i;
        while (close < e && b[close] !== 93) close++;
        if (close >= e || !isIPv6(s, i + 1, close)) return -1;
        i = close + 1;
      } else {
        while (i < e && TOKEN_CHARS[b[i]!] === 1) i++;
      }
      if (i === vs) return -1;
      ve = i;
      if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
    }
    if (mode !== P_MEDIA && !tagSeen && nameIs(b, ns, ne, "tag")) {
      tagSeen = true;
      if (vs < 0) return -1;
    }
    if (mode === P_CONTACT) {
      if (nameIs(b, ns, ne, "expires")) {
        if (vs < 0 || parseDecimal(b, vs, ve, MAX_UINT32) < 0) return -1;
      } else if (nameIs(b, ns, ne, "q")) {
        if (vs < 0 || !qOk(b, vs, ve)) return -1;
      }
    }
  }
  return i;
}

/**
 * parseNameAddr of the list element starting at a (in a value ending at e),
 * plus the checks `mode` asks for. The element ends at a ',' outside quotes
 * and <> (where splitCommas would cut: the grammar only takes a ',' inside a
 * quoted string or the <URI>, skipped the same way) or at e. Returns that
 * end (the ',' or e), or -1 when the element is not certainly well-formed.
 */
function nameAddrAt(b: Uint8Array, s: string, a: number, e: number, mode: number): number {
  let i = skipWs(b, a, e);
  if (i >= e) return -1;
  if (b[i] === 34) {
    const q = quotedEnd(b, i, e);
    if (q < 0) return -1;
    i = skipWs(b, q, e);
    if (i >= e || b[i] !== 60) return -1;
  } else {
    // token display name(s) then '<', or an addr-spec
    let lt = -1;
    for (let j = i; j < e; j++) {
      const c = b[j]!;
      if (c === 60) lt = j;
      if (TOKEN_CHARS[c] !== 1 && !isWs(c)) break;
    }
    if (lt >= 0) i = lt;
  }
  let us: number;
  let ue: number;
  let angle = false;
  if (i < e && b[i] === 60) {
    angle = true;
    us = i + 1;
    const gt = gtIn(s, us, e);
    if (gt < 0) return -1;
    ue = gt;
    i = gt + 1;
  } else {
    us = i;
    while (i < e) {
      const c = b[i]!;
      if (c === 59 || c === 44) break; // ',' ends the element
      if (isWs(c)) {
        const j = skipWs(b, i, e);
        if (j < e && b[j] !== 59 && b[j] !== 44) return -1;
        break;
      }
      if (c === 63) return -1;
      i++;
    }
    ue = i;
  }
  // (whitespace inside the URI: uriOk refuses it, every URI char is class-checked)
  if (uriOk(b, s, us, ue) === U_BAD) return -1;
  if (mode === P_ROUTE && !angle) return -1;
  return genericParamsAt(b, s, i, e, mode);
}

/** A whole value that must be one name-addr (From, To, Reply-To). */
function nameAddrOk(b: Uint8Array, s: string, a: number, e: number, mode: number): boolean {
  return nameAddrAt(b, s, a, e, mode) === e;
}

// ---------------------------------------------------------------- other values (validate.ts)

/** checkCallId of the value with String#trim applied: word [ "@" word ]. */
function callIdOk(b: Uint8Array, a: number, e: number): boolean {
  while (a < e && isJsSpace(b[a]!)) a++;
  while (e > a && isJsSpace(b[e - 1]!)) e--;
  if (a === e) return false;
  let at = 0;
  for (let i = a; i < e; i++) {
    const c = b[i]!;
    if (c === 64) {
      at++;
      if (at > 1 || i === a || i === e - 1) return false;
      continue;
    }
    if (TOKEN_CHARS[c] !== 1 && WORD_EXTRA[c] !== 1) return false;
  }
  return true;
}

/** word characters besides token ones: ( ) < > : \ " / [ ] ? { } */
const WORD_EXTRA = (() => {
  const t = new Uint8Array(256);
  for (const ch of '()<>:\\"/[]?{}') t[ch.charCodeAt(0)] = 1;
  return t;
})();

/** deltaSeconds: the trimmed value is a decimal up to 2^32-1. */
function deltaOk(b: Uint8Array, a: number, e: number): boolean {
  a = skipWs(b, a, e);
  while (e > a && isWs(b[e - 1]!)) e--;
  return parseDecimal(b, a, e, MAX_UINT32) >= 0;
}

/** checkMediaType: type "/" subtype *(; param). */
function mediaTypeOk(b: Uint8Array, s: string, a: number, e: number): boolean {
  let i = skipWs(b, a, e);
  let j = i;
  while (j < e && TOKEN_CHARS[b[j]!] === 1) j++;
  if (j === i) return false;
  i = skipWs(b, j, e);
  if (i >= e || b[i] !== 47) return false;
  i = skipWs(b, i + 1, e);
  j = i;
  while (j < e && TOKEN_CHARS[b[j]!] === 1) j++;
  if (j === i) return false;
  return genericParamsAt(b, s, j, e, P_MEDIA) === e;
}

/**
 * checkTokenList for one line, in one pass: every element a non-empty token
 * (a '"' or '<', which splitCommas would treat specially, is no token char
 * either); an all-blank line passes when allowEmpty.
 */
function tokenListOk(b: Uint8Array, a: number, e: number, allowEmpty: boolean): boolean {
  let i = skipWs(b, a, e);
  if (i >= e) return allowEmpty;
  while (true) {
    const ts = i;
    while (i < e && TOKEN_CHARS[b[i]!] === 1) i++;
    if (i === ts) return false;
    i = skipWs(b, i, e);
    if (i >= e) return true;
    if (b[i] !== 44) return false;
    i = skipWs(b, i + 1, e);
    if (i >= e) return false; // empty last element
  }
}

/** checkVias for one line: each element a strict via-parm, nothing after it. */
function viaLineOk(b: Uint8Array, s: string, a: number, e: number): boolean {
  // A strictly valid via-parm takes a ',' only inside a quoted parameter value
  // (skipped as splitCommas does) and has no '<': the scan stops where the
  // element ends. An empty element fails as a missing sent-protocol.
  let i = a;
  while (true) {
    try {
      checkVia(b, s, i, e);
    } catch {
      return false;
    }
    if (viaEnd >= e) return true;
    i = viaEnd + 1; // past the ','
  }
}

/**
 * The elements of a list line (elements() of validate.ts): none may be
 * empty; each goes through nameAddrAt(mode). Returns the number of elements,
 * -1 when one fails; `star` counts the elements that are a lone "*", which
 * are not checked further (Contact decides on them).
 */
let star = 0;
function nameAddrListOk(b: Uint8Array, s: string, a: number, e: number, mode: number): number {
  let n = 0;
  let i = a;
  while (true) {
    n++;
    let end: number;
    const st = i < e && b[i]! <= 32 ? skipWs(b, i, e) : i;
    if (mode === P_CONTACT && st < e && b[st] === 42) {
      // a lone "*" element
      end = st + 1;
      if (end < e && b[end]! <= 32) end = skipWs(b, end, e);
      if (end < e && b[end] !== 44) return -1;
      star++;
    } else {
      end = nameAddrAt(b, s, st, e, mode);
      if (end < 0) return -1;
    }
    if (end >= e) return n;
    i = end + 1; // past the ','
  }
}

/** checkWarning for one line: each element starts with 3 digits and SP. */
function warningOk(b: Uint8Array, a: number, e: number): boolean {
  let k = a;
  do {
    k = nextElement(b, k, e);
    const st = elStart;
    const en = elEnd;
    if (st === en) return false;
    let i = st;
    while (i < en && b[i]! >= 48 && b[i]! <= 57) i++;
    if (i !== st + 3 || i >= en || b[i] !== 32) return false;
  } while (k >= 0);
  return true;
}

const WKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function digitsAt(v: string, i: number, n: number): boolean {
  for (let k = 0; k < n; k++) {
    const c = v.charCodeAt(i + k);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** SIP-date = rfc1123-date: wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT" */
export function isSipDate(v: string): boolean {
  // "Sat, 13 Nov 2010 23:29:00 GMT" is exactly 29 chars
  return (
    v.length === 29 &&
    WKDAYS.includes(v.slice(0, 3)) &&
    v.slice(3, 5) === ", " &&
    digitsAt(v, 5, 2) &&
    v.charCodeAt(7) === 32 &&
    MONTHS.includes(v.slice(8, 11)) &&
    v.charCodeAt(11) === 32 &&
    digitsAt(v, 12, 4) &&
    v.charCodeAt(16) === 32 &&
    digitsAt(v, 17, 2) &&
    v.charCodeAt(19) === 58 &&
    digitsAt(v, 20, 2) &&
    v.charCodeAt(22) === 58 &&
    digitsAt(v, 23, 2) &&
    v.slice(25) === " GMT"
  );
}

// ---------------------------------------------------------------- the message

/**
 * True when `msg` (parsed, unedited) certainly passes the strict check of
 * validate.ts with these schemes; false when that check must decide.
 */
export function fastValid(
  msg: SipMessageImpl & SipMessage,
  schemes: ReadonlyArray<string> | undefined,
): boolean {
  if (msg.modified) return false;
  const b = msg.raw;
  const s = msg._head;
  msg.resolveIds();
  const idx = msg._idx;
  nextAt = -1;
  nextGt = -1;
  if (msg.isRequest) {
    // the Request-URI is where the parser found it: after "METHOD SP" (unless
    // the method or uri fields were assigned since: then the reference decides)
    const method = msg.method;
    const us = method.length + 1;
    const ue = us + msg.uri.length;
    if (!s.startsWith(method, 0) || !s.startsWith(msg.uri, us)) return false;
    const kind = uriOk(b, s, us, ue);
    if (kind === U_BAD || kind === U_SIP_HEADERS) return false;
    if (schemes !== undefined && !schemes.includes(s.slice(us, s.indexOf(":", us)).toLowerCase()))
      return false;
  }
  // One counter per header, alike on purpose (as the U_* constants above): plain locals stay in registers.
  let nFrom = 0;
  let nTo = 0;
  let nCallId = 0;
  let nCSeq = 0;
  let nMaxForwards = 0;
  let nExpires = 0;
  let nMinExpires = 0;
  let nRetryAfter = 0;
  let nReplyTo = 0;
  let nDate = 0;
  let nContentType = 0;
  let contacts = 0;
  star = 0;
  for (let r = 0, rn = idx.length - HEAD_EXTRA; r < rn; r += STRIDE) {
    const info = idx[r + 4]!;
    if ((info & F_FOLDED) !== 0) return false;
    const a = idx[r + 2]!;
    const e = idx[r + 3]!;
    switch (info >> ID_SHIFT) {
      case H_VIA:
        // (the parser may have found the line strictly valid already)
        if ((info & F_VIA_CHECKED) === 0 && !viaLineOk(b, s, a, e)) return false;
        break;
      case H_FROM:
        if (++nFrom > 1 || !nameAddrOk(b, s, a, e, P_NAME_ADDR)) return false;
        break;
      case H_TO:
        if (++nTo > 1 || !nameAddrOk(b, s, a, e, P_NAME_ADDR)) return false;
        break;
      case H_CALL_ID:
        if (++nCallId > 1 || !callIdOk(b, a, e)) return false;
        break;
      case H_CSEQ:
        // its value and its method against the Request-Line were checked by the parser
        if (++nCSeq > 1) return false;
        break;
      case H_MAX_FORWARDS:
        // the parser checked the value of the first (here: only) line
        if (++nMaxForwards > 1) return false;
        break;
      case H_EXPIRES:
        if (++nExpires > 1 || !deltaOk(b, a, e)) return false;
        break;
      case H_MIN_EXPIRES:
        if (++nMinExpires > 1 || !deltaOk(b, a, e)) return false;
        break;
      case H_RETRY_AFTER: {
        if (++nRetryAfter > 1) return false;
        let d = a;
        while (d < e && b[d]! >= 48 && b[d]! <= 57) d++;
        if (parseDecimal(b, a, d, MAX_UINT32) < 0) return false;
        break;
      }
      case H_CONTACT: {
        const k = nameAddrListOk(b, s, a, e, P_CONTACT);
        if (k < 0) return false;
        contacts += k;
        break;
      }
      case H_ROUTE:
      case H_RECORD_ROUTE:
        if (nameAddrListOk(b, s, a, e, P_ROUTE) < 0) return false;
        break;
      case H_REPLY_TO:
        if (++nReplyTo > 1 || !nameAddrOk(b, s, a, e, P_NAME_ADDR)) return false;
        break;
      case H_DATE: {
        if (++nDate > 1) return false;
        let da = a;
        let de = e;
        while (da < de && isJsSpace(b[da]!)) da++;
        while (de > da && isJsSpace(b[de - 1]!)) de--;
        if (!isSipDate(s.slice(da, de))) return false;
        break;
      }
      case H_CONTENT_TYPE:
        if (++nContentType > 1 || !mediaTypeOk(b, s, a, e)) return false;
        break;
      case H_REQUIRE:
      case H_PROXY_REQUIRE:
      case H_UNSUPPORTED:
        if (!tokenListOk(b, a, e, false)) return false;
        break;
      case H_SUPPORTED:
      case H_ALLOW:
        if (!tokenListOk(b, a, e, true)) return false;
        break;
      case H_WARNING:
        if (!warningOk(b, a, e)) return false;
        break;
    }
  }
  // Contact "*" must be the only value (the parser guarantees Via, From, To, Call-ID, CSeq are present)
  if (star > 0 && contacts !== 1) return false;
  return nFrom === 1 && nTo === 1 && nCallId === 1 && nCSeq === 1;
}
