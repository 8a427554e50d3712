/**
 * Stateless forwarding (RFC 3261 §16.11) for what a stateful proxy relays
 * outside any transaction: the ACK of a 2xx (a new transaction end to end,
 * §13.2.2.4) and a 2xx to an INVITE that arrives after its client
 * transaction ended. Nothing is kept.
 *
 * Both are narrowed so that they cannot be used to reflect traffic at a third
 * party: an ACK is forwarded only when it is on our route (a Route we
 * recorded, or a Request-URI of ours from a strict router) or belongs to an
 * INVITE we relayed whose server transaction is still Accepted, a response only
 * when it is a 2xx to an INVITE whose branch carries our cookie for the Via
 * it would go to (proxy/cookie.ts). Everything refused is counted in
 * `stats.stray_dropped`.
 */
import { createHash } from "node:crypto";
import { type EngineContext, internals } from "../engine/context.js";
import type { Engine } from "../engine.js";
import { BRANCH_COOKIE } from "../message/ids.js";
import { uriOfNameAddr } from "../message/nameaddr.js";
import type { SipRequest, SipResponse } from "../message/types.js";
import { unbracket } from "../transport/address.js";
import type { Destination, Source } from "../transport/types.js";
import { ownRouteProcessing, uriHostPort } from "./routing.js";

/**
 * Forward a request (the ACK of a 2xx) statelessly along its Route set or
 * Request-URI. The branch is derived from the incoming one (§16.11), so a
 * retransmission gets the same branch. Returns false, and counts it, when it
 * is not forwarded: not on our route, Max-Forwards exhausted, no route.
 * `opts.nextHop`: send it there instead (a flow, RFC 5626 §5.3), once the
 * checks above passed.
 */
export function forwardRequestStateless(
  engine: Engine,
  req: SipRequest,
  _source: Source,
  opts: { nextHop?: Destination } = {},
): boolean {
  const ctx = internals(engine);
  if (req.maxForwards === 0) return dropped(ctx);
  // Only along a route we are on, or for an INVITE we relayed and still hold (Accepted):
  // an ACK that is neither would make us an open relay.
  const relayed = ctx.relayedAck(req);
  if (!ownRouteProcessing(engine, req) && !relayed) return dropped(ctx);
  req.setMaxForwards(req.maxForwards === undefined ? 70 : req.maxForwards - 1);
  let dest: Destination;
  const route = req.headerValues("route")[0];
  if (!route) {
    // A request whose Request-URI is ours and has no Route left ends here (it would come back to us).
    const own = uriHostPort(req.uri);
    if (own && engine.isLocal(own.host, own.port)) return dropped(ctx);
  }
  if (opts.nextHop) dest = opts.nextHop;
  else
    try {
      const target = route ? uriOfNameAddr(route) : req.uri;
      dest = ctx.addressing.resolveNextHop(target);
    } catch {
      return dropped(ctx);
    }
  const digest = createHash("sha1")
    .update(`${req.via.branch ?? req.via.raw}\n${req.uri}`)
    .digest("hex")
    .slice(0, 32); // 128 bits, in hex like every id of ours (message/ids.ts says why)
  req.pushVia(ctx.addressing.viaFor(dest, `${BRANCH_COOKIE}${digest}`));
  ctx.sendStateless(req.toBuffer(), dest);
  return true;
}

/**
 * Forward a late 2xx to an INVITE statelessly: the top Via must be ours with
 * our cookie for the Via below it; it is removed and the response goes to
 * that next Via (§18.2.2 with received/rport, RFC 3581). Anything else
 * returns false and is counted.
 */
export function forwardResponseStateless(engine: Engine, res: SipResponse): boolean {
  const ctx = internals(engine);
  if (res.status < 200 || res.status >= 300 || res.cseq.method !== "INVITE") return dropped(ctx);
  const top = res.via;
  if (res.viaCount < 2 || top.branch === undefined || !engine.isLocal(top.host, top.port))
    return dropped(ctx);
  try {
    res.popVia();
  } catch {
    // The Via below ours is malformed (SipParseError): nowhere to send it.
    return dropped(ctx);
  }
  const via = res.via;
  if (!ctx.branchCookie.verify(top.branch, via, res.callId)) return dropped(ctx);
  const address = unbracket(via.received ?? via.host);
  const port = typeof via.rport === "number" ? via.rport : (via.port ?? 5060);
  const protocol = via.transport === "TCP" || via.transport === "TLS" ? via.transport : "UDP";
  ctx.sendStateless(res.toBuffer(), { protocol, address, port });
  return true;
}

function dropped(ctx: Pick<EngineContext, "stats">): false {
  ctx.stats.stray_dropped++;
  return false;
}
