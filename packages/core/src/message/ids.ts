/**
 * Identifiers: Via branch (RFC 3261 §8.1.1.7), tags (§19.3) and Call-IDs
 * (§8.1.1.4). Randomness comes from a pooled crypto.randomFillSync buffer,
 * refilled in blocks, so an id costs no system call.
 *
 * Rendered in lowercase hex, not the denser base64url: hex has no 'i', 'l',
 * 'm', 'o', 'q', 'r', 's', 't', 'v', 'x', so an id can never spell a header
 * name ("CSeq", "Via", "From", "To", "Call-ID", "Contact"…) in any case.
 * Peers that find a header by searching the raw message for its name do
 * exist: SIPp took a 180 whose To tag was "9HJag5CSeqC-" for something else
 * and left the call hanging (seen once in some 10⁵ calls of the load
 * benchmark). Every id keeps its random bits; it is only longer on the wire.
 */

import { randomFillSync } from "node:crypto";

/** RFC 3261 magic cookie every branch starts with. */
export const BRANCH_COOKIE = "z9hG4bK";

const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolPos = POOL_SIZE;

/** `n` fresh random bytes rendered in lowercase hex (2n characters). */
function randomText(n: number): string {
  if (poolPos + n > POOL_SIZE) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const s = pool.toString("hex", poolPos, poolPos + n);
  poolPos += n;
  return s;
}

/** "z9hG4bK" + prefix + 120 random bits (30 hex digits). */
export function newBranch(prefix = ""): string {
  return BRANCH_COOKIE + prefix + randomText(15);
}

/** A From/To tag with 72 random bits (18 hex digits; §19.3 asks for at least 32). */
export function newTag(): string {
  return randomText(9);
}

/** A Call-ID with 120 random bits, "@host" appended when given. */
export function newCallId(host?: string): string {
  const id = randomText(15);
  return host ? `${id}@${host}` : id;
}
