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
 * `hashString` gives the same value as `hashBytes` over the string's latin1
 * bytes — the core writes and reads header values as latin1 byte strings — so
 * a Call-ID the coordinator makes for a local request, or one a user passes to
 * `cancel(callId, …)`, lands on the same shard as the datagrams that carry it.
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

/**
 * FNV-1a 32-bit over a latin1 byte string (one char per byte, the message
 * layer's convention for header values: what `SipMessage.callId` returns and
 * what the builders write). Equal to `hashBytes` over the same bytes.
 */
export function hashString(s: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i) & 0xff;
    h = Math.imul(h, FNV_PRIME);
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
