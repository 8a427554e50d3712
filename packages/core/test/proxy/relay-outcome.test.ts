// relay() resolves with how the relay ended; `proxy: true` is the one preset
// a stateful proxy needs (no merged-request 482, stray ACK and late 2xx
// forwarded statelessly where proxy/stateless.ts allows).
import { describe, expect, it } from "vitest";
import type { Engine, EngineOptions } from "../../src/engine.js";
import { type RelayOptions, type RelayOutcome, relay } from "../../src/proxy/relay.js";
import { Testbed } from "../../src/testing.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";

function proxyBed(
  uas: (tx: ServerTransactionHandle) => void,
  opts: RelayOptions = {},
  extra: EngineOptions = {},
) {
  const bed = new Testbed();
  const uac = bed.engine({ address: "127.0.0.1" });
  bed.engine({ address: "127.0.0.10", onRequest: uas });
  const outcomes: RelayOutcome[] = [];
  const proxy: Engine = bed.engine({
    address: "127.0.0.5",
    ...extra,
    onRequest: (tx) => {
      relay(proxy, tx, { targets: [{ uri: "sip:b@127.0.0.10" }], ...opts }).then((o) => outcomes.push(o));
    },
  });
  const send = (method: string, maxForwards?: number) =>
    uac.request({
      method,
      uri: "sip:b@127.0.0.5",
      from: "<sip:a@127.0.0.1>",
      to: "<sip:b@127.0.0.5>",
      maxForwards,
      nextHop: { protocol: "UDP", address: "127.0.0.5", port: 5060 },
    });
  return { bed, uac, proxy, outcomes, send };
}

/** Let the relay's promise callbacks run (they are microtasks). */
const turn = () => new Promise((r) => setImmediate(r));

describe("relay() outcome", () => {
  it("a 2xx relayed: its status and the branches started", async () => {
    const { bed, outcomes, send } = proxyBed((tx) =>
      tx.reply(200, { headers: [["Contact", "<sip:b@127.0.0.10>"]] }),
    );
    const h = send("INVITE");
    bed.flush();
    await turn();
    expect(h.outcome?.status).toBe(200);
    expect(outcomes).toEqual([{ status: 200, branches: 1 }]);
    bed.advance(64_000);
  });

  it("the best final after every branch failed, or the proxy's own answer with no branch", async () => {
    const busy = proxyBed((tx) => tx.reply(486));
    busy.send("INVITE");
    busy.bed.flush();
    await turn();
    expect(busy.outcomes).toEqual([{ status: 486, branches: 1 }]);
    busy.bed.advance(64_000);
    const loop = proxyBed(() => {});
    loop.send("OPTIONS", 0);
    loop.bed.flush();
    await turn();
    expect(loop.outcomes).toEqual([{ status: 483, branches: 0 }]);
  });

  it("a non-INVITE whose branch times out: 0, nothing went upstream (RFC 4320 §4.2)", async () => {
    const { bed, outcomes, send } = proxyBed(() => {});
    const h = send("OPTIONS");
    bed.flush();
    await turn();
    expect(outcomes).toEqual([]);
    bed.advance(32_000); // Timer F of the branch
    await turn();
    expect(outcomes).toEqual([{ status: 0, branches: 1 }]);
    bed.advance(64_000);
    expect(h.outcome?.status).toBe(408); // the client's own Timer F
  });
});

describe("Timer C", () => {
  it("defaults to the engine's fr_inv wait: one setting for local and proxied INVITEs", async () => {
    const cancels: string[] = [];
    const { bed, outcomes, send } = proxyBed(
      (tx) => {
        tx.events.onCancel = (c) => cancels.push(c.method);
        tx.reply(180);
      },
      {},
      { timers: { frInvTimer: 5_000 } },
    );
    const h = send("INVITE");
    bed.flush();
    bed.advance(4_999);
    expect(cancels).toEqual([]);
    bed.advance(1);
    expect(cancels).toEqual(["CANCEL"]); // §16.6 item 11: Timer C fired, the branch is cancelled
    bed.flush();
    await turn();
    // The branch's Timer C counts as a 408 (its 487 is absorbed), which goes upstream.
    expect(outcomes).toEqual([{ status: 408, branches: 1 }]);
    expect(h.outcome?.status).toBe(408);
    bed.advance(64_000);
  });
});

describe("EngineOptions.proxy", () => {
  const raw = (branch: string) =>
    "OPTIONS sip:b@127.0.0.5 SIP/2.0\r\n" +
    `Via: SIP/2.0/UDP 127.0.0.9:5060;branch=${branch}\r\n` +
    "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.9>;tag=fa\r\nTo: <sip:b@127.0.0.5>\r\n" +
    "Call-ID: spiral-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

  it("no merged-request 482 for a proxy (a spiral comes back changed); a UAS keeps it (§8.2.2.2)", () => {
    for (const proxy of [true, false]) {
      const bed = new Testbed();
      const seen: string[] = [];
      const e = bed.engine({
        address: "127.0.0.5",
        proxy,
        onRequest: (tx) => seen.push(tx.request.via.branch!),
      });
      const peer = bed.peer("127.0.0.9");
      peer.send(raw("z9hG4bKfirst"), Testbed.hop(e));
      peer.send(raw("z9hG4bKsecond"), Testbed.hop(e));
      bed.flush();
      const statuses = peer.messages((m) => !m.isRequest).map((m) => (m.isRequest ? 0 : m.status));
      if (proxy) {
        expect(seen).toEqual(["z9hG4bKfirst", "z9hG4bKsecond"]);
        expect(statuses).toEqual([]);
      } else {
        expect(seen).toEqual(["z9hG4bKfirst"]);
        expect(statuses).toEqual([482]);
      }
      bed.advance(64_000);
    }
  });

  it("the ACK of a relayed 2xx is forwarded along the Record-Route with no handler set", async () => {
    const acks: string[] = [];
    const { bed, uac, send } = proxyBed(
      (tx) => {
        tx.events.onAck = (ack) => acks.push(ack.method);
        tx.reply(200, { headers: [["Contact", "<sip:b@127.0.0.10>"]] });
      },
      { recordRoute: true },
      { proxy: true },
    );
    const h = send("INVITE");
    bed.flush();
    const answer = h.outcome?.response;
    expect(answer?.headerValues("record-route")).toHaveLength(1);
    uac.ack2xx(h, answer!);
    bed.flush();
    expect(acks).toEqual(["ACK"]);
    bed.advance(64_000);
  });
});
