/**
 * What happens to a datagram before a shard sees it: which shard owns it (a
 * scan, no parse), and whether a new request may go there at all — the
 * per-source rate limit, the bounded queue of each shard, the cap on the
 * live transactions of the whole engine, closing — with the stateless 503
 * the coordinator answers itself when it turns one away.
 *
 * Owner: a request goes to the keyed SipHash-2-4 of its Call-ID (callid.ts,
 * hash.ts) modulo the shard count, so all of a call's requests — INVITE,
 * CANCEL, the ACK of a 2xx, which has a branch of its own — land on the shard
 * that holds its transactions; a response to the shard named in its top Via
 * branch ("z9hG4bKs<n>." — each shard's engine writes its number there,
 * `branchPrefix`), so a response finds its client transaction even when a
 * route started that request with a Call-ID that hashes elsewhere; a branch
 * without our marker falls back to the Call-ID.
 *
 * Backpressure: each shard's inbound queue is bounded by `queueLimit`
 * messages in flight (posted, not yet acknowledged: shards acknowledge each
 * batch). Past the bound, a NEW request gets a 503 + Retry-After built from
 * the raw bytes (or is dropped, `overload: "drop"`), while responses, ACK,
 * CANCEL and retransmissions of requests a shard already has (their top-Via
 * branch was let in recently) always pass, so calls in progress can finish.
 * Counted in stats; it recovers by itself as acks come back.
 *
 * Limits of the whole engine, also applied here: `maxTransactions` counts the
 * live transactions of all shards together (their reported counts plus the new
 * requests on their way to them) and past it answers 503 itself; `rateLimit`
 * drops new requests over their source's token bucket before any shard sees
 * them (core's SourceRateLimiter).
 */
import { randomBytes } from "node:crypto";
import type { RateLimitOptions, Source, Transport } from "@siptm/core";
import { SourceRateLimiter } from "@siptm/core/internal";
import type { emptyCoordinatorStats } from "./api.js";
import { type Span, scanCallId } from "./callid.js";
import { type HashKey, hashBytes, hashKey } from "./hash.js";
import { buildReject, replyDestination } from "./reject.js";
import { branchShard, isResponse, METHOD_OTHER, methodKind, newViaScan, scanTopVia } from "./scan.js";
import type { Slot } from "./supervisor.js";

/**
 * Branches of requests let in recently (a keyed hash of the top-Via branch,
 * under a random key of this engine's: the branch is the sender's choice, and
 * with an unkeyed hash a sender could pick branches that collide with a live
 * one, or pile its entries into one bucket of the Set — V8 hashes small
 * integers without a seed): a
 * request seen again within the window is a retransmission of a transaction a
 * shard already has, and passes a full queue. Two generations of one window
 * each (64·T1 by default, the longest a client retransmits a request): an
 * entry lives between one and two windows. A hash collision lets a new
 * request through, which only makes the bound a little soft. Hashes are kept
 * to 30 bits so that V8 stores them as small integers, and a generation that
 * reaches RECENT_CAP entries is rotated early (memory stays bounded at very
 * high rates; the oldest entries are then forgotten sooner).
 */
const RECENT_CAP = 500_000;

class RecentBranches {
  private cur = new Set<number>();
  private old = new Set<number>();
  private since = Date.now();
  constructor(private readonly windowMs: number) {}
  add(h: number): void {
    this.cur.add(h & 0x3fffffff);
    if (this.cur.size >= RECENT_CAP) this.rotate(Date.now(), true);
  }
  has(h: number): boolean {
    const k = h & 0x3fffffff;
    return this.cur.has(k) || this.old.has(k);
  }
  rotate(now: number, force = false): void {
    if (!force && now - this.since < this.windowMs) return;
    this.old = this.cur;
    this.cur = new Set();
    this.since = now;
  }
}

export interface AdmissionOptions {
  /** The Call-ID hash's key. */
  key: HashKey;
  queueLimit: number;
  maxTransactions: number;
  rateLimit: RateLimitOptions | undefined;
  /** The rate limit's clock (ms). */
  now: () => number;
  overload: "503" | "drop";
  retryAfter: number;
  /** How long a branch let in is remembered (ms): the longest a client retransmits a request. */
  recentWindowMs: number;
}

export class Admission {
  /** New requests dropped by the rate limit, sources it forgot, requests refused at the whole-engine cap. */
  rateLimited = 0;
  rateEvicted = 0;
  capRejected = 0;
  private readonly limiter: SourceRateLimiter | undefined;
  private readonly recent: RecentBranches;
  private readonly span: Span = { start: 0, end: 0 };
  /** Key of the recent-branch hash: local to this engine, never shared. */
  private readonly branchKey = hashKey(new Uint8Array(randomBytes(16)));
  private readonly via = newViaScan();
  private readonly retryAfter: ReadonlyArray<readonly [string, string]>;

  constructor(
    private readonly opts: AdmissionOptions,
    private readonly slots: readonly Slot[],
    private readonly transports: readonly Transport[],
    private readonly counters: ReturnType<typeof emptyCoordinatorStats>,
    /** May new requests come in (the engine is starting or open)? */
    private readonly accepting: () => boolean,
  ) {
    this.limiter = opts.rateLimit
      ? new SourceRateLimiter(opts.rateLimit, opts.now, () => {
          this.rateEvicted++;
        })
      : undefined;
    this.recent = new RecentBranches(opts.recentWindowMs);
    this.retryAfter = [["Retry-After", String(opts.retryAfter)]];
  }

  /**
   * The shard datagram `data` from socket `listener` goes to, or -1 when it goes nowhere: dropped
   * (rate limit, overload "drop") or answered here (503).
   */
  shardFor(listener: number, data: Buffer, source: Source): number {
    const n = this.slots.length;
    let shard = 0;
    if (isResponse(data)) {
      if (n > 1) {
        scanTopVia(data, this.via);
        shard = branchShard(data, this.via.branch, n);
        if (shard < 0) shard = this.callIdShard(data, source, n);
      }
      return shard;
    }
    const kind = methodKind(data);
    // Per-source rate limit, before any shard sees the request. The coordinator cannot match
    // transactions cheaply, so every request but ACK and CANCEL draws a token here — a
    // retransmission of a live INVITE too (the one-thread engine, which matches first, does
    // not count those). Dropped, not answered: a 503 per request of a flood would make us a
    // reflection amplifier towards the (spoofable) source.
    if (kind === METHOD_OTHER && this.limiter !== undefined && !this.limiter.allow(source.address)) {
      this.rateLimited++;
      return -1;
    }
    if (n > 1) shard = this.callIdShard(data, source, n);
    return this.admit(this.slots[shard]!, listener, data, source, kind) ? shard : -1;
  }

  /** Once a turn: forget the branches of the window before last. */
  rotate(now: number): void {
    this.recent.rotate(now);
  }

  private callIdShard(data: Buffer, source: Source, n: number): number {
    // No Call-ID: the shard's parser answers 400; spread such junk by source port.
    if (!scanCallId(data, this.span)) return source.port % n;
    return hashBytes(this.opts.key, data, this.span.start, this.span.end) % n;
  }

  /** Backpressure, the whole-engine cap and closing: may this request go to its shard? */
  private admit(slot: Slot, listener: number, data: Buffer, source: Source, kind: number): boolean {
    if (kind !== METHOD_OTHER) return true; // ACK and CANCEL always pass
    scanTopVia(data, this.via);
    const b = this.via.branch;
    const h = b.start >= 0 ? hashBytes(this.branchKey, data, b.start, b.end) : -1;
    const room = this.accepting() && slot.inFlight < this.opts.queueLimit;
    if (room && this.liveEstimate() < this.opts.maxTransactions) {
      if (h >= 0) this.recent.add(h);
      slot.newInFlight++;
      slot.newPending++;
      return true;
    }
    // A retransmission of a request a shard already has passes a full queue and the cap.
    if (h >= 0 && this.recent.has(h)) {
      this.counters.overload_passed++;
      return true;
    }
    if (room) {
      // The whole engine is at its cap: what the one-thread engine does with a full table.
      this.capRejected++;
      this.reject(listener, data, source);
      return false;
    }
    slot.overloaded++;
    if (this.opts.overload === "drop") {
      this.counters.overload_dropped++;
      return false;
    }
    this.counters.overload_rejected++;
    this.reject(listener, data, source);
    return false;
  }

  /** The stateless 503 + Retry-After, from the raw bytes, to where §18.2.2 / RFC 3581 say. */
  private reject(listener: number, data: Buffer, source: Source): void {
    const res = buildReject(data, 503, "Service Unavailable", this.retryAfter);
    if (res) this.transports[listener]!.send(res, replyDestination(data, source));
  }

  /**
   * Live transactions of the whole engine as the coordinator knows them: each shard's last told
   * count plus the new requests on their way to it (each may become one). A little high while
   * requests are in flight (a retransmission or a refused request counts until acknowledged),
   * exact once the shards have reported.
   */
  private liveEstimate(): number {
    let n = 0;
    for (const s of this.slots) n += s.live + s.newInFlight;
    return n;
  }
}
