/**
 * A token bucket per source IP address, for new requests: the same limiter
 * runs in the one-thread engine (`EngineOptions.rateLimit`) and in the sharded
 * engine's coordinator, before any shard sees the message.
 *
 * Each source has a bucket of `burst` tokens, refilled at `rate` tokens per
 * second; a request takes one token, and a request that finds none is refused
 * (the caller drops it and counts it). A source seen for the first time starts
 * with a full bucket.
 *
 * The table of sources is bounded: at most `sources` buckets, kept in
 * preallocated typed arrays (grown by doubling up to the bound, never per
 * message) with a Map from address to slot. Past the bound the OLDEST source
 * (first seen longest ago) is forgotten and its slot reused: a forgotten
 * source starts again with a full bucket, so a flood from many addresses can
 * only make the limit more lenient for others, never stricter. V8 hashes
 * string Map keys with a per-process random seed, so sources cannot be chosen
 * to collide in the Map.
 *
 * Time is injected (`now`, in ms): tests drive it, production passes the
 * engine's clock.
 */

export interface RateLimitOptions {
  /** Tokens (new requests) per second per source; > 0. */
  rate: number;
  /** Bucket size: requests a source may send at once. Default 2 × rate (at least 1). */
  burst?: number;
  /** Sources remembered at most (the oldest forgotten past it). Default 65536. */
  sources?: number;
}

export const DEFAULT_RATE_SOURCES = 65_536;
const INITIAL_SLOTS = 1024;

export class SourceRateLimiter {
  readonly rate: number;
  readonly burst: number;
  /** The most sources remembered. */
  readonly capacity: number;
  /** Sources forgotten to make room (the table was full). */
  evicted = 0;
  private readonly perMs: number;
  private readonly index = new Map<string, number>();
  private keys: Array<string | undefined>;
  private tokens: Float64Array;
  private stamps: Float64Array;
  /** Slots in use; once it reaches `capacity`, `oldest` walks the ring. */
  private used = 0;
  private oldest = 0;

  /**
   * `now`: the clock, ms. `onEvict`: called each time a source is forgotten to make room (the
   * engines count it in `rate_sources_evicted`).
   */
  constructor(
    opts: RateLimitOptions,
    private readonly now: () => number,
    private readonly onEvict?: () => void,
  ) {
    if (!(opts.rate > 0) || !Number.isFinite(opts.rate))
      throw new RangeError(`rate must be a positive number, got ${opts.rate}`);
    this.rate = opts.rate;
    this.burst = Math.max(1, opts.burst ?? 2 * opts.rate);
    this.capacity = Math.max(1, Math.floor(opts.sources ?? DEFAULT_RATE_SOURCES));
    this.perMs = this.rate / 1000;
    const n = Math.min(this.capacity, INITIAL_SLOTS);
    this.keys = new Array<string | undefined>(n).fill(undefined);
    this.tokens = new Float64Array(n);
    this.stamps = new Float64Array(n);
  }

  /** Sources currently remembered (≤ capacity). */
  get size(): number {
    return this.index.size;
  }

  /** May a new request from `source` (an IP address) go on? Takes a token when it may. */
  allow(source: string): boolean {
    const now = this.now();
    const slot = this.index.get(source);
    if (slot === undefined) {
      const s = this.claim(source);
      this.tokens[s] = this.burst - 1;
      this.stamps[s] = now;
      return true;
    }
    let t = this.tokens[slot]!;
    const dt = now - this.stamps[slot]!;
    if (dt > 0) {
      t += dt * this.perMs;
      if (t > this.burst) t = this.burst;
      this.stamps[slot] = now;
    }
    if (t < 1) {
      this.tokens[slot] = t;
      return false;
    }
    this.tokens[slot] = t - 1;
    return true;
  }

  /** A slot for a new source: a free one, or the oldest source's. */
  private claim(source: string): number {
    let s: number;
    if (this.used < this.capacity) {
      if (this.used === this.keys.length) this.grow();
      s = this.used++;
    } else {
      s = this.oldest;
      this.oldest = (s + 1) % this.capacity;
      const old = this.keys[s];
      if (old !== undefined) this.index.delete(old);
      this.evicted++;
      this.onEvict?.();
    }
    this.keys[s] = source;
    this.index.set(source, s);
    return s;
  }

  private grow(): void {
    const n = Math.min(this.capacity, this.keys.length * 2);
    const tokens = new Float64Array(n);
    tokens.set(this.tokens);
    const stamps = new Float64Array(n);
    stamps.set(this.stamps);
    this.tokens = tokens;
    this.stamps = stamps;
    for (let i = this.keys.length; i < n; i++) this.keys.push(undefined);
  }
}
