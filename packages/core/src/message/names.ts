/**
 * Header ids. Every header name this layer knows gets a small integer,
 * computed once per header line while parsing (name length and first letter
 * pick a bucket, then one byte compare), so lookups and the strict check
 * compare integers instead of lower-casing and comparing names. 0 is "a header
 * this layer does not know" (those are compared by name).
 */

import { COMPACT_FORMS, KNOWN_HEADER_NAMES } from "./text.js";

export const H_OTHER = 0;
export const H_VIA = 1;
export const H_CALL_ID = 2;
export const H_CSEQ = 3;
export const H_FROM = 4;
export const H_TO = 5;
export const H_MAX_FORWARDS = 6;
export const H_CONTENT_LENGTH = 7;
export const H_CONTACT = 8;
export const H_ROUTE = 9;
export const H_RECORD_ROUTE = 10;
export const H_REPLY_TO = 11;
export const H_EXPIRES = 12;
export const H_MIN_EXPIRES = 13;
export const H_RETRY_AFTER = 14;
export const H_DATE = 15;
export const H_CONTENT_TYPE = 16;
export const H_REQUIRE = 17;
export const H_PROXY_REQUIRE = 18;
export const H_SUPPORTED = 19;
export const H_UNSUPPORTED = 20;
export const H_ALLOW = 21;
export const H_WARNING = 22;
/** The ids the parser extracts eagerly are 1..H_LAST_EAGER. */
export const H_LAST_EAGER = H_CONTENT_LENGTH;
/**
 * Not resolved yet: the parser only identifies the eager headers (and compact
 * forms); other lines get this and are resolved with headerId on first use.
 */
export const H_PENDING = 127;

/** Usual spelling by id (index 0 unused). The fixed ids above come first, in that order. */
const SPELLING: string[] = [
  "",
  "Via",
  "Call-ID",
  "CSeq",
  "From",
  "To",
  "Max-Forwards",
  "Content-Length",
  "Contact",
  "Route",
  "Record-Route",
  "Reply-To",
  "Expires",
  "Min-Expires",
  "Retry-After",
  "Date",
  "Content-Type",
  "Require",
  "Proxy-Require",
  "Supported",
  "Unsupported",
  "Allow",
  "Warning",
];
for (const full of [...Object.values(COMPACT_FORMS), ...KNOWN_HEADER_NAMES]) {
  if (!SPELLING.includes(full)) SPELLING.push(full);
}

const ID_OF_KEY = new Map<string, number>();
/** id → byte offset of its lower-case name in LOWER_BYTES / its spelling in SPELL_BYTES. */
const NAME_OFF = new Uint16Array(SPELLING.length + 1);
let total = 0;
for (let id = 1; id < SPELLING.length; id++) {
  NAME_OFF[id] = total;
  total += SPELLING[id]!.length;
  ID_OF_KEY.set(SPELLING[id]!.toLowerCase(), id);
}
NAME_OFF[SPELLING.length] = total;
const LOWER_BYTES = Buffer.from(SPELLING.join("").toLowerCase(), "latin1");
const SPELL_BYTES = Buffer.from(SPELLING.join(""), "latin1");
let maxName = 0;
for (const n of SPELLING) maxName = Math.max(maxName, n.length);
const MAX_NAME = maxName;

/** Compact form letter (either case) → id. */
const COMPACT_ID = new Uint8Array(256);
for (const [letter, full] of Object.entries(COMPACT_FORMS)) {
  const id = ID_OF_KEY.get(full.toLowerCase())!;
  COMPACT_ID[letter.charCodeAt(0)] = id;
  COMPACT_ID[letter.toUpperCase().charCodeAt(0)] = id;
}

/** Buckets by (length << 5 | first byte & 31): ids in BUCKET_IDS[BUCKET_START[k], BUCKET_START[k + 1]). */
const BUCKETS = (MAX_NAME + 1) << 5;
const BUCKET_START = new Uint16Array(BUCKETS + 1);
const BUCKET_IDS = new Uint8Array(SPELLING.length);
{
  const keyOf = (id: number): number => (SPELLING[id]!.length << 5) | (SPELLING[id]!.charCodeAt(0) & 31);
  const count = new Uint16Array(BUCKETS);
  for (let id = 1; id < SPELLING.length; id++) count[keyOf(id)]!++;
  for (let k = 0; k < BUCKETS; k++) BUCKET_START[k + 1] = BUCKET_START[k]! + count[k]!;
  const fill = BUCKET_START.slice(0, BUCKETS);
  for (let id = 1; id < SPELLING.length; id++) BUCKET_IDS[fill[keyOf(id)]!++] = id;
}
if (SPELLING.length >= H_PENDING) throw new Error("header ids: too many names");

/** Like the buckets, for the eager headers only: (length << 5 | first byte & 31) → id, 0 when none. */
const EAGER_BY_KEY = new Uint8Array(BUCKETS);
for (let id = 1; id <= H_LAST_EAGER; id++) {
  const k = (SPELLING[id]!.length << 5) | (SPELLING[id]!.charCodeAt(0) & 31);
  if (EAGER_BY_KEY[k] !== 0) throw new Error("header ids: eager names share a bucket");
  EAGER_BY_KEY[k] = id;
}

/**
 * What the parser stores for the header named by the token b[a, e): the id of
 * an eager header or compact form, else H_PENDING (resolve with headerId when
 * needed). Cheap for the other names: most miss the eager bucket.
 */
export function parsedHeaderId(b: Uint8Array, a: number, e: number): number {
  const n = e - a;
  if (n === 1) return COMPACT_ID[b[a]!]!;
  if (n > MAX_NAME) return 0;
  const id = EAGER_BY_KEY[(n << 5) | (b[a]! & 31)]!;
  if (id === 0) return H_PENDING;
  let o = NAME_OFF[id]!;
  let i = a;
  while (i < e && (b[i]! | 0x20) === LOWER_BYTES[o]!) {
    i++;
    o++;
  }
  return i === e ? id : H_PENDING;
}

/**
 * Id of the header named by the token b[a, e) (any case, compact forms
 * included); 0 when this layer does not know it. The name must be a token:
 * then `byte | 0x20` equals a lower-case name byte only for the same letter
 * (either case), digit or '-'.
 */
export function headerId(b: Uint8Array, a: number, e: number): number {
  const n = e - a;
  if (n === 1) return COMPACT_ID[b[a]!]!;
  if (n > MAX_NAME) return 0;
  const k = (n << 5) | (b[a]! & 31);
  for (let j = BUCKET_START[k]!, je = BUCKET_START[k + 1]!; j < je; j++) {
    const id = BUCKET_IDS[j]!;
    let o = NAME_OFF[id]!;
    let i = a;
    while (i < e && (b[i]! | 0x20) === LOWER_BYTES[o]!) {
      i++;
      o++;
    }
    if (i === e) return id;
  }
  return 0;
}

/** Id of a canonical (lower-cased, full) header name; 0 when unknown. */
export function headerIdOfKey(key: string): number {
  return ID_OF_KEY.get(key) ?? 0;
}

/**
 * The header name b[a, e) (s holds the same text) as a string: the shared
 * constant when it is written exactly in the usual spelling, else a slice.
 */
export function nameString(b: Uint8Array, s: string, a: number, e: number, id: number): string {
  if (id !== 0) {
    let o = NAME_OFF[id]!;
    if (NAME_OFF[id + 1]! - o === e - a) {
      let i = a;
      while (i < e && b[i] === SPELL_BYTES[o]) {
        i++;
        o++;
      }
      if (i === e) return SPELLING[id]!;
    }
  }
  return s.slice(a, e);
}
