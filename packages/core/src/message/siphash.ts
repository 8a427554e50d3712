/**
 * SipHash-2-4 (J.-P. Aumasson, D. J. Bernstein, "SipHash: a fast short-input
 * PRF", INDOCRYPT 2012): a pseudorandom function of short inputs under a
 * 128-bit secret key, for values an attacker must not be able to predict or
 * steer — the shard of a Call-ID (@siptm/workers), the tag in the branch of a
 * relayed INVITE (proxy/cookie.ts). 2-4 (two rounds per 8-byte block, four at
 * the end) is the paper's recommended parameter set.
 *
 * The 64-bit words are kept as pairs of 32-bit integers (`…l` low, `…h` high):
 * no BigInt, no allocation, only int32 arithmetic that V8 keeps unboxed.
 *
 * `hashString` gives the same value as `hashBytes` over the string's latin1
 * bytes, the message layer's convention for header values.
 */

/** A SipHash key ready for use: k0 low, k0 high, k1 low, k1 high (k0 = key bytes 0–7, k1 = 8–15, little-endian). */
export type HashKey = Int32Array;

/** The key of 16 bytes (the paper's k0 ‖ k1, each little-endian), ready for `hashBytes`. */
export function hashKey(bytes: Uint8Array): HashKey {
  if (bytes.length !== 16) throw new RangeError(`a hash key has 16 bytes, got ${bytes.length}`);
  const k = new Int32Array(4);
  for (let w = 0; w < 4; w++)
    k[w] = bytes[4 * w]! | (bytes[4 * w + 1]! << 8) | (bytes[4 * w + 2]! << 16) | (bytes[4 * w + 3]! << 24);
  return k;
}

/** The high 32 bits of the last `hashBytes` result (read by `hashBytes64`; not part of the hot path). */
let lastHigh = 0;

/**
 * SipHash-2-4 of bytes [start, end) under `key`: the low 32 bits of the
 * 64-bit result, unsigned. Allocation-free.
 */
export function hashBytes(key: HashKey, m: Uint8Array, start = 0, end = m.length): number {
  const k0l = key[0]!;
  const k0h = key[1]!;
  const k1l = key[2]!;
  const k1h = key[3]!;
  // Initialisation: v0..v3 = k ^ "somepseudorandomlygeneratedbytes" (paper §2).
  let v0l = k0l ^ 0x70736575;
  let v0h = k0h ^ 0x736f6d65;
  let v1l = k1l ^ 0x6e646f6d;
  let v1h = k1h ^ 0x646f7261;
  let v2l = k0l ^ 0x6e657261;
  let v2h = k0h ^ 0x6c796765;
  let v3l = k1l ^ 0x79746573;
  let v3h = k1h ^ 0x74656462;
  const len = end - start;
  const full = start + (len & ~7);
  let i = start;
  // 0: full 8-byte blocks; 1: the last block (0–7 bytes + the length byte) was done; 2: finalisation.
  let phase = 0;
  let lo = 0;
  let t = 0;
  for (;;) {
    let ml = 0;
    let mh = 0;
    let rounds = 2;
    if (i < full) {
      ml = m[i]! | (m[i + 1]! << 8) | (m[i + 2]! << 16) | (m[i + 3]! << 24);
      mh = m[i + 4]! | (m[i + 5]! << 8) | (m[i + 6]! << 16) | (m[i + 7]! << 24);
      i += 8;
    } else if (phase === 0) {
      // The last block: the remaining bytes, and the length mod 256 in the top byte.
      mh = (len & 0xff) << 24;
      const r = end - i;
      for (let k = 0; k < r; k++) {
        if (k < 4) ml |= m[i + k]! << (8 * k);
        else mh |= m[i + k]! << (8 * (k - 4));
      }
      phase = 1;
    } else {
      // Finalisation: v2 ^= 0xff, then four rounds (with m = 0 the xors below change nothing).
      v2l ^= 0xff;
      rounds = 4;
      phase = 2;
    }
    v3l ^= ml;
    v3h ^= mh;
    for (let r = 0; r < rounds; r++) {
      // SipRound (paper fig. 2), each 64-bit add with its carry from the low word.
      // Its four add-rotate-xor steps look alike but are kept written out: a shared step would have
      // to hand back several of the eight state words, which needs an object or array per call.
      lo = (v0l + v1l) | 0;
      v0h = (v0h + v1h + (lo >>> 0 < v0l >>> 0 ? 1 : 0)) | 0;
      v0l = lo;
      t = (v1h << 13) | (v1l >>> 19);
      v1l = (v1l << 13) | (v1h >>> 19);
      v1h = t;
      v1l ^= v0l;
      v1h ^= v0h;
      t = v0l;
      v0l = v0h;
      v0h = t;
      lo = (v2l + v3l) | 0;
      v2h = (v2h + v3h + (lo >>> 0 < v2l >>> 0 ? 1 : 0)) | 0;
      v2l = lo;
      t = (v3h << 16) | (v3l >>> 16);
      v3l = (v3l << 16) | (v3h >>> 16);
      v3h = t;
      v3l ^= v2l;
      v3h ^= v2h;
      lo = (v0l + v3l) | 0;
      v0h = (v0h + v3h + (lo >>> 0 < v0l >>> 0 ? 1 : 0)) | 0;
      v0l = lo;
      t = (v3h << 21) | (v3l >>> 11);
      v3l = (v3l << 21) | (v3h >>> 11);
      v3h = t;
      v3l ^= v0l;
      v3h ^= v0h;
      lo = (v2l + v1l) | 0;
      v2h = (v2h + v1h + (lo >>> 0 < v2l >>> 0 ? 1 : 0)) | 0;
      v2l = lo;
      t = (v1h << 17) | (v1l >>> 15);
      v1l = (v1l << 17) | (v1h >>> 15);
      v1h = t;
      v1l ^= v2l;
      v1h ^= v2h;
      t = v2l;
      v2l = v2h;
      v2h = t;
    }
    v0l ^= ml;
    v0h ^= mh;
    if (phase === 2) break;
  }
  lastHigh = (v0h ^ v1h ^ v2h ^ v3h) >>> 0;
  return (v0l ^ v1l ^ v2l ^ v3l) >>> 0;
}

/** The whole 64-bit SipHash-2-4 as its 8 output bytes (little-endian, as the paper's test vectors are written). */
export function hashBytes64(key: HashKey, m: Uint8Array, start = 0, end = m.length): Uint8Array {
  const lo = hashBytes(key, m, start, end);
  const out = new Uint8Array(8);
  for (let k = 0; k < 4; k++) {
    out[k] = (lo >>> (8 * k)) & 0xff;
    out[k + 4] = (lastHigh >>> (8 * k)) & 0xff;
  }
  return out;
}

/**
 * SipHash-2-4 over a latin1 byte string (one char per byte, the message
 * layer's convention for header values: what `SipMessage.callId` returns and
 * what the builders write). Equal to `hashBytes` over the same bytes. Not for
 * the per-datagram path (it makes a Buffer).
 */
export function hashString(key: HashKey, s: string): number {
  return hashBytes(key, Buffer.from(s, "latin1"));
}
