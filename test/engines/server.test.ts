// Server transactions: INVITE (RFC 3261 §17.2.1 + RFC 6026) and non-INVITE
// (§17.2.2 + RFC 4320), driven by a scripted peer sending raw requests.
import { TransactionError } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { type BedEngine, forEachEngine, live } from "../setup/engines.js";
import { rawRequest, requestAB, UAS } from "./raw.js";

type MakeBed = Parameters<Parameters<typeof forEachEngine>[0]>[0];
type ServerTx = Parameters<NonNullable<BedEngine["onRequest"]>>[0];

function invite(branch = "z9hG4bKabc123", extra = ""): string {
  return rawRequest({
    method: "INVITE",
    branch,
    callId: "call-1@127.0.0.9",
    fromTag: "fa",
    contact: true,
    extra,
  });
}

function ack(branch = "z9hG4bKabc123", toTag = "", cseq = 1): string {
  return rawRequest({ method: "ACK", branch, callId: "call-1@127.0.0.9", fromTag: "fa", toTag, cseq });
}

/** The CANCEL of invite(branch): its Contact too. */
function cancel(branch = "z9hG4bKabc123"): string {
  return rawRequest({ method: "CANCEL", branch, callId: "call-1@127.0.0.9", fromTag: "fa", contact: true });
}

function options(branch = "z9hG4bKopt1"): string {
  return rawRequest({
    method: "OPTIONS",
    uri: "sip:127.0.0.1",
    branch,
    callId: "opt-1@127.0.0.9",
    fromTag: "fo",
    to: "<sip:127.0.0.1>",
    cseq: 7,
  });
}

async function setup(makeBed: MakeBed, handler?: (tx: ServerTx) => void, opts: { autoInv100?: number } = {}) {
  const bed = makeBed();
  const txs: ServerTx[] = [];
  const uas = await bed.engine({
    address: "127.0.0.1",
    timers: opts.autoInv100 === undefined ? undefined : { autoInv100: opts.autoInv100 },
  });
  uas.onRequest = (tx) => {
    txs.push(tx);
    handler?.(tx);
  };
  const peer = bed.peer("127.0.0.9");
  const statuses = () => peer.messages((m) => !m.isRequest).map((m) => (m.isRequest ? 0 : m.status));
  return { bed, uas, peer, txs, statuses };
}

/** setup(), then one OPTIONS from the peer, delivered: its server transaction is `tx`. */
async function optionsArrived(makeBed: MakeBed) {
  const s = await setup(makeBed);
  s.peer.send(options(), UAS);
  await s.bed.flush();
  expect(s.txs).toHaveLength(1);
  return { ...s, tx: s.txs[0]! };
}

forEachEngine((makeBed) => {
  describe("INVITE server transaction (RFC 3261 §17.2.1, RFC 6026)", () => {
    it("sends 100 Trying when the user has not answered within 200 ms, and the 100 again for a retransmitted INVITE", async () => {
      const { bed, peer, statuses, txs } = await setup(makeBed);
      peer.send(invite(), UAS);
      await bed.flush();
      expect(txs).toHaveLength(1);
      await bed.advance(199);
      expect(statuses()).toEqual([]);
      await bed.advance(1);
      expect(statuses()).toEqual([100]);
      const trying = peer.messages((m) => !m.isRequest)[0]!;
      expect(trying.toTag).toBeUndefined();
      peer.send(invite(), UAS);
      await bed.flush();
      expect(statuses()).toEqual([100, 100]);
      await txs[0]!.reply(486);
      await bed.flush();
    });

    it("replyById with a To tag after the automatic 100: every later response carries that tag", async () => {
      const { bed, peer, statuses, txs, uas } = await setup(makeBed);
      peer.send(invite("z9hG4bKtag1"), UAS);
      await bed.advance(200);
      expect(statuses()).toEqual([100]);
      await uas.replyById(txs[0]!.id, 180, { toTag: "control-tag" });
      await uas.replyById(txs[0]!.id, 486, { reason: "Busy Now", toTag: "ignored-now" });
      await bed.flush();
      const answers = peer.messages((m) => !m.isRequest);
      expect(statuses()).toEqual([100, 180, 486]);
      expect(answers.map((m) => m.toTag)).toEqual([undefined, "control-tag", "control-tag"]);
      expect(answers[2]!.isRequest ? "" : answers[2]!.reason).toBe("Busy Now");
      peer.send(ack("z9hG4bKtag1", "control-tag"), UAS);
      await bed.flush();
    });

    it("no automatic 100 when the user answers first", async () => {
      const { bed, statuses, peer, uas } = await setup(makeBed, (tx) => tx.reply(180));
      peer.send(invite(), UAS);
      await bed.advance(1000);
      expect(statuses()).toEqual([180]);
      (await uas.audit()).length; // still alive in Proceeding
    });

    it("non-2xx final: Timer G retransmits (T1 doubling to T2), ACK → Confirmed, Timer I = T4 ends it", async () => {
      const { bed, peer, statuses, txs, uas } = await setup(makeBed, (tx) =>
        tx.reply(486, { reason: "Busy Here" }),
      );
      peer.send(invite(), UAS);
      await bed.flush();
      expect(statuses()).toEqual([486]);
      const res = peer.messages((m) => !m.isRequest)[0]!;
      expect(res.toTag).toBeDefined();
      await bed.advance(500);
      await bed.advance(1000);
      expect(statuses()).toEqual([486, 486, 486]);
      peer.send(ack("z9hG4bKabc123", res.toTag), UAS);
      await bed.flush();
      expect((await uas.audit())[0]?.state).toBe("confirmed");
      expect((await uas.audit())[0]?.holders.sort()).toEqual(["table", "timer:I"]);
      await bed.advance(10_000);
      expect(statuses()).toHaveLength(3);
      expect(await live(uas)).toBe(0);
      expect(txs[0]!.finalStatus).toBe(486);
    });

    it("Timer H: no ACK within 64·T1 ends the transaction with an ack-timeout", async () => {
      const causes: string[] = [];
      const { bed, peer, uas } = await setup(makeBed, (tx) => {
        tx.events.onTerminated = (c) => causes.push(c);
        tx.reply(404);
      });
      peer.send(invite(), UAS);
      await bed.advance(31_999);
      expect(await live(uas)).toBe(1);
      await bed.advance(1);
      expect(await live(uas)).toBe(0);
      expect(causes).toEqual(["ack-timeout"]);
    });

    it("2xx → Accepted: the 2xx is resent until its ACK (§13.3.1.4), retransmitted INVITEs are absorbed, Timer L ends it", async () => {
      const acks: string[] = [];
      const { bed, peer, statuses, uas } = await setup(makeBed, (tx) => {
        tx.events.onAck = (a) => acks.push(a.method);
        tx.reply(200);
      });
      peer.send(invite(), UAS);
      await bed.flush();
      await bed.advance(500);
      await bed.advance(1000);
      expect(statuses()).toEqual([200, 200, 200]);
      peer.send(invite(), UAS); // absorbed
      await bed.flush();
      expect(statuses()).toHaveLength(3);
      const toTag = peer.messages((m) => !m.isRequest)[0]!.toTag!;
      peer.send(ack("z9hG4bKother", toTag), UAS); // the 2xx ACK has its own branch
      await bed.flush();
      expect(acks).toEqual(["ACK"]);
      await bed.advance(10_000);
      expect(statuses()).toHaveLength(3);
      expect((await uas.audit())[0]?.state).toBe("accepted");
      await bed.advance(22_000);
      expect(await live(uas)).toBe(0);
    });

    it("a second final from the user is refused with a TransactionError, not sent", async () => {
      const { bed, peer, txs, statuses } = await setup(makeBed, (tx) => tx.reply(603));
      peer.send(invite(), UAS);
      await bed.flush();
      await expect((async () => txs[0]!.reply(200))()).rejects.toThrow(TransactionError);
      await bed.flush();
      expect(statuses()).toEqual([603]);
    });

    it("merged request (§8.2.2.2): same From tag, Call-ID and CSeq on another branch gets 482", async () => {
      const { bed, peer, statuses, uas } = await setup(makeBed);
      peer.send(invite("z9hG4bKfirst"), UAS);
      peer.send(invite("z9hG4bKsecond"), UAS);
      await bed.flush();
      expect(statuses()).toEqual([482]);
      expect((await uas.stats()).merged_requests).toBe(1);
      expect(await live(uas)).toBe(1);
    });

    it("merged request beside the INVITE's CANCEL (two transactions on one Call-ID and CSeq) still gets 482", async () => {
      const { bed, peer, statuses, uas } = await setup(makeBed); // rings: nobody answers
      peer.send(invite("z9hG4bKfirst"), UAS);
      peer.send(cancel("z9hG4bKfirst"), UAS);
      await bed.flush();
      expect(statuses().sort()).toEqual([200, 487]);
      peer.send(invite("z9hG4bKsecond"), UAS);
      await bed.flush();
      expect(statuses()).toHaveLength(3);
      expect(statuses()[2]).toBe(482);
      expect((await uas.stats()).merged_requests).toBe(1);
    });

    it("the ACK of a 2xx finds its INVITE past another transaction on the same Call-ID and CSeq (§13.3.1.4)", async () => {
      const acks: string[] = [];
      const { bed, peer, statuses } = await setup(makeBed, (tx) => {
        if (tx.request.method === "INVITE") tx.events.onAck = (a) => acks.push(a.method);
        tx.reply(200);
      });
      // An INFO with the INVITE's Call-ID and CSeq number: indexed first, not the INVITE, not merged.
      peer.send(
        invite("z9hG4bKinfo").replace("INVITE sip:", "INFO sip:").replace("CSeq: 1 INVITE", "CSeq: 1 INFO"),
        UAS,
      );
      await bed.flush();
      peer.send(invite("z9hG4bKlate"), UAS);
      await bed.flush();
      expect(statuses()).toEqual([200, 200]);
      const toTag = peer.messages((m) => !m.isRequest)[1]!.toTag!;
      peer.send(ack("z9hG4bKother", toTag), UAS);
      await bed.flush();
      expect(acks).toEqual(["ACK"]);
      await bed.advance(1000);
      expect(statuses()).toEqual([200, 200]); // no 2xx retransmission after the ACK
    });

    it("RFC 2543 fallback: a request without the magic cookie matches its retransmission and its ACK", async () => {
      const { bed, peer, statuses, uas } = await setup(makeBed, (tx) => tx.reply(480));
      peer.send(invite("old2543"), UAS);
      peer.send(invite("old2543"), UAS);
      await bed.flush();
      expect((await uas.stats()).created).toBe(1);
      expect(statuses()).toEqual([480, 480]);
      const toTag = peer.messages((m) => !m.isRequest)[0]!.toTag!;
      peer.send(ack("old2543", toTag), UAS);
      await bed.flush();
      expect((await uas.audit())[0]?.state).toBe("confirmed");
    });

    it("responses go to the source port when rport is asked for, and the Via gets received/rport (RFC 3581)", async () => {
      const bed = makeBed();
      const uas = await bed.engine({ address: "127.0.0.1" });
      uas.onRequest = (tx) => tx.reply(200);
      const peer = bed.peer("127.0.0.9", 6000);
      peer.send(options().replace("127.0.0.9:5060;branch", "10.1.1.1:5060;rport;branch"), UAS);
      await bed.flush();
      const res = peer.messages((m) => !m.isRequest)[0]!;
      expect(res.via.received).toBe("127.0.0.9");
      expect(res.via.rport).toBe(6000);
      expect((await uas.stats()).created).toBe(1);
    });
  });

  describe("non-INVITE server transaction (RFC 3261 §17.2.2, RFC 4320)", () => {
    it("Trying absorbs retransmissions; the final is resent for each retransmission; Timer J = 64·T1", async () => {
      const { bed, peer, statuses, uas, tx } = await optionsArrived(makeBed);
      peer.send(options(), UAS);
      await bed.flush();
      expect(statuses()).toEqual([]);
      await tx.reply(200);
      await bed.flush();
      peer.send(options(), UAS);
      await bed.flush();
      expect(statuses()).toEqual([200, 200]);
      expect((await uas.audit())[0]?.holders.sort()).toEqual(["table", "timer:J"]);
      await bed.advance(31_999);
      expect(await live(uas)).toBe(1);
      await bed.advance(1);
      expect(await live(uas)).toBe(0);
    });

    it("RFC 4320: refuses a non-100 provisional and a 408; defers a 100 until T2 has passed", async () => {
      const { bed, peer, statuses, tx } = await optionsArrived(makeBed);
      await expect((async () => tx.reply(180))()).rejects.toThrow(TransactionError);
      await expect((async () => tx.reply(408))()).rejects.toThrow(/4320/);
      await tx.reply(100);
      await bed.advance(3999);
      expect(statuses()).toEqual([]);
      await bed.advance(1);
      expect(statuses()).toEqual([100]);
      peer.send(options(), UAS);
      await bed.flush();
      expect(statuses()).toEqual([100, 100]);
      await tx.reply(200);
      await bed.flush();
      expect(statuses()).toEqual([100, 100, 200]);
    });

    it("a deferred 100 is dropped when the final goes first", async () => {
      const { bed, statuses, tx } = await optionsArrived(makeBed);
      await tx.reply(100);
      await tx.reply(200);
      await bed.advance(10_000);
      expect(statuses()).toEqual([200]);
    });

    it("without a handler, requests are answered 501", async () => {
      const bed = makeBed();
      await bed.engine({ address: "127.0.0.1" });
      const peer = bed.peer("127.0.0.9");
      peer.send(options(), UAS);
      await bed.flush();
      expect(peer.messages().map((m) => (m.isRequest ? 0 : m.status))).toEqual([501]);
    });
  });

  describe("dialog-creating messages carry a Contact (RFC 3261 §8.1.1.8, §12.1.1)", () => {
    it("our INVITE has a Contact; our 180 and 200 to an INVITE have one, and copy Record-Route", async () => {
      const bed = makeBed();
      const uas = await bed.engine({ address: "127.0.0.2" });
      // The INVITE as the UAS received it (core's observers.requestIn).
      let invite: string | undefined;
      uas.onRequest = (tx) => {
        invite = tx.request.header("contact");
        tx.reply(180);
        tx.reply(200);
      };
      const uac = await bed.engine({ address: "127.0.0.1" });
      const got: Array<[number, string | undefined, string[]]> = [];
      await requestAB(uac, {
        method: "INVITE",
        uri: "sip:b@127.0.0.2",
        headers: [["Record-Route", "<sip:p1.example;lr>"]],
        onResponse: (r) => got.push([r.status, r.header("contact"), r.headerValues("record-route")]),
      });
      await bed.flush();
      expect(invite).toBe("<sip:127.0.0.1:5060>");
      expect(got).toEqual([
        [180, "<sip:127.0.0.2:5060>", ["<sip:p1.example;lr>"]],
        [200, "<sip:127.0.0.2:5060>", ["<sip:p1.example;lr>"]],
      ]);
    });
  });
});
