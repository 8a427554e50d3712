// Stateful proxy (RFC 3261 §16): forwarding, forking, best response, CANCEL
// propagation, Timer C, loops — with UAS engines behind a proxy, on both
// engines: the proxy runs relay() in its route (fixtures/relay-route.mjs), in
// each shard of a sharded engine. The relay options travel in an X-Relay header.
import type { RelayTarget } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { type SeenRequest, seenRequest } from "../../packages/core/src/testing.js";
import type { ServerTransactionLike } from "../../packages/workers/src/api.js";
import { type BedEngine, type EngineBed, forEachEngine } from "../setup/engines.js";
import { PROXY, ROUTE, uacAndProxy, viaProxy } from "./proxy-bed.js";

type Behaviour = (tx: ServerTransactionLike, bed: EngineBed) => void;

interface Spec {
  targets?: RelayTarget[];
  recordRoute?: boolean;
  timerC?: number;
  /** Failure hook: best status → new targets. */
  failover?: Record<string, RelayTarget[]>;
}

/** The X-Relay header for the proxy's route. */
function spec(s: Spec): [string, string] {
  return ["X-Relay", Buffer.from(JSON.stringify(s), "utf8").toString("base64url")];
}

/** Run a reply from a handler; the engine under test decides whether it may. */
function send(p: unknown): void {
  Promise.resolve(p).catch(() => {});
}

const target = (i: number, q?: number): RelayTarget => ({ uri: `sip:uas${i}@127.0.0.${10 + i}`, q });

async function setup(makeBed: () => EngineBed, behaviours: Behaviour[], relay: Spec = {}) {
  const bed = makeBed();
  const uac = await bed.engine({ address: "127.0.0.1" });
  const seen: SeenRequest[] = [];
  const requests: Buffer[] = [];
  const uases: BedEngine[] = [];
  for (const [i, behave] of behaviours.entries()) {
    const uas = await bed.engine({ address: `127.0.0.${10 + i}` });
    uas.onRequest = (tx) => {
      seen.push(seenRequest(i, tx.request));
      requests.push(tx.request.toBuffer());
      if (tx.method === "INVITE") behave(tx, bed);
      else send(tx.reply(200));
    };
    uases.push(uas);
  }
  const proxy = await bed.engine({ address: "127.0.0.5", route: ROUTE });
  const call = async (uri = "sip:bob@127.0.0.5") => {
    const statuses: number[] = [];
    const h = await uac.request({
      method: "INVITE",
      uri,
      from: "<sip:alice@127.0.0.1>",
      to: "<sip:bob@127.0.0.5>",
      headers: [spec(relay)],
      nextHop: PROXY,
      onResponse: (r) => statuses.push(r.status),
    });
    return { h, statuses };
  };
  return { bed, uac, proxy, uases, seen, requests, call };
}

const ring: Behaviour = (tx) => send(tx.reply(180));
const answer: Behaviour = (tx) => {
  send(tx.reply(180));
  send(tx.reply(200, { headers: [["Contact", "<sip:uas@127.0.0.10>"]] }));
};
const reject =
  (status: number): Behaviour =>
  (tx) =>
    send(tx.reply(status));
const later =
  (ms: number, then: Behaviour): Behaviour =>
  (tx, bed) => {
    send(tx.reply(180));
    bed.clock.setTimer(bed.clock.now() + ms, () => then(tx, bed));
  };

forEachEngine((makeBed) => {
  describe("stateful proxy: forwarding (RFC 3261 §16.6)", () => {
    it("relays by Request-URI: Via pushed, Max-Forwards decremented, Record-Route added, untouched headers byte-identical", async () => {
      const { bed, call, seen, requests, proxy } = await setup(makeBed, [answer], {
        targets: [{ uri: "sip:bob@127.0.0.10" }],
        recordRoute: true,
      });
      const { h, statuses } = await call();
      await bed.flush();
      expect(seen[0]).toMatchObject({ uas: 0, method: "INVITE", mf: 69, vias: 2 });
      expect(seen[0]!.rr).toEqual(["<sip:127.0.0.5:5060;lr>"]);
      expect(statuses).toEqual([180, 200]);
      expect(h.outcome?.status).toBe(200);
      const text = requests[0]!.toString("latin1");
      expect(text).toContain(`Call-ID: ${h.callId}\r\n`);
      expect(text).toContain(
        `X-Relay: ${spec({ targets: [{ uri: "sip:bob@127.0.0.10" }], recordRoute: true })[1]}\r\n`,
      );
      expect(text.startsWith("INVITE sip:bob@127.0.0.10 SIP/2.0\r\n")).toBe(true);
      expect((await proxy.stats()).relayed).toBe(1);
    });

    it("Max-Forwards 0 → 483; Proxy-Require with an unknown option → 420 with Unsupported", async () => {
      const { bed, uac, proxy } = await setup(makeBed, [answer]);
      const a = await viaProxy(bed, uac, { uri: "sip:x@127.0.0.10", maxForwards: 0 });
      const b = await viaProxy(bed, uac, {
        uri: "sip:x@127.0.0.10",
        headers: [["Proxy-Require", "foo, bar"]],
      });
      expect(a.outcome?.status).toBe(483);
      expect(b.outcome?.status).toBe(420);
      expect(b.outcome?.response?.header("unsupported")).toBe("foo, bar");
      expect((await proxy.stats()).relayed).toBe(0);
    });

    it("a request relayed back to the proxy itself is a loop: 482", async () => {
      const bed = makeBed();
      const { uac } = await uacAndProxy(bed);
      const h = await viaProxy(bed, uac, {
        uri: "sip:loop@127.0.0.5",
        headers: [spec({ targets: [{ uri: "sip:loop@127.0.0.5", nextHop: "udp:127.0.0.5:5060" }] })],
      });
      expect(h.outcome?.status).toBe(482);
    });
  });

  describe("stateful proxy: forking and the response context (§16.7)", () => {
    it("parallel: one answers 200, the other is CANCELled and its 487 is absorbed", async () => {
      const cancelled: number[] = [];
      const ringAndWatch: Behaviour = (tx) => {
        tx.events.onCancel = () => cancelled.push(1);
        send(tx.reply(180));
      };
      const { bed, call, seen, uases } = await setup(
        makeBed,
        [later(1000, (tx) => send(tx.reply(200))), ringAndWatch],
        { targets: [target(0), target(1)] },
      );
      const { h, statuses } = await call();
      await bed.advance(1000);
      await bed.flush();
      expect(seen.filter((s) => s.method === "INVITE").map((s) => s.uas)).toEqual([0, 1]);
      expect(cancelled).toEqual([1]);
      expect(h.outcome?.status).toBe(200);
      expect(statuses.filter((s) => s >= 200)).toEqual([200]);
      expect((await uases[1]!.stats())["4xx"]).toBe(1); // its 487
    });

    it("serial: the first group answers 486, then the next q-value group is tried and answers 200", async () => {
      const { bed, call, seen } = await setup(makeBed, [reject(486), answer], {
        targets: [target(1, 0.5), target(0, 1.0)],
      });
      const { h } = await call();
      await bed.flush();
      expect(seen.filter((s) => s.method === "INVITE").map((s) => s.uas)).toEqual([0, 1]);
      expect(h.outcome?.status).toBe(200);
    });

    it("all fail: the best response is chosen (4xx over 5xx)", async () => {
      const { bed, call } = await setup(makeBed, [reject(503), reject(486)], {
        targets: [target(0), target(1)],
      });
      const { h } = await call();
      await bed.flush();
      expect(h.outcome?.status).toBe(486);
    });

    it("a 6xx cancels the other branches and is relayed", async () => {
      const { bed, call, uases } = await setup(makeBed, [ring, later(500, (tx) => send(tx.reply(603)))], {
        targets: [target(0), target(1)],
      });
      const { h } = await call();
      await bed.advance(500);
      await bed.flush();
      expect(h.outcome?.status).toBe(603);
      expect((await uases[0]!.stats())["4xx"]).toBe(1); // 487 after the CANCEL
    });

    it("every 2xx is relayed, even after another", async () => {
      const { bed, call } = await setup(makeBed, [answer, answer], { targets: [target(0), target(1)] });
      const { h, statuses } = await call();
      await bed.flush();
      expect(statuses.filter((s) => s === 200)).toHaveLength(2);
      expect(h.answers).toHaveLength(2);
    });

    it("CANCEL from upstream while branches ring: 200, CANCEL to each branch, 487 upstream, ACKed", async () => {
      const { bed, call, uases, uac } = await setup(makeBed, [ring, ring], {
        targets: [target(0), target(1)],
      });
      const { h } = await call();
      await bed.flush();
      expect(await h.cancel()).toBe("sent");
      await bed.flush();
      expect(h.outcome?.status).toBe(487);
      expect(h.lastCancel).toMatchObject({ kind: "answered", status: 200 });
      expect((await uases[0]!.stats())["4xx"] + (await uases[1]!.stats())["4xx"]).toBe(2);
      expect((await uac.stats()).created).toBe(2);
    });

    it("Timer C: a branch that rings too long is CANCELled and counts as 408", async () => {
      const { bed, call, uases } = await setup(makeBed, [ring], { targets: [target(0)], timerC: 10_000 });
      const { h } = await call();
      await bed.flush();
      await bed.advance(10_000);
      await bed.flush();
      expect(h.outcome?.status).toBe(408);
      expect((await uases[0]!.stats())["4xx"]).toBe(1); // the UAS answered the CANCEL with 487
    });

    it("failure hook (failure_route): new targets after all branches failed", async () => {
      const { bed, call } = await setup(makeBed, [reject(404), answer], {
        targets: [target(0)],
        failover: { "404": [target(1)] },
      });
      const { h } = await call();
      await bed.flush();
      expect(h.outcome?.status).toBe(200);
    });

    it("the ACK of a 2xx is forwarded statelessly to the UAS along the Record-Route", async () => {
      const acks: string[] = [];
      const answerAndWatch: Behaviour = (tx, bed) => {
        tx.events.onAck = (a) => acks.push(`${a.method} mf=${a.maxForwards} vias=${a.viaCount}`);
        answer(tx, bed);
      };
      const { bed, call, uac, uases } = await setup(makeBed, [answerAndWatch], {
        targets: [target(0)],
        recordRoute: true,
      });
      const { h } = await call();
      await bed.flush();
      const answerRes = h.answers[0]!;
      expect(answerRes.headerValues("record-route")).toEqual(["<sip:127.0.0.5:5060;lr>"]);
      // The UAC sends the ACK along the route set: through the proxy, which forwards it statelessly.
      await uac.ack2xx(h, answerRes);
      await bed.flush();
      expect(acks).toEqual(["ACK mf=69 vias=2"]);
      const sent = (await uases[0]!.stats()).retransmissions;
      await bed.advance(5000);
      expect((await uases[0]!.stats()).retransmissions).toBe(sent); // no 2xx retransmission after the ACK
    });
  });

  describe("stateful proxy: Record-Route names the transport (§16.6 item 4, RFC 5658)", () => {
    /** An in-dialog request of the caller (CSeq 2) to `uri` along the route set `rr`, to the proxy over TCP. */
    const callerInDialog = (uac: BedEngine, method: string, uri: string, callId: string, rr: string[]) =>
      uac.request({
        method,
        uri,
        from: "<sip:alice@127.0.0.1>;tag=a",
        to: "<sip:bob@127.0.0.5>;tag=b",
        callId,
        cseq: 2,
        headers: [...rr].reverse().map((r): [string, string] => ["Route", r]),
        nextHop: { ...PROXY, protocol: "TCP" },
      });

    /** A call UAC → proxy → UAS with Record-Route, the UAC sending over `inbound`, the target `targetUri`. */
    async function rrCall(makeBed: () => EngineBed, inbound: "UDP" | "TCP", targetUri: string) {
      const bed = makeBed();
      const uac = await bed.engine({ address: "127.0.0.1" });
      const uas = await bed.engine({ address: "127.0.0.10" });
      const atUas: Array<{ method: string; protocol: string; routes: string[]; rr: string[] }> = [];
      const atUac: Array<{ method: string; protocol: string; routes: string[] }> = [];
      uas.onRequest = (tx) => {
        atUas.push({
          method: tx.method,
          protocol: tx.source.protocol,
          routes: tx.request.headerValues("route"),
          rr: tx.request.headerValues("record-route"),
        });
        if (tx.method === "INVITE") send(tx.reply(200, { headers: [["Contact", `<${targetUri}>`]] }));
        else send(tx.reply(200));
      };
      uac.onRequest = (tx) => {
        atUac.push({
          method: tx.method,
          protocol: tx.source.protocol,
          routes: tx.request.headerValues("route"),
        });
        send(tx.reply(200));
      };
      await bed.engine({ address: "127.0.0.5", route: ROUTE });
      const callerContact = `sip:alice@127.0.0.1${inbound === "TCP" ? ";transport=tcp" : ""}`;
      const h = await uac.request({
        method: "INVITE",
        uri: "sip:bob@127.0.0.5",
        from: "<sip:alice@127.0.0.1>",
        to: "<sip:bob@127.0.0.5>",
        headers: [
          spec({ targets: [{ uri: targetUri }], recordRoute: true }),
          ["Contact", `<${callerContact}>`],
        ],
        nextHop: { ...PROXY, protocol: inbound },
      });
      await bed.flush();
      return { bed, uac, uas, h, atUas, atUac, callerContact };
    }

    it("TCP in, TCP out: one Record-Route with transport=tcp, so the dialog stays on TCP", async () => {
      const { bed, uac, h, atUas } = await rrCall(makeBed, "TCP", "sip:bob@127.0.0.10;transport=tcp");
      expect(h.outcome?.status).toBe(200);
      expect(atUas[0]).toMatchObject({ method: "INVITE", protocol: "TCP" });
      expect(atUas[0]!.rr).toEqual(["<sip:127.0.0.5:5060;transport=tcp;lr>"]);
      const rr = h.answers[0]!.headerValues("record-route");
      expect(rr).toEqual(["<sip:127.0.0.5:5060;transport=tcp;lr>"]);
      // The caller's BYE along the route set (§12.2.1.1): to the proxy over TCP, then on to the callee over TCP.
      const bye = await callerInDialog(uac, "BYE", "sip:bob@127.0.0.10;transport=tcp", h.callId, rr);
      await bed.flush();
      expect(bye.outcome?.status).toBe(200);
      expect(atUas[1]).toEqual({ method: "BYE", protocol: "TCP", routes: [], rr: [] });
    });

    it("TCP in, UDP out: double Record-Route, both removed from in-dialog requests either way, each leg on its transport", async () => {
      const { bed, uac, uas, h, atUas, atUac, callerContact } = await rrCall(
        makeBed,
        "TCP",
        "sip:bob@127.0.0.10",
      );
      expect(h.outcome?.status).toBe(200);
      expect(atUas[0]).toMatchObject({ method: "INVITE", protocol: "UDP" });
      // Top: the side facing the callee (UDP); below it the side facing the caller (TCP).
      const rr = ["<sip:127.0.0.5:5060;lr>", "<sip:127.0.0.5:5060;transport=tcp;lr>"];
      expect(atUas[0]!.rr).toEqual(rr);
      expect(h.answers[0]!.headerValues("record-route")).toEqual(rr);
      // Caller → callee: Route set = Record-Route reversed; in over TCP, out over UDP, no Route left.
      const bye1 = await callerInDialog(uac, "INFO", "sip:bob@127.0.0.10", h.callId, rr);
      // Callee → caller: Route set = Record-Route in order; in over UDP, out over TCP.
      const bye2 = await uas.request({
        method: "BYE",
        uri: callerContact,
        from: "<sip:bob@127.0.0.5>;tag=b",
        to: "<sip:alice@127.0.0.1>;tag=a",
        callId: h.callId,
        cseq: 1,
        headers: rr.map((r): [string, string] => ["Route", r]),
        nextHop: PROXY,
      });
      await bed.flush();
      expect(bye1.outcome?.status).toBe(200);
      expect(bye2.outcome?.status).toBe(200);
      expect(atUas[1]).toEqual({ method: "INFO", protocol: "UDP", routes: [], rr: [] });
      expect(atUac).toEqual([{ method: "BYE", protocol: "TCP", routes: [] }]);
    });

    it("UDP in, UDP out: one Record-Route without a transport parameter", async () => {
      const { h, atUas } = await rrCall(makeBed, "UDP", "sip:bob@127.0.0.10");
      expect(h.outcome?.status).toBe(200);
      expect(atUas[0]!.rr).toEqual(["<sip:127.0.0.5:5060;lr>"]);
    });

    it("a Route of ours repeated as it is (a spiral) loses only its first copy per pass", async () => {
      const bed = makeBed();
      const uac = await bed.engine({ address: "127.0.0.1" });
      const uas = await bed.engine({ address: "127.0.0.10" });
      const routes: string[][] = [];
      uas.onRequest = (tx) => {
        routes.push(tx.request.headerValues("route"));
        send(tx.reply(200));
      };
      await bed.engine({ address: "127.0.0.5", route: ROUTE });
      const h = await uac.request({
        method: "OPTIONS",
        uri: "sip:bob@127.0.0.10",
        from: "<sip:alice@127.0.0.1>;tag=a",
        to: "<sip:bob@127.0.0.10>;tag=b",
        headers: [
          ["Route", "<sip:127.0.0.5:5060;lr>"],
          ["Route", "<sip:127.0.0.5:5060;lr>"],
        ],
        nextHop: PROXY,
      });
      await bed.flush();
      expect(h.outcome?.status).toBe(200);
      expect(routes).toEqual([[]]); // the second pass through the proxy removed the second copy
    });
  });

  describe("stateful proxy: targets that are not SIP URIs (§16.5)", () => {
    it("a non-SIP target is skipped; with nothing left the request gets 480 and nothing is sent", async () => {
      const { bed, call, seen, proxy } = await setup(makeBed, [answer], {
        targets: [{ uri: "http://example.invalid/x" }],
      });
      const { h } = await call();
      await bed.flush();
      expect(h.outcome?.status).toBe(480);
      expect(seen).toEqual([]);
      expect((await proxy.stats()).created).toBe(1); // the server transaction only
    });

    it("a non-SIP target among SIP ones is skipped, the others are relayed", async () => {
      const { bed, call, seen } = await setup(makeBed, [answer], {
        targets: [{ uri: "http://example.invalid/x" }, target(0)],
      });
      const { h } = await call();
      await bed.flush();
      expect(h.outcome?.status).toBe(200);
      expect(seen.map((s) => s.uas)).toEqual([0]);
    });

    it("a non-SIP Request-URI relayed as it is: 416", async () => {
      const bed = makeBed();
      const { uac } = await uacAndProxy(bed);
      const h = await viaProxy(bed, uac, {
        uri: "http://example.invalid/x",
        from: "<sip:a@127.0.0.1>",
        to: "<sip:b@127.0.0.5>",
        nextHop: PROXY,
      });
      expect(h.outcome?.status).toBe(416);
    });
  });

  describe("stateful proxy: regressions found against SIPp", () => {
    it("a relayed 2xx is not retransmitted by the proxy (RFC 6026: the UAS does that)", async () => {
      const { bed, call, proxy } = await setup(makeBed, [answer], { targets: [target(0)] });
      const { h } = await call();
      await bed.flush();
      expect(h.outcome?.status).toBe(200);
      const before = (await proxy.stats()).retransmissions;
      await bed.advance(5000);
      expect((await proxy.stats()).retransmissions).toBe(before);
    });

    it("a relayed non-INVITE that times out gets no 408 upstream (RFC 4320) and nothing throws", async () => {
      const bed = makeBed();
      bed.peer("127.0.0.77"); // a next hop that never answers
      const { uac, proxy } = await uacAndProxy(bed);
      const h = await viaProxy(bed, uac, { uri: "sip:x@127.0.0.77" });
      await bed.advance(40_000);
      expect(h.outcome).toMatchObject({ status: 408, cause: "timeout" }); // the client's own Timer F
      const st = await proxy.stats();
      expect(st["4xx"]).toBe(0);
      expect(st.internal_errors).toBe(0);
    });

    it("a best response naming only the proxy is answered locally, so the caller gets a final", async () => {
      const bed = makeBed();
      const peer = bed.peer("127.0.0.77");
      const { uac } = await uacAndProxy(bed);
      const h = await viaProxy(bed, uac, { method: "INVITE", uri: "sip:x@127.0.0.77" });
      const inv = peer.requests("INVITE")[0]!;
      const only = inv.headerValues("via")[0]!; // a broken UAS that answers with our Via alone
      peer.send(
        `SIP/2.0 486 Busy Here\r\nVia: ${only}\r\nFrom: ${inv.header("from")}\r\nTo: ${inv.header("to")};tag=u\r\n` +
          `Call-ID: ${inv.callId}\r\nCSeq: ${inv.cseq.seq} INVITE\r\nContent-Length: 0\r\n\r\n`,
        PROXY,
      );
      await bed.flush();
      expect(h.outcome?.status).toBe(486);
    });

    it("a stray ACK whose Request-URI is the proxy itself stops there", async () => {
      const bed = makeBed({ log: true });
      const proxy = await bed.engine({ address: "127.0.0.5", route: ROUTE });
      const peer = bed.peer("127.0.0.9");
      peer.send(
        "ACK sip:127.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKstray\r\nMax-Forwards: 70\r\n" +
          "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        PROXY,
      );
      await bed.advance(100);
      // Not forwarded (not even back to the proxy itself) and not answered: the only message on the wire is the ACK.
      expect(bed.network.log.map((e) => `${e.from} → ${e.to}`)).toEqual([
        "UDP 127.0.0.9:5060 → UDP 127.0.0.5:5060",
      ]);
      expect(peer.received).toHaveLength(0);
      expect((await proxy.stats()).created).toBe(0);
    });
  });
});

/** A response to `inv` as a UAS would write it, with `vias` instead of the request's own. */
function responseTo(
  inv: { header(n: string): string | undefined; callId: string; cseq: { seq: number } },
  status: string,
  vias: string[],
): string {
  return (
    `SIP/2.0 ${status}\r\n${vias.map((v) => `Via: ${v}\r\n`).join("")}From: ${inv.header("from")}\r\n` +
    `To: ${inv.header("to")};tag=late\r\nCall-ID: ${inv.callId}\r\nCSeq: ${inv.cseq.seq} INVITE\r\n` +
    "Contact: <sip:uas@127.0.0.77>\r\nContent-Length: 0\r\n\r\n"
  );
}

forEachEngine((makeBed) => {
  describe("stateless forwarding is no reflector (stray responses and ACKs)", () => {
    // The network's log of what reached the victim's address, which nobody in these tests talks to.
    const VICTIM = "127.0.0.66";
    const reached = (bed: EngineBed, address: string) =>
      bed.network.log.filter((e) => e.to.includes(` ${address}:`) && e.fate !== "dropped");

    it("a forged response whose second Via names a third party is not forwarded, only counted", async () => {
      const bed = makeBed({ log: true });
      const proxy = await bed.engine({ address: "127.0.0.5", route: ROUTE });
      const attacker = bed.peer("127.0.0.9");
      bed.peer(VICTIM);
      for (const status of ["200 OK", "486 Busy Here", "180 Ringing"])
        attacker.send(
          responseTo(
            {
              header: (n) => (n === "from" ? "<sip:a@x>;tag=1" : "<sip:b@y>"),
              callId: "forged",
              cseq: { seq: 1 },
            },
            status,
            ["SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bKforged", `SIP/2.0/UDP ${VICTIM}:5060;branch=z9hG4bKv`],
          ),
          PROXY,
        );
      await bed.flush();
      expect(reached(bed, VICTIM)).toEqual([]);
      const st = await proxy.stats();
      expect(st.stray_responses).toBe(3);
      expect(st.stray_dropped).toBe(3);
      expect(st.internal_errors).toBe(0);
    });

    it("a stray response with a malformed Via below ours is dropped and counted, not an internal error", async () => {
      const bed = makeBed({ log: true });
      const proxy = await bed.engine({ address: "127.0.0.5", route: ROUTE });
      const attacker = bed.peer("127.0.0.9");
      attacker.send(
        responseTo(
          {
            header: (n) => (n === "from" ? "<sip:a@x>;tag=1" : "<sip:b@y>"),
            callId: "badvia",
            cseq: { seq: 1 },
          },
          "200 OK",
          ["SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bKx", "SIP/2.0/UDP ;;;branch=@@"],
        ),
        PROXY,
      );
      await bed.flush();
      const st = await proxy.stats();
      expect(st.stray_dropped).toBe(1);
      expect(st.internal_errors).toBe(0);
      expect(bed.network.log.filter((e) => e.from.includes("127.0.0.5:"))).toEqual([]);
    });

    it("a late 2xx to a relayed INVITE (after every transaction ended) reaches the caller; the same with its Via below ours changed does not", async () => {
      const bed = makeBed({ log: true });
      const uas = bed.peer("127.0.0.77");
      const { uac } = await uacAndProxy(bed);
      bed.peer(VICTIM);
      const h = await viaProxy(bed, uac, { method: "INVITE", uri: "sip:x@127.0.0.77" });
      const inv = uas.requests("INVITE")[0]!;
      const [ours, upstream] = inv.headerValues("via") as [string, string];
      uas.send(responseTo(inv, "486 Busy Here", [ours, upstream]), PROXY);
      await bed.flush();
      expect(h.outcome?.status).toBe(486);
      await bed.advance(40_000); // every transaction on the path is gone
      const toCaller = () => reached(bed, "127.0.0.1").length;
      const before = toCaller();
      uas.send(responseTo(inv, "200 OK", [ours, upstream]), PROXY);
      await bed.flush();
      expect(toCaller()).toBe(before + 1); // forwarded: our cookie, the Via it was made for
      uas.send(responseTo(inv, "200 OK", [ours, upstream.replace("127.0.0.1", VICTIM)]), PROXY);
      uas.send(responseTo(inv, "486 Busy Here", [ours, upstream]), PROXY); // a late non-2xx: absorbed
      await bed.flush();
      expect(reached(bed, VICTIM)).toEqual([]);
      expect(toCaller()).toBe(before + 1);
    });

    it("a stray ACK that names us in no Route is not forwarded to its Request-URI", async () => {
      const bed = makeBed({ log: true });
      const proxy = await bed.engine({ address: "127.0.0.5", route: ROUTE });
      const attacker = bed.peer("127.0.0.9");
      bed.peer(VICTIM);
      attacker.send(
        `ACK sip:v@${VICTIM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKa\r\nMax-Forwards: 70\r\n` +
          "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: reflect\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        PROXY,
      );
      await bed.flush();
      expect(reached(bed, VICTIM)).toEqual([]);
      expect((await proxy.stats()).stray_dropped).toBe(1);
    });

    it("the ACK of a relayed 2xx sent to the proxy with no Route (a UA that sends all to its proxy) is forwarded while the INVITE's transaction is Accepted, not after", async () => {
      const bed = makeBed({ log: true });
      await bed.engine({ address: "127.0.0.5", route: ROUTE });
      const caller = bed.peer("127.0.0.9");
      const uas = bed.peer("127.0.0.77");
      const head = (method: string, branch: string) =>
        `${method} sip:x@127.0.0.77 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=${branch}\r\nMax-Forwards: 70\r\n` +
        `From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>${method === "ACK" ? ";tag=late" : ""}\r\nCall-ID: norr\r\n` +
        `CSeq: 1 ${method}\r\nContent-Length: 0\r\n\r\n`;
      caller.send(head("INVITE", "z9hG4bKinv"), PROXY);
      await bed.flush();
      const inv = uas.requests("INVITE")[0]!;
      uas.send(responseTo(inv, "200 OK", inv.headerValues("via")), PROXY);
      await bed.flush();
      expect(caller.messages((m) => !m.isRequest && m.status === 200)).toHaveLength(1);
      caller.send(head("ACK", "z9hG4bKack1"), PROXY);
      await bed.flush();
      expect(uas.requests("ACK")).toHaveLength(1);
      await bed.advance(40_000); // Timer L has ended the proxy's INVITE server transaction
      caller.send(head("ACK", "z9hG4bKack2"), PROXY);
      await bed.flush();
      expect(uas.requests("ACK")).toHaveLength(1);
    });

    it("a stray ACK on our route is forwarded with the sender's Via stamped: rport filled and received (RFC 3581 §4)", async () => {
      const bed = makeBed({ log: true });
      await bed.engine({ address: "127.0.0.5", route: ROUTE });
      const phone = bed.peer("127.0.0.9");
      const uas = bed.peer("127.0.0.77");
      phone.send(
        "ACK sip:uas@127.0.0.77 SIP/2.0\r\nVia: SIP/2.0/UDP phone.invalid:5070;branch=z9hG4bKack;rport\r\n" +
          "Route: <sip:127.0.0.5:5060;lr>\r\nMax-Forwards: 70\r\n" +
          "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: onroute\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        PROXY,
      );
      await bed.flush();
      const acks = uas.requests("ACK");
      expect(acks).toHaveLength(1);
      const vias = acks[0]!.headerValues("via");
      expect(vias).toHaveLength(2);
      expect(vias[1]).toBe("SIP/2.0/UDP phone.invalid:5070;branch=z9hG4bKack;rport=5060;received=127.0.0.9");
    });
  });
});
