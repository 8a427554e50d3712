/**
 * Scanners for the header fields the parser extracts eagerly (Via, CSeq,
 * tags, Max-Forwards, Content-Length) and for comma-separated lists. No
 * regular expressions, linear time.
 *
 * They read bytes: `b` holds the text and `s` the same text as a latin1
 * string (s.charCodeAt(i) === b[i] in the range), so values are cut from `s`
 * with slice while every per-character test is a typed-array load (several
 * times cheaper than charCodeAt in V8). Parsing works on the message Buffer
 * and its head string; a lone string goes through `bytesOf` (a shared
 * scratch buffer). All work on a range [a, e) and never read outside it.
 * Whitespace inside a range includes CR and LF, which only occur there as
 * line folds.
 *
 * Errors are thrown as SipParseError with offsets relative to the text.
 */

import { SipParseError } from "./errors.js";
import { alnumTable, TOKEN_CHARS as TOKEN_TABLE, unfold } from "./text.js";
import type { Via } from "./types.js";

/**
 * Module-local alias of the token table: V8 folds a module's own constants
 * into optimised code, while an imported binding is re-read (with a TDZ
 * check) at every use, here once per byte.
 */
const TOKEN_CHARS = TOKEN_TABLE;

export const MAX_UINT32 = 4294967295;

// ---------------------------------------------------------------- scratch bytes of a string

let scratch = Buffer.allocUnsafe(4096);

const latin1Write: (b: Buffer, s: string) => void =
  typeof (Buffer.prototype as unknown as { latin1Write?: unknown }).latin1Write === "function"
    ? (b, s) => {
        (b as unknown as { latin1Write(s: string, o: number): number }).latin1Write(s, 0);
      }
    : (b, s) => {
        b.write(s, 0, s.length, "latin1");
      };

/**
 * The latin1 bytes of `s` at offset 0 of a shared scratch buffer, valid until
 * the next call (do not hold on to it, do not call twice for two live texts).
 * A char above 0xFF (only foreign text can have one) becomes 0xFF, which no
 * scanner here accepts where such a char is refused, and which a quoted
 * string accepts like any non-ASCII char; pass `latin1 = true` when the
 * caller knows there is none.
 */
export function bytesOf(s: string, latin1 = false): Buffer {
  const n = s.length;
  if (n > scratch.length) scratch = Buffer.allocUnsafe(Math.max(n, scratch.length * 2));
  const b = scratch;
  latin1Write(b, s);
  if (!latin1) {
    for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 255) b[i] = 255;
  }
  return b;
}

// ---------------------------------------------------------------- values that outlive the head

/** The latin1 text of b[a, e), a new string (not a view of another). */
export const latin1Slice: (b: Uint8Array, a: number, e: number) => string =
  typeof (Buffer.prototype as unknown as { latin1Slice?: unknown }).latin1Slice === "function"
    ? (b, a, e) =>
        (
          Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, a: number, e: number): string }
        ).latin1Slice.call(b, a, e)
    : (b, a, e) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1", a, e);

/**
 * Below this length V8 copies a slice; from it on a slice is a view that
 * keeps its whole parent string alive.
 */
const VIEW_MIN = 13;

/**
 * s[a, e) as a string of its own, for a value a message keeps (Call-ID,
 * Request-URI, tags, Via fields): a view into the head string would keep the
 * whole head alive after `SipMessageImpl.compact()` let go of it. b must hold
 * exactly the latin1 bytes of s over the range.
 */
export function own(b: Uint8Array, s: string, a: number, e: number): string {
  return e - a < VIEW_MIN ? s.slice(a, e) : latin1Slice(b, a, e);
}

// ---------------------------------------------------------------- basics

export function isWs(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

export function skipWs(b: Uint8Array, i: number, e: number): number {
  while (i < e) {
    const c = b[i]!;
    if (c === 32 || c === 9 || c === 13 || c === 10) i++;
    else break;
  }
  return i;
}

export function trimEnd(b: Uint8Array, a: number, e: number): number {
  while (e > a) {
    const c = b[e - 1]!;
    if (c === 32 || c === 9 || c === 13 || c === 10) e--;
    else break;
  }
  return e;
}

export function scanToken(b: Uint8Array, i: number, e: number): number {
  while (i < e && TOKEN_CHARS[b[i]!] === 1) i++;
  return i;
}

/**
 * Skip a quoted-string starting at b[i] === '"'. Returns the index after the
 * closing quote, or -1 when it is not terminated within [i, e).
 */
export function skipQuoted(b: Uint8Array, i: number, e: number): number {
  i++;
  while (i < e) {
    const c = b[i]!;
    if (c === 34) return i + 1;
    if (c === 92) i += 2;
    else i++;
  }
  return -1;
}

/** Parse an unsigned decimal in [a, e) (digits only, leading zeros allowed); -1 when not digits, -2 when above max. */
export function parseDecimal(b: Uint8Array, a: number, e: number, max: number): number {
  if (a >= e) return -1;
  let n = 0;
  for (let i = a; i < e; i++) {
    const d = b[i]! - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
    if (n > max) {
      // keep validating the rest is digits so "-1"-like junk is reported as such
      for (let j = i + 1; j < e; j++) {
        const d2 = b[j]! - 48;
        if (d2 < 0 || d2 > 9) return -1;
      }
      return -2;
    }
  }
  return n;
}

/** parseDecimal of the range with whitespace trimmed at both ends. */
export function parseTrimmedDecimal(b: Uint8Array, a: number, e: number, max: number): number {
  return parseDecimal(b, skipWs(b, a, e), trimEnd(b, a, e), max);
}

/** s[a, e) lower-cased; no case conversion call when it already is. */
function lowerSlice(b: Uint8Array, s: string, a: number, e: number): string {
  for (let i = a; i < e; i++) {
    const c = b[i]!;
    if (c >= 65 && c <= 90) return s.slice(a, e).toLowerCase();
  }
  return s.slice(a, e);
}

/** The bytes of an ASCII literal, for compares without charCodeAt. */
function lit(text: string): Uint8Array {
  return Buffer.from(text, "latin1");
}

/** b[a, e) equals the lower-case bytes `low`, ignoring case (b[a, e) is a token, see names.ts). */
function isLower(b: Uint8Array, a: number, e: number, low: Uint8Array): boolean {
  const n = low.length;
  if (e - a !== n) return false;
  for (let i = 0; i < n; i++) if ((b[a + i]! | 0x20) !== low[i]) return false;
  return true;
}

// ---------------------------------------------------------------- Via

/** Where the last parseVia stopped: the index of the ',' ending the value, or the range end. */
export let viaEnd = 0;
/**
 * Whether the last parseVia also met the strict rules (no empty parameter,
 * unquoted values of token characters and ':'), so a strict parse of the
 * same range would succeed too.
 */
export let viaStrictClean = false;

/** Host characters as a table: alphanum - . _ ~ */
const HOST_CHARS = alnumTable("-._~");

/** Past the "/" (and the whitespace around it) between two sent-protocol parts starting at j. */
function pastSlash(b: Uint8Array, j: number, e: number): number {
  const i = skipWs(b, j, e);
  if (i >= e || b[i] !== 47) throw viaError("bad sent-protocol", i);
  return skipWs(b, i + 1, e);
}

/** Scan a host (hostname, IPv4 or bracketed IPv6 reference) from i; returns its end or -1. */
export function scanHost(b: Uint8Array, i: number, e: number): number {
  if (i >= e) return -1;
  if (b[i] === 91) {
    let j = i + 1;
    while (j < e) {
      const c = b[j]!;
      if (c === 93) break;
      if (!((c >= 48 && c <= 58) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70) || c === 46)) return -1;
      j++;
    }
    if (j >= e || j === i + 1) return -1;
    return j + 1;
  }
  const st = i;
  while (i < e && HOST_CHARS[b[i]!] === 1) i++;
  return i === st ? -1 : i;
}

function viaError(reason: string, at: number): SipParseError {
  return new SipParseError("bad-via", `Via: ${reason}`, at);
}

/**
 * The parsed Via (a class so every Via has one shape). `params` is built on
 * first read, from `raw`: the engine reads the interpreted fields only, and a
 * transaction keeps its request's Via for its whole life (32 s in Timer J), so
 * the list and its pairs would be allocated for every message and rarely read.
 */
class ViaValue implements Via {
  declare readonly transport: string;
  declare readonly host: string;
  declare readonly port: number | undefined;
  declare readonly branch: string | undefined;
  declare readonly received: string | undefined;
  declare readonly rport: number | null | undefined;
  declare readonly maddr: string | undefined;
  declare readonly ttl: number | undefined;
  declare readonly raw: string;
  declare private _p: ReadonlyArray<readonly [string, string | null]> | null;
  constructor(
    transport: string,
    host: string,
    port: number | undefined,
    branch: string | undefined,
    received: string | undefined,
    rport: number | null | undefined,
    maddr: string | undefined,
    ttl: number | undefined,
    params: ReadonlyArray<readonly [string, string | null]> | null,
    raw: string,
  ) {
    this.transport = transport;
    this.host = host;
    this.port = port;
    this.branch = branch;
    this.received = received;
    this.rport = rport;
    this.maddr = maddr;
    this.ttl = ttl;
    this.raw = raw;
    this._p = params;
  }

  get params(): ReadonlyArray<readonly [string, string | null]> {
    const p = this._p;
    if (p !== null) return p;
    // raw is the via-parm as parsed (trimmed, unfolded): it scans again without error.
    const again = scanVia(bytesOf(this.raw, true), this.raw, 0, this.raw.length, false, true, false, true)!;
    const params = (again as ViaValue)._p!;
    this._p = params;
    return params;
  }
}

/** A Via with nothing in it: what `via` is when a message has none left. */
export const EMPTY_VIA: Via = Object.freeze(
  new ViaValue(
    "",
    "",
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    Object.freeze([]),
    "",
  ),
);

/** Transport token b[a, e) upper-cased; the common ones without allocating. */
function transportName(b: Uint8Array, s: string, a: number, e: number): string {
  if (e - a === 3) {
    const c0 = b[a]! | 0x20;
    const c1 = b[a + 1]! | 0x20;
    const c2 = b[a + 2]! | 0x20;
    if (c0 === 117 && c1 === 100 && c2 === 112) return "UDP";
    if (c0 === 116 && c1 === 99 && c2 === 112) return "TCP";
    if (c0 === 116 && c1 === 108 && c2 === 115) return "TLS";
  }
  for (let i = a; i < e; i++) {
    const c = b[i]!;
    if (c >= 97 && c <= 122) return s.slice(a, e).toUpperCase();
  }
  return s.slice(a, e);
}

// Via parameter names the parser interprets (lower case), and their ids.
const P_OTHER = 0;
const P_BRANCH = 1;
const P_RECEIVED = 2;
const P_RPORT = 3;
const P_MADDR = 4;
const P_TTL = 5;
const L_TTL = lit("ttl");
const L_RPORT = lit("rport");
const L_MADDR = lit("maddr");
const L_BRANCH = lit("branch");
const L_RECEIVED = lit("received");

function viaParamId(b: Uint8Array, a: number, e: number): number {
  switch (e - a) {
    case 3:
      return isLower(b, a, e, L_TTL) ? P_TTL : P_OTHER;
    case 5:
      if (isLower(b, a, e, L_RPORT)) return P_RPORT;
      return isLower(b, a, e, L_MADDR) ? P_MADDR : P_OTHER;
    case 6:
      return isLower(b, a, e, L_BRANCH) ? P_BRANCH : P_OTHER;
    case 8:
      return isLower(b, a, e, L_RECEIVED) ? P_RECEIVED : P_OTHER;
  }
  return P_OTHER;
}

const VIA_PARAM_NAMES = ["", "branch", "received", "rport", "maddr", "ttl"];

/**
 * Bytes of an unquoted Via parameter value: 1 ends it (; , SP HT CR LF "),
 * 0 is a token character or ':' (what the strict check accepts), 2 any other.
 */
const VIA_VALUE_CLASS = (() => {
  const t = new Uint8Array(256).fill(2);
  for (let c = 0; c < 256; c++) if (TOKEN_TABLE[c] === 1) t[c] = 0;
  t[58] = 0;
  for (const c of [59, 44, 32, 9, 13, 10, 34]) t[c] = 1;
  return t;
})();

/**
 * Parse one via-parm starting at `a` (leading whitespace allowed). Stops at a
 * ',' outside quotes or at `e`; `viaEnd` tells where. Liberal about empty
 * parameters (";;"): the strict check is validate.ts's job.
 *
 * Hot: the helper calls for whitespace are guarded by `b[i] <= 32` (every LWS
 * byte is), token scans are inline, and "SIP/2.0/" written without LWS is
 * recognised in one go.
 */
export function parseVia(
  b: Uint8Array,
  s: string,
  a: number,
  e: number,
  strict = false,
  mayFold = true,
): Via {
  return scanVia(b, s, a, e, strict, true, mayFold)!;
}

/**
 * The strict check of one via-parm in [a, e) without building anything:
 * throws what `parseVia(b, s, a, e, true)` throws; `viaEnd` tells where it stopped.
 */
export function checkVia(b: Uint8Array, s: string, a: number, e: number): void {
  scanVia(b, s, a, e, true, false, true);
}

/** Lower-cased name of the Via parameter b[ns, ne), for messages. */
function paramName(b: Uint8Array, s: string, ns: number, ne: number): string {
  const pid = viaParamId(b, ns, ne);
  return pid !== P_OTHER ? VIA_PARAM_NAMES[pid]! : lowerSlice(b, s, ns, ne);
}

/** b[i, i + 4) is "SIP/", "SIP" in any case (the caller knows the 4 bytes are there). */
export function isSipSlash(b: Uint8Array, i: number): boolean {
  return (
    (b[i]! | 0x20) === 115 && (b[i + 1]! | 0x20) === 105 && (b[i + 2]! | 0x20) === 112 && b[i + 3] === 47
  );
}

/** b[i, i + 7) is "SIP/2.0", "SIP" in any case (the caller knows the 7 bytes are there). */
export function isSip20(b: Uint8Array, i: number): boolean {
  return isSipSlash(b, i) && b[i + 4] === 50 && b[i + 5] === 46 && b[i + 6] === 48;
}

/** mayFold: the range may hold a line fold (else `raw` needs no unfolding). */
function scanVia(
  b: Uint8Array,
  s: string,
  a: number,
  e: number,
  strict: boolean,
  build: boolean,
  mayFold: boolean,
  withParams = false,
): Via | null {
  let i = a < e && b[a]! <= 32 ? skipWs(b, a, e) : a;
  const start = i;
  let j: number;
  if (i + 8 < e && isSip20(b, i) && b[i + 7] === 47 && TOKEN_CHARS[b[i + 8]!] === 1) {
    i += 8; // "SIP/2.0/" then the transport
  } else {
    j = scanToken(b, i, e);
    if (j === i) throw viaError("missing sent-protocol", i);
    const protoEnd = j;
    const protoStart = i;
    i = pastSlash(b, j, e);
    j = scanToken(b, i, e);
    if (j === i) throw viaError("bad sent-protocol version", i);
    const verStart = i;
    const verEnd = j;
    i = pastSlash(b, j, e);
    if (scanToken(b, i, e) === i) throw viaError("missing transport", i);
    if (
      protoEnd - protoStart !== 3 ||
      (b[protoStart]! | 0x20) !== 115 ||
      (b[protoStart + 1]! | 0x20) !== 105 ||
      (b[protoStart + 2]! | 0x20) !== 112 ||
      verEnd - verStart !== 3 ||
      b[verStart] !== 50 ||
      b[verStart + 1] !== 46 ||
      b[verStart + 2] !== 48
    ) {
      throw viaError("sent-protocol is not SIP/2.0", protoStart);
    }
  }
  j = i;
  while (j < e && TOKEN_CHARS[b[j]!] === 1) j++;
  const transport = build ? transportName(b, s, i, j) : "";
  i = j < e && b[j]! <= 32 ? skipWs(b, j, e) : j;
  const hostStart = i;
  let hostEnd: number;
  if (i < e && b[i] !== 91) {
    hostEnd = i;
    while (hostEnd < e && HOST_CHARS[b[hostEnd]!] === 1) hostEnd++;
    if (hostEnd === i) hostEnd = -1;
  } else hostEnd = scanHost(b, i, e);
  if (hostEnd < 0) throw viaError("bad sent-by host", i);
  const host = build ? own(b, s, hostStart, hostEnd) : "";
  i = hostEnd < e && b[hostEnd]! <= 32 ? skipWs(b, hostEnd, e) : hostEnd;
  let port: number | undefined;
  if (i < e && b[i] === 58) {
    i = skipWs(b, i + 1, e);
    j = i;
    let p = 0;
    while (j < e) {
      const d = b[j]! - 48;
      if (d < 0 || d > 9) break;
      p = p * 10 + d;
      if (p > 65535) break;
      j++;
    }
    if (j === i || p > 65535) {
      // not 1*DIGIT up to 65535: let parseDecimal classify it as before
      while (j < e && b[j]! >= 48 && b[j]! <= 57) j++;
      if (parseDecimal(b, i, j, 65535) < 0) throw viaError("bad sent-by port", i);
    }
    port = p;
    i = j < e && b[j]! <= 32 ? skipWs(b, j, e) : j;
  }
  let branch: string | undefined;
  let received: string | undefined;
  let rport: number | null | undefined;
  let maddr: string | undefined;
  let ttl: number | undefined;
  let seenRport = false;
  let seenTtl = false;
  let unclean = 0; // non-zero once something only the liberal parse accepts was seen
  // the first parameters in locals, the array built once at its final size
  let np = 0;
  let p0: readonly [string, string | null] | undefined;
  let p1: readonly [string, string | null] | undefined;
  let p2: readonly [string, string | null] | undefined;
  let more: Array<readonly [string, string | null]> | undefined;
  // The parameter loop, kept apart from findTag's and fastcheck.ts's alike-looking ones: Via
  // parameters have their own value classes and strictness, and this runs on every message.
  while (i < e) {
    const c = b[i]!;
    if (c === 44) break;
    if (c !== 59) throw viaError("unexpected character", i);
    i++;
    if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
    const ns = i;
    let ne = i;
    while (ne < e && TOKEN_CHARS[b[ne]!] === 1) ne++;
    if (ne === ns) {
      const d = i < e ? b[i]! : -1;
      if (!strict && (i >= e || d === 59 || d === 44)) {
        unclean = 1; // empty parameter, tolerated here
        continue;
      }
      throw viaError(i >= e || d === 59 || d === 44 ? "empty parameter" : "bad parameter name", i);
    }
    const pid = viaParamId(b, ns, ne);
    i = ne < e && b[ne]! <= 32 ? skipWs(b, ne, e) : ne;
    let value: string | null = null;
    let vs = i;
    let ve = -1;
    if (i < e && b[i] === 61) {
      i++;
      if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
      vs = i;
      if (i < e && b[i] === 34) {
        const q = skipQuoted(b, i, e);
        if (q < 0) throw viaError("unterminated quoted string", i);
        i = q;
      } else {
        while (i < e) {
          const k = VIA_VALUE_CLASS[b[i]!]!;
          if (k === 1) break;
          unclean |= k;
          i++;
        }
      }
      if (i === vs) throw viaError(`empty value for parameter ${paramName(b, s, ns, ne)}`, vs);
      if (strict && b[vs] !== 34 && !viaValueOk(b, vs, i)) {
        throw viaError(`invalid value for parameter ${paramName(b, s, ns, ne)}`, vs);
      }
      ve = i;
      if (build && (withParams || pid !== P_OTHER)) value = own(b, s, vs, i);
      if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
    }
    if (!build || (!withParams && pid === P_OTHER)) {
      // only what can fail: rport and ttl values
      if ((pid === P_RPORT && !seenRport) || (pid === P_TTL && !seenTtl)) {
        if (pid === P_RPORT) seenRport = true;
        else seenTtl = true;
        if (ve >= 0 || pid === P_TTL) {
          const t = ve < 0 ? -1 : parseDecimal(b, vs, ve, pid === P_RPORT ? 65535 : 255);
          if (t < 0) throw viaError(pid === P_RPORT ? "bad rport" : "bad ttl", ns);
        }
      }
      continue;
    }
    if (withParams) {
      const param: readonly [string, string | null] = [
        pid !== P_OTHER ? VIA_PARAM_NAMES[pid]! : lowerSlice(b, s, ns, ne),
        value,
      ];
      if (np === 0) p0 = param;
      else if (np === 1) p1 = param;
      else if (np === 2) p2 = param;
      else if (more === undefined) more = [param];
      else more.push(param);
      np++;
    }
    switch (pid) {
      case P_BRANCH:
        if (branch === undefined) branch = value ?? "";
        break;
      case P_RECEIVED:
        if (received === undefined && value !== null) received = value;
        break;
      case P_RPORT:
        if (rport === undefined) {
          if (value === null) rport = null;
          else {
            const r = parseDecimal(b, vs, vs + value.length, 65535);
            if (r < 0) throw viaError("bad rport", ns);
            rport = r;
          }
        }
        break;
      case P_MADDR:
        if (maddr === undefined && value !== null) maddr = value;
        break;
      case P_TTL:
        if (ttl === undefined) {
          const t = value === null ? -1 : parseDecimal(b, vs, vs + value.length, 255);
          if (t < 0) throw viaError("bad ttl", ns);
          ttl = t;
        }
        break;
    }
  }
  viaEnd = i;
  viaStrictClean = unclean === 0;
  if (!build) return null;
  let params: Array<readonly [string, string | null]> | null;
  if (!withParams) params = null;
  else if (np === 0) params = [];
  else if (np === 1) params = [p0!];
  else if (np === 2) params = [p0!, p1!];
  else if (np === 3) params = [p0!, p1!, p2!];
  else params = [p0!, p1!, p2!, ...more!];
  const rawEnd = trimEnd(b, start, i);
  let raw = own(b, s, start, rawEnd);
  if (mayFold && raw.indexOf("\n") >= 0) raw = unfold(raw);
  return new ViaValue(transport, host, port, branch, received, rport, maddr, ttl, params, raw);
}

/** gen-value that is a token, a bracketed IPv6 reference, or an unbracketed IPv6 (received, RFC 5118 §4.5). */
function viaValueOk(b: Uint8Array, a: number, e: number): boolean {
  if (b[a] === 91) {
    if (b[e - 1] !== 93) return false;
    a++;
    e--;
    if (a >= e) return false;
  }
  for (let i = a; i < e; i++) {
    const c = b[i]!;
    if (c !== 58 && TOKEN_CHARS[c] !== 1) return false;
  }
  return true;
}

// ---------------------------------------------------------------- lists

/**
 * Split [a, e) at commas outside quoted strings and <...>. Pushes trimmed
 * [start, end) pairs into `out` (empty elements included, as start === end).
 */
export function splitCommas(b: Uint8Array, a: number, e: number, out: number[]): void {
  let i = a;
  for (;;) {
    const next = nextElement(b, i, e);
    out.push(elStart, elEnd);
    if (next < 0) return;
    i = next;
  }
}

/**
 * One element at a time, without an array (a big one is slow in V8; splitCommas
 * collects them): nextElement(b, i, e) takes the element starting at i, sets
 * elStart/elEnd to it trimmed, and returns where the next one starts, or -1
 * when this was the last.
 */
export let elStart = 0;
export let elEnd = 0;
export function nextElement(b: Uint8Array, i: number, e: number): number {
  const seg = i;
  while (i < e) {
    const c = b[i]!;
    if (c === 34) {
      const q = skipQuoted(b, i, e);
      i = q < 0 ? e : q;
      continue;
    }
    if (c === 60) {
      // '<' ... '>': commas inside a URI are not separators
      let j = i + 1;
      while (j < e && b[j] !== 62) j++;
      i = j < e ? j + 1 : e;
      continue;
    }
    if (c === 44) {
      elStart = skipWs(b, seg, i);
      elEnd = trimEnd(b, elStart, i);
      return i + 1;
    }
    i++;
  }
  elStart = skipWs(b, seg, e);
  elEnd = trimEnd(b, elStart, e);
  return -1;
}

/** Number of non-empty comma-separated values in [a, e) (quotes respected). */
export function countValues(b: Uint8Array, a: number, e: number): number {
  let n = 0;
  let nonEmpty = false;
  let i = a;
  while (i < e) {
    const c = b[i]!;
    if (c === 44) {
      if (nonEmpty) n++;
      nonEmpty = false;
      i++;
      continue;
    }
    if (c === 34) {
      const q = skipQuoted(b, i, e);
      i = q < 0 ? e : q;
      nonEmpty = true;
      continue;
    }
    if (!(c === 32 || c === 9 || c === 13 || c === 10)) nonEmpty = true;
    i++;
  }
  if (nonEmpty) n++;
  return n;
}

// ---------------------------------------------------------------- methods

const METHOD_NAMES = [
  "ACK",
  "BYE",
  "INFO",
  "PRACK",
  "REFER",
  "INVITE",
  "CANCEL",
  "NOTIFY",
  "UPDATE",
  "OPTIONS",
  "PUBLISH",
  "MESSAGE",
  "REGISTER",
  "SUBSCRIBE",
];
/** The method names' bytes, one after the other; METHOD_OFF[k] is where name k starts. */
const METHOD_BYTES = lit(METHOD_NAMES.join(""));
const METHOD_OFF = new Uint16Array(METHOD_NAMES.length);
/** (length << 8 | first byte) → 1 + index of the only standard method with that length and first letter, 0 when none. */
const METHOD_BY_KEY = new Uint8Array(16 << 8);
{
  let off = 0;
  METHOD_NAMES.forEach((m, k) => {
    METHOD_OFF[k] = off;
    off += m.length;
    const key = (m.length << 8) | m.charCodeAt(0);
    if (METHOD_BY_KEY[key] !== 0) throw new Error(`method table: ${m} shares length and first letter`);
    METHOD_BY_KEY[key] = k + 1;
  });
}

/** The method token b[a, e) as a string: the shared constant for a standard method (exact case), else a slice. */
export function methodString(b: Uint8Array, s: string, a: number, e: number): string {
  const n = e - a;
  if (n < 16 && n > 0) {
    const k = METHOD_BY_KEY[(n << 8) | b[a]!]! - 1;
    if (k >= 0) {
      let o = METHOD_OFF[k]! + 1;
      let i = a + 1;
      while (i < e && b[i] === METHOD_BYTES[o]) {
        i++;
        o++;
      }
      if (i === e) return METHOD_NAMES[k]!;
    }
  }
  return s.slice(a, e);
}

// ---------------------------------------------------------------- CSeq

export let cseqMethod = "";

/**
 * Parse "number LWS method" in [a, e); returns the number and sets
 * `cseqMethod`. When the method is byte for byte `hint` (the Request-Line's,
 * written at hintAt), that string is reused.
 */
export function parseCSeqRange(
  b: Uint8Array,
  s: string,
  a: number,
  e: number,
  hint = "",
  hintAt = 0,
): number {
  let i = a < e && b[a]! <= 32 ? skipWs(b, a, e) : a;
  let j = i;
  while (j < e) {
    const c = b[j]!;
    if (c >= 48 && c <= 57) j++;
    else break;
  }
  const n = parseDecimal(b, i, j, MAX_UINT32);
  if (n === -1) throw new SipParseError("bad-cseq", "CSeq: missing sequence number", i);
  if (n === -2) throw new SipParseError("bad-cseq", "CSeq: sequence number above 2^32-1", i);
  i = skipWs(b, j, e);
  if (i === j) throw new SipParseError("bad-cseq", "CSeq: missing LWS after the number", i);
  const ms = i;
  // The usual case: the method is the hint's bytes followed by a non-token
  // byte; as the hint is a token, that is also where a token scan would stop.
  const hl = hint.length;
  let me = ms + hl;
  let same = hl > 0 && me <= e && (me === e || TOKEN_CHARS[b[me]!] !== 1);
  for (let k = 0; same && k < hl; k++) same = b[ms + k] === b[hintAt + k];
  if (!same) {
    me = ms;
    while (me < e && TOKEN_CHARS[b[me]!] === 1) me++;
  }
  if (me === ms) throw new SipParseError("bad-cseq", "CSeq: missing method", i);
  if (me < e && skipWs(b, me, e) !== e) {
    throw new SipParseError("bad-cseq", "CSeq: junk after the method", me);
  }
  cseqMethod = same ? hint : methodString(b, s, ms, me);
  return n;
}

// ---------------------------------------------------------------- tags

/**
 * Index where the header parameters of a name-addr / addr-spec value start
 * (the ';' after '>' or, for an addr-spec, the first ';'), or -1 when none.
 * Quoted display names are skipped, so a ";tag=" inside quotes is not seen.
 */
export function headerParamsStart(b: Uint8Array, s: string, a: number, e: number): number {
  let i = a;
  while (i < e) {
    const c = b[i]!;
    if (c === 34) {
      const q = skipQuoted(b, i, e);
      if (q < 0) return -1;
      i = q;
      continue;
    }
    if (c === 60) {
      const j = s.indexOf(">", i + 1);
      if (j < 0 || j >= e) return -1;
      i = j + 1;
      while (i < e && b[i] !== 59) {
        if (b[i] === 44) return -1;
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
// Kept apart from fastcheck.ts's genericParamsAt and the Via parameter loop of scanVia: each scans
// `;name=value` with its own rules (here lenient, one name wanted), on every parsed message.
export function findTag(b: Uint8Array, s: string, a: number, e: number): string | undefined {
  let i = headerParamsStart(b, s, a, e);
  if (i < 0) return undefined;
  // (whitespace calls guarded by b[i] <= 32, token scan inline: see parseVia)
  while (i < e) {
    // b[i] === ';'
    i++;
    if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
    const ns = i;
    while (i < e && TOKEN_CHARS[b[i]!] === 1) i++;
    const ne = i;
    if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
    let vs = -1;
    let ve = -1;
    if (i < e && b[i] === 61) {
      i++;
      if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
      vs = i;
      if (i < e && b[i] === 34) {
        const q = skipQuoted(b, i, e);
        i = q < 0 ? e : q;
      } else {
        while (i < e) {
          const d = b[i]!;
          if (d === 59 || d === 44 || d === 32 || d === 9 || d === 13 || d === 10) break;
          i++;
        }
      }
      ve = i;
      if (i < e && b[i]! <= 32) i = skipWs(b, i, e);
    }
    if (
      ne - ns === 3 &&
      (b[ns]! | 0x20) === 116 &&
      (b[ns + 1]! | 0x20) === 97 &&
      (b[ns + 2]! | 0x20) === 103 &&
      vs >= 0
    ) {
      return own(b, s, vs, ve);
    }
    while (i < e && b[i] !== 59) {
      if (b[i] === 34) {
        const q = skipQuoted(b, i, e);
        i = q < 0 ? e : q;
      } else i++;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- Request-URI (cheap structural check)

/** Length of the URI scheme at a (ALPHA *(ALPHA / DIGIT / + - .)) followed by ':', or -1. */
export function schemeLength(b: Uint8Array, a: number, e: number): number {
  let i = a;
  if (i >= e) return -1;
  let c = b[i]! | 0x20;
  if (c < 97 || c > 122) return -1;
  i++;
  while (i < e) {
    c = b[i]!;
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
export function checkRequestUri(b: Uint8Array, s: string, a: number, e: number): string | null {
  return sipRequestUriOk(b, s, a, e) ? null : requestUriFault(b, a, e);
}

/** Control characters and whitespace (refused anywhere in a Request-URI). */
function ctlOrWs(c: number): boolean {
  return c <= 32 || c === 127;
}

/**
 * One pass over a well-formed sip/sips Request-URI: the host is checked once
 * (its characters are never controls), the rest for controls. False when it
 * is not that (or not well-formed): requestUriFault then decides.
 */
function sipRequestUriOk(b: Uint8Array, s: string, a: number, e: number): boolean {
  if (e - a < 5 || (b[a]! | 0x20) !== 115 || (b[a + 1]! | 0x20) !== 105 || (b[a + 2]! | 0x20) !== 112) {
    return false;
  }
  let i = a + 3;
  if ((b[i]! | 0x20) === 115) i++;
  if (b[i] !== 58) return false;
  i++;
  // userinfo: up to the first '@' (searched natively; once per message)
  const at = s.indexOf("@", i);
  if (at >= 0 && at < e) {
    for (; i < at; i++) if (ctlOrWs(b[i]!)) return false;
    i = at + 1;
  }
  const h = i;
  while (i < e && HOST_CHARS[b[i]!] === 1) i++;
  if (i === h) return false;
  if (i < e && b[i] === 58) {
    const ps = ++i;
    let v = 0;
    while (i < e) {
      const d = b[i]! - 48;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
      if (v > 65535) return false;
      i++;
    }
    if (i === ps) return false;
  }
  if (i < e) {
    const c = b[i]!;
    if (c !== 59 && c !== 63) return false;
    for (; i < e; i++) if (ctlOrWs(b[i]!)) return false;
  }
  return true;
}

/** The full structural check of a Request-URI: the reason it is refused, or null. */
function requestUriFault(b: Uint8Array, a: number, e: number): string | null {
  if (a >= e) return "empty Request-URI";
  if (b[a] === 60) return "Request-URI enclosed in <>";
  let at = -1;
  for (let i = a; i < e; i++) {
    const c = b[i]!;
    if (c <= 32 || c === 127) return "control character or whitespace in Request-URI";
    if (c === 64 && at < 0) at = i;
  }
  const sl = schemeLength(b, a, e);
  if (sl < 0) return "Request-URI has no scheme";
  const isSip =
    (sl === 3 || (sl === 4 && (b[a + 3]! | 0x20) === 115)) &&
    (b[a]! | 0x20) === 115 &&
    (b[a + 1]! | 0x20) === 105 &&
    (b[a + 2]! | 0x20) === 112;
  if (!isSip) return null;
  // the scheme holds no '@': the first one, if any, ends the userinfo
  const h = at >= 0 ? at + 1 : a + sl + 1;
  const he = scanHost(b, h, e);
  if (he < 0) return "bad host in SIP Request-URI";
  let i = he;
  if (i < e && b[i] === 58) {
    let j = i + 1;
    while (j < e) {
      const c = b[j]!;
      if (c >= 48 && c <= 57) j++;
      else break;
    }
    if (parseDecimal(b, i + 1, j, 65535) < 0) return "bad port in SIP Request-URI";
    i = j;
  }
  if (i < e) {
    const c = b[i]!;
    if (c !== 59 && c !== 63) return "bad host in SIP Request-URI";
  }
  return null;
}
