/**
 * A proof, carried in the Via branch of a request we relay, that a response
 * naming that branch may be forwarded statelessly to the Via below ours.
 *
 * RFC 6026 (its update to RFC 3261 §16.7) keeps a proxy's INVITE server
 * transaction in Accepted for 64·T1 to forward 2xx retransmissions, so a
 * stateful proxy has no need to forward responses matching no transaction.
 * Forwarding any such response to its second Via would turn us into a
 * reflector: anybody can send us a response whose top Via names us and whose
 * second Via names a victim. A late 2xx to an INVITE (after the transaction
 * ended, or lost with a restarted shard) is still worth forwarding, since
 * nobody else can deliver it; we forward it only when its branch carries a
 * tag we made, a MAC over the branch and the Via below ours as we sent it:
 * SipHash-2-4 (message/siphash.ts), a keyed PRF for short inputs, about a
 * tenth of the cost of an HMAC-SHA256 per relayed INVITE.
 * A response whose Via below ours was changed fails the check, so the tag
 * never sends bytes anywhere but where the request really came from.
 *
 * The key comes from configuration (every node of a cluster shares it, so
 * any of them can verify a branch another one made) or, for one process
 * alone, is random.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { type HashKey, hashBytes64, hashKey } from "../message/siphash.js";
import type { Via } from "../message/types.js";

/** Hex digits of the tag: 64 bits, enough against guessing within a branch's lifetime. */
const TAG_LENGTH = 16;
const SEPARATOR = ".";

export class BranchCookie {
  private readonly key: HashKey;

  /** `key`: 16 bytes are the SipHash key itself; a longer key (or text) is condensed to 16 by SHA-256. */
  constructor(key?: Uint8Array | string) {
    const raw =
      key === undefined ? randomBytes(16) : typeof key === "string" ? Buffer.from(key, "utf8") : key;
    if (raw.length < 16) throw new RangeError("branch cookie key: at least 16 bytes");
    this.key = hashKey(raw.length === 16 ? raw : createHash("sha256").update(raw).digest().subarray(0, 16));
  }

  /** `branch` with our tag appended: the tag binds it to `upstream`, the Via below ours, and the Call-ID. */
  seal(branch: string, upstream: Via, callId: string): string {
    return branch + SEPARATOR + this.tag(branch, upstream, callId);
  }

  /** True when `branch` was made by `seal` with this key, for this upstream Via and Call-ID. */
  verify(branch: string, upstream: Via, callId: string): boolean {
    const dot = branch.lastIndexOf(SEPARATOR);
    if (dot < 0 || branch.length - dot - 1 !== TAG_LENGTH) return false;
    const expected = Buffer.from(this.tag(branch.slice(0, dot), upstream, callId), "latin1");
    const got = Buffer.from(branch.slice(dot + 1), "latin1");
    return timingSafeEqual(expected, got);
  }

  private tag(branch: string, upstream: Via, callId: string): string {
    // What decides where a forwarded response goes (§18.2.2, RFC 3581), and what names the request.
    const text = [
      branch,
      upstream.transport,
      upstream.host.toLowerCase(),
      upstream.port ?? "",
      upstream.received ?? "",
      typeof upstream.rport === "number" ? upstream.rport : "",
      upstream.branch ?? "",
      callId,
    ].join("\n");
    const mac = hashBytes64(this.key, Buffer.from(text, "latin1"));
    return Buffer.from(mac.buffer, mac.byteOffset, mac.byteLength).toString("hex");
  }
}
