/** Route processing and loop detection of a proxy (RFC 3261 §16.3 item 4, §16.4, §16.6 item 8). */

import { uriOfNameAddr } from "../message/nameaddr.js";
import type { SipRequest } from "../message/types.js";
import { parseUri } from "../message/uri.js";

/** Who decides which addresses are ours: the engine, or its addressing. */
export interface Locality {
  isLocal(host: string, port: number | undefined): boolean;
}

/** Host and port of a SIP URI (undefined port when absent); undefined when it is not a SIP URI with a host. */
export function uriHostPort(
  uri: string,
): { host: string; port: number | undefined; user: string | undefined } | undefined {
  try {
    const u = parseUri(uri) as { host?: string; port?: number; user?: string };
    if (!u.host) return undefined;
    return { host: u.host, port: u.port, user: u.user };
  } catch {
    return undefined;
  }
}

/**
 * §16.4: a Request-URI that is a URI we put in Record-Route means a strict
 * router sent it: the last Route value becomes the Request-URI. Then a top
 * Route that is ours is removed (loose routing), with the second of a double
 * Record-Route pair (RFC 5658). Returns true when the request named us in
 * either way (we are on its route).
 */
export function ownRouteProcessing(engine: Locality, req: SipRequest): boolean {
  let ours = false;
  const routes = req.headerValues("route");
  if (routes.length) {
    const r = uriHostPort(req.uri);
    if (r && r.user === undefined && engine.isLocal(r.host, r.port)) {
      const last = routes[routes.length - 1]!;
      const kept = routes.slice(0, -1);
      req.removeHeader("route");
      for (const v of kept) req.appendHeader("Route", v);
      req.setUri(uriOfNameAddr(last));
      ours = true;
    }
  }
  const top = req.headerValues("route")[0];
  if (top === undefined) return ours;
  const first = uriOfNameAddr(top);
  const r = uriHostPort(first);
  if (!r || !engine.isLocal(r.host, r.port)) return ours;
  req.removeFirstValue("route");
  // RFC 5658 §4: a double Record-Route (one URI per transport or socket, relay.ts) comes back as
  // two Route values of ours in a row; the second goes too. The same URI twice is a spiral
  // through us, each pass of which removes its own.
  const next = req.headerValues("route")[0];
  if (next === undefined) return true;
  const second = uriOfNameAddr(next);
  if (second === first) return true;
  const n = uriHostPort(second);
  if (n && engine.isLocal(n.host, n.port)) req.removeFirstValue("route");
  return true;
}

/** FNV-1a, 32 bits, as 8 hex digits. Not cryptographic: it tells a loop from a spiral. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/**
 * §16.6 item 8: the part of our branch that changes when the request would be
 * routed differently: To tag, From tag, Call-ID, Request-URI as received, CSeq
 * number, Proxy-Require, Proxy-Authorization (and Route). The top Via is left
 * out, so the same request coming back through another hop hashes the same.
 */
export function loopHash(req: SipRequest): string {
  return fnv1a(
    [
      req.toTag ?? "",
      req.fromTag ?? "",
      req.callId,
      req.uri,
      String(req.cseq.seq),
      req.headerLines("proxy-require").join(","),
      req.headerLines("proxy-authorization").join(","),
      req.headerLines("route").join(","),
    ].join("\n"),
  );
}

/** §16.3 item 4: a Via of ours whose branch carries this request's hash is a loop (a different hash is a spiral). */
export function isLoop(engine: Locality, req: SipRequest): boolean {
  const hash = loopHash(req);
  for (const v of req.headerValues("via")) {
    const semi = v.indexOf(";");
    const sentBy = (semi < 0 ? v : v.slice(0, semi)).trim().split(/\s+/)[1];
    if (!sentBy) continue;
    const m = /^(\[[^\]]*\]|[^:]+)(?::(\d+))?$/.exec(sentBy);
    if (!m || !engine.isLocal(m[1]!, m[2] ? Number(m[2]) : undefined)) continue;
    const b = /;\s*branch\s*=\s*([^;\s]+)/i.exec(v);
    if (b?.[1]?.includes(`${hash}.`)) return true;
  }
  return false;
}
