// INVITE client transaction: RFC 3261 §17.1.1 (Figure 5) + RFC 6026 Accepted,
// against a scripted peer on the in-memory network and a virtual clock.
import { buildResponse, type SipRequest } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { type BedEngine, forEachEngine, live } from "../setup/engines.js";
import { expectInInviteTransaction, onlyRequest, requestAB } from "./raw.js";

type MakeBed = Parameters<Parameters<typeof forEachEngine>[0]>[0];

async function setup(makeBed: MakeBed, protocol: "UDP" | "TCP" = "UDP") {
  const bed = makeBed();
  const uac = await bed.engine({ address: "127.0.0.1" });
  const peer = bed.peer("127.0.0.9", 5060, protocol);
  const h = await uac.request({
    method: "INVITE",
    uri: "sip:bob@127.0.0.9",
    from: "<sip:alice@127.0.0.1>",
    to: "<sip:bob@127.0.0.9>",
    nextHop: peer.hop,
    body: "v=0\r\n",
    contentType: "application/sdp",
  });
  await bed.flush();
  const invite = () => peer.requests("INVITE")[0]!;
  const respond = (status: number, toTag = "uas1") =>
    peer.send(buildResponse(invite(), status, { toTag: status === 100 ? undefined : toTag }), {
      protocol,
      address: "127.0.0.1",
      port: 5060,
    });
  return { bed, uac, peer, h, invite, respond };
}

/** The state of the client transaction behind a handle (core's `h.state` while the handle is attached). */
async function stateOf(engine: BedEngine, id: string): Promise<string | undefined> {
  return (await engine.audit()).find((a) => a.id === id)?.state;
}

forEachEngine((makeBed) => {
  describe("INVITE client transaction (RFC 3261 §17.1.1, RFC 6026)", () => {
    it("Calling: retransmits the same bytes on Timer A, doubling from T1, and times out at Timer B (64·T1) with 408", async () => {
      const { bed, peer, h } = await setup(makeBed);
      expect(peer.requests("INVITE")).toHaveLength(1);
      const first = peer.received[0]!.data;
      const times: number[] = [];
      for (let t = 0; t < 32_000; t += 100) {
        await bed.advance(100);
        if (peer.received.length > times.length + 1) times.push(bed.clock.now());
      }
      // A fires at 500, 1500, 3500, 7500, 15500, 31500 (intervals 0.5, 1, 2, 4, 8, 16 s).
      expect(times).toEqual([500, 1500, 3500, 7500, 15500, 31500]);
      for (const r of peer.received) expect(r.data.equals(first)).toBe(true);
      // Timer B: the transaction has ended (core's h.state "terminated").
      expect(h.terminated).toBe(true);
      expect(h.outcome).toMatchObject({ status: 408, cause: "timeout" });
    });

    it("Calling → Proceeding on 1xx: retransmissions stop, the provisional reaches the user", async () => {
      const { bed, uac, peer, h, respond } = await setup(makeBed);
      const provisional: number[] = [];
      h.events.onProvisional = (r) => provisional.push(r.status);
      respond(180);
      await bed.flush();
      expect(await stateOf(uac, h.id)).toBe("proceeding");
      expect(provisional).toEqual([180]);
      await bed.advance(40_000);
      expect(peer.requests("INVITE")).toHaveLength(1);
      expect(await stateOf(uac, h.id)).toBe("proceeding");
      respond(486);
      await bed.flush();
      expect(h.outcome?.status).toBe(486);
    });

    it("non-2xx final → Completed: ACK built per §17.1.1.3, resent for each retransmitted final, Timer D ends it", async () => {
      const { bed, uac, peer, h, respond, invite } = await setup(makeBed);
      respond(180);
      respond(486);
      await bed.flush();
      // the handle is detached once the final outcome is given (core's h.state "terminated")
      expect(h.outcome?.status).toBe(486);
      expect((await uac.audit()).find((a) => a.id === h.id)?.holders).not.toContain("handle");
      const ack = onlyRequest(peer, "ACK");
      expectInInviteTransaction(ack, invite());
      expect(ack.toTag).toBe("uas1");
      expect(ack.body.length).toBe(0);
      // A retransmitted 486 gets the same ACK bytes again.
      respond(486);
      await bed.flush();
      const ackData = peer.received
        .filter((r) => r.msg.isRequest && r.msg.method === "ACK")
        .map((r) => r.data);
      expect(ackData).toHaveLength(2);
      expect(ackData[0]!.equals(ackData[1]!)).toBe(true);
      const [tx] = await uac.audit();
      expect(tx?.state).toBe("completed");
      expect(tx?.holders.sort()).toEqual(["table", "timer:D"]);
      await bed.advance(31_999);
      expect(await live(uac)).toBe(1);
      await bed.advance(1);
      expect(await live(uac)).toBe(0);
      expect((await uac.stats()).freed).toBe(1);
    });

    it("2xx → Accepted (RFC 6026): every 2xx reaches the user, nothing is ACKed by the transaction, Timer M ends it", async () => {
      const { bed, uac, peer, h, respond } = await setup(makeBed);
      const answers: string[] = [];
      h.events.onResponse = (r) => {
        if (r.status === 200) answers.push(r.toTag ?? "");
      };
      respond(200, "a");
      respond(200, "a");
      respond(200, "b");
      await bed.flush();
      expect(answers).toEqual(["a", "a", "b"]);
      expect(h.answers).toHaveLength(3);
      expect(peer.requests("ACK")).toHaveLength(0);
      expect((await uac.audit())[0]?.state).toBe("accepted");
      await bed.advance(32_000);
      expect(await live(uac)).toBe(0);
    });

    it("reliable transport: no retransmissions, Timer D is zero", async () => {
      const { bed, uac, peer, h, respond } = await setup(makeBed, "TCP");
      await bed.advance(10_000);
      expect(peer.requests("INVITE")).toHaveLength(1);
      respond(603);
      await bed.flush();
      expect(h.outcome?.status).toBe(603);
      expect(peer.requests("ACK")).toHaveLength(1);
      expect(await live(uac)).toBe(0);
      expect((await uac.stats()).freed).toBe(1);
    });

    it("the final outcome promise resolves", async () => {
      const { bed, respond, h } = await setup(makeBed);
      respond(404);
      await bed.flush();
      await expect(h.final).resolves.toMatchObject({ status: 404, cause: "response" });
    });

    it("a transport error in Calling ends the transaction with a local 503 (§8.1.3.1)", async () => {
      const bed = makeBed();
      const uac = await bed.engine({ address: "127.0.0.1", protocols: ["TCP"] });
      const h = await uac.request({
        method: "INVITE",
        uri: "sip:nobody@127.0.0.77;transport=tcp",
        from: "<sip:a@127.0.0.1>",
        to: "<sip:nobody@127.0.0.77>",
      });
      await bed.advance(10);
      expect(h.outcome).toMatchObject({ status: 503, cause: "transport-error" });
      expect((await uac.stats()).transport_errors).toBe(1);
    });

    it("fr_inv_timer after a provisional: timeout outcome, CANCEL sent, 487 ACKed", async () => {
      const { bed, peer, h, respond, uac } = await setup(makeBed);
      respond(180);
      await bed.flush();
      // The default wait is RFC 3261's Timer C, "larger than 3 minutes" (§16.6 item 11): 181 s.
      await bed.advance(180_999);
      expect(h.outcome).toBeUndefined();
      await bed.advance(1);
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
      await bed.flush();
      expect(peer.requests("ACK")).toHaveLength(1);
      expect((await uac.stats()).timeouts).toBe(1);
    });

    it("the hard lifetime cap ends a transaction stuck in Proceeding", async () => {
      const bed = makeBed();
      const uac = await bed.engine({
        address: "127.0.0.1",
        timers: { frInvTimer: 10_000_000, maxInviteLifetime: 60_000 },
      });
      const peer = bed.peer("127.0.0.9");
      const h = await requestAB(uac, {
        method: "INVITE",
        uri: "sip:b@127.0.0.9",
      });
      await bed.flush();
      peer.send(buildResponse(peer.requests("INVITE")[0]!, 180, { toTag: "t" }), {
        protocol: "UDP",
        address: "127.0.0.1",
        port: 5060,
      });
      await bed.advance(59_999);
      expect(await stateOf(uac, h.id)).toBe("proceeding");
      await bed.advance(1);
      expect(h.outcome).toMatchObject({ status: 408, cause: "lifetime" });
      expect((await uac.stats()).lifetime_expired).toBe(1);
    });
  });
});
