/**
 * Stateless forwarding of a request that has no transaction: the ACK of a
 * 2xx passing through a proxy (RFC 3261 §16.11, §13.2.2.4). Loose routing
 * only (§16.4, §16.12): our own top Route is removed, the next hop is the
 * next Route or the Request-URI. The Via branch is derived from the incoming
 * one, so a retransmitted ACK leaves with the same branch (§16.11).
 *
 * A stop-gap in the server until @siptm/core's proxy offers it.
 */
import { createHash } from "node:crypto";
import { type Destination, parseNameAddr, type SipRequest } from "@siptm/core";
import type { RouteContext } from "./route.js";

export type ForwardResult = { sent: true; dest: Destination } | { sent: false; why: string };

export function forwardStateless(ctx: RouteContext, msg: SipRequest): ForwardResult {
  const engine = ctx.engine;
  const mf = msg.maxForwards ?? 70;
  if (mf <= 0) return { sent: false, why: "Max-Forwards is 0" };
  let routes = msg.headerValues("route");
  try {
    if (routes.length > 0 && ctx.isLocal(parseNameAddr(routes[0]!).uri.raw)) {
      msg.removeFirstValue("route");
      routes = routes.slice(1);
    }
    let target: string;
    if (routes.length > 0) {
      const next = parseNameAddr(routes[0]!).uri;
      if (!next.params.some(([n]) => n === "lr")) return { sent: false, why: "strict routing is not supported" };
      target = next.raw;
    } else {
      if (ctx.isLocal(msg.uri)) return { sent: false, why: "addressed to us" };
      target = msg.uri;
    }
    const dest = engine.resolveNextHop(target);
    const transport = engine.transportFor(dest.protocol);
    if (!transport) return { sent: false, why: `no ${dest.protocol} transport` };
    msg.setMaxForwards(mf - 1);
    const digest = createHash("sha1")
      .update(msg.via.branch ?? msg.via.raw)
      .digest("base64url")
      .slice(0, 22);
    const host = ctx.config.advertise ?? transport.localAddress;
    const sentBy = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
    msg.pushVia(`SIP/2.0/${dest.protocol} ${sentBy}:${transport.localPort};branch=z9hG4bKsl${digest}`);
    engine.sendStateless(msg.toBuffer(), dest);
    return { sent: true, dest };
  } catch (err) {
    return { sent: false, why: err instanceof Error ? err.message : String(err) };
  }
}
