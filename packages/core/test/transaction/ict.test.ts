// INVITE client transaction: RFC 3261 §17.1.1 (Figure 5) + RFC 6026 Accepted,
// against a scripted peer on the in-memory network and a virtual clock.
import { describe, expect, it } from "vitest";
import { buildResponse } from "../../src/message/build.js";
import type { SipRequest } from "../../src/message/types.js";
import { Testbed } from "../../src/testing.js";

function setup(protocol: "UDP" | "TCP" = "UDP") {
  const bed = new Testbed();
  const uac = bed.engine({ address: "127.0.0.1" });
  const peer = bed.peer("127.0.0.9", 5060, protocol);
  const h = uac.request({
    method: "INVITE",
    uri: "sip:bob@127.0.0.9",
    from: "<sip:alice@127.0.0.1>",
    to: "<sip:bob@127.0.0.9>",
    nextHop: peer.hop,
    body: "v=0\r\n",
    contentType: "application/sdp",
  });
  bed.flush();
  const invite = () => peer.requests("INVITE")[0]!;
  const respond = (status: number, toTag = "uas1") =>
    peer.send(buildResponse(invite(), status, { toTag: status === 100 ? undefined : toTag }), {
      protocol,
      address: "127.0.0.1",
      port: 5060,
    });
  return { bed, uac, peer, h, invite, respond };
}

describe("INVITE client transaction (RFC 3261 §17.1.1, RFC 6026)", () => {
  it("Calling: retransmits the same bytes on Timer A, doubling from T1, and times out at Timer B (64·T1) with 408", () => {
    const { bed, peer, h } = setup();
    expect(peer.requests("INVITE")).toHaveLength(1);
    const first = peer.received[0]!.data;
    const times: number[] = [];
    for (let t = 0; t < 32_000; t += 100) {
      bed.advance(100);
      if (peer.received.length > times.length + 1) times.push(bed.clock.now());
    }
    // A fires at 500, 1500, 3500, 7500, 15500, 31500 (intervals 0.5, 1, 2, 4, 8, 16 s).
    expect(times).toEqual([500, 1500, 3500, 7500, 15500, 31500]);
    for (const r of peer.received) expect(r.data.equals(first)).toBe(true);
    expect(h.state).toBe("terminated");
    expect(h.outcome).toMatchObject({ status: 408, cause: "timeout" });
  });

  it("Calling → Proceeding on 1xx: retransmissions stop, the provisional reaches the user", () => {
    const { bed, peer, h, respond } = setup();
    const provisional: number[] = [];
    h.events.onProvisional = (r) => provisional.push(r.status);
    respond(180);
    bed.flush();
    expect(h.state).toBe("proceeding");
    expect(provisional).toEqual([180]);
    bed.advance(40_000);
    expect(peer.requests("INVITE")).toHaveLength(1);
    expect(h.state).toBe("proceeding");
    respond(486);
    bed.flush();
    expect(h.outcome?.status).toBe(486);
  });

  it("non-2xx final → Completed: ACK built per §17.1.1.3, resent for each retransmitted final, Timer D ends it", () => {
    const { bed, peer, h, respond, invite } = setup();
    respond(180);
    respond(486);
    bed.flush();
    expect(h.state).toBe("terminated"); // the handle is detached once the final outcome is given
    const acks = peer.requests("ACK");
    expect(acks).toHaveLength(1);
    const ack = acks[0]!;
    const inv = invite();
    expect(ack.uri).toBe(inv.uri);
    expect(ack.callId).toBe(inv.callId);
    expect(ack.cseq).toEqual({ seq: inv.cseq.seq, method: "ACK" });
    expect(ack.via.branch).toBe(inv.via.branch);
    expect(ack.viaCount).toBe(1);
    expect(ack.header("from")).toBe(inv.header("from"));
    expect(ack.toTag).toBe("uas1");
    expect(ack.body.length).toBe(0);
    // A retransmitted 486 gets the same ACK bytes again.
    respond(486);
    bed.flush();
    const ackData = peer.received.filter((r) => r.msg.isRequest && r.msg.method === "ACK").map((r) => r.data);
    expect(ackData).toHaveLength(2);
    expect(ackData[0]!.equals(ackData[1]!)).toBe(true);
    const [tx] = bed.engines[0]!.audit();
    expect(tx?.state).toBe("completed");
    expect(tx?.holders.sort()).toEqual(["table", "timer:D"]);
    bed.advance(31_999);
    expect(bed.engines[0]!.table.size).toBe(1);
    bed.advance(1);
    expect(bed.engines[0]!.table.size).toBe(0);
    expect(bed.engines[0]!.stats.freed).toBe(1);
  });

  it("2xx → Accepted (RFC 6026): every 2xx reaches the user, nothing is ACKed by the transaction, Timer M ends it", () => {
    const { bed, peer, h, respond } = setup();
    const answers: string[] = [];
    h.events.onResponse = (r) => {
      if (r.status === 200) answers.push(r.toTag ?? "");
    };
    respond(200, "a");
    respond(200, "a");
    respond(200, "b");
    bed.flush();
    expect(answers).toEqual(["a", "a", "b"]);
    expect(h.answers).toHaveLength(3);
    expect(peer.requests("ACK")).toHaveLength(0);
    expect(bed.engines[0]!.audit()[0]?.state).toBe("accepted");
    bed.advance(32_000);
    expect(bed.engines[0]!.table.size).toBe(0);
  });

  it("reliable transport: no retransmissions, Timer D is zero", () => {
    const { bed, peer, h, respond } = setup("TCP");
    bed.advance(10_000);
    expect(peer.requests("INVITE")).toHaveLength(1);
    respond(603);
    bed.flush();
    expect(h.outcome?.status).toBe(603);
    expect(peer.requests("ACK")).toHaveLength(1);
    expect(bed.engines[0]!.table.size).toBe(0);
    expect(bed.engines[0]!.stats.freed).toBe(1);
  });

  it("the final outcome promise resolves", async () => {
    const { bed, respond, h } = setup();
    respond(404);
    bed.flush();
    await expect(h.final).resolves.toMatchObject({ status: 404, cause: "response" });
  });

  it("a transport error in Calling ends the transaction with a local 503 (§8.1.3.1)", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1", protocols: ["TCP"] });
    const h = uac.request({
      method: "INVITE",
      uri: "sip:nobody@127.0.0.77;transport=tcp",
      from: "<sip:a@127.0.0.1>",
      to: "<sip:nobody@127.0.0.77>",
    });
    bed.advance(10);
    expect(h.outcome).toMatchObject({ status: 503, cause: "transport-error" });
    expect(uac.stats.transport_errors).toBe(1);
  });

  it("fr_inv_timer after a provisional: timeout outcome, CANCEL sent, 487 ACKed", () => {
    const { bed, peer, h, respond, uac } = setup();
    respond(180);
    bed.flush();
    bed.advance(120_000);
    expect(h.outcome).toMatchObject({ status: 408, cause: "timeout" });
    const cancels = peer.requests("CANCEL");
    expect(cancels).toHaveLength(1);
    const cancel = cancels[0] as SipRequest;
    peer.send(buildResponse(cancel, 200, { toTag: "uas1" }), {
      protocol: "UDP",
      address: "127.0.0.1",
      port: 5060,
    });
    respond(487);
    bed.flush();
    expect(peer.requests("ACK")).toHaveLength(1);
    expect(uac.stats.timeouts).toBe(1);
  });

  it("the hard lifetime cap ends a transaction stuck in Proceeding", () => {
    const bed = new Testbed();
    const uac = bed.engine({
      address: "127.0.0.1",
      timers: { frInvTimer: 10_000_000, maxInviteLifetime: 60_000 },
    });
    const peer = bed.peer("127.0.0.9");
    const h = uac.request({ method: "INVITE", uri: "sip:b@127.0.0.9", from: "<sip:a@x>", to: "<sip:b@y>" });
    bed.flush();
    peer.send(buildResponse(peer.requests("INVITE")[0]!, 180, { toTag: "t" }), {
      protocol: "UDP",
      address: "127.0.0.1",
      port: 5060,
    });
    bed.advance(59_999);
    expect(h.state).toBe("proceeding");
    bed.advance(1);
    expect(h.outcome).toMatchObject({ status: 408, cause: "lifetime" });
    expect(uac.stats.lifetime_expired).toBe(1);
  });
});
