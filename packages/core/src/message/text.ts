/**
 * Text helpers. The head of a SIP message is handled as a latin1 ("binary")
 * string: one JS char per byte. These helpers convert for display and map
 * header names to a canonical form.
 */

/** Decode a latin1 (byte) string as UTF-8 text, e.g. a display name for a human. */
export function utf8(bytes: string): string {
  for (let i = 0; i < bytes.length; i++) {
    if (bytes.charCodeAt(i) > 0x7f) return Buffer.from(bytes, "latin1").toString("utf8");
  }
  return bytes;
}

/** Encode a JS (UTF-16) string as UTF-8 and return it as a latin1 byte string, ready for a header value. */
export function latin1(text: string): string {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) return Buffer.from(text, "utf8").toString("latin1");
  }
  return text;
}

/** Compact form letter → full name (RFC 3261 §7.3.3 and extensions). */
export const COMPACT_FORMS: Readonly<Record<string, string>> = Object.freeze({
  i: "Call-ID",
  m: "Contact",
  e: "Content-Encoding",
  l: "Content-Length",
  c: "Content-Type",
  f: "From",
  s: "Subject",
  k: "Supported",
  t: "To",
  v: "Via",
  o: "Event",
  u: "Allow-Events",
  r: "Refer-To",
  b: "Referred-By",
  x: "Session-Expires",
  y: "Identity",
  d: "Request-Disposition",
  a: "Accept-Contact",
  j: "Reject-Contact",
  n: "Identity-Info",
});

/** Full names of the other headers this layer knows (the usual spelling). */
export const KNOWN_HEADER_NAMES: ReadonlyArray<string> = Object.freeze([
  "Accept",
  "Accept-Encoding",
  "Accept-Language",
  "Alert-Info",
  "Allow",
  "Authentication-Info",
  "Authorization",
  "Call-Info",
  "Content-Disposition",
  "Content-Language",
  "CSeq",
  "Date",
  "Error-Info",
  "Expires",
  "In-Reply-To",
  "Max-Forwards",
  "MIME-Version",
  "Min-Expires",
  "Organization",
  "Path",
  "Priority",
  "Proxy-Authenticate",
  "Proxy-Authorization",
  "Proxy-Require",
  "RAck",
  "Reason",
  "Record-Route",
  "Reply-To",
  "Require",
  "Retry-After",
  "Route",
  "RSeq",
  "Server",
  "Service-Route",
  "SIP-ETag",
  "SIP-If-Match",
  "Timestamp",
  "Unsupported",
  "User-Agent",
  "Warning",
  "WWW-Authenticate",
  "Min-SE",
  "P-Asserted-Identity",
  "P-Preferred-Identity",
  "Privacy",
  "Replaces",
  "Subscription-State",
]);

const CANON_SPELLING = new Map<string, string>();
const COMPACT_OF = new Map<string, number>();
const LOWER_OF_COMPACT = new Map<string, string>();
for (const [letter, full] of Object.entries(COMPACT_FORMS)) {
  const lower = full.toLowerCase();
  CANON_SPELLING.set(lower, full);
  COMPACT_OF.set(lower, letter.charCodeAt(0));
  LOWER_OF_COMPACT.set(letter, lower);
}
for (const full of KNOWN_HEADER_NAMES) {
  CANON_SPELLING.set(full.toLowerCase(), full);
}

const lowerCache = new Map<string, string>();

/** Lower-cased full header name: "v" → "via", "CALL-ID" → "call-id", "X-Foo" → "x-foo". */
export function canonicalName(name: string): string {
  const hit = lowerCache.get(name);
  if (hit !== undefined) return hit;
  let lower = name.toLowerCase();
  if (lower.length === 1) lower = LOWER_OF_COMPACT.get(lower) ?? lower;
  if (lowerCache.size < 1024) lowerCache.set(name, lower);
  return lower;
}

/** The compact-form letter (lower-case char code) of a canonical lower-cased name, 0 when none. */
export function compactCode(canonical: string): number {
  return COMPACT_OF.get(canonical) ?? 0;
}

/** The usual spelling of a header name for output: "call-id" → "Call-ID", "x-foo" → "X-Foo", "v" → "Via". */
export function properName(name: string): string {
  const canon = canonicalName(name);
  const known = CANON_SPELLING.get(canon);
  if (known !== undefined) return known;
  let out = "";
  let up = true;
  for (let i = 0; i < canon.length; i++) {
    const ch = canon[i]!;
    out += up ? ch.toUpperCase() : ch;
    up = ch === "-";
  }
  return out;
}

/** A byte table: 1 for the ASCII letters and digits and the characters of `others`, else 0. */
export function alnumTable(others: string): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 48; c <= 57; c++) t[c] = 1;
  for (let c = 65; c <= 90; c++) t[c] = 1;
  for (let c = 97; c <= 122; c++) t[c] = 1;
  for (const ch of others) t[ch.charCodeAt(0)] = 1;
  return t;
}

/** RFC 3261 token characters: alphanum - . ! % * _ + ` ' ~ */
export const TOKEN_CHARS: Uint8Array = alnumTable("-.!%*_+`'~");

export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || TOKEN_CHARS[c] !== 1) return false;
  }
  return true;
}

/** Replace line folds (optional WS, CRLF or LF, then WS) by a single SP; text without line breaks is returned as is. */
export function unfold(v: string): string {
  if (v.indexOf("\n") < 0) return v;
  let out = "";
  let seg = 0;
  let i = 0;
  const n = v.length;
  while (i < n) {
    const c = v.charCodeAt(i);
    if (c !== 13 && c !== 10) {
      i++;
      continue;
    }
    let j = i;
    while (j > seg && (v.charCodeAt(j - 1) === 32 || v.charCodeAt(j - 1) === 9)) j--;
    out += `${v.slice(seg, j)} `;
    while (i < n) {
      const d = v.charCodeAt(i);
      if (d === 13 || d === 10 || d === 32 || d === 9) i++;
      else break;
    }
    seg = i;
  }
  return out + v.slice(seg);
}

/**
 * `s` in one piece. V8 keeps a string built with `+` or a template as a tree
 * of its pieces (32 bytes a node, each piece kept whole) until something
 * reads its characters; reading one joins it and frees the pieces. A key
 * that stays in a table for 32 s is worth joining at once: about 240 bytes
 * less per transaction key.
 */
export function flat(s: string): string {
  s.charCodeAt(0);
  return s;
}
