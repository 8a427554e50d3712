/**
 * Replay protection for digest nonces (RFC 7616 §3.4 / §5.5, RFC 2617 §3.2.2):
 * the nonce itself is stateless (see digest.ts), but a captured Authorization
 * could be sent again while its nonce lives. So the counts (`nc`) a client has
 * used with a nonce are remembered, and a count seen before is a replay.
 *
 * `NonceCounts` is the store's interface; a cluster supplies one shared by its
 * nodes (a later Redis store). `MemoryNonceCounts` is the in-process default.
 */

/**
 * - `ok`: the first use of this count with this nonce (now recorded);
 * - `replay`: this count was used before (or is too far below the highest
 *   one for the window to tell), refuse the request;
 * - `unknown`: the store no longer knows this nonce and so cannot tell; the
 *   verifier answers `stale`, and the client retries with a fresh nonce.
 */
export type NonceUse = "ok" | "replay" | "unknown";

export interface NonceCounts {
  /**
   * Records the use of count `nc` (≥ 1) with `nonce`, a nonce made at
   * `issuedAt` and valid until `expiresAt` (ms, the verifier's clock, which is
   * also `now`). Called only for a request whose digest was right.
   */
  use(
    nonce: string,
    nc: number,
    issuedAt: number,
    expiresAt: number,
    now: number,
  ): NonceUse | Promise<NonceUse>;
}

export interface MemoryNonceCountsOptions {
  /** Most nonces tracked at once; past it the least recently used is forgotten. Default 10 000. */
  maxNonces?: number;
  /** How far below the highest count a count may arrive late and still be accepted once, 1..32. Default 32. */
  window?: number;
}

interface Entry {
  /** The highest count seen. */
  top: number;
  /** Bit k set: count top - k was seen. */
  mask: number;
  issuedAt: number;
  expiresAt: number;
}

/**
 * The in-memory store: per nonce, the highest count seen and a sliding window
 * of the 32 (or `window`) counts below it (as IPsec's anti-replay window), so
 * requests a phone sends in parallel or a network reorders are still accepted
 * once each, in any order, while any count used before is refused.
 *
 * Bounded: at most `maxNonces` nonces, least recently used forgotten first
 * (a JavaScript Map keeps insertion order; a use moves the nonce to the end).
 * Forgetting must not reopen a replay, so the store keeps a watermark: the
 * latest issue time of any nonce it forgot before the nonce expired. A nonce it
 * does not know that was issued at or before the watermark may be a forgotten
 * one: `unknown` (the client is sent a fresh nonce with stale=true). A nonce
 * issued after the watermark cannot have been forgotten, so its first use is a
 * first use. Expired nonces are dropped as they come to the front; they need no
 * watermark, the verifier refuses them as stale by their timestamp.
 */
export class MemoryNonceCounts implements NonceCounts {
  readonly maxNonces: number;
  readonly window: number;
  private readonly entries = new Map<string, Entry>();
  private watermark = Number.NEGATIVE_INFINITY;

  constructor(opts: MemoryNonceCountsOptions = {}) {
    const max = opts.maxNonces ?? 10_000;
    const window = opts.window ?? 32;
    if (!Number.isInteger(max) || max < 1) throw new RangeError("maxNonces must be a positive integer");
    if (!Number.isInteger(window) || window < 1 || window > 32) throw new RangeError("window must be 1..32");
    this.maxNonces = max;
    this.window = window;
  }

  /** How many nonces are tracked now. */
  get size(): number {
    return this.entries.size;
  }

  use(nonce: string, nc: number, issuedAt: number, expiresAt: number, now: number): NonceUse {
    if (!Number.isInteger(nc) || nc < 1) return "replay";
    const e = this.entries.get(nonce);
    if (e === undefined) {
      if (issuedAt <= this.watermark) return "unknown";
      this.entries.set(nonce, { top: nc, mask: 1, issuedAt, expiresAt });
      this.trim(now);
      return "ok";
    }
    // Least recently used order: move to the end.
    this.entries.delete(nonce);
    this.entries.set(nonce, e);
    if (nc > e.top) {
      const shift = nc - e.top;
      e.mask = shift >= 32 ? 1 : ((e.mask << shift) | 1) >>> 0;
      e.top = nc;
      return "ok";
    }
    const d = e.top - nc;
    if (d >= this.window) return "replay";
    const bit = (1 << d) >>> 0;
    if ((e.mask & bit) !== 0) return "replay";
    e.mask = (e.mask | bit) >>> 0;
    return "ok";
  }

  private trim(now: number): void {
    for (const [key, e] of this.entries) {
      if (e.expiresAt <= now) {
        this.entries.delete(key);
        continue;
      }
      if (this.entries.size <= this.maxNonces) break;
      this.entries.delete(key);
      if (e.issuedAt > this.watermark) this.watermark = e.issuedAt;
    }
  }
}
