/**
 * Built-in route `default`: a stateful proxy with an in-memory registrar.
 *
 *  - REGISTER for us (the Request-URI is ours: isLocal, port included) → the
 *    registrar (RFC 3261 §10.3): 200 with the current bindings. A REGISTER for
 *    another domain is relayed there (§10.3 step 1).
 *  - an initial request (no To tag) for one of our AORs (the Request-URI is
 *    ours) that is registered → relayed to its contacts (q-values: highest
 *    first, equal ones in parallel).
 *  - a request to the server itself (the Request-URI is ours, no Route but ours):
 *    OPTIONS without a user part → 200; anything else → 404 (nobody
 *    registered under that name).
 *  - anything else → relayed by its Request-URI (Route set, in-dialog
 *    requests, other domains through RFC 3263): outside our domains the
 *    Request-URI is the only target (§16.5), whoever is registered here.
 *  - relayed requests without a To tag (they may create a dialog) get our
 *    Record-Route, unless --record-route off (§16.6 item 4).
 *  - the ACK of a 2xx on our route, and a late 2xx to an INVITE whose branch
 *    carries our cookie (no transaction) → forwarded statelessly (§16.11);
 *    any other stray ACK or response is dropped (counted in `stray_dropped`,
 *    logged at debug at most once a second: a flood of them costs no log).
 */
import {
  forwardRequestStateless,
  forwardResponseStateless,
  parseUri,
  type RelayOptions,
  type RelayTarget,
  type ServerTransactionHandle,
  TransactionError,
  type Uri,
  uriOfNameAddr,
} from "@siptm/core";
import type { Binding } from "../registrar.js";
import { ALLOW, type RouteContext, type RouteHandlers } from "../route.js";

const IP_HOST = /^(\[[0-9a-fA-F:.]+\]|\d{1,3}(\.\d{1,3}){3})$/;

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

  function target(b: Binding): RelayTarget {
    let host = "";
    try {
      const u = parseUri(b.uri);
      if (u.type === "sip") host = u.host;
    } catch {
      // unparseable contacts were refused at REGISTER time
    }
    // A Contact with a host name (a UA behind NAT, or .invalid): reach it where its REGISTER came from.
    if (!IP_HOST.test(host) && b.source)
      return {
        uri: b.uri,
        q: b.q,
        nextHop: { protocol: b.source.protocol, address: b.source.address, port: b.source.port },
      };
    return { uri: b.uri, q: b.q };
  }

  return {
    description: "default: stateful proxy + in-memory registrar",
    onRequest(tx) {
      const req = tx.request;
      // Our domain is our addresses with our ports: an AOR drops the port, so a URI for another
      // server on this host (sip:bob@127.0.0.1:6050) must not reach the registrar's bindings.
      const local = ctx.isLocal(req.uri);
      if (req.method === "REGISTER") {
        if (local) {
          const out = registrar.register(req, tx.source);
          logger.debug({ aor: out.aor, status: out.status }, "REGISTER");
          reply(tx, out.status, out.reason, out.headers);
        } else {
          // §10.3 step 1: we have no bindings for that domain, and a registrar that is also a
          // proxy SHOULD forward the REGISTER to it (§16). No Record-Route: it makes no dialog.
          relay(tx);
        }
        return;
      }
      // §16.6 item 4: stay in the dialog a request may create (none exists with a To tag).
      const recordRoute = ctx.config.recordRoute && req.toTag === undefined;
      if (local && req.toTag === undefined) {
        const bindings = registrar.lookup(req.uri);
        if (bindings.length > 0) {
          relay(tx, { targets: bindings.map(target), recordRoute });
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
        else reply(tx, 404, "Not Found");
        return;
      }
      relay(tx, { recordRoute });
    },
    onStrayAck(ack, source) {
      if (!forwardRequestStateless(engine, ack, source)) strayDropped("ACK", ack.callId);
    },
    onStrayResponse(res) {
      if (!forwardResponseStateless(engine, res)) strayDropped("response", res.callId);
    },
  };
}
