// Kamailio tm reference-counting regressions, re-created against siptm.
// Each names the Kamailio issue it re-creates; each must end with created ==
// freed (the automatic leak check runs after every test). Runs on the core
// Engine and on the ShardedEngine.
import { buildResponse, type CancelResult } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { forEachEngine } from "../setup/engines.js";
import { requestAB, uacAndPeer } from "./raw.js";

const UAC = { protocol: "UDP" as const, address: "127.0.0.1", port: 5060 };

forEachEngine((makeBed) => {
  describe("Kamailio regressions", () => {
    it("#4011: tm.cancel through the control path while another transaction is being processed frees nothing", async () => {
      const { bed, uac, peer } = await uacAndPeer(makeBed);
      const mk = () =>
        uac.request({
          method: "INVITE",
          uri: "sip:b@127.0.0.9",
          from: "<sip:a@127.0.0.1>",
          to: "<sip:b@127.0.0.9>",
        });
      const a = await mk();
      // While B's 180 is being processed, the control path cancels A by Call-ID/CSeq.
      const cancelledFromB: Array<CancelResult | Promise<CancelResult>> = [];
      const b = await mk();
      b.events.onProvisional = () => {
        cancelledFromB.push(uac.cancel(a.callId, a.cseq));
      };
      await bed.flush();
      const invites = peer.requests("INVITE");
      expect(invites).toHaveLength(2);
      const invA = invites.find((r) => r.callId === a.callId)!;
      const invB = invites.find((r) => r.callId === b.callId)!;
      peer.send(buildResponse(invA, 180, { toTag: "ta" }), UAC);
      await bed.flush();
      peer.send(buildResponse(invB, 180, { toTag: "tb" }), UAC);
      await bed.flush();
      expect(await Promise.all(cancelledFromB)).toEqual(["sent"]);
      const cancel = peer.requests("CANCEL")[0]!;
      expect(cancel.callId).toBe(a.callId);
      // 200 (CANCEL) → 487: the INVITE transaction is still there to ACK it.
      peer.send(buildResponse(cancel, 200, { toTag: "ta" }), UAC);
      peer.send(buildResponse(invA, 487, { toTag: "ta" }), UAC);
      await bed.flush();
      expect(a.outcome?.status).toBe(487);
      const acks = peer.requests("ACK");
      expect(acks).toHaveLength(1);
      expect(acks[0]!.via.branch).toBe(invA.via.branch);
      expect((await uac.audit()).find((e) => e.id === b.id)?.state).toBe("proceeding");
      // No reference fault: the automatic leak check reads every engine's (every
      // shard's) reference faults after the test; they only accumulate.
      peer.send(buildResponse(invB, 486, { toTag: "tb" }), UAC);
      await bed.flush();
    });

    it("#4843: a reply faster than the retransmission timer is armed", async () => {
      // The UAS answers inside its request handler and the network has no delay:
      // the final arrives in the same virtual instant the INVITE left.
      const bed = makeBed();
      const uas = await bed.engine({ address: "127.0.0.2" });
      uas.onRequest = (tx) => tx.reply(486);
      const uac = await bed.engine({ address: "127.0.0.1" });
      const h = await requestAB(uac, {
        method: "INVITE",
        uri: "sip:b@127.0.0.2",
      });
      await bed.flush();
      expect(h.outcome?.status).toBe(486);
      expect((await uac.stats()).retransmissions).toBe(0);
      await bed.advance(5_000);
      expect((await uac.stats()).retransmissions).toBe(0);
    });

    it("#4862: a late reply to a transaction already ended does not resurrect it", async () => {
      const { bed, uac, peer } = await uacAndPeer(makeBed);
      await requestAB(uac, { method: "INVITE", uri: "sip:b@127.0.0.9" });
      await bed.flush();
      const inv = peer.requests("INVITE")[0]!;
      peer.send(buildResponse(inv, 486, { toTag: "t" }), UAC);
      await bed.advance(32_000); // Timer D ran out: the transaction is gone
      expect((await uac.stats()).freed).toBe(1);
      peer.send(buildResponse(inv, 486, { toTag: "t" }), UAC);
      peer.send(buildResponse(inv, 200, { toTag: "t" }), UAC);
      await bed.flush();
      const stats = await uac.stats();
      expect(stats.created).toBe(1);
      expect(stats.stray_responses).toBe(2);
      expect(peer.requests("ACK")).toHaveLength(1);
    });

    it("#1220: created == freed after a quiet period following mixed traffic with loss", async () => {
      const bed = makeBed({ loss: 0.2, duplicate: 0.1, reorder: 0.1, seed: 42 });
      let n = 0;
      const uas = await bed.engine({ address: "127.0.0.2" });
      uas.onRequest = (tx) => {
        n++;
        if (tx.method === "INVITE") {
          tx.reply(180);
          if (n % 3 === 0) tx.reply(200);
          else if (n % 3 === 1) tx.reply(486);
        } else tx.reply(200);
      };
      const uac = await bed.engine({ address: "127.0.0.1" });
      for (let i = 0; i < 200; i++) {
        const method = i % 2 ? "INVITE" : "OPTIONS";
        const h = await requestAB(uac, { method, uri: "sip:b@127.0.0.2" });
        if (i % 5 === 0) h.events.onProvisional = () => void h.cancel();
      }
      await bed.settle(); // a quiet period past every engine's longest timer
      const uacStats = await uac.stats();
      const uasStats = await uas.stats();
      expect(uacStats.created).toBe(uacStats.freed);
      expect(uasStats.created).toBe(uasStats.freed);
      expect(uacStats.current + uasStats.current).toBe(0);
    });
  });
});
