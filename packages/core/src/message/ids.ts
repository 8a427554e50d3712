/**
 * Identifiers: Via branch (RFC 3261 §8.1.1.7), tags (§19.3) and Call-IDs
 * (§8.1.1.4). Randomness comes from a pooled crypto.randomFillSync buffer,
 * refilled in blocks, so an id costs no system call.
 */

import { randomFillSync } from "node:crypto";

/** RFC 3261 magic cookie every branch starts with. */
export const BRANCH_COOKIE = "z9hG4bK";

const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolPos = POOL_SIZE;

/** `n` fresh random bytes rendered base64url (n multiple of 3 gives no padding). */
function randomText(n: number): string {
  if (poolPos + n > POOL_SIZE) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const s = pool.toString("base64url", poolPos, poolPos + n);
  poolPos += n;
  return s;
}

/** "z9hG4bK" + prefix + 120 random bits (20 base64url chars). */
export function newBranch(prefix = ""): string {
  return BRANCH_COOKIE + prefix + randomText(15);
}

/** A From/To tag with 72 random bits (12 base64url chars, all token characters). */
export function newTag(): string {
  return randomText(9);
}

/** A Call-ID with 120 random bits, "@host" appended when given. */
export function newCallId(host?: string): string {
  const id = randomText(15);
  return host ? `${id}@${host}` : id;
}
