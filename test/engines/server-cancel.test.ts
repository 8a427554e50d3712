// A CANCEL arriving at a server (RFC 3261 §9.2), and the whole flow between
// two siptm engines, also over a lossy network. Run on both engines (the core
// Engine and the ShardedEngine).
import { TransactionError } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { type BedEngine, forEachEngine } from "../setup/engines.js";
import { rawRequest, UAS } from "./raw.js";

type ServerTx = Parameters<NonNullable<BedEngine["onRequest"]>>[0];

const HEAD = (method: string, branch: string, cseq = 1) =>
  rawRequest({ method, branch, callId: "c1@127.0.0.9", fromTag: "fa", cseq });

forEachEngine((makeBed) => {
  async function setup(
    opts: { autoCancel487?: boolean; unmatchedCancel?: "stateless" | "stateful" | "drop" } = {},
  ) {
    const bed = makeBed();
    const txs: ServerTx[] = [];
    const cancelled: string[] = [];
    const uas = await bed.engine({ address: "127.0.0.1", ...opts });
    uas.onRequest = (tx) => {
      txs.push(tx);
      tx.events.onCancel = (c) => cancelled.push(c.method);
      if (tx.method === "INVITE") tx.reply(180);
      else tx.reply(200);
    };
    const peer = bed.peer("127.0.0.9");
    const responses = () =>
      peer.messages((m) => !m.isRequest).map((m) => `${m.isRequest ? "" : m.status} ${m.cseq.method}`);
    return { bed, uas, peer, txs, cancelled, responses };
  }

  describe("server CANCEL (RFC 3261 §9.2)", () => {
    it("ringing INVITE: 200 to the CANCEL with the INVITE's To tag, 487 to the INVITE, cancelled event; the user's later final is refused", async () => {
      const { bed, peer, txs, cancelled, responses, uas } = await setup();
      peer.send(HEAD("INVITE", "z9hG4bKinv1"), UAS);
      await bed.flush();
      peer.send(HEAD("CANCEL", "z9hG4bKinv1"), UAS);
      await bed.flush();
      expect(responses()).toEqual(["180 INVITE", "200 CANCEL", "487 INVITE"]);
      const msgs = peer.messages((m) => !m.isRequest);
      expect(msgs[1]!.toTag).toBe(msgs[0]!.toTag);
      expect(msgs[2]!.toTag).toBe(msgs[0]!.toTag);
      expect(cancelled).toEqual(["CANCEL"]);
      expect(txs[0]!.cancelled).toBe(true);
      await expect((async () => txs[0]!.reply(200))()).rejects.toThrow(TransactionError);
      await expect((async () => txs[0]!.reply(200))()).rejects.toMatchObject({ code: "cancelled" });
      // The CANCEL retransmitted: its 200 again, from its own transaction; nothing else.
      peer.send(HEAD("CANCEL", "z9hG4bKinv1"), UAS);
      await bed.flush();
      expect(responses()).toEqual(["180 INVITE", "200 CANCEL", "487 INVITE", "200 CANCEL"]);
      // The ACK for the 487 is absorbed by the INVITE server transaction.
      peer.send(
        HEAD("ACK", "z9hG4bKinv1").replace(
          "To: <sip:bob@127.0.0.1>",
          `To: <sip:bob@127.0.0.1>;tag=${msgs[0]!.toTag}`,
        ),
        UAS,
      );
      await bed.flush();
      const ist = (await uas.audit()).find((a) => a.kind === "ist");
      expect(ist?.state).toBe("confirmed");
    });

    it("tryReply after a CANCEL won the race: false, nothing sent; a bad status still throws", async () => {
      const { bed, peer, txs, responses } = await setup();
      peer.send(HEAD("INVITE", "z9hG4bKinv7"), UAS);
      await bed.flush();
      expect(await txs[0]!.tryReply(183)).toBe(true);
      await expect((async () => txs[0]!.tryReply(99))()).rejects.toThrow(TransactionError);
      peer.send(HEAD("CANCEL", "z9hG4bKinv7"), UAS);
      await bed.flush();
      expect(await txs[0]!.tryReply(200, { reason: "Too Late" })).toBe(false);
      await bed.flush();
      expect(responses()).toEqual(["180 INVITE", "183 INVITE", "200 CANCEL", "487 INVITE"]);
      peer.send(HEAD("OPTIONS", "z9hG4bKopt7", 2).replace("Call-ID: c1@", "Call-ID: c2@"), UAS);
      await bed.flush();
      // A stateful non-INVITE: the route's 200 went; a second answer is refused without a throw.
      expect(await txs[1]!.tryReply(500)).toBe(false);
      expect(responses().at(-1)).toBe("200 OPTIONS");
    });

    it("INVITE already answered: 200 to the CANCEL and no other effect", async () => {
      const { bed, peer, txs, responses, cancelled } = await setup();
      peer.send(HEAD("INVITE", "z9hG4bKinv2"), UAS);
      await bed.flush();
      await txs[0]!.reply(486);
      await bed.flush();
      peer.send(HEAD("CANCEL", "z9hG4bKinv2"), UAS);
      await bed.flush();
      expect(responses()).toEqual(["180 INVITE", "486 INVITE", "200 CANCEL"]);
      expect(cancelled).toEqual([]);
    });

    it("no matching INVITE: 481 without creating any transaction", async () => {
      const { bed, peer, responses, uas } = await setup();
      peer.send(HEAD("CANCEL", "z9hG4bKnone"), UAS);
      await bed.flush();
      expect(responses()).toEqual(["481 CANCEL"]);
      const stats = await uas.stats();
      expect(stats.created).toBe(0);
      expect(stats.unmatched_cancels).toBe(1);
    });

    it("unmatchedCancel 'drop' answers nothing; 'stateful' answers 481 from a short-lived transaction", async () => {
      const a = await setup({ unmatchedCancel: "drop" });
      a.peer.send(HEAD("CANCEL", "z9hG4bKnone"), UAS);
      await a.bed.flush();
      expect(a.responses()).toEqual([]);
      const b = await setup({ unmatchedCancel: "stateful" });
      b.peer.send(HEAD("CANCEL", "z9hG4bKnone"), UAS);
      await b.bed.flush();
      expect(b.responses()).toEqual(["481 CANCEL"]);
      expect((await b.uas.stats()).created).toBe(1);
    });

    it("a CANCEL before its INVITE (reordering): 481, then the INVITE is served normally, nothing leaks", async () => {
      const { bed, peer, responses, uas } = await setup();
      peer.send(HEAD("CANCEL", "z9hG4bKreo"), UAS);
      peer.send(HEAD("INVITE", "z9hG4bKreo"), UAS);
      await bed.flush();
      expect(responses()).toEqual(["481 CANCEL", "180 INVITE"]);
      expect(await uas.audit()).toHaveLength(1); // one transaction in the table: the INVITE's
      expect((await uas.stats()).current).toBe(1);
    });

    it("autoCancel487 off: the user decides and sends the 487", async () => {
      const { bed, peer, txs, responses } = await setup({ autoCancel487: false });
      peer.send(HEAD("INVITE", "z9hG4bKman"), UAS);
      peer.send(HEAD("CANCEL", "z9hG4bKman"), UAS);
      await bed.flush();
      expect(responses()).toEqual(["180 INVITE", "200 CANCEL"]);
      // No automatic 487: the INVITE waits for the user.
      await bed.advance(1000);
      expect(responses()).toEqual(["180 INVITE", "200 CANCEL"]);
      await txs[0]!.reply(487);
      await bed.flush();
      expect(responses()).toEqual(["180 INVITE", "200 CANCEL", "487 INVITE"]);
    });
  });

  describe("CANCEL between two engines", () => {
    for (const loss of [0, 0.1]) {
      it(`INVITE → 180 → cancel → 200/487 → ACK completes for 50 calls at ${loss * 100}% loss`, async () => {
        const bed = makeBed({ loss, seed: 7 });
        const uas = await bed.engine({ address: "127.0.0.2" });
        uas.onRequest = (tx) => {
          if (tx.method === "INVITE") tx.reply(180);
        };
        const uac = await bed.engine({ address: "127.0.0.1" });
        const handles = [];
        for (let i = 0; i < 50; i++) {
          const h = await uac.request({
            method: "INVITE",
            uri: "sip:bob@127.0.0.2",
            from: "<sip:alice@127.0.0.1>",
            to: "<sip:bob@127.0.0.2>",
            onProvisional: () => {
              h.cancel();
            },
          });
          handles.push(h);
        }
        await bed.advance(60_000);
        const outcomes = handles.map((h) => h.outcome?.status);
        // Each call ends with the 487 (a rare call can lose every provisional and
        // time out, but never hangs and never leaks: the leak check runs after this test).
        expect(outcomes.every((s) => s === 487 || s === 408)).toBe(true);
        expect(outcomes.filter((s) => s === 487).length).toBeGreaterThanOrEqual(45);
        expect((await uas.stats())["4xx"]).toBeGreaterThanOrEqual(45);
      });
    }
  });
});
