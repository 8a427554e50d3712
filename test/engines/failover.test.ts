// RFC 3263 next hops in the proxy, on both engines: a host name resolved
// through a DNS we control (fixtures/relay-route.mjs: A records sent with the
// request, no real DNS), and failover to the next destination on a 503 or a
// transport error (§4.3).
import { describe, expect, it } from "vitest";
import { type EngineBed, forEachEngine } from "../setup/engines.js";
import { uacAndProxy, viaProxy } from "./proxy-bed.js";

/** The X-Relay header: relay by Request-URI, with these A records. */
function dns(records: Record<string, string[]>): [string, string] {
  return ["X-Relay", Buffer.from(JSON.stringify({ dns: records }), "utf8").toString("base64url")];
}

/** A new bed: a UAS answering 200 at `address`, and the UAC and the proxy. */
async function uasBehindProxy(makeBed: () => EngineBed, address: string) {
  const bed = makeBed();
  const uas = await bed.engine({ address });
  uas.onRequest = (tx) => tx.reply(200);
  const { uac } = await uacAndProxy(bed);
  return { bed, uac };
}

forEachEngine((makeBed) => {
  describe("proxy next hops by RFC 3263", () => {
    it("resolves a host name and relays to it", async () => {
      const { bed, uac } = await uasBehindProxy(makeBed, "127.0.0.10");
      const h = await viaProxy(bed, uac, {
        uri: "sip:bob@uas.example",
        headers: [dns({ "uas.example": ["127.0.0.10"] })],
      });
      expect(h.outcome?.status).toBe(200);
    });

    it("fails over to the next address on a 503, and remembers the failed one", async () => {
      const bed = makeBed();
      const hits: string[] = [];
      const a = await bed.engine({ address: "127.0.0.10" });
      a.onRequest = (tx) => {
        hits.push(`a ${tx.method}`);
        tx.reply(503);
      };
      const b = await bed.engine({ address: "127.0.0.11" });
      b.onRequest = (tx) => {
        hits.push(`b ${tx.method}`);
        if (tx.method === "INVITE") tx.reply(180);
        tx.reply(200);
      };
      const { uac } = await uacAndProxy(bed);
      const records = dns({ "pool.example": ["127.0.0.10", "127.0.0.11"] });
      const h = await viaProxy(bed, uac, {
        method: "INVITE",
        uri: "sip:bob@pool.example",
        headers: [records],
      });
      expect(hits).toEqual(["a INVITE", "b INVITE"]);
      expect(h.outcome?.status).toBe(200);
      // The failed address is skipped while it is marked failed: the next request goes to b at once.
      // (Marks live in the resolver of the proxy's shard: the same Call-ID reaches the same shard.)
      const again = await viaProxy(bed, uac, {
        callId: h.callId,
        cseq: h.cseq + 1,
        uri: "sip:bob@pool.example",
        headers: [records],
      });
      expect(again.outcome?.status).toBe(200);
      expect(hits).toEqual(["a INVITE", "b INVITE", "b OPTIONS"]);
    });

    it("fails over on a transport error (TCP, nobody listening at the first address)", async () => {
      const { bed, uac } = await uasBehindProxy(makeBed, "127.0.0.11");
      const h = await viaProxy(bed, uac, {
        uri: "sip:bob@pool.example;transport=tcp",
        headers: [dns({ "pool.example": ["127.0.0.99", "127.0.0.11"] })],
      });
      await bed.advance(10);
      expect(h.outcome?.status).toBe(200);
    });

    it("an unresolvable name fails the branch like a 503 — sent upstream as 500 (§16.7 item 6) — and nothing leaks", async () => {
      const bed = makeBed();
      const { uac } = await uacAndProxy(bed);
      const h = await viaProxy(bed, uac, { uri: "sip:bob@nowhere.example", headers: [dns({})] });
      expect(h.outcome?.status).toBe(500);
    });
  });
});
