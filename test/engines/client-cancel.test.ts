// CANCEL of a local INVITE (RFC 3261 §9.1), two-phase, with the reference
// holders asserted at each step. The seed scenario of the project:
// INVITE → 180 → cancel → 200 (CANCEL) → 487 → ACK on the INVITE's branch.
// Run on both engines (the core Engine and the ShardedEngine); ackAndBye, an API
// of the core Engine alone, on the core one.
import {
  buildResponse,
  type CancelProgress,
  type ClientTransactionHandle,
  type Engine,
  type SipRequest,
} from "@siptm/core";
import { describe, expect, it } from "vitest";
import { type EngineBed, forEachEngine } from "../setup/engines.js";
import { expectInInviteTransaction, onlyRequest, requestAB, uacAndPeer } from "./raw.js";

const UAC = { protocol: "UDP" as const, address: "127.0.0.1", port: 5060 };

/** The ACK of answeredDespiteCancel's 2xx (§13.2.2.4): to its Contact, a new branch, the INVITE's CSeq number, the reversed route set. */
function expectAckOf2xx(ack: SipRequest, invite: SipRequest): void {
  expect(ack.uri).toBe("sip:bob@127.0.0.9:5060");
  expect(ack.via.branch).not.toBe(invite.via.branch);
  expect(ack.cseq).toEqual({ seq: invite.cseq.seq, method: "ACK" });
  expect(ack.toTag).toBe("uas-tag");
  expect(ack.headerValues("route")).toEqual(["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
}

forEachEngine((makeBed, kind) => {
  async function setup(opts: { timers?: Record<string, number> } = {}) {
    const bed: EngineBed = makeBed();
    const uac = await bed.engine({ address: "127.0.0.1", timers: opts.timers });
    const peer = bed.peer("127.0.0.9");
    const progress: CancelProgress[] = [];
    const h = await uac.request({
      method: "INVITE",
      uri: "sip:bob@127.0.0.9",
      from: "<sip:alice@127.0.0.1>",
      to: "<sip:bob@127.0.0.9>",
      headers: [["Route", "<sip:127.0.0.9;lr>"]],
      nextHop: peer.hop,
      onCancel: (p) => progress.push(p),
    });
    await bed.flush();
    const invite = () => peer.requests("INVITE")[0]!;
    const respond = (req: SipRequest, status: number) =>
      peer.send(buildResponse(req, status, { toTag: status === 100 ? undefined : "uas-tag" }), UAC);
    const audited = async () => (await uac.audit()).find((a) => a.id === h.id);
    const holders = async () => (await audited())?.holders.slice().sort();
    const state = async () => (await audited())?.state;
    return { bed, uac, peer, h, invite, respond, holders, state, progress };
  }

  /** 180, cancel() sent, then a 2xx (a Contact, a route set of two) before the CANCEL's 200: an answered call. */
  async function answeredDespiteCancel() {
    const s = await setup();
    const { bed, peer, h, invite, respond } = s;
    respond(invite(), 180);
    await bed.flush();
    expect(await h.cancel()).toBe("sent");
    await bed.flush();
    const ok = buildResponse(invite(), 200, {
      toTag: "uas-tag",
      headers: [
        ["Contact", "<sip:bob@127.0.0.9:5060>"],
        ["Record-Route", "<sip:p2.example;lr>, <sip:p1.example;lr>"],
      ],
    });
    peer.send(ok, UAC);
    respond(onlyRequest(peer, "CANCEL"), 200);
    await bed.flush();
    expect(h.outcome).toMatchObject({ status: 200 });
    expect(h.answers).toHaveLength(1);
    return s;
  }

  describe("client CANCEL (RFC 3261 §9.1)", () => {
    it("180 → cancel → CANCEL as §9.1 says → 200 → 487 → ACK on the INVITE's branch; holders at each step", async () => {
      const { bed, peer, h, invite, respond, holders, progress, uac } = await setup();
      respond(invite(), 180);
      await bed.flush();
      expect(await holders()).toEqual(["handle", "table", "timer:fr_inv", "timer:lifetime"]);

      expect(await h.cancel('SIP;cause=487;text="user hung up"')).toBe("sent");
      await bed.flush();
      const cancel = onlyRequest(peer, "CANCEL");
      const inv = invite();
      // §9.1: same Request-URI, Call-ID, To, From, CSeq number, Route set, top Via with the same branch.
      expectInInviteTransaction(cancel, inv);
      expect(cancel.header("to")).toBe(inv.header("to"));
      expect(cancel.headerLines("route")).toEqual(inv.headerLines("route"));
      expect(cancel.via.raw).toBe(inv.via.raw);
      expect(cancel.header("reason")).toBe('SIP;cause=487;text="user hung up"');
      expect(progress).toEqual([{ kind: "sent" }]);
      // The INVITE stays alive holding its own references; the CANCEL's transaction holds one too.
      expect(await holders()).toEqual([
        "cancel-txn",
        "handle",
        "table",
        "timer:cancel_wait",
        "timer:lifetime",
      ]);

      respond(cancel, 200);
      await bed.flush();
      expect(progress.map((p) => p.kind)).toEqual(["sent", "answered"]);
      expect(await holders()).toEqual(["handle", "table", "timer:cancel_wait", "timer:lifetime"]);

      respond(inv, 487);
      await bed.flush();
      expect(h.outcome).toMatchObject({ status: 487, cause: "response" });
      const acks = peer.requests("ACK");
      expect(acks).toHaveLength(1);
      expect(acks[0]!.via.branch).toBe(inv.via.branch);
      expect(acks[0]!.cseq).toEqual({ seq: inv.cseq.seq, method: "ACK" });
      expect(acks[0]!.toTag).toBe("uas-tag");
      expect(peer.received[peer.received.length - 1]!.source.port).toBe(5060);
      // After the 487's ACK: the table and Timer D only.
      expect(await holders()).toEqual(["table", "timer:D"]);

      // A retransmitted 487 gets the ACK again, from the same transaction.
      respond(inv, 487);
      await bed.flush();
      expect(peer.requests("ACK")).toHaveLength(2);
      await bed.advance(32_000);
      expect(await uac.audit()).toHaveLength(0); // the table is empty
      const stats = await uac.stats();
      expect(stats.current).toBe(0);
      expect(stats.created).toBe(2); // the INVITE and its CANCEL
      expect(stats.freed).toBe(2);
    });

    it("no provisional yet: the CANCEL waits, the INVITE keeps retransmitting, the CANCEL goes out with the first 1xx", async () => {
      const { bed, peer, h, invite, respond, holders, progress } = await setup();
      expect(await h.cancel()).toBe("pending");
      expect(await h.cancel()).toBe("pending"); // idempotent
      expect(await holders()).toEqual(["cancel", "handle", "table", "timer:A", "timer:B", "timer:lifetime"]);
      await bed.advance(1600);
      expect(peer.requests("INVITE")).toHaveLength(3);
      expect(peer.requests("CANCEL")).toHaveLength(0);
      respond(invite(), 100);
      await bed.flush();
      expect(peer.requests("CANCEL")).toHaveLength(1);
      expect(progress).toEqual([{ kind: "sent" }]);
      expect(await holders()).not.toContain("cancel");
      await bed.advance(10_000);
      expect(peer.requests("INVITE")).toHaveLength(3); // retransmissions stopped
      respond(peer.requests("CANCEL")[0]!, 200);
      respond(invite(), 487);
      await bed.flush();
      expect(h.outcome?.status).toBe(487);
      expect(peer.requests("ACK")).toHaveLength(1);
    });

    it("pending cancel and a final response first: nothing is sent", async () => {
      const { bed, peer, h, invite, respond, progress } = await setup();
      expect(await h.cancel()).toBe("pending");
      respond(invite(), 486);
      await bed.flush();
      expect(peer.requests("CANCEL")).toHaveLength(0);
      expect(progress).toEqual([{ kind: "not-sent" }]);
      expect(h.outcome?.status).toBe(486);
      expect(await h.cancel()).toBe("none");
    });

    it("pending cancel and no answer at all: Timer B ends it, the pending cancel lets go", async () => {
      const { bed, peer, h, progress } = await setup();
      await h.cancel();
      await bed.advance(32_000);
      expect(h.outcome).toMatchObject({ status: 408, cause: "timeout" });
      expect(peer.requests("CANCEL")).toHaveLength(0);
      expect(progress).toEqual([{ kind: "not-sent" }]);
    });

    it("a 2xx racing the CANCEL is delivered as an answered call; ack2xx ACKs it", async () => {
      const { bed, peer, h, invite, uac } = await answeredDespiteCancel();
      await uac.ack2xx(h, h.answers[0]!);
      await bed.flush();
      expectAckOf2xx(onlyRequest(peer, "ACK"), invite());
    });

    // ackAndBye is the core Engine's alone.
    if (kind === "core")
      it("a 2xx racing the CANCEL: the core Engine's ackAndBye ACKs it and sends BYE", async () => {
        const { bed, peer, h, invite, respond, uac } = await answeredDespiteCancel();
        const core = (uac as unknown as { engine: Engine }).engine;
        const bye = core.ackAndBye(h as ClientTransactionHandle, h.answers[0]!);
        await bed.flush();
        expectAckOf2xx(onlyRequest(peer, "ACK"), invite());
        const byeReq = onlyRequest(peer, "BYE");
        expect(byeReq.cseq).toEqual({ seq: invite().cseq.seq + 1, method: "BYE" });
        expect(byeReq.toTag).toBe("uas-tag");
        respond(byeReq, 200);
        await bed.flush();
        expect(bye.outcome?.status).toBe(200);
      });

    it("no final within 64·T1 after the CANCEL: the INVITE ends with a timeout", async () => {
      const { bed, invite, respond, h, peer } = await setup();
      respond(invite(), 180);
      await bed.flush();
      await h.cancel();
      await bed.flush();
      respond(peer.requests("CANCEL")[0]!, 200);
      await bed.advance(31_999);
      expect(h.outcome).toBeUndefined();
      await bed.advance(1);
      expect(h.outcome).toMatchObject({ status: 408, cause: "timeout" });
    });

    it("a 481 to the CANCEL is reported and does not end the INVITE early", async () => {
      const { bed, invite, respond, h, peer, progress, state } = await setup();
      respond(invite(), 183);
      await bed.flush();
      await h.cancel();
      await bed.flush();
      respond(peer.requests("CANCEL")[0]!, 481);
      await bed.flush();
      expect(progress[1]).toMatchObject({ kind: "answered", status: 481 });
      expect(await state()).toBe("proceeding");
      respond(invite(), 487);
      await bed.flush();
      expect(h.outcome?.status).toBe(487);
    });

    it("a CANCEL that times out is reported; the INVITE still ends on its own final", async () => {
      const { bed, invite, respond, h, progress, state } = await setup({ timers: { cancelTimeout: 60_000 } });
      respond(invite(), 180);
      await bed.flush();
      await h.cancel();
      await bed.advance(32_000);
      expect(progress.map((p) => p.kind)).toEqual(["sent", "failed"]);
      expect(await state()).toBe("proceeding");
      respond(invite(), 487);
      await bed.flush();
      expect(h.outcome?.status).toBe(487);
    });

    it("engine.cancel(callId, cseq) — Kamailio's tm.cancel — finds the INVITE and cancels it", async () => {
      const { bed, invite, respond, h, peer, uac } = await setup();
      expect(await uac.cancel("no-such-call", 1)).toBe("none");
      respond(invite(), 180);
      await bed.flush();
      expect(await uac.cancel(h.callId, h.cseq + 1)).toBe("none");
      expect(await uac.cancel(h.callId, h.cseq)).toBe("sent");
      expect(await uac.cancel(h.callId, h.cseq)).toBe("sent");
      await bed.flush();
      expect(peer.requests("CANCEL")).toHaveLength(1);
      respond(peer.requests("CANCEL")[0]!, 200);
      respond(invite(), 487);
      await bed.flush();
      expect(peer.requests("ACK")).toHaveLength(1);
      expect(await uac.cancel(h.callId, h.cseq)).toBe("none");
    });

    it("cancel on a non-INVITE or after the final answers none", async () => {
      const { uac } = await uacAndPeer(makeBed);
      const h = await requestAB(uac, {
        method: "MESSAGE",
        uri: "sip:b@127.0.0.9",
      });
      expect(await h.cancel()).toBe("none");
      expect(await uac.cancel(h.callId, h.cseq)).toBe("none");
    });
  });
});
