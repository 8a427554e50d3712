/**
 * name-addr / addr-spec with header parameters (RFC 3261 §20.10, §25.1):
 * From, To, Contact, Route, Record-Route, Reply-To values.
 *
 *   ( name-addr / addr-spec ) *( SEMI generic-param )
 *   name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
 *
 * In the addr-spec form, ";params" after the URI are header parameters, not
 * URI parameters (§20.10), and a URI with ',' ';' or '?' must be in <>.
 * Liberal only where RFC 4475 says so: no LWS is needed between a token
 * display name and '<' (lwsdisp.dat).
 */

import { SipParseError } from "./errors.js";
import { TOKEN_CHARS } from "./text.js";
import { isIPv6, parseUri, type Uri } from "./uri.js";

export interface NameAddr {
  /** Display name: unquoted with quoted-pairs resolved, or the token sequence as written; undefined when none. */
  readonly displayName: string | undefined;
  /** True when the display name was a quoted-string. */
  readonly quoted: boolean;
  /** True for the name-addr form (URI in <>). */
  readonly angle: boolean;
  readonly uri: Uri;
  /** Header parameters in order: [lower-cased name, value as written (quotes kept) or null]. */
  readonly params: ReadonlyArray<readonly [string, string | null]>;
  /** The `tag` parameter, undefined when absent. */
  readonly tag: string | undefined;
  readonly raw: string;
}

function fail(reason: string, at = -1): never {
  throw new SipParseError("bad-header", reason, at);
}

function isWs(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

function skipWs(s: string, i: number): number {
  while (i < s.length && isWs(s.charCodeAt(i))) i++;
  return i;
}

function isTok(c: number): boolean {
  return c < 256 && TOKEN_CHARS[c] === 1;
}

/**
 * Scan a quoted-string at s[i] === '"' (qdtext / quoted-pair, RFC 3261 §25.1).
 * Returns the index after the closing quote; throws when unterminated.
 */
export function scanQuotedString(s: string, i: number): number {
  const e = s.length;
  i++;
  while (i < e) {
    const c = s.charCodeAt(i);
    if (c === 34) return i + 1;
    if (c === 92) {
      if (i + 1 >= e) break;
      const d = s.charCodeAt(i + 1);
      if (d === 10 || d === 13 || d > 0x7f) fail("bad quoted-pair", i);
      i += 2;
      continue;
    }
    if (c < 32 && c !== 9 && c !== 13 && c !== 10) fail("control character in quoted-string", i);
    if (c === 127) fail("control character in quoted-string", i);
    i++;
  }
  return fail("unterminated quoted-string", i);
}

function unquote(s: string, a: number, e: number): string {
  // s[a] and s[e-1] are the quotes
  let out = "";
  let seg = a + 1;
  for (let i = a + 1; i < e - 1; i++) {
    if (s.charCodeAt(i) === 92) {
      out += s.slice(seg, i);
      seg = i + 1;
      i++;
    }
  }
  return out + s.slice(seg, e - 1);
}

/**
 * Parse generic-params "*( SEMI generic-param )" from i to the end of s.
 * generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string.
 */
export function parseGenericParams(s: string, i: number, out: Array<readonly [string, string | null]>): void {
  const e = s.length;
  i = skipWs(s, i);
  while (i < e) {
    if (s.charCodeAt(i) !== 59) fail("unexpected character before parameters", i);
    i = skipWs(s, i + 1);
    const ns = i;
    while (i < e && isTok(s.charCodeAt(i))) i++;
    if (i === ns) fail("empty or invalid parameter name", ns);
    const name = s.slice(ns, i).toLowerCase();
    i = skipWs(s, i);
    let value: string | null = null;
    if (i < e && s.charCodeAt(i) === 61) {
      i = skipWs(s, i + 1);
      const vs = i;
      if (i < e && s.charCodeAt(i) === 34) {
        i = scanQuotedString(s, i);
      } else if (i < e && s.charCodeAt(i) === 91) {
        const close = s.indexOf("]", i);
        if (close < 0 || !isIPv6(s, i + 1, close)) fail("bad IPv6 reference in parameter", i);
        i = close + 1;
      } else {
        while (i < e && isTok(s.charCodeAt(i))) i++;
      }
      if (i === vs) fail(`empty or invalid value for parameter ${name}`, vs);
      value = s.slice(vs, i);
      i = skipWs(s, i);
    }
    out.push([name, value]);
  }
}

/** Parse a name-addr or addr-spec with header parameters. Throws SipParseError (400). */
export function parseNameAddr(text: string): NameAddr {
  if (typeof text !== "string") fail("value is not a string");
  const s = text;
  const e = s.length;
  let i = skipWs(s, 0);
  if (i >= e) fail("empty value");
  let displayName: string | undefined;
  let quoted = false;
  let angle = false;
  let uriStart: number;
  let uriEnd: number;
  if (s.charCodeAt(i) === 34) {
    const q = scanQuotedString(s, i);
    displayName = unquote(s, i, q);
    quoted = true;
    i = skipWs(s, q);
    if (i >= e || s.charCodeAt(i) !== 60) fail("quoted display name not followed by <", i);
  } else {
    // token display name(s) then '<', or an addr-spec
    // the display name, if any, is *(token LWS) up to '<'
    let lt = -1;
    for (let j = i; j < e; j++) {
      const c = s.charCodeAt(j);
      if (c === 60) lt = j;
      if (!isTok(c) && !isWs(c)) break;
    }
    if (lt >= 0) {
      let end = lt;
      while (end > i && isWs(s.charCodeAt(end - 1))) end--;
      if (end > i) displayName = s.slice(i, end);
      i = lt;
    }
  }
  if (i < e && s.charCodeAt(i) === 60) {
    angle = true;
    uriStart = i + 1;
    const gt = s.indexOf(">", uriStart);
    if (gt < 0) fail("missing > after the URI", uriStart);
    uriEnd = gt;
    i = gt + 1;
  } else {
    uriStart = i;
    while (i < e) {
      const c = s.charCodeAt(i);
      if (c === 59) break;
      if (isWs(c)) {
        const j = skipWs(s, i);
        if (j < e && s.charCodeAt(j) !== 59) fail("whitespace inside an addr-spec", i);
        break;
      }
      if (c === 63) fail("addr-spec with '?' headers must be enclosed in <>", i);
      if (c === 44) fail("addr-spec with ',' must be enclosed in <>", i);
      i++;
    }
    uriEnd = i;
  }
  for (let j = uriStart; j < uriEnd; j++) {
    if (isWs(s.charCodeAt(j))) fail("whitespace inside an addr-spec", j);
  }
  let uri: Uri;
  try {
    uri = parseUri(s.slice(uriStart, uriEnd));
  } catch (err) {
    if (err instanceof SipParseError) fail(err.reason, err.offset >= 0 ? uriStart + err.offset : uriStart);
    throw err;
  }
  const params: Array<readonly [string, string | null]> = [];
  parseGenericParams(s, i, params);
  let tag: string | undefined;
  for (const [n, v] of params) {
    if (n === "tag") {
      if (v === null) fail("tag parameter without value");
      tag = v;
      break;
    }
  }
  return { displayName, quoted, angle, uri, params, tag, raw: text };
}

/**
 * The URI of a name-addr or addr-spec header value (Contact, Route,
 * Record-Route…) without parsing it in full: the text inside `<…>` — a quoted
 * display name before it is skipped, so `"a<b" <sip:x>` gives `sip:x` — else
 * an addr-spec up to its first `;` (RFC 3261 §20.10: those parameters are the
 * header's, not the URI's). Never throws; one pass, no backtracking.
 */
export function uriOfNameAddr(value: string): string {
  const e = value.length;
  for (let i = 0; i < e; i++) {
    const c = value.charCodeAt(i);
    if (c === 34) {
      // a quoted-string: to its closing quote, quoted-pairs skipped
      for (i++; i < e; i++) {
        const q = value.charCodeAt(i);
        if (q === 92) i++;
        else if (q === 34) break;
      }
    } else if (c === 60) {
      const gt = value.indexOf(">", i + 1);
      return value.slice(i + 1, gt < 0 ? e : gt).trim();
    } else if (c === 59) break;
  }
  const semi = value.indexOf(";");
  return (semi < 0 ? value : value.slice(0, semi)).trim();
}
