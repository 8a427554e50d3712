// Non-INVITE client transaction: RFC 3261 §17.1.2 (Figure 6).
import { buildResponse } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { forEachEngine, live } from "../setup/engines.js";

type MakeBed = Parameters<Parameters<typeof forEachEngine>[0]>[0];

async function setup(makeBed: MakeBed, protocol: "UDP" | "TCP" = "UDP", method = "OPTIONS") {
  const bed = makeBed();
  const uac = await bed.engine({ address: "127.0.0.1" });
  const peer = bed.peer("127.0.0.9", 5060, protocol);
  const h = await uac.request({
    method,
    uri: "sip:127.0.0.9",
    from: "<sip:a@127.0.0.1>",
    to: "<sip:127.0.0.9>",
    nextHop: peer.hop,
  });
  await bed.flush();
  const respond = (status: number) =>
    peer.send(buildResponse(peer.requests(method)[0]!, status, { toTag: "x" }), {
      protocol,
      address: "127.0.0.1",
      port: 5060,
    });
  return { bed, uac, peer, h, respond };
}

forEachEngine((makeBed) => {
  describe("non-INVITE client transaction (RFC 3261 §17.1.2)", () => {
    it("Trying: Timer E doubles from T1 up to T2; Timer F (64·T1) gives a 408", async () => {
      const { bed, peer, h } = await setup(makeBed);
      const times: number[] = [];
      for (let t = 0; t < 32_000; t += 50) {
        await bed.advance(50);
        while (peer.received.length > times.length + 1) times.push(bed.clock.now());
      }
      // 0.5, 1, 2, 4, 4, 4… s apart: 500, 1500, 3500, 7500, 11500, … until F at 32000.
      expect(times.slice(0, 6)).toEqual([500, 1500, 3500, 7500, 11500, 15500]);
      expect(times[times.length - 1]).toBe(31500);
      expect(h.outcome).toMatchObject({ status: 408, cause: "timeout" });
      const bytes = peer.received[0]!.data;
      for (const r of peer.received) expect(r.data.equals(bytes)).toBe(true);
    });

    it("Proceeding: retransmits every T2; the final response completes it; Timer K = T4", async () => {
      const { bed, peer, h, respond, uac } = await setup(makeBed);
      respond(100);
      await bed.flush();
      expect((await uac.audit()).find((a) => a.id === h.id)?.state).toBe("proceeding");
      const before = peer.received.length;
      await bed.advance(500); // E fires at 500 (interval was T1): now E = T2 in Proceeding
      await bed.advance(4000);
      await bed.advance(4000);
      expect(peer.received.length - before).toBe(3);
      respond(200);
      await bed.flush();
      expect(h.outcome?.status).toBe(200);
      expect((await uac.audit())[0]?.state).toBe("completed");
      expect((await uac.audit())[0]?.holders.sort()).toEqual(["table", "timer:K"]);
      respond(200); // absorbed
      await bed.flush();
      const n = peer.received.length;
      await bed.advance(4999);
      expect(await live(uac)).toBe(1);
      await bed.advance(1);
      expect(await live(uac)).toBe(0);
      expect(peer.received.length).toBe(n);
    });

    it("reliable: no retransmission, Timer K is zero", async () => {
      const { bed, peer, h, respond, uac } = await setup(makeBed, "TCP");
      await bed.advance(20_000);
      expect(peer.received).toHaveLength(1);
      respond(404);
      await bed.flush();
      expect(h.outcome?.status).toBe(404);
      expect(await live(uac)).toBe(0);
    });

    it("the request and all retransmissions carry a branch with at least 96 random bits after z9hG4bK", async () => {
      const { peer } = await setup(makeBed);
      const branch = peer.requests()[0]!.via.branch!;
      expect(branch.startsWith("z9hG4bK")).toBe(true);
      expect(branch.length - 7).toBeGreaterThanOrEqual(16);
    });
  });
});
