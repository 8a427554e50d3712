/**
 * The shard of a Call-ID.
 *
 * Why FNV-1a, 32 bits:
 * - stable: it depends on the Call-ID's bytes only — no per-process seed, no
 *   engine version, no endianness — so every process on every machine maps a
 *   Call-ID to the same number. The planned multi-machine front that spreads
 *   calls by Call-ID hash needs exactly that (Node's string hashing is seeded
 *   per process and not reachable anyway);
 * - fast and allocation-free: one xor and one multiply per byte, straight
 *   over the datagram's bytes (no string is made on the receive path);
 * - good enough dispersion on short, mostly random strings (Call-IDs are
 *   10–60 characters, usually random text plus "@host"). It is not a keyed
 *   hash: someone who chooses Call-IDs can aim them at one shard. That costs
 *   balance, not correctness, and the inbound queue bound limits the damage.
 *
 * `hashString` gives the same value as `hashBytes` over the string's UTF-8
 * bytes (Call-IDs are ASCII in practice), so a Call-ID the coordinator makes
 * for a local request lands on the same shard as the datagrams that carry it.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a 32-bit over bytes [start, end). Unsigned result. */
export function hashBytes(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

/** FNV-1a 32-bit over the UTF-8 encoding of `s`, without encoding it. Unsigned result. */
export function hashString(s: string): number {
  let h = FNV_OFFSET;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        h = Math.imul(h ^ (0xf0 | (c >> 18)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
        continue;
      }
    }
    // A lone surrogate encodes as U+FFFD, as Buffer.from(s, "utf8") does.
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return h >>> 0;
}

/**
 * The shard (0 … n-1) that owns a Call-ID: FNV-1a modulo n. Plain modulo is
 * right inside one process, where n is fixed for the engine's life; a front
 * that changes its number of machines at run time would want a consistent
 * hash (jump hash) over the same 32-bit value.
 */
export function shardOf(callId: string | Uint8Array, n: number): number {
  if (n <= 1) return 0;
  const h = typeof callId === "string" ? hashString(callId) : hashBytes(callId);
  return h % n;
}
