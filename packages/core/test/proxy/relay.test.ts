// Stateful proxy (RFC 3261 §16): forwarding, forking, best response, CANCEL
// propagation, Timer C, loops — with in-process UAS engines behind a proxy.
import { describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.js";
import { type RelayOptions, type RelayTarget, relay } from "../../src/proxy/relay.js";
import { forwardRequestStateless } from "../../src/proxy/stateless.js";
import { Testbed } from "../../src/testing.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";

type Behaviour = (tx: ServerTransactionHandle, bed: Testbed) => void;

function setup(
  uasBehaviours: Behaviour[],
  relayOpts: (tx: ServerTransactionHandle) => RelayOptions = () => ({}),
) {
  const bed = new Testbed();
  const uac = bed.engine({ address: "127.0.0.1" });
  const seen: Array<{ uas: number; method: string; mf: number | undefined; vias: number; rr: string[] }> = [];
  const uases: Engine[] = uasBehaviours.map((behave, i) =>
    bed.engine({
      address: `127.0.0.${10 + i}`,
      onRequest: (tx) => {
        seen.push({
          uas: i,
          method: tx.method,
          mf: tx.request.maxForwards,
          vias: tx.request.viaCount,
          rr: tx.request.headerValues("record-route"),
        });
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

const ring: Behaviour = (tx) => tx.reply(180);
const answer: Behaviour = (tx) => {
  tx.reply(180);
  tx.reply(200, undefined, { headers: [["Contact", "<sip:uas@127.0.0.10>"]] });
};
const reject =
  (status: number): Behaviour =>
  (tx) =>
    tx.reply(status);
const later =
  (ms: number, then: Behaviour): Behaviour =>
  (tx, bed) => {
    tx.reply(180);
    bed.clock.setTimer(bed.clock.now() + ms, () => then(tx, bed));
  };

describe("stateful proxy: forwarding (RFC 3261 §16.6)", () => {
  it("relays by Request-URI: Via pushed, Max-Forwards decremented, Record-Route added, untouched headers byte-identical", () => {
    const { bed, call, seen, proxy, uases } = setup([answer], () => ({
      targets: [{ uri: "sip:bob@127.0.0.10" }],
      recordRoute: true,
    }));
    let forwarded: Buffer | undefined;
    uases[0]!.observers.requestIn = (_tx, req) => {
      forwarded = req.raw;
    };
    const { h, statuses } = call();
    bed.flush();
    expect(seen[0]).toMatchObject({ uas: 0, method: "INVITE", mf: 69, vias: 2 });
    expect(seen[0]!.rr).toEqual(["<sip:127.0.0.5:5060;lr>"]);
    expect(statuses).toEqual([180, 200]);
    expect(h.outcome?.status).toBe(200);
    const text = forwarded!.toString("latin1");
    expect(text).toContain(`Call-ID: ${h.callId}\r\n`);
    expect(text.startsWith("INVITE sip:bob@127.0.0.10 SIP/2.0\r\n")).toBe(true);
    expect(proxy.stats.relayed).toBe(1);
  });

  it("Max-Forwards 0 → 483; Proxy-Require with an unknown option → 420 with Unsupported", () => {
    const { bed, uac, proxy } = setup([answer]);
    const a = uac.request({
      method: "OPTIONS",
      uri: "sip:x@127.0.0.10",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      maxForwards: 0,
      nextHop: "udp:127.0.0.5:5060",
    });
    const b = uac.request({
      method: "OPTIONS",
      uri: "sip:x@127.0.0.10",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      headers: [["Proxy-Require", "foo, bar"]],
      nextHop: "udp:127.0.0.5:5060",
    });
    bed.flush();
    expect(a.outcome?.status).toBe(483);
    expect(b.outcome?.status).toBe(420);
    expect(b.outcome?.response?.header("unsupported")).toBe("foo, bar");
    expect(proxy.stats.relayed).toBe(0);
  });

  it("a request relayed back to the proxy itself is a loop: 482", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    const proxy = bed.engine({
      address: "127.0.0.5",
      onRequest: (tx) =>
        relay(proxy, tx, { targets: [{ uri: tx.request.uri, nextHop: "udp:127.0.0.5:5060" }] }),
    });
    const h = uac.request({
      method: "OPTIONS",
      uri: "sip:loop@127.0.0.5",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
    });
    bed.flush();
    expect(h.outcome?.status).toBe(482);
  });
});

describe("stateful proxy: forking and the response context (§16.7)", () => {
  it("parallel: one answers 200, the other is CANCELled and its 487 is absorbed", () => {
    const cancelled: number[] = [];
    const ringAndWatch: Behaviour = (tx) => {
      tx.events.onCancel = () => cancelled.push(1);
      tx.reply(180);
    };
    const { bed, call, seen, target, uases } = setup(
      [later(1000, (tx) => tx.reply(200)), ringAndWatch],
      () => ({
        targets: [target(0), target(1)],
      }),
    );
    const { h, statuses } = call();
    bed.advance(1000);
    bed.flush();
    expect(seen.filter((s) => s.method === "INVITE").map((s) => s.uas)).toEqual([0, 1]);
    expect(cancelled).toEqual([1]);
    expect(h.outcome?.status).toBe(200);
    expect(statuses.filter((s) => s >= 200)).toEqual([200]);
    expect(uases[1]!.stats["4xx"]).toBe(1); // its 487
  });

  it("serial: the first group answers 486, then the next q-value group is tried and answers 200", () => {
    const { bed, call, seen, target } = setup([reject(486), answer], () => ({
      targets: [target(1, 0.5), target(0, 1.0)],
    }));
    const { h } = call();
    bed.flush();
    expect(seen.filter((s) => s.method === "INVITE").map((s) => s.uas)).toEqual([0, 1]);
    expect(h.outcome?.status).toBe(200);
  });

  it("all fail: the best response is chosen (4xx over 5xx)", () => {
    const { bed, call, target } = setup([reject(503), reject(486)], () => ({
      targets: [target(0), target(1)],
    }));
    const { h } = call();
    bed.flush();
    expect(h.outcome?.status).toBe(486);
  });

  it("a 6xx cancels the other branches and is relayed", () => {
    const { bed, call, target, uases } = setup([ring, later(500, (tx) => tx.reply(603))], () => ({
      targets: [target(0), target(1)],
    }));
    const { h } = call();
    bed.advance(500);
    bed.flush();
    expect(h.outcome?.status).toBe(603);
    expect(uases[0]!.stats["4xx"]).toBe(1); // 487 after the CANCEL
  });

  it("every 2xx is relayed, even after another", () => {
    const { bed, call, target } = setup([answer, answer], () => ({ targets: [target(0), target(1)] }));
    const { h, statuses } = call();
    bed.flush();
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(h.answers).toHaveLength(2);
  });

  it("CANCEL from upstream while branches ring: 200, CANCEL to each branch, 487 upstream, ACKed", () => {
    const { bed, call, target, uases, uac } = setup([ring, ring], () => ({
      targets: [target(0), target(1)],
    }));
    const { h } = call();
    bed.flush();
    expect(h.cancel()).toBe("sent");
    bed.flush();
    expect(h.outcome?.status).toBe(487);
    expect(h.lastCancel).toMatchObject({ kind: "answered", status: 200 });
    expect(uases[0]!.stats["4xx"] + uases[1]!.stats["4xx"]).toBe(2);
    expect(uac.stats.created).toBe(2);
  });

  it("Timer C: a branch that rings too long is CANCELled and counts as 408", () => {
    const { bed, call, target, uases } = setup([ring], () => ({ targets: [target(0)], timerC: 10_000 }));
    const { h } = call();
    bed.flush();
    bed.advance(10_000);
    bed.flush();
    expect(h.outcome?.status).toBe(408);
    expect(uases[0]!.stats["4xx"]).toBe(1); // the UAS answered the CANCEL with 487
  });

  it("failure hook (failure_route): new targets after all branches failed", () => {
    const { bed, call, target } = setup([reject(404), answer], (_tx) => ({
      targets: [target(0)],
      onFailure: (best) => (best.status === 404 ? [target(1)] : undefined),
    }));
    const { h } = call();
    bed.flush();
    expect(h.outcome?.status).toBe(200);
  });

  it("a branch with no route fails alone (503) and does not leak the others", () => {
    const { bed, call, target } = setup([answer], () => ({
      targets: [{ uri: "sip:x@unresolvable.invalid" }, target(0)],
    }));
    const { h } = call();
    bed.flush();
    expect(h.outcome?.status).toBe(200);
  });

  it("the ACK of a 2xx is forwarded statelessly to the UAS along the Record-Route", () => {
    const acks: string[] = [];
    const answerAndWatch: Behaviour = (tx) => {
      tx.events.onAck = (a) => acks.push(`${a.method} mf=${a.maxForwards} vias=${a.viaCount}`);
      answer(tx, undefined as never);
    };
    const { bed, call, target, uac, uases } = setup([answerAndWatch], () => ({
      targets: [target(0)],
      recordRoute: true,
    }));
    const { h } = call();
    bed.flush();
    const answerRes = h.answers[0]!;
    expect(answerRes.headerValues("record-route")).toEqual(["<sip:127.0.0.5:5060;lr>"]);
    // The UAC sends the ACK along the route set: through the proxy, which forwards it statelessly.
    uac.ack2xx(h, answerRes);
    bed.flush();
    expect(acks).toEqual(["ACK mf=69 vias=2"]);
    const sent = uases[0]!.stats.retransmissions;
    bed.advance(5000);
    expect(uases[0]!.stats.retransmissions).toBe(sent); // no 2xx retransmission after the ACK
  });
});

describe("stateful proxy: regressions found against SIPp", () => {
  it("a relayed 2xx is not retransmitted by the proxy (RFC 6026: the UAS does that)", () => {
    const { bed, call, target, proxy } = setup([answer], () => ({ targets: [target(0)] }));
    const { h } = call();
    bed.flush();
    expect(h.outcome?.status).toBe(200);
    const before = proxy.stats.retransmissions;
    bed.advance(5000);
    expect(proxy.stats.retransmissions).toBe(before);
  });

  it("a relayed non-INVITE that times out gets no 408 upstream (RFC 4320) and nothing throws", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    bed.peer("127.0.0.77"); // a next hop that never answers
    const proxy = bed.engine({ address: "127.0.0.5", onRequest: (tx) => relay(proxy, tx) });
    const h = uac.request({
      method: "OPTIONS",
      uri: "sip:x@127.0.0.77",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      nextHop: "udp:127.0.0.5:5060",
    });
    bed.advance(40_000);
    expect(h.outcome).toMatchObject({ status: 408, cause: "timeout" }); // the client's own Timer F
    expect(proxy.stats["4xx"]).toBe(0);
    expect(proxy.stats.internal_errors).toBe(0);
  });

  it("a best response naming only the proxy is answered locally, so the caller gets a final", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    const peer = bed.peer("127.0.0.77");
    const proxy = bed.engine({ address: "127.0.0.5", onRequest: (tx) => relay(proxy, tx) });
    const h = uac.request({
      method: "INVITE",
      uri: "sip:x@127.0.0.77",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      nextHop: "udp:127.0.0.5:5060",
    });
    bed.flush();
    const inv = peer.requests("INVITE")[0]!;
    const only = inv.headerValues("via")[0]!; // a broken UAS that answers with our Via alone
    peer.send(
      `SIP/2.0 486 Busy Here\r\nVia: ${only}\r\nFrom: ${inv.header("from")}\r\nTo: ${inv.header("to")};tag=u\r\n` +
        `Call-ID: ${inv.callId}\r\nCSeq: ${inv.cseq.seq} INVITE\r\nContent-Length: 0\r\n\r\n`,
      { protocol: "UDP", address: "127.0.0.5", port: 5060 },
    );
    bed.flush();
    expect(h.outcome?.status).toBe(486);
  });

  it("a stray ACK whose Request-URI is the proxy itself stops there", () => {
    const bed = new Testbed();
    const proxy = bed.engine({ address: "127.0.0.5", onRequest: (tx) => relay(proxy, tx) });
    let forwarded = 0;
    proxy.onStrayAck = (ack, source) => {
      if (forwardRequestStateless(proxy, ack, source)) forwarded++;
    };
    const peer = bed.peer("127.0.0.9");
    peer.send(
      "ACK sip:127.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKstray\r\nMax-Forwards: 70\r\n" +
        "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
      { protocol: "UDP", address: "127.0.0.5", port: 5060 },
    );
    bed.advance(100);
    expect(forwarded).toBe(0);
  });

  it("an exception escaping into a timer (here: an observer) is contained and counted, the engine carries on", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    const uas = bed.engine({ address: "127.0.0.2", onRequest: (tx) => tx.reply(200) });
    uas.observers.destroyed = () => {
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
