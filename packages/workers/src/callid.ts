/**
 * Find the Call-ID in a SIP message's bytes without parsing it: the
 * coordinator does this for every datagram, so it walks header lines with
 * byte compares and makes no string and no object.
 *
 * Rules: a header line whose name is `Call-ID` or the compact `i`
 * (case-insensitive, RFC 3261 §7.3.3), optional spaces or tabs before the
 * colon (§7.3.1), the value trimmed of spaces and tabs. The first such line
 * wins. The scan stops at the blank line that ends the headers. Lines may end
 * in CRLF or a bare LF. A folded continuation line (starting with a space) is
 * never taken for a header name; a folded Call-ID value keeps its first line
 * only (Call-IDs are one word, §25.1).
 */

/** A byte range [start, end) in a message. */
export interface Span {
  start: number;
  end: number;
}

const LF = 10;
const CR = 13;
const SP = 32;
const HT = 9;
const COLON = 58;
// "call-id" in lower case
const CALL_ID = [0x63, 0x61, 0x6c, 0x6c, 0x2d, 0x69, 0x64] as const;

function lower(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

export function isWs(b: number | undefined): boolean {
  return b === SP || b === HT;
}

/** Index just past the line break that ends the line holding `from`, or `buf.length`. */
export function nextLine(buf: Uint8Array, from: number): number {
  const lf = buf.indexOf(LF, from);
  return lf < 0 ? buf.length : lf + 1;
}

/**
 * If a header line starting at `p` has the name `name` (lower-case bytes, or
 * the single compact letter `compact`), followed by optional whitespace and a
 * colon, return the index just after the colon; else -1.
 */
export function matchHeaderName(
  buf: Uint8Array,
  p: number,
  name: readonly number[],
  compact: number,
): number {
  const n = buf.length;
  let q: number;
  const first = lower(buf[p]!);
  if (first === compact && (buf[p + 1] === COLON || isWs(buf[p + 1]))) {
    q = p + 1;
  } else if (first === name[0]) {
    if (p + name.length > n) return -1;
    for (let k = 1; k < name.length; k++) if (lower(buf[p + k]!) !== name[k]) return -1;
    q = p + name.length;
  } else {
    return -1;
  }
  while (q < n && isWs(buf[q])) q++;
  return q < n && buf[q] === COLON ? q + 1 : -1;
}

/**
 * The Call-ID value's byte range, written into `out` (no allocation). Returns
 * false when the message has no Call-ID header with a non-empty value before
 * the end of its headers.
 */
export function scanCallId(buf: Uint8Array, out: Span): boolean {
  // Its header-line walk is scan.ts's too, written out on purpose there: once per datagram, no callback.
  const n = buf.length;
  let p = nextLine(buf, 0);
  while (p < n) {
    const c = buf[p]!;
    if (c === CR || c === LF) return false;
    const v = matchHeaderName(buf, p, CALL_ID, 0x69 /* i */);
    if (v >= 0) {
      let s = v;
      while (s < n && isWs(buf[s])) s++;
      let e = s;
      while (e < n && buf[e] !== CR && buf[e] !== LF) e++;
      while (e > s && isWs(buf[e - 1])) e--;
      if (e === s) return false;
      out.start = s;
      out.end = e;
      return true;
    }
    p = nextLine(buf, p);
  }
  return false;
}

/** The Call-ID as a latin1 string (the message layer's convention), or undefined. */
export function findCallId(buf: Uint8Array): string | undefined {
  const span: Span = { start: 0, end: 0 };
  if (!scanCallId(buf, span)) return undefined;
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString("latin1", span.start, span.end);
}
