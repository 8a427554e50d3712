/**
 * The shard of a Call-ID: SipHash-2-4 of its bytes under a 128-bit key.
 *
 * Why a keyed hash: the Call-ID is chosen by whoever sends the request. With
 * an unkeyed hash (this was FNV-1a) anyone can compute offline which Call-IDs
 * land on one shard and aim a flood at it, filling that shard while the others
 * idle. Under a secret key the mapping is unpredictable to the sender, so such
 * a flood spreads like any other traffic.
 *
 * SipHash-2-4 (core message/siphash.ts) is a pseudorandom function designed
 * for exactly this — short inputs under a secret key, keeping attackers from
 * steering a hash table; a Call-ID (10–60 bytes, 2–8 blocks) costs a fraction
 * of a microsecond, beside the ~13 µs the coordinator spends per message
 * (bench: `npm run bench:hash -w @siptm/bench`).
 *
 * Stable across machines when the key is: the cluster's nodes derive it from
 * their shared secret (`--secret` of @siptm/server), so every node maps a
 * Call-ID to the same shard number. Without a configured key,
 * `defaultHashKey()` is random per process — right for one node.
 *
 * `hashString` gives the same value as `hashBytes` over the string's latin1
 * bytes — the core writes and reads header values as latin1 byte strings — so
 * a Call-ID the coordinator makes for a local request, or one a user passes to
 * `cancel(callId, …)`, lands on the same shard as the datagrams that carry it.
 */

import { randomBytes } from "node:crypto";
import { type HashKey, hashBytes, hashString } from "@siptm/core/internal";

// SipHash-2-4 itself lives in the core (message/siphash.ts), which uses it too.
export { type HashKey, hashBytes, hashBytes64, hashKey, hashString } from "@siptm/core/internal";

let processKey: Uint8Array | undefined;

/** This process's random key (made once): what the shard choice uses when none is configured. */
export function defaultHashKey(): Uint8Array {
  processKey ??= new Uint8Array(randomBytes(16));
  return processKey;
}

/**
 * The shard (0 … n-1) that owns a Call-ID: the keyed hash modulo n. Plain
 * modulo is right inside one process, where n is fixed for the engine's life;
 * a front that changes its number of machines at run time would want a
 * consistent hash (jump hash) over the same value.
 */
export function shardOf(callId: string | Uint8Array, n: number, key: HashKey): number {
  if (n <= 1) return 0;
  const h = typeof callId === "string" ? hashString(key, callId) : hashBytes(key, callId);
  return h % n;
}
