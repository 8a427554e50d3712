/**
 * Stateless forwarding (RFC 3261 §16.11) for what a stateful proxy relays
 * outside any transaction: the ACK of a 2xx (a new transaction end to end,
 * §13.2.2.4) and 2xx responses that arrive after their client transaction
 * ended. Nothing is kept.
 */
import { createHash } from "node:crypto";
import type { Engine } from "../engine.js";
import type { SipRequest, SipResponse } from "../message/types.js";
import type { Destination, Source } from "../transport/types.js";
import { ownRouteProcessing, uriHostPort } from "./routing.js";

/**
 * Forward a request statelessly along its Route set or Request-URI. The
 * branch is derived from the incoming one (§16.11), so a retransmission gets
 * the same branch. Returns false when it cannot be forwarded (Max-Forwards
 * exhausted, no route).
 */
export function forwardRequestStateless(engine: Engine, req: SipRequest, _source: Source): boolean {
  if (req.maxForwards === 0) return false;
  ownRouteProcessing(engine, req);
  req.setMaxForwards(req.maxForwards === undefined ? 70 : req.maxForwards - 1);
  let dest: Destination;
  const route = req.headerValues("route")[0];
  if (!route) {
    // A request whose Request-URI is ours and has no Route left ends here (it would come back to us).
    const own = uriHostPort(req.uri);
    if (own && engine.isLocal(own.host, own.port)) return false;
  }
  try {
    const target = route ? route.slice(route.indexOf("<") + 1, route.indexOf(">")) : req.uri;
    dest = engine.resolveNextHop(target);
  } catch {
    return false;
  }
  const digest = createHash("sha1")
    .update(`${req.via.branch ?? req.via.raw}\n${req.uri}`)
    .digest("hex")
    .slice(0, 32); // 128 bits, in hex like every id of ours (message/ids.ts says why)
  req.pushVia(engine.viaFor(dest, `z9hG4bK${digest}`));
  engine.sendStateless(req.toBuffer(), dest);
  return true;
}

/**
 * Forward a response statelessly: the top Via must be ours; it is removed and
 * the response goes to the next Via (§18.2.2 with received/rport, RFC 3581).
 */
export function forwardResponseStateless(engine: Engine, res: SipResponse): boolean {
  if (res.viaCount < 2 || !engine.isLocal(res.via.host, res.via.port)) return false;
  res.popVia();
  const via = res.via;
  const host = via.received ?? via.host;
  const address = host.startsWith("[") ? host.slice(1, -1) : host;
  const port = typeof via.rport === "number" ? via.rport : (via.port ?? 5060);
  const protocol = via.transport === "TCP" || via.transport === "TLS" ? via.transport : "UDP";
  engine.sendStateless(res.toBuffer(), { protocol, address, port });
  return true;
}
