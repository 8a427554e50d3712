/**
 * URI parsing (RFC 3261 §19.1 and §25.1, RFC 3966 tel, RFC 2396 absoluteURI)
 * with hand-written scanners: no regular expressions, linear time.
 *
 * %HH escapes are decoded (once, never recursively) in the user, password,
 * parameter and header fields, which are exposed decoded; `raw` keeps the
 * text as written. Decoded values are latin1 byte strings like every header
 * value (see types.ts).
 */

import { SipParseError } from "./errors.js";

export type UriParam = readonly [string, string | null];

interface UriBase {
  /** The URI as written. */
  readonly raw: string;
  /** Lower-cased scheme: "sip", "sips", "tel", "http"... */
  readonly scheme: string;
  /** Parameters in order, names lower-cased and %-decoded, values %-decoded (null when no "="). */
  readonly params: ReadonlyArray<UriParam>;
}

export interface SipUri extends UriBase {
  readonly type: "sip";
  readonly scheme: "sip" | "sips";
  /** User part, %-decoded; undefined when the URI has no userinfo. */
  readonly user: string | undefined;
  /** User part as written. */
  readonly rawUser: string | undefined;
  /** Password, %-decoded; undefined when absent. */
  readonly password: string | undefined;
  /** Host as written; IPv6 references keep their brackets. */
  readonly host: string;
  readonly hostType: "hostname" | "ipv4" | "ipv6";
  readonly port: number | undefined;
  /** Headers after "?", names and values %-decoded. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
}

export interface TelUri extends UriBase {
  readonly type: "tel";
  readonly scheme: "tel";
  /** The telephone-subscriber number as written ("+1-201-555-0123"). */
  readonly number: string;
}

export interface AbsoluteUri extends UriBase {
  readonly type: "absolute";
  /** Everything after "scheme:", as written. */
  readonly opaque: string;
}

export type Uri = SipUri | TelUri | AbsoluteUri;

function fail(reason: string, at = -1): never {
  throw new SipParseError("bad-uri", reason, at);
}

// character classes (RFC 3261 §25.1); exported for the byte-level checks of validate.ts
export const C_ALNUM = 1;
export const C_MARK = 2; // - _ . ! ~ * ' ( )
export const C_USER = 4; // & = + $ , ; ? /
export const C_PASS = 8; // & = + $ ,
export const C_PARAM = 16; // [ ] / : & + $
export const C_HNV = 32; // [ ] / ? : + $
export const C_URIC = 64; // reserved ; / ? : @ & = + $ , and [ ]

export const CLASS = (() => {
  const t = new Uint8Array(256);
  for (let c = 48; c <= 57; c++) t[c]! |= C_ALNUM;
  for (let c = 65; c <= 90; c++) t[c]! |= C_ALNUM;
  for (let c = 97; c <= 122; c++) t[c]! |= C_ALNUM;
  const set = (chars: string, bit: number) => {
    for (const ch of chars) t[ch.charCodeAt(0)]! |= bit;
  };
  set("-_.!~*'()", C_MARK);
  set("&=+$,;?/", C_USER);
  set("&=+$,", C_PASS);
  set("[]/:&+$", C_PARAM);
  set("[]/?:+$", C_HNV);
  set(";/?:@&=+$,[]", C_URIC);
  return t;
})();

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

function hexVal(c: number): number {
  if (c <= 57) return c - 48;
  if (c <= 70) return c - 55;
  return c - 87;
}

/**
 * Check s[a, e) holds only chars of `allowed` classes (unreserved always) and
 * valid %HH escapes. Returns true when some escape is present.
 */
function checkChars(s: string, a: number, e: number, allowed: number, what: string): boolean {
  let esc = false;
  for (let i = a; i < e; i++) {
    const c = s.charCodeAt(i);
    if (c === 37) {
      if (i + 2 >= e || !isHex(s.charCodeAt(i + 1)) || !isHex(s.charCodeAt(i + 2))) {
        fail(`bad %-escape in ${what}`, i);
      }
      esc = true;
      i += 2;
      continue;
    }
    if (c > 255 || (CLASS[c]! & (C_ALNUM | C_MARK | allowed)) === 0) fail(`invalid character in ${what}`, i);
  }
  return esc;
}

/** Decode %HH escapes once (the result is never decoded again). */
export function pctDecode(s: string): string {
  if (s.indexOf("%") < 0) return s;
  let out = "";
  let seg = 0;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) !== 37 || i + 2 >= s.length) continue;
    const h = s.charCodeAt(i + 1);
    const l = s.charCodeAt(i + 2);
    if (!isHex(h) || !isHex(l)) continue;
    out += s.slice(seg, i) + String.fromCharCode(hexVal(h) * 16 + hexVal(l));
    i += 2;
    seg = i + 1;
  }
  return out + s.slice(seg);
}

function lower(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.toLowerCase();
  }
  return s;
}

// ---------------------------------------------------------------- hosts

/** IPv4address: 4 dec-octets (0-255), each 1-3 digits. */
export function isIPv4(s: string, a = 0, e = s.length): boolean {
  let parts = 0;
  let i = a;
  while (parts < 4) {
    const st = i;
    let v = 0;
    while (i < e && i - st < 3) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      i++;
    }
    if (i === st || v > 255) return false;
    parts++;
    if (parts < 4) {
      if (i >= e || s.charCodeAt(i) !== 46) return false;
      i++;
    }
  }
  return i === e;
}

/** Hex groups of an IPv6 address without embedded IPv4 (a "::" counts as -1 in the result). */
function hexGroups(s: string, a: number, e: number): number {
  // returns number of groups, or -1 when invalid; a "::" is marked by adding 100
  let groups = 0;
  let compressed = false;
  let i = a;
  if (i === e) return -1;
  if (s.charCodeAt(i) === 58) {
    if (i + 1 >= e || s.charCodeAt(i + 1) !== 58) return -1;
    compressed = true;
    i += 2;
    if (i === e) return 100;
  }
  while (i < e) {
    const st = i;
    while (i < e && i - st < 5 && isHex(s.charCodeAt(i))) i++;
    if (i === st || i - st > 4) return -1;
    groups++;
    if (i === e) break;
    if (s.charCodeAt(i) !== 58) return -1;
    i++;
    if (i < e && s.charCodeAt(i) === 58) {
      if (compressed) return -1;
      compressed = true;
      i++;
      if (i === e) break;
    } else if (i === e) return -1; // trailing single ':'
  }
  return compressed ? groups + 100 : groups;
}

/**
 * IPv6 address (RFC 4291 text forms, plus the RFC 3261 ABNF's three-colon
 * form before an embedded IPv4 address, RFC 5118 §4.10).
 */
export function isIPv6(s: string, a = 0, e = s.length): boolean {
  if (e - a < 2 || e - a > 64) return false;
  let v4 = false;
  const end = e;
  for (let i = a; i < e; i++) {
    if (s.charCodeAt(i) === 46) {
      v4 = true;
      break;
    }
  }
  if (v4) {
    const lc = s.lastIndexOf(":", e - 1);
    if (lc < a || !isIPv4(s, lc + 1, e)) return false;
    let he = lc + 1; // the hex part, with the ':' before the IPv4 part
    let k = 0;
    while (he - 1 - k >= a && s.charCodeAt(he - 1 - k) === 58) k++;
    if (k > 3) return false;
    if (k === 3) {
      // "x:::v4": RFC 3261's ABNF allows it (RFC 5118 §4.10), read it as "x::v4"
      he--;
      k = 2;
    }
    if (k === 2) {
      const g = hexGroups(s, a, he);
      return g >= 100 && g - 100 <= 5;
    }
    if (he - 1 === a) return false;
    const g = hexGroups(s, a, he - 1);
    if (g < 0) return false;
    return g >= 100 ? g - 100 <= 5 : g === 6;
  }
  const g = hexGroups(s, a, end);
  if (g < 0) return false;
  return g >= 100 ? g - 100 <= 7 : g === 8;
}

/** hostname per RFC 3261 (labels of alphanum and inner '-'; toplabel starts with ALPHA); '_' tolerated. */
function isHostname(s: string, a: number, e: number): boolean {
  if (a >= e) return false;
  if (s.charCodeAt(e - 1) === 46) e--; // trailing dot
  if (a >= e) return false;
  let labelStart = a;
  let firstOfTop = 0;
  for (let i = a; i <= e; i++) {
    const c = i < e ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (i === labelStart) return false;
      if (s.charCodeAt(labelStart) === 45 || s.charCodeAt(i - 1) === 45) return false;
      firstOfTop = s.charCodeAt(labelStart);
      labelStart = i + 1;
      continue;
    }
    if (!((CLASS[c]! & C_ALNUM) !== 0 || c === 45 || c === 95)) return false;
  }
  const f = firstOfTop | 0x20;
  return f >= 97 && f <= 122;
}

// ---------------------------------------------------------------- params

function parseParams(
  s: string,
  i: number,
  e: number,
  stop: number,
  allowed: number,
  out: UriParam[],
): number {
  // s[i] === ';'
  while (i < e && s.charCodeAt(i) === 59) {
    i++;
    const ns = i;
    while (i < e) {
      const c = s.charCodeAt(i);
      if (c === 59 || c === 61 || c === stop) break;
      i++;
    }
    if (i === ns) fail("empty URI parameter", ns);
    const nEsc = checkChars(s, ns, i, allowed, "URI parameter name");
    const name = lower(nEsc ? pctDecode(s.slice(ns, i)) : s.slice(ns, i));
    let value: string | null = null;
    if (i < e && s.charCodeAt(i) === 61) {
      i++;
      const vs = i;
      while (i < e) {
        const c = s.charCodeAt(i);
        if (c === 59 || c === stop) break;
        i++;
      }
      if (i === vs) fail(`empty value for URI parameter ${name}`, vs);
      const vEsc = checkChars(s, vs, i, allowed, "URI parameter value");
      value = vEsc ? pctDecode(s.slice(vs, i)) : s.slice(vs, i);
    }
    out.push([name, value]);
  }
  return i;
}

// ---------------------------------------------------------------- parseUri

/** Parse a URI (SIP/SIPS, tel, or any absolute URI). Throws SipParseError (400) when malformed. */
export function parseUri(text: string): Uri {
  if (typeof text !== "string") fail("URI is not a string");
  const e = text.length;
  if (e === 0) fail("empty URI");
  let i = 0;
  let c = text.charCodeAt(0) | 0x20;
  if (c < 97 || c > 122) fail("URI scheme must start with a letter", 0);
  while (i < e) {
    c = text.charCodeAt(i);
    if (c === 58) break;
    const l = c | 0x20;
    if (!((l >= 97 && l <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) {
      fail("invalid character in URI scheme", i);
    }
    i++;
  }
  if (i >= e) fail("URI has no scheme");
  const scheme = lower(text.slice(0, i));
  if (scheme === "sip" || scheme === "sips") return parseSip(text, scheme, i + 1);
  if (scheme === "tel") return parseTel(text, i + 1);
  const rest = i + 1;
  if (rest >= e) fail("empty URI after scheme", rest);
  checkChars(text, rest, e, C_URIC, "URI");
  return { type: "absolute", raw: text, scheme, opaque: text.slice(rest), params: [] };
}

function parseSip(s: string, scheme: "sip" | "sips", p: number): SipUri {
  const e = s.length;
  // userinfo ends at the first '@' (it cannot appear unescaped elsewhere)
  let at = -1;
  for (let i = p; i < e; i++) {
    if (s.charCodeAt(i) === 64) {
      at = i;
      break;
    }
  }
  let user: string | undefined;
  let rawUser: string | undefined;
  let password: string | undefined;
  let h = p;
  if (at >= 0) {
    let colon = -1;
    for (let i = p; i < at; i++) {
      if (s.charCodeAt(i) === 58) {
        colon = i;
        break;
      }
    }
    const ue = colon >= 0 ? colon : at;
    if (ue === p) fail("empty user in SIP URI", p);
    const uEsc = checkChars(s, p, ue, C_USER, "SIP URI user");
    rawUser = s.slice(p, ue);
    user = uEsc ? pctDecode(rawUser) : rawUser;
    if (colon >= 0) {
      const pEsc = checkChars(s, colon + 1, at, C_PASS, "SIP URI password");
      const pw = s.slice(colon + 1, at);
      password = pEsc ? pctDecode(pw) : pw;
    }
    h = at + 1;
  }
  // host
  let he: number;
  let hostType: SipUri["hostType"];
  if (h < e && s.charCodeAt(h) === 91) {
    he = s.indexOf("]", h);
    if (he < 0) fail("unterminated IPv6 reference", h);
    if (!isIPv6(s, h + 1, he)) fail("invalid IPv6 address", h);
    he++;
    hostType = "ipv6";
  } else {
    he = h;
    while (he < e) {
      const c = s.charCodeAt(he);
      if (c === 58 || c === 59 || c === 63) break;
      he++;
    }
    if (isIPv4(s, h, he)) hostType = "ipv4";
    else if (isHostname(s, h, he)) hostType = "hostname";
    else fail("invalid host in SIP URI", h);
  }
  const host = s.slice(h, he);
  let i = he;
  let port: number | undefined;
  if (i < e && s.charCodeAt(i) === 58) {
    i++;
    const ps = i;
    let v = 0;
    while (i < e) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      if (v > 65535) fail("port out of range", ps);
      i++;
    }
    if (i === ps) fail("bad port in SIP URI", ps);
    port = v;
  }
  const params: UriParam[] = [];
  if (i < e && s.charCodeAt(i) === 59) i = parseParams(s, i, e, 63, C_PARAM, params);
  const headers: Array<readonly [string, string]> = [];
  if (i < e && s.charCodeAt(i) === 63) {
    i++;
    while (true) {
      const ns = i;
      while (i < e && s.charCodeAt(i) !== 61 && s.charCodeAt(i) !== 38) i++;
      if (i === ns) fail("empty header name in SIP URI", ns);
      const nEsc = checkChars(s, ns, i, C_HNV, "SIP URI header name");
      const name = nEsc ? pctDecode(s.slice(ns, i)) : s.slice(ns, i);
      if (i >= e || s.charCodeAt(i) !== 61) fail("SIP URI header without '='", i);
      i++;
      const vs = i;
      while (i < e && s.charCodeAt(i) !== 38) i++;
      const vEsc = checkChars(s, vs, i, C_HNV, "SIP URI header value");
      headers.push([name, vEsc ? pctDecode(s.slice(vs, i)) : s.slice(vs, i)]);
      if (i >= e) break;
      i++; // '&'
    }
  }
  if (i < e) fail("unexpected character in SIP URI", i);
  return { type: "sip", raw: s, scheme, user, rawUser, password, host, hostType, port, params, headers };
}

function parseTel(s: string, p: number): TelUri {
  const e = s.length;
  let i = p;
  while (i < e && s.charCodeAt(i) !== 59) {
    const c = s.charCodeAt(i);
    const ok =
      (c >= 48 && c <= 57) ||
      isHex(c) ||
      c === 42 ||
      c === 35 ||
      c === 43 ||
      c === 45 ||
      c === 46 ||
      c === 40 ||
      c === 41;
    if (!ok) fail("invalid character in tel URI number", i);
    i++;
  }
  if (i === p) fail("empty tel URI number", p);
  const number = s.slice(p, i);
  const params: UriParam[] = [];
  if (i < e) i = parseParams(s, i, e, -1, C_PARAM, params);
  if (i < e) fail("unexpected character in tel URI", i);
  return { type: "tel", raw: s, scheme: "tel", number, params };
}

// ---------------------------------------------------------------- comparison

function paramOf(params: ReadonlyArray<UriParam>, name: string): string | null | undefined {
  for (const [n, v] of params) if (n === name) return v;
  return undefined;
}

function eqCi(a: string | null | undefined, b: string | null | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  return a.toLowerCase() === b.toLowerCase();
}

const SPECIAL_PARAMS = ["user", "ttl", "method", "maddr", "transport"];

function paramsEqual(a: ReadonlyArray<UriParam>, b: ReadonlyArray<UriParam>): boolean {
  for (const name of SPECIAL_PARAMS) {
    if (!eqCi(paramOf(a, name), paramOf(b, name))) return false;
  }
  for (const [name, v] of a) {
    const w = paramOf(b, name);
    if (w !== undefined && !eqCi(v, w)) return false;
  }
  return true;
}

function telDigits(n: string): string {
  let out = "";
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c !== 45 && c !== 46 && c !== 40 && c !== 41) out += n[i]!.toLowerCase();
  }
  return out;
}

/** URI equality per RFC 3261 §19.1.4 (and RFC 3966 §4 for tel URIs). Strings are parsed first. */
export function uriEquals(a: Uri | string, b: Uri | string): boolean {
  let x: Uri;
  let y: Uri;
  try {
    x = typeof a === "string" ? parseUri(a) : a;
    y = typeof b === "string" ? parseUri(b) : b;
  } catch {
    return false;
  }
  if (x.scheme !== y.scheme) return false;
  if (x.type === "sip" && y.type === "sip") {
    if (x.user !== y.user || x.password !== y.password) return false;
    if (x.host.toLowerCase() !== y.host.toLowerCase()) return false;
    if (x.port !== y.port) return false;
    if (!paramsEqual(x.params, y.params)) return false;
    if (x.headers.length !== y.headers.length) return false;
    for (const [n, v] of x.headers) {
      const m = y.headers.find(([n2]) => n2.toLowerCase() === n.toLowerCase());
      if (m === undefined || m[1] !== v) return false;
    }
    return true;
  }
  if (x.type === "tel" && y.type === "tel") {
    if (telDigits(x.number) !== telDigits(y.number)) return false;
    if (x.params.length !== y.params.length) return false;
    for (const [n, v] of x.params) {
      if (!eqCi(paramOf(y.params, n), v)) return false;
    }
    return true;
  }
  if (x.type === "absolute" && y.type === "absolute") return x.opaque === y.opaque;
  return false;
}

/** The URI parameter of that name (lower-case), undefined when absent, null when it has no value. */
export function uriParam(uri: Uri, name: string): string | null | undefined {
  return paramOf(uri.params, name.toLowerCase());
}
