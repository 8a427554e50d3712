/**
 * The coordinator's own stateless answer to a request it will not hand to a
 * shard (overload, closing): built from the raw bytes by the core's line scan
 * (`buildReject`), without the parser — this runs exactly when the main
 * thread is busiest. §21.5.4: 503 with Retry-After.
 */
import type { Destination, Source } from "@siptm/core";
import { replyDestination as replyTo } from "@siptm/core/internal";
import { newViaScan, scanTopVia } from "./scan.js";

export { buildReject } from "@siptm/core/internal";

/** Where a response to this request goes (§18.2.2, RFC 3581), from its top Via scanned in place. */
export function replyDestination(data: Buffer, source: Source): Destination {
  if (source.protocol !== "UDP") return replyTo(source);
  const via = newViaScan();
  scanTopVia(data, via);
  return replyTo(source, { rport: via.rport ? null : undefined, port: via.port >= 0 ? via.port : undefined });
}
