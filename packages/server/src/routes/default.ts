/**
 * Built-in route `default`: a stateful proxy with an in-memory registrar.
 *
 *  - REGISTER for us (the Request-URI is ours: isLocal, port included) → the
 *    registrar (RFC 3261 §10.3): 200 with the current bindings. A REGISTER for
 *    another domain is relayed there (§10.3 step 1).
 *  - an initial request (no To tag) for one of our AORs (the Request-URI is
 *    ours) that is registered → relayed to its contacts (q-values: highest
 *    first, equal ones in parallel). A binding made over a connection (TCP,
 *    TLS, WS, WSS) is reached over that connection, whatever its Contact's
 *    host (RFC 5626 flows; a browser's is `*.invalid`); over UDP a Contact with
 *    a host name is reached where its REGISTER came from. Of the outbound
 *    bindings of one instance (RFC 5626 §7) only one at a time.
 *  - a request to the server itself (the Request-URI is ours, no Route but ours):
 *    OPTIONS without a user part → 200; an AOR whose bindings all went with
 *    their connections → 430 Flow Failed (outbound ones, RFC 5626 §5.3) or
 *    480 (ordinary ones); anything else → 404 (nobody registered under that name).
 *  - anything else → relayed by its Request-URI (Route set, in-dialog
 *    requests, other domains through RFC 3263): outside our domains the
 *    Request-URI is the only target (§16.5), whoever is registered here.
 *  - relayed requests without a To tag (they may create a dialog) get our
 *    Record-Route, unless --record-route off (§16.6 item 4). The side of it
 *    that faces a UA on a connection carries a flow token
 *    (`sip:TOKEN@host:port;transport=tcp;lr;ob`, RFC 5626 §5.3, flow.ts): a
 *    later request from the far side whose Route has the token goes over that
 *    connection — 430 Flow Failed when it closed (unless the Request-URI can be
 *    reached without it), 403 when the token's MAC does not verify.
 *  - who may (auth.ts, --users / --trusted / --open): a REGISTER for us needs credentials of
 *    the AOR's user (401, RFC 3261 §22.2); a request relayed anywhere but to a user registered
 *    here needs a From in our domain (else 403: no open relay) and, with --users, the From
 *    user's Proxy-Authorization (407, §22.3), which is removed before relaying; a request in a
 *    dialog along our Record-Route between one of ours and anyone is relayed unchallenged.
 *  - the ACK of a 2xx on our route, and a late 2xx to an INVITE whose branch
 *    carries our cookie (no transaction) → forwarded statelessly (§16.11),
 *    an ACK with a flow token over its flow; any other stray ACK or response
 *    is dropped (counted in `stray_dropped`, logged at debug at most once a
 *    second: a flood of them costs no log).
 */
import {
  forwardRequestStateless,
  forwardResponseStateless,
  parseUri,
  type RelayOptions,
  type RelayTarget,
  type ServerTransactionHandle,
  type SipRequest,
  type Source,
  TransactionError,
  type Uri,
  uriOfNameAddr,
} from "@siptm/core";
import { type AuthVerdict, removeConsumed } from "../auth.js";
import { type Flow, FlowTokens, flowDestination, flowOf, LiveFlows, sameFlow } from "../flow.js";
import { type Binding, hasIpContact } from "../registrar.js";
import { ALLOW, type RouteContext, type RouteHandlers } from "../route.js";

const IP_HOST = /^(\[[0-9a-fA-F:.]+\]|\d{1,3}(\.\d{1,3}){3})$/;

/**
 * What a request's Route says of flows (RFC 5626 §5.3): no token of ours; a token whose MAC does
 * not verify; the request came over the token's flow ("outgoing": routed as usual); the flow is
 * open ("incoming": sent over it); it closed.
 */
type FlowRoute =
  | { readonly kind: "none" | "forged" | "outgoing" }
  | { readonly kind: "incoming" | "gone"; readonly flow: Flow };

/** Our URI with a flow token as its user part and `ob` (RFC 5626 §5.3). */
function withToken(uri: string, token: string): string {
  const colon = uri.indexOf(":");
  return `${uri.slice(0, colon + 1)}${token}@${uri.slice(colon + 1)};ob`;
}

/**
 * The Request-URI can be reached without the flow: an IP-literal host and no `ob` (a carrier, or a
 * UA with a routable Contact whose connection merely closed idle).
 */
function reachableWithoutFlow(uri: string): boolean {
  try {
    const u = parseUri(uri);
    return u.type === "sip" && hasIpContact(uri) && !u.params.some(([n]) => n === "ob");
  } catch {
    return false;
  }
}

export default function defaultRoute(ctx: RouteContext): RouteHandlers {
  const { registrar, logger, engine } = ctx;
  // One debug line a second at most for what the stateless forwarding refuses, with how many since.
  let strayLoggedAt = Number.NEGATIVE_INFINITY;
  let strayUnlogged = 0;
  function strayDropped(what: string, callId: string): void {
    strayUnlogged++;
    const now = engine.clock.now();
    if (now - strayLoggedAt < 1000) return;
    logger.debug({ callId, dropped: strayUnlogged }, `stray ${what} not forwarded`);
    strayLoggedAt = now;
    strayUnlogged = 0;
  }

  function reply(
    tx: ServerTransactionHandle,
    status: number,
    reason?: string,
    headers?: Array<[string, string]>,
  ) {
    if (tx.finalStatus || tx.terminated) return;
    try {
      tx.reply(status, { reason, headers });
    } catch (err) {
      if (!(err instanceof TransactionError)) throw err;
    }
  }

  function relay(tx: ServerTransactionHandle, opts?: RelayOptions): void {
    try {
      ctx.relay(tx, opts);
    } catch (err) {
      logger.warn({ tx: tx.id, err: err instanceof Error ? err.message : String(err) }, "relay failed");
      reply(tx, 500, "Server Internal Error");
    }
  }

  // Flow tokens of this route (one thread, or this shard: every request of a dialog comes to the
  // shard of its Call-ID, the one that made the token), and the flows they were made for while
  // those are open (the registrar tells every close, also in a shard's replica).
  const tokens = new FlowTokens(ctx.keys.flowToken);
  const live = new LiveFlows();
  const unwatch = registrar.watchFlows((flow) => live.closed(flow));
  /** The flow of each target made for a binding on one (for its side of the Record-Route). */
  const targetFlows = new WeakMap<RelayTarget, Flow>();

  function target(b: Binding): RelayTarget {
    // RFC 5626: a binding made over a connection is reached over it, whatever its Contact's host.
    if (b.flow) {
      const t: RelayTarget = { uri: b.uri, q: b.q, nextHop: flowDestination(b.flow) };
      targetFlows.set(t, b.flow);
      return t;
    }
    let host = "";
    try {
      const u = parseUri(b.uri);
      if (u.type === "sip") host = u.host;
    } catch {
      // unparseable contacts were refused at REGISTER time
    }
    // Over UDP, an outbound binding (its flow is the source, RFC 5626 §5.3) or a Contact with a
    // host name (a UA behind NAT, or .invalid): reach it where its REGISTER came from.
    if ((b.regId !== undefined || !IP_HOST.test(host)) && b.source)
      return {
        uri: b.uri,
        q: b.q,
        nextHop: { protocol: b.source.protocol, address: b.source.address, port: b.source.port },
      };
    return { uri: b.uri, q: b.q };
  }

  /**
   * The targets of an AOR's bindings. RFC 5626 §7: no more than one contact of one instance's
   * outbound bindings at a time — the one registered last (its expiry furthest away).
   */
  function targetsOf(bindings: readonly Binding[]): RelayTarget[] {
    const byInstance = new Map<string, Binding>();
    const out: Binding[] = [];
    for (const b of bindings) {
      if (b.instance === undefined || b.regId === undefined) out.push(b);
      else {
        const seen = byInstance.get(b.instance);
        if (!seen || b.expiresAt > seen.expiresAt) byInstance.set(b.instance, b);
      }
    }
    out.push(...byInstance.values());
    return out.sort((a, b) => b.q - a.q).map(target);
  }

  /**
   * The Record-Route URIs of a relay of `tx` (RFC 5626 §5.3): the side facing a UA on a flow — the
   * sender's, when the request came over one; a target's, when its branch goes over one — carries
   * that flow's token. Undefined when no flow is involved.
   */
  function flowRecordRoute(
    tx: ServerTransactionHandle,
    targets?: RelayTarget[],
  ): RelayOptions["recordRouteUri"] {
    const from = flowOf(tx.source);
    if (!from && !targets?.some((t) => targetFlows.has(t))) return undefined;
    return (uri, side, dest, t) => {
      const flow = side === "inbound" ? from : targetFlows.get(t);
      if (!flow || (side === "outbound" && dest?.connectionId !== flow.connectionId)) return uri;
      live.add(flow);
      return withToken(uri, tokens.encode(flow));
    };
  }

  /**
   * RFC 5626 §5.3: a Route of ours at the top (one, or the pair of a double Record-Route, RFC
   * 5658) with a user part is a flow token. One of the flow the request came over is "outgoing":
   * it is passed over and the next one of ours is looked at (both sides of a dialog between two
   * UAs on flows have a token). A token whose MAC does not verify is "forged": the URI is ours
   * and we never write another user part there, so it was made or edited by someone else — §5.3
   * answers it 403 rather than routing it as if it were not ours.
   */
  function flowRoute(req: SipRequest, source: Source): FlowRoute {
    const routes = req.headerValues("route");
    const from = flowOf(source);
    let kind: "none" | "outgoing" = "none";
    for (let i = 0; i < routes.length && i < 2; i++) {
      let u: Uri;
      try {
        const raw = uriOfNameAddr(routes[i]!);
        if (!ctx.isLocal(raw)) break;
        u = parseUri(raw);
      } catch {
        break;
      }
      if (u.type !== "sip" || u.rawUser === undefined) continue;
      const flow = tokens.decode(u.rawUser);
      if (!flow) return { kind: "forged" };
      if (from && sameFlow(from, flow)) {
        kind = "outgoing";
        continue;
      }
      return { kind: live.has(flow) ? "incoming" : "gone", flow };
    }
    return { kind };
  }

  const { auth } = ctx;

  /** Go on with `then` when the verdict lets the request through, else answer it as it says. */
  function checked(
    tx: ServerTransactionHandle,
    verdict: Promise<AuthVerdict> | AuthVerdict,
    then: (v: AuthVerdict & { ok: true }) => void,
  ): void {
    Promise.resolve(verdict).then(
      (v) => {
        if (tx.finalStatus || tx.terminated) return;
        if (v.ok) then(v);
        else {
          logger.debug({ tx: tx.id, method: tx.method, status: v.status }, "refused");
          reply(tx, v.status, v.reason, v.headers);
        }
      },
      (err: unknown) => {
        logger.warn({ tx: tx.id, err: err instanceof Error ? err.message : String(err) }, "auth failed");
        reply(tx, 500, "Server Internal Error");
      },
    );
  }

  /** Relay options that remove the Proxy-Authorization value we consumed (RFC 3261 §22.3). */
  function consuming(v: AuthVerdict & { ok: true }, opts: RelayOptions): RelayOptions {
    const index = v.consumed;
    if (index === undefined) return opts;
    return { ...opts, onBranch: (b) => removeConsumed(b.request, index) };
  }

  /**
   * A request in a dialog (To tag) along our Record-Route (our Route on top) whose From or To is
   * in our domain: it follows a dialog we let through (a call to or from one of ours), and is
   * relayed unchallenged, as Kamailio's loose_route() does in its default configuration.
   */
  function inOurDialog(req: SipRequest): boolean {
    if (req.toTag === undefined) return false;
    const top = req.headerValues("route")[0];
    let ours = false;
    try {
      ours = top !== undefined && ctx.isLocal(uriOfNameAddr(top));
    } catch {
      ours = false;
    }
    if (!ours) return false;
    const party = (h: string | undefined) => {
      try {
        return h !== undefined && auth.ourDomain(uriOfNameAddr(h));
      } catch {
        return false;
      }
    };
    return party(req.header("from")) || party(req.header("to"));
  }

  return {
    description: `default: stateful proxy + in-memory registrar${
      auth.config.open ? " (open: no authentication)" : auth.authenticating ? " + digest authentication" : ""
    }`,
    onRequest(tx) {
      const req = tx.request;
      // Our domain is our addresses with our ports: an AOR drops the port, so a URI for another
      // server on this host (sip:bob@127.0.0.1:6050) must not reach the registrar's bindings.
      const local = ctx.isLocal(req.uri);
      if (req.method === "REGISTER") {
        if (local) {
          // §10.3 steps 2–3: authenticate, and the credentials must be the AOR's own.
          checked(tx, auth.register(req, tx.source), () => {
            const out = registrar.register(req, tx.source);
            logger.debug({ aor: out.aor, status: out.status }, "REGISTER");
            reply(tx, out.status, out.reason, out.headers);
          });
        } else {
          // §10.3 step 1: we have no bindings for that domain, and a registrar that is also a
          // proxy SHOULD forward the REGISTER to it (§16) — only for our own users, and never
          // with --users (no relaying of registrations). No Record-Route: it makes no dialog.
          checked(tx, auth.registerElsewhere(req, tx.source), () => relay(tx));
        }
        return;
      }
      // §16.6 item 4: stay in the dialog a request may create (none exists with a To tag).
      const recordRoute = ctx.config.recordRoute && req.toTag === undefined;
      // RFC 5626 §5.3: a request along a Record-Route of ours with a flow token.
      const fr = flowRoute(req, tx.source);
      if (fr.kind === "forged") {
        reply(tx, 403, "Forbidden");
        return;
      }
      if (fr.kind === "gone" && !reachableWithoutFlow(req.uri)) {
        reply(tx, 430, "Flow Failed");
        return;
      }
      if (fr.kind === "incoming") {
        const targets = [{ uri: req.uri, nextHop: flowDestination(fr.flow) }];
        relay(tx, { targets, recordRoute, recordRouteUri: recordRoute ? flowRecordRoute(tx) : undefined });
        return;
      }
      if (local && req.toTag === undefined) {
        const bindings = registrar.lookup(req.uri);
        if (bindings.length > 0) {
          const targets = targetsOf(bindings);
          relay(tx, {
            targets,
            recordRoute,
            recordRouteUri: recordRoute ? flowRecordRoute(tx, targets) : undefined,
          });
          return;
        }
      }
      // Ours, and routed nowhere else: a Route naming only us (a UA's outbound proxy setting,
      // §8.1.2) would be removed by loose routing (§16.4) and leave the request with us.
      if (local && req.headerValues("route").every((r) => ctx.isLocal(uriOfNameAddr(r)))) {
        let uri: Uri | undefined;
        try {
          uri = parseUri(req.uri);
        } catch {
          uri = undefined;
        }
        const user = uri?.type === "sip" ? uri.user : undefined;
        if (user === undefined && req.method === "OPTIONS")
          reply(tx, 200, undefined, [
            ["Allow", ALLOW],
            ["Accept", "application/sdp"],
          ]);
        else {
          // The AOR's bindings went with their connections (registrar.ts `lost`): RFC 5626 §5.3
          // names 430 for a flow that failed (outbound); an ordinary binding's UA is not
          // reachable now (480, RFC 3261 §21.4.18); nobody registered: 404.
          const lost = user === undefined || req.toTag !== undefined ? undefined : registrar.lost(req.uri);
          if (lost === "outbound") reply(tx, 430, "Flow Failed");
          else if (lost === "flow") reply(tx, 480, "Temporarily Unavailable");
          else reply(tx, 404, "Not Found");
        }
        return;
      }
      const opts: RelayOptions = {
        recordRoute,
        recordRouteUri: recordRoute ? flowRecordRoute(tx) : undefined,
      };
      if (inOurDialog(req)) {
        relay(tx, opts);
        return;
      }
      // Anywhere else: our users only (no open relay), authenticated with --users (§22.3).
      checked(tx, auth.relay(req, tx.source), (v) => relay(tx, consuming(v, opts)));
    },
    onStrayAck(ack, source) {
      // The ACK of a 2xx towards a UA on a flow goes over it (RFC 5626 §5.3); nothing answers an
      // ACK, so one with a forged token or for a closed flow is dropped.
      const fr = flowRoute(ack, source);
      const sent =
        fr.kind === "forged" || (fr.kind === "gone" && !reachableWithoutFlow(ack.uri))
          ? false
          : forwardRequestStateless(
              engine,
              ack,
              source,
              fr.kind === "incoming" ? { nextHop: flowDestination(fr.flow) } : {},
            );
      if (!sent) strayDropped("ACK", ack.callId);
    },
    onStrayResponse(res) {
      if (!forwardResponseStateless(engine, res)) strayDropped("response", res.callId);
    },
    close() {
      unwatch();
    },
  };
}
