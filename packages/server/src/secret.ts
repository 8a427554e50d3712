/**
 * Keys derived from the server's secret (`--secret`, `SIPTM_SECRET`, config
 * key `secret`). The nodes of a cluster share the secret, so each derives the
 * same key for the same purpose; each purpose has its own label, so one key
 * never serves two purposes and knowing one says nothing about another.
 *
 * The derivation is HMAC-SHA256(secret, label) (RFC 2104, a pseudorandom
 * function keyed by the secret), truncated to the length asked for.
 */
import { createHmac, randomBytes } from "node:crypto";

/** The shortest secret accepted (characters). */
export const MIN_SECRET_LENGTH = 16;

/** Label of the key of the Call-ID hash that picks a request's shard (`ShardedEngine` `hashKey`). */
export const SHARD_HASH_LABEL = "shard-hash";

/** Label of the key of the tag in relayed INVITE branches that lets a late 2xx through (core proxy/cookie.ts). */
export const BRANCH_COOKIE_LABEL = "branch-cookie";

/** Label of the MAC key of RFC 5626 flow tokens in Record-Route (flow.ts). */
export const FLOW_TOKEN_LABEL = "flow-token";

/** Label of the HMAC key of digest nonces (RFC 7616 §3.3; @siptm/core DigestAuth, auth.ts). */
export const DIGEST_NONCE_LABEL = "digest-nonce";

let processSecret: string | undefined;
/**
 * The server's secret: --secret when given, else one made at random once per
 * process (so the main thread and every shard, restarted or not, derive the
 * same keys; another process or node does not).
 */
export function secretOf(configured: string | undefined): string {
  if (configured !== undefined) return configured;
  processSecret ??= randomBytes(32).toString("hex");
  return processSecret;
}

/** The key for `label` (1 to 32 bytes, default 16) derived from `secret`. */
export function deriveKey(secret: string, label: string, bytes = 16): Uint8Array {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 32)
    throw new RangeError(`a derived key has 1 to 32 bytes, got ${bytes}`);
  return new Uint8Array(createHmac("sha256", secret).update(label, "utf8").digest().subarray(0, bytes));
}
