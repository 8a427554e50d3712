// Stateful proxy cases that look inside the core engine or use the system
// resolver. The forwarding, forking, CANCEL and Timer C cases run on both the
// core and the sharded engine: test/engines/relay.test.ts.
import { describe, expect, it } from "vitest";
import { internals } from "../../src/engine/context.js";
import type { Engine } from "../../src/engine.js";
import { type RelayOptions, type RelayTarget, relay } from "../../src/proxy/relay.js";
import { forwardRequestStateless } from "../../src/proxy/stateless.js";
import { type SeenRequest, seenRequest, Testbed } from "../../src/testing.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";

type Behaviour = (tx: ServerTransactionHandle, bed: Testbed) => void;

function setup(
  uasBehaviours: Behaviour[],
  relayOpts: (tx: ServerTransactionHandle) => RelayOptions = () => ({}),
) {
  const bed = new Testbed();
  const uac = bed.engine({ address: "127.0.0.1" });
  const seen: SeenRequest[] = [];
  const uases: Engine[] = uasBehaviours.map((behave, i) =>
    bed.engine({
      address: `127.0.0.${10 + i}`,
      onRequest: (tx) => {
        seen.push(seenRequest(i, tx.request));
        if (tx.method === "INVITE") behave(tx, bed);
        else tx.reply(200);
      },
    }),
  );
  const proxy = bed.engine({
    address: "127.0.0.5",
    onRequest: (tx) => relay(proxy, tx, relayOpts(tx)),
  });
  proxy.onStrayAck = (ack, source) => {
    forwardRequestStateless(proxy, ack, source);
  };
  const target = (i: number, q?: number): RelayTarget => ({ uri: `sip:uas${i}@127.0.0.${10 + i}`, q });
  const call = (uri = "sip:bob@127.0.0.5") => {
    const statuses: number[] = [];
    const h = uac.request({
      method: "INVITE",
      uri,
      from: "<sip:alice@127.0.0.1>",
      to: "<sip:bob@127.0.0.5>",
      nextHop: { protocol: "UDP", address: "127.0.0.5", port: 5060 },
      onResponse: (r) => statuses.push(r.status),
    });
    return { h, statuses };
  };
  return { bed, uac, proxy, uases, seen, target, call };
}

const answer: Behaviour = (tx) => {
  tx.reply(180);
  tx.reply(200, { headers: [["Contact", "<sip:uas@127.0.0.10>"]] });
};

describe("stateful proxy: core engine only", () => {
  it("a branch with no route fails alone (503) and does not leak the others", () => {
    // Alone, the branch with no route is a 503 of its own (§16.6 item 10), which goes upstream as
    // a 500 (§16.7 item 6: a proxy does not pass a 503 on).
    const bests: number[] = [];
    const lone = setup([answer], () => ({
      targets: [{ uri: "sip:x@unresolvable.invalid" }],
      onFailure: (best) => {
        bests.push(best.status);
        return undefined;
      },
    }));
    const a = lone.call();
    lone.bed.flush();
    expect(bests).toEqual([500]); // every branch failed: the failure hook saw it
    expect(a.h.outcome?.status).toBe(500);
    expect(lone.seen).toEqual([]);
    // Beside a branch that answers, it fails alone: the other one is tried and its 200 goes upstream.
    const { bed, call, seen, target } = setup([answer], () => ({
      targets: [{ uri: "sip:x@unresolvable.invalid" }, target(0)],
      onFailure: (best) => {
        bests.push(best.status);
        return undefined;
      },
    }));
    const { h } = call();
    bed.flush();
    expect(h.outcome?.status).toBe(200);
    expect(seen.map((s) => `${s.uas} ${s.method}`)).toEqual(["0 INVITE"]);
    expect(bests).toEqual([500]); // not called again: not every branch failed
  });

  it("an exception escaping into a timer (here: an observer) is contained and counted, the engine carries on", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    const uas = bed.engine({ address: "127.0.0.2", onRequest: (tx) => tx.reply(200) });
    internals(uas).observers.destroyed = () => {
      throw new Error("observer bug");
    };
    const h = uac.request({ method: "OPTIONS", uri: "sip:b@127.0.0.2", from: "<sip:a@x>", to: "<sip:b@y>" });
    bed.flush();
    expect(h.outcome?.status).toBe(200);
    bed.advance(40_000); // Timer J frees the server transaction: the observer throws inside the timer
    expect(uas.stats.internal_errors).toBe(1);
    expect(uas.stats.freed).toBe(uas.stats.created);
    const again = uac.request({
      method: "OPTIONS",
      uri: "sip:b@127.0.0.2",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
    });
    bed.flush();
    expect(again.outcome?.status).toBe(200);
  });
});
