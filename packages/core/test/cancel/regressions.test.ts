// Kamailio tm reference-counting regressions, re-created against siptm.
// Each names the Kamailio issue it re-creates; each must end with created ==
// freed (the automatic leak check runs after every test).
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/clock.js";
import { Engine } from "../../src/engine.js";
import { buildResponse } from "../../src/message/build.js";
import type { SipRequest } from "../../src/message/types.js";
import { Testbed } from "../../src/testing.js";
import type { ClientTransactionHandle } from "../../src/transaction/handles.js";
import type { Destination, SendErrorTarget, Transport } from "../../src/transport/types.js";

const UAC = { protocol: "UDP" as const, address: "127.0.0.1", port: 5060 };

/** A transport whose every send fails (a route to nowhere, a closed connection). */
class FailingTransport implements Transport {
  readonly reliable = false;
  readonly localAddress = "127.0.0.1";
  readonly localPort = 5060;
  sends = 0;
  constructor(readonly protocol: "UDP" | "TCP" = "UDP") {}
  send(_data: Buffer, _dest: Destination, onError?: SendErrorTarget): void {
    this.sends++;
    onError?.transportError(new Error("EHOSTUNREACH"));
  }
  async close(): Promise<void> {}
}

describe("Kamailio regressions", () => {
  it("#4011: tm.cancel through the control path while another transaction is being processed frees nothing", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    const peer = bed.peer("127.0.0.9");
    const mk = () =>
      uac.request({
        method: "INVITE",
        uri: "sip:b@127.0.0.9",
        from: "<sip:a@127.0.0.1>",
        to: "<sip:b@127.0.0.9>",
      });
    const a = mk();
    // While B's 180 is being processed, the control path cancels A by Call-ID/CSeq.
    const cancelledFromB: string[] = [];
    const b: ClientTransactionHandle = mk();
    b.events.onProvisional = () => {
      cancelledFromB.push(uac.cancel(a.callId, a.cseq));
    };
    bed.flush();
    const [invA, invB] = peer.requests("INVITE") as [SipRequest, SipRequest];
    peer.send(buildResponse(invA, 180, { toTag: "ta" }), UAC);
    bed.flush();
    peer.send(buildResponse(invB, 180, { toTag: "tb" }), UAC);
    bed.flush();
    expect(cancelledFromB).toEqual(["sent"]);
    const cancel = peer.requests("CANCEL")[0]!;
    expect(cancel.callId).toBe(a.callId);
    // 200 (CANCEL) → 487: the INVITE transaction is still there to ACK it.
    peer.send(buildResponse(cancel, 200, { toTag: "ta" }), UAC);
    peer.send(buildResponse(invA, 487, { toTag: "ta" }), UAC);
    bed.flush();
    expect(a.outcome?.status).toBe(487);
    const acks = peer.requests("ACK");
    expect(acks).toHaveLength(1);
    expect(acks[0]!.via.branch).toBe(invA.via.branch);
    expect(b.state).toBe("proceeding");
    expect(uac.refFaults).toEqual([]);
    peer.send(buildResponse(invB, 486, { toTag: "tb" }), UAC);
    bed.flush();
  });

  it("#4843: a reply faster than the retransmission timer is armed", () => {
    // The UAS answers inside its request handler and the network has no delay:
    // the final arrives in the same virtual instant the INVITE left.
    const bed = new Testbed();
    bed.engine({ address: "127.0.0.2", onRequest: (tx) => tx.reply(486) });
    const uac = bed.engine({ address: "127.0.0.1" });
    const h = uac.request({ method: "INVITE", uri: "sip:b@127.0.0.2", from: "<sip:a@x>", to: "<sip:b@y>" });
    bed.flush();
    expect(h.outcome?.status).toBe(486);
    expect(uac.stats.retransmissions).toBe(0);
    bed.advance(5_000);
    expect(uac.stats.retransmissions).toBe(0);
  });

  it("#4862: a late reply to a transaction already ended does not resurrect it", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    const peer = bed.peer("127.0.0.9");
    uac.request({ method: "INVITE", uri: "sip:b@127.0.0.9", from: "<sip:a@x>", to: "<sip:b@y>" });
    bed.flush();
    const inv = peer.requests("INVITE")[0]!;
    peer.send(buildResponse(inv, 486, { toTag: "t" }), UAC);
    bed.advance(32_000); // Timer D ran out: the transaction is gone
    expect(uac.stats.freed).toBe(1);
    peer.send(buildResponse(inv, 486, { toTag: "t" }), UAC);
    peer.send(buildResponse(inv, 200, { toTag: "t" }), UAC);
    bed.flush();
    expect(uac.stats.created).toBe(1);
    expect(uac.stats.stray_responses).toBe(2);
    expect(peer.requests("ACK")).toHaveLength(1);
  });

  it("#4140 / #1554: a send failure while replying does not leak", () => {
    const clock = new VirtualClock();
    const bed = new Testbed();
    const failing = new FailingTransport();
    const uas = new Engine({ clock, refFaults: "throw", onRequest: (tx) => tx.reply(200) });
    uas.addTransport(failing);
    const req =
      "MESSAGE sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKfail1\r\n" +
      "Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: f1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    uas.onMessage(Buffer.from(req, "latin1"), {
      protocol: "UDP",
      address: "127.0.0.9",
      port: 5060,
      localAddress: "127.0.0.1",
      localPort: 5060,
    });
    expect(failing.sends).toBe(1);
    expect(uas.stats.transport_errors).toBe(1);
    expect(uas.stats.created).toBe(1);
    expect(uas.stats.freed).toBe(1);
    expect(uas.armedTimers).toBe(0);
    expect(uas.snapshot().user_errors).toBe(0);
    expect(bed.engines).toHaveLength(0);
  });

  it("#4140: a send failure while sending a request does not leak, and the user hears a 503", () => {
    const clock = new VirtualClock();
    const uac = new Engine({ clock, refFaults: "throw" });
    uac.addTransport(new FailingTransport());
    const h = uac.request({ method: "INVITE", uri: "sip:b@127.0.0.9", from: "<sip:a@x>", to: "<sip:b@y>" });
    expect(h.outcome).toMatchObject({ status: 503, cause: "transport-error" });
    expect(uac.stats.created).toBe(1);
    expect(uac.stats.freed).toBe(1);
    expect(uac.armedTimers).toBe(0);
  });

  it("#1220: created == freed after a quiet period following mixed traffic with loss", () => {
    const bed = new Testbed({ loss: 0.2, duplicate: 0.1, reorder: 0.1, seed: 42 });
    let n = 0;
    const uas = bed.engine({
      address: "127.0.0.2",
      onRequest: (tx) => {
        n++;
        if (tx.method === "INVITE") {
          tx.reply(180);
          if (n % 3 === 0) tx.reply(200);
          else if (n % 3 === 1) tx.reply(486);
        } else tx.reply(200);
      },
    });
    const uac = bed.engine({ address: "127.0.0.1" });
    for (let i = 0; i < 200; i++) {
      const method = i % 2 ? "INVITE" : "OPTIONS";
      const h = uac.request({ method, uri: "sip:b@127.0.0.2", from: "<sip:a@x>", to: "<sip:b@y>" });
      if (i % 5 === 0) h.events.onProvisional = () => h.cancel();
    }
    bed.advance(200_000);
    expect(uac.stats.created).toBe(uac.stats.freed);
    expect(uas.stats.created).toBe(uas.stats.freed);
    expect(uac.table.size + uas.table.size).toBe(0);
  });
});
