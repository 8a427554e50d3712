/**
 * Best-response selection of a stateful proxy, RFC 3261 §16.7 items 6–7:
 * a 6xx if there is one; else the lowest class, preferring responses that let
 * the caller resubmit (401, 407, 415, 420, 484); a 503 is turned into a 500;
 * with no response at all, a 408. For a chosen 401/407, the challenges of all
 * 401/407 responses are merged.
 */
import type { SipResponse } from "../message/types.js";

/** A branch outcome: a received response, or a local one (timeout 408, transport error 503). */
export type BranchFinal = { status: number; reason: string; response?: SipResponse | undefined };

export interface Selection {
  /** The status to send upstream. */
  status: number;
  reason: string;
  /** The response to relay (Vias popped by the caller); undefined when the proxy must generate one. */
  response: SipResponse | undefined;
  /** Challenges to add when the selection is a 401/407 (§16.7 item 7). */
  challenges: Array<[string, string]>;
}

const RESUBMIT = new Set([401, 407, 415, 420, 484]);

export function selectBest(finals: readonly BranchFinal[]): Selection {
  if (finals.length === 0)
    return { status: 408, reason: "Request Timeout", response: undefined, challenges: [] };
  let best: BranchFinal | undefined;
  for (const f of finals) {
    if (f.status >= 600) {
      best = f;
      break;
    }
  }
  if (!best) {
    let lowestClass = 10;
    for (const f of finals) lowestClass = Math.min(lowestClass, (f.status / 100) | 0);
    const inClass = finals.filter((f) => ((f.status / 100) | 0) === lowestClass);
    best = inClass.find((f) => RESUBMIT.has(f.status)) ?? inClass[0]!;
  }
  const challenges: Array<[string, string]> = [];
  if (best.status === 401 || best.status === 407) {
    for (const f of finals) {
      if ((f.status !== 401 && f.status !== 407) || !f.response || f === best) continue;
      for (const v of f.response.headerLines("www-authenticate")) challenges.push(["WWW-Authenticate", v]);
      for (const v of f.response.headerLines("proxy-authenticate"))
        challenges.push(["Proxy-Authenticate", v]);
    }
  }
  if (best.status === 503)
    return { status: 500, reason: "Server Internal Error", response: undefined, challenges };
  return { status: best.status, reason: best.reason, response: best.response, challenges };
}
