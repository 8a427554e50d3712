/**
 * The credentials of an Authorization / Proxy-Authorization header value
 * (RFC 3261 §25.1 `credentials`, RFC 7616 §3.4): `scheme 1*LWS auth-param
 * *(COMMA auth-param)`, an auth-param being `token LWS "=" LWS (token /
 * quoted-string)`. A hand-written scanner, one pass over the text, no regular
 * expression: the input is untrusted. Bad input is a typed result, never a
 * throw.
 */

/** Longest header value looked at; a longer one is malformed. */
export const MAX_CREDENTIALS_LENGTH = 8192;
/** Most auth-params in one credentials value. */
export const MAX_AUTH_PARAMS = 32;

export type CredentialsParse =
  | { readonly ok: true; readonly scheme: string; readonly params: ReadonlyMap<string, string> }
  | { readonly ok: false; readonly scheme: string | undefined; readonly error: string; readonly at: number };

/** Exactly `len` hex digits, either case (a digest response, an nc, a stored HA1). */
export function isHex(s: string, len: number): boolean {
  if (s.length !== len) return false;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i) | 0x20;
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/** token characters (RFC 3261 §25.1): alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" */
function isTokenChar(c: number): boolean {
  return (
    (c >= 97 && c <= 122) ||
    (c >= 65 && c <= 90) ||
    (c >= 48 && c <= 57) ||
    c === 45 ||
    c === 46 ||
    c === 33 ||
    c === 37 ||
    c === 42 ||
    c === 95 ||
    c === 43 ||
    c === 96 ||
    c === 39 ||
    c === 126
  );
}

/** LWS, unfolded or not: SP, HTAB, CR, LF. */
function isWs(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

/**
 * Parses one credentials value. Parameter names are lower-cased (they are
 * case-insensitive); values are returned unquoted and unescaped (a
 * quoted-pair `\x` stands for `x`). A repeated parameter is malformed.
 */
export function parseCredentials(text: string): CredentialsParse {
  const n = text.length;
  let scheme: string | undefined;
  const fail = (error: string, at: number): CredentialsParse => ({ ok: false, scheme, error, at });
  if (n > MAX_CREDENTIALS_LENGTH) return fail("credentials too long", MAX_CREDENTIALS_LENGTH);
  let i = 0;
  while (i < n && isWs(text.charCodeAt(i))) i++;
  let start = i;
  while (i < n && isTokenChar(text.charCodeAt(i))) i++;
  if (i === start) return fail("auth scheme expected", i);
  scheme = text.slice(start, i);
  if (i < n && !isWs(text.charCodeAt(i))) return fail("whitespace expected after the auth scheme", i);
  const params = new Map<string, string>();
  for (;;) {
    // Empty list elements (", ,") are allowed, as in any #rule list.
    while (i < n) {
      const c = text.charCodeAt(i);
      if (!isWs(c) && c !== 44) break;
      i++;
    }
    if (i >= n) break;
    start = i;
    while (i < n && isTokenChar(text.charCodeAt(i))) i++;
    if (i === start) return fail("parameter name expected", i);
    const name = text.slice(start, i).toLowerCase();
    while (i < n && isWs(text.charCodeAt(i))) i++;
    if (i >= n || text.charCodeAt(i) !== 61) return fail('"=" expected', i);
    i++;
    while (i < n && isWs(text.charCodeAt(i))) i++;
    let value: string;
    if (i < n && text.charCodeAt(i) === 34) {
      // quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE (RFC 3261 §25.1)
      i++;
      let out = "";
      let seg = i;
      let closed = false;
      while (i < n) {
        const c = text.charCodeAt(i);
        if (c === 34) {
          out += text.slice(seg, i);
          i++;
          closed = true;
          break;
        }
        if (c === 92) {
          out += text.slice(seg, i);
          i++;
          if (i >= n) break;
          const e = text.charCodeAt(i);
          if (e === 13 || e === 10) return fail("CR or LF escaped in a quoted string", i);
          out += text[i];
          i++;
          seg = i;
          continue;
        }
        if ((c < 32 && c !== 9) || c === 127) return fail("control character in a quoted string", i);
        i++;
      }
      if (!closed) return fail("unterminated quoted string", i);
      value = out;
    } else {
      start = i;
      while (i < n && isTokenChar(text.charCodeAt(i))) i++;
      if (i === start) return fail("parameter value expected", i);
      value = text.slice(start, i);
    }
    if (params.has(name)) return fail(`parameter "${name}" repeated`, start);
    if (params.size >= MAX_AUTH_PARAMS) return fail("too many parameters", start);
    params.set(name, value);
    while (i < n && isWs(text.charCodeAt(i))) i++;
    if (i < n && text.charCodeAt(i) !== 44) return fail('"," expected between parameters', i);
  }
  return { ok: true, scheme, params };
}

/** A quoted-string with `"` and `\` escaped (RFC 3261 §25.1). */
export function quote(value: string): string {
  let out = '"';
  let seg = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 34 || c === 92) {
      out += `${value.slice(seg, i)}\\`;
      seg = i;
    }
  }
  return `${out}${value.slice(seg)}"`;
}
