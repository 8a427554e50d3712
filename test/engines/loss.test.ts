// Loss of each message of each transaction kind, between two engines on the
// in-memory network: the RFC 3261 §17 retransmission rules must recover every
// one, and nothing may leak (the leak check runs after every test). Runs on
// the core Engine and on the ShardedEngine.
import { type ClientEvents, newCallId, type SipResponse } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { defaultHashKey, hashKey, shardOf } from "../../packages/workers/src/hash.js";
import { type BedEngine, type EngineBed, forEachEngine } from "../setup/engines.js";
import { requestAB, uacAndPeer } from "./raw.js";

/** `count` fresh Call-IDs that the sharded beds' 2 shards (the process's default key) give to `shard`. */
function callIdsOn(shard: number, count: number): string[] {
  const key = hashKey(defaultHashKey());
  const out: string[] = [];
  while (out.length < count) {
    const id = newCallId();
    if (shardOf(id, 2, key) === shard) out.push(id);
  }
  return out;
}

/** A request as a raw peer at 127.0.0.x writes it (sent once: a peer does not retransmit). */
function rawOptions(callId: string, branch: string, method = "OPTIONS"): string {
  return (
    `${method} sip:b@127.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bK${branch}\r\n` +
    `Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=t-${branch}\r\nTo: <sip:b@y>\r\nCall-ID: ${callId}\r\n` +
    `CSeq: 1 ${method}\r\nContent-Length: 0\r\n\r\n`
  );
}

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

/** The loss is not repaired `before` ms on (no outcome yet); `after` ms later the outcome is `status`. */
async function expectRepairedBetween(
  bed: EngineBed,
  h: { readonly outcome?: { status: number } | undefined },
  before: number,
  after: number,
  status: number,
): Promise<void> {
  await bed.advance(before);
  expect(h.outcome).toBeUndefined();
  await bed.advance(after);
  expect(h.outcome?.status).toBe(status);
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
      await expectRepairedBetween(bed, h, 400, 200, 486);
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
        tx.reply(200, { headers: [["Contact", "<sip:b@127.0.0.2>"]] });
      });
      dropFirst(bed, "SIP/2.0 200", 2);
      const h = await send("INVITE", {
        onResponse: (r) => {
          if (r.status === 200) void uac.ack2xx(h, r);
        },
      });
      await expectRepairedBetween(bed, h, 1000, 600, 200);
      await bed.flush();
      expect(acks).toEqual([1]);
    });

    it("ACK of the 2xx lost: the next 2xx retransmission is ACKed by the user again", async () => {
      const acks: number[] = [];
      const { bed, send, uac } = await pair(makeBed, (tx) => {
        tx.events.onAck = () => acks.push(1);
        tx.reply(200, { headers: [["Contact", "<sip:b@127.0.0.2>"]] });
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
      await expectRepairedBetween(bed, h, 3400, 200, 200);
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
      await expectRepairedBetween(bed, h, 400, 200, 487);
    });

    it("487 lost: Timer G resends it", async () => {
      const { bed, send } = await pair(makeBed, (tx) => tx.reply(180));
      dropFirst(bed, "SIP/2.0 487");
      const h = await send("INVITE", { onProvisional: () => void h.cancel() });
      await expectRepairedBetween(bed, h, 400, 200, 487);
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
          await requestAB(uac, {
            method: "OPTIONS",
            uri: "sip:b@127.0.0.2",
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
          requestAB(uas, {
            method: "OPTIONS",
            uri: "sip:x@127.0.0.1",
            callId,
          }))(),
      ).rejects.toThrow(/full/);
      // Back-pressure lifts when the load falls (here: the unanswered ones hit their lifetime cap).
      await bed.advance(50_000);
      expect((await uas.stats()).lifetime_expired).toBe(2);
      const later = await requestAB(uac, {
        method: "OPTIONS",
        uri: "sip:b@127.0.0.2",
        callId,
        cseq: 4,
      });
      await bed.flush();
      expect(later.outcome).toBeUndefined();
      expect((await uas.stats()).current).toBe(1);
    });

    it("the transaction cap is the whole engine's, wherever the Call-IDs hash; a retransmission still passes", async () => {
      const bed = makeBed();
      const uas = await bed.engine({ address: "127.0.0.2", maxTransactions: 4, retryAfter: 7 });
      uas.onRequest = () => {};
      const peer = bed.peer("127.0.0.5");
      // Three Call-IDs for each shard of the sharded engine (the process's default key), alternating.
      const ids = [callIdsOn(0, 3), callIdsOn(1, 3)];
      const callIds = [0, 1, 2].flatMap((i) => [ids[0]![i]!, ids[1]![i]!]);
      for (const [i, callId] of callIds.entries()) peer.send(rawOptions(callId, `cap${i}`), uas.hop());
      await bed.flush();
      // Four live transactions fill the engine (on the sharded one: two in each shard); the 5th and
      // 6th get 503, whichever shard they would go to.
      const answers = peer.messages((m) => !m.isRequest) as SipResponse[];
      expect(answers.map((r) => [r.status, r.callId, r.header("retry-after")])).toEqual([
        [503, callIds[4], "7"],
        [503, callIds[5], "7"],
      ]);
      expect((await uas.stats()).table_full).toBe(2);
      // A retransmission of an admitted request at the cap is its transaction's, not a new one.
      peer.send(rawOptions(callIds[0]!, "cap0"), uas.hop());
      await bed.flush();
      expect(peer.messages((m) => !m.isRequest)).toHaveLength(2);
      expect((await uas.stats()).table_full).toBe(2);
      // Once they have ended (lifetime cap), there is room again.
      await bed.advance(50_000);
      peer.send(rawOptions(callIds[4]!, "cap-later"), uas.hop());
      await bed.flush();
      expect(peer.messages((m) => !m.isRequest)).toHaveLength(2);
      expect((await uas.stats()).current).toBe(1);
    });

    it("a per-source rate limit drops new requests over it silently; other sources, CANCEL and time refill", async () => {
      const bed = makeBed();
      const uas = await bed.engine({ address: "127.0.0.2", rateLimit: { rate: 2, burst: 3 } });
      uas.onRequest = (tx) => void tx.reply(200);
      const a = bed.peer("127.0.0.5");
      const b = bed.peer("127.0.0.6");
      const answered = (p: typeof a) => p.messages((m) => !m.isRequest) as SipResponse[];
      for (let i = 0; i < 5; i++) a.send(rawOptions(`rl-a${i}`, `a${i}`), uas.hop());
      await bed.flush();
      // A full bucket of 3, then nothing: the 4th and 5th are dropped without an answer.
      expect(answered(a).map((r) => [r.status, r.callId])).toEqual([
        [200, "rl-a0"],
        [200, "rl-a1"],
        [200, "rl-a2"],
      ]);
      // Another source has its own bucket.
      b.send(rawOptions("rl-b0", "b0"), uas.hop());
      // A CANCEL draws no token: it is answered (481, nothing to cancel) though `a` has none left.
      a.send(rawOptions("rl-a9", "a9", "CANCEL"), uas.hop());
      await bed.flush();
      expect(answered(b).map((r) => r.status)).toEqual([200]);
      expect(answered(a).map((r) => r.status)).toEqual([200, 200, 200, 481]);
      // One second later `a` has 2 tokens again.
      await bed.advance(1000);
      for (let i = 5; i < 8; i++) a.send(rawOptions(`rl-a${i}`, `a${i}`), uas.hop());
      await bed.flush();
      expect(
        answered(a)
          .map((r) => r.callId)
          .slice(4),
      ).toEqual(["rl-a5", "rl-a6"]);
      expect((await uas.stats()).rate_limited).toBe(3);
    });

    it("the rate limit's table of sources is bounded: past it the oldest source is forgotten, and counted", async () => {
      const bed = makeBed();
      const uas = await bed.engine({ address: "127.0.0.2", rateLimit: { rate: 1, burst: 1, sources: 2 } });
      uas.onRequest = (tx) => void tx.reply(200);
      const peers = ["127.0.0.5", "127.0.0.6", "127.0.0.7"].map((a) => bed.peer(a));
      for (const [i, p] of peers.entries()) p.send(rawOptions(`ev${i}`, `ev${i}`), uas.hop());
      await bed.flush();
      // The first source was forgotten for the third: its next request finds a full bucket again.
      peers[0]!.send(rawOptions("ev0b", "ev0b"), uas.hop());
      // The third is remembered, with its bucket empty.
      peers[2]!.send(rawOptions("ev2b", "ev2b"), uas.hop());
      await bed.flush();
      expect(peers.map((p) => p.messages((m) => !m.isRequest).length)).toEqual([2, 1, 1]);
      const s = await uas.stats();
      expect(s.rate_sources_evicted).toBe(2);
      expect(s.rate_limited).toBe(1);
    });

    it("per-transaction timer overrides (t_set_fr): Timer B of one request only", async () => {
      const { bed, uac } = await uacAndPeer(makeBed);
      const short = await requestAB(uac, {
        method: "INVITE",
        uri: "sip:b@127.0.0.9",
        timers: { timerB: 2000 },
      });
      const normal = await requestAB(uac, {
        method: "INVITE",
        uri: "sip:b@127.0.0.9",
      });
      await bed.advance(2000);
      expect(short.outcome?.status).toBe(408);
      expect(normal.outcome).toBeUndefined();
    });

    it("requestFrom: a request written in full goes out as written under our Via", async () => {
      const { bed, uac, peer } = await uacAndPeer(makeBed);
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
