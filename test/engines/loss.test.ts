// Loss of each message of each transaction kind, between two engines on the
// in-memory network: the RFC 3261 §17 retransmission rules must recover every
// one, and nothing may leak (the leak check runs after every test). Runs on
// the core Engine and on the ShardedEngine.
import type { ClientEvents } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { type BedEngine, type EngineBed, forEachEngine } from "./beds.js";

type ServerTx = Parameters<NonNullable<BedEngine["onRequest"]>>[0];

/** Drop the first `count` messages whose text starts with `prefix` (e.g. "ACK ", "SIP/2.0 486"). */
function dropFirst(bed: EngineBed, prefix: string, count = 1): { dropped: () => number } {
  let dropped = 0;
  bed.network.addFilter((data) => {
    if (dropped < count && data.toString("latin1", 0, prefix.length) === prefix) {
      dropped++;
      return "drop";
    }
    return "pass";
  });
  return { dropped: () => dropped };
}

async function pair(makeBed: () => EngineBed, uasHandler: (tx: ServerTx) => void) {
  const bed = makeBed();
  const uas = await bed.engine({ address: "127.0.0.2" });
  uas.onRequest = uasHandler;
  const uac = await bed.engine({ address: "127.0.0.1" });
  const send = (method: string, events: ClientEvents = {}) =>
    uac.request({
      ...events,
      method,
      uri: "sip:b@127.0.0.2",
      from: "<sip:a@127.0.0.1>",
      to: "<sip:b@127.0.0.2>",
    });
  return { bed, uas, uac, send };
}

forEachEngine((makeBed) => {
  describe("loss of each message is recovered (RFC 3261 §17)", () => {
    it("INVITE lost: Timer A retransmits it", async () => {
      const { bed, send, uas } = await pair(makeBed, (tx) => tx.reply(486));
      const d = dropFirst(bed, "INVITE ", 2);
      const h = await send("INVITE");
      await bed.advance(2000);
      expect(d.dropped()).toBe(2);
      expect(h.outcome?.status).toBe(486);
      expect((await uas.stats()).created).toBe(1);
    });

    it("180 lost: the call still completes; the 486 is ACKed", async () => {
      const { bed, send } = await pair(makeBed, (tx) => {
        tx.reply(180);
        tx.reply(486);
      });
      const d = dropFirst(bed, "SIP/2.0 180");
      const statuses: number[] = [];
      const h = await send("INVITE", { onResponse: (r) => statuses.push(r.status) });
      await bed.advance(100);
      expect(d.dropped()).toBe(1);
      expect(statuses).toEqual([486]);
      expect(h.outcome?.status).toBe(486);
    });

    it("non-2xx final lost: Timer G resends it, then it is ACKed", async () => {
      const { bed, send, uas } = await pair(makeBed, (tx) => tx.reply(486));
      dropFirst(bed, "SIP/2.0 486");
      const h = await send("INVITE");
      await bed.advance(400);
      expect(h.outcome).toBeUndefined();
      await bed.advance(200);
      expect(h.outcome?.status).toBe(486);
      await bed.flush();
      expect((await uas.audit())[0]?.state).toBe("confirmed");
    });

    it("ACK lost: the retransmitted final gets the ACK again and the server is Confirmed", async () => {
      const { bed, send, uas } = await pair(makeBed, (tx) => tx.reply(603));
      const d = dropFirst(bed, "ACK ");
      await send("INVITE");
      await bed.flush();
      expect((await uas.audit())[0]?.state).toBe("completed");
      await bed.advance(600);
      expect(d.dropped()).toBe(1);
      expect((await uas.audit())[0]?.state).toBe("confirmed");
    });

    it("2xx lost: the server resends the 2xx until the ACK (§13.3.1.4)", async () => {
      const acks: number[] = [];
      const { bed, send, uac } = await pair(makeBed, (tx) => {
        tx.events.onAck = () => acks.push(1);
        tx.reply(200, undefined, { headers: [["Contact", "<sip:b@127.0.0.2>"]] });
      });
      dropFirst(bed, "SIP/2.0 200", 2);
      const h = await send("INVITE", {
        onResponse: (r) => {
          if (r.status === 200) void uac.ack2xx(h, r);
        },
      });
      await bed.advance(1000);
      expect(h.outcome).toBeUndefined();
      await bed.advance(600);
      expect(h.outcome?.status).toBe(200);
      await bed.flush();
      expect(acks).toEqual([1]);
    });

    it("ACK of the 2xx lost: the next 2xx retransmission is ACKed by the user again", async () => {
      const acks: number[] = [];
      const { bed, send, uac } = await pair(makeBed, (tx) => {
        tx.events.onAck = () => acks.push(1);
        tx.reply(200, undefined, { headers: [["Contact", "<sip:b@127.0.0.2>"]] });
      });
      const d = dropFirst(bed, "ACK ");
      const answers: number[] = [];
      const h = await send("INVITE", {
        onResponse: (r) => {
          if (r.status === 200) {
            answers.push(1);
            void uac.ack2xx(h, r);
          }
        },
      });
      await bed.advance(2000);
      expect(d.dropped()).toBe(1);
      expect(answers).toHaveLength(2);
      expect(acks).toEqual([1]);
    });

    it("non-INVITE request lost: Timer E retransmits it", async () => {
      const { bed, send } = await pair(makeBed, (tx) => tx.reply(200));
      dropFirst(bed, "OPTIONS ", 3);
      const h = await send("OPTIONS");
      await bed.advance(3400);
      expect(h.outcome).toBeUndefined();
      await bed.advance(200);
      expect(h.outcome?.status).toBe(200);
    });

    it("non-INVITE final lost: the retransmitted request gets it again", async () => {
      const { bed, send, uas } = await pair(makeBed, (tx) => tx.reply(202));
      dropFirst(bed, "SIP/2.0 202");
      const h = await send("MESSAGE");
      await bed.advance(500);
      expect(h.outcome?.status).toBe(202);
      expect((await uas.stats()).retransmissions).toBe(1);
    });

    it("CANCEL lost: its own transaction retransmits it; the 487 is ACKed", async () => {
      const { bed, send } = await pair(makeBed, (tx) => tx.reply(180));
      dropFirst(bed, "CANCEL ");
      const h = await send("INVITE", { onProvisional: () => void h.cancel() });
      await bed.advance(400);
      expect(h.outcome).toBeUndefined();
      await bed.advance(200);
      expect(h.outcome?.status).toBe(487);
    });

    it("487 lost: Timer G resends it", async () => {
      const { bed, send } = await pair(makeBed, (tx) => tx.reply(180));
      dropFirst(bed, "SIP/2.0 487");
      const h = await send("INVITE", { onProvisional: () => void h.cancel() });
      await bed.advance(400);
      expect(h.outcome).toBeUndefined();
      await bed.advance(200);
      expect(h.outcome?.status).toBe(487);
    });
  });

  describe("engine limits and overrides", () => {
    it("a full table answers new requests 503 with Retry-After, and request() throws table-full", async () => {
      const bed = makeBed();
      const uas = await bed.engine({ address: "127.0.0.2", maxTransactions: 2, retryAfter: 7 });
      uas.onRequest = () => {};
      const uac = await bed.engine({ address: "127.0.0.1" });
      // One Call-ID for every request, so that on the ShardedEngine they all meet
      // in one shard: maxTransactions bounds each shard's table.
      const callId = "table-full-1";
      const hs: Awaited<ReturnType<typeof uac.request>>[] = [];
      for (const cseq of [1, 2, 3])
        hs.push(
          await uac.request({
            method: "OPTIONS",
            uri: "sip:b@127.0.0.2",
            from: "<sip:a@x>",
            to: "<sip:b@y>",
            callId,
            cseq,
          }),
        );
      await bed.flush();
      expect(hs[2]!.outcome?.status).toBe(503);
      expect(hs[2]!.outcome?.response?.header("retry-after")).toBe("7");
      expect((await uas.stats()).table_full).toBe(1);
      await expect(
        (async () =>
          uas.request({
            method: "OPTIONS",
            uri: "sip:x@127.0.0.1",
            from: "<sip:a@x>",
            to: "<sip:b@y>",
            callId,
          }))(),
      ).rejects.toThrow(/full/);
      // Back-pressure lifts when the load falls (here: the unanswered ones hit their lifetime cap).
      await bed.advance(50_000);
      expect((await uas.stats()).lifetime_expired).toBe(2);
      const later = await uac.request({
        method: "OPTIONS",
        uri: "sip:b@127.0.0.2",
        from: "<sip:a@x>",
        to: "<sip:b@y>",
        callId,
        cseq: 4,
      });
      await bed.flush();
      expect(later.outcome).toBeUndefined();
      expect((await uas.stats()).current).toBe(1);
    });

    it("per-transaction timer overrides (t_set_fr): Timer B of one request only", async () => {
      const bed = makeBed();
      const uac = await bed.engine({ address: "127.0.0.1" });
      bed.peer("127.0.0.9");
      const short = await uac.request({
        method: "INVITE",
        uri: "sip:b@127.0.0.9",
        from: "<sip:a@x>",
        to: "<sip:b@y>",
        timers: { timerB: 2000 },
      });
      const normal = await uac.request({
        method: "INVITE",
        uri: "sip:b@127.0.0.9",
        from: "<sip:a@x>",
        to: "<sip:b@y>",
      });
      await bed.advance(2000);
      expect(short.outcome?.status).toBe(408);
      expect(normal.outcome).toBeUndefined();
    });

    it("requestFrom: a request written in full goes out as written under our Via", async () => {
      const bed = makeBed();
      const uac = await bed.engine({ address: "127.0.0.1" });
      const peer = bed.peer("127.0.0.9");
      const text =
        "MESSAGE sip:b@127.0.0.9 SIP/2.0\r\nFrom: <sip:a@x>;tag=abc\r\nTo: <sip:b@y>\r\nCall-ID: full-1\r\n" +
        "CSeq: 5 MESSAGE\r\nX-Custom: kept as is\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
      const h = await uac.requestFrom(text);
      await bed.flush();
      const got = peer.requests("MESSAGE")[0]!;
      expect(got.callId).toBe("full-1");
      expect(got.cseq.seq).toBe(5);
      expect(got.header("x-custom")).toBe("kept as is");
      expect(got.body.toString()).toBe("hi");
      expect(got.maxForwards).toBe(70);
      expect(got.via.branch).toBe(h.branch);
      await expect(
        (async () =>
          uac.requestFrom(
            "ACK sip:b@127.0.0.9 SIP/2.0\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: q\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
          ))(),
      ).rejects.toThrow(/ACK/);
    });
  });
});
