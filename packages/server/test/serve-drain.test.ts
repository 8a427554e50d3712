// The shutdown of `siptm serve`, one path for both engines: on SIGTERM a new
// request gets a stateless 503 with Retry-After at once, while the
// transactions in flight finish — a CANCEL still reaches its INVITE, and an
// INVITE still ringing is answered by its route and ACKed — and the server
// then stops with nothing cut short. Child processes, an in-test engine;
// everything killed in afterAll.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Engine, newCallId } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { forEachEngine, workersFlag } from "../../../test/setup/engines.js";
import { callIdOf, fileEngine, SERVER_TIMERS, serve, toServer, until } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "siptm-drain-"));
// Every INVITE rings; when one is cancelled, the route answers the others 200. So the INVITE that
// finishes during the drain is answered only after a CANCEL went through the drain: no race with a timer.
const ROUTE = join(dir, "answer-on-cancel.mjs");
writeFileSync(
  ROUTE,
  `export default function route(ctx) {
  const ringing = new Set();
  return {
    description: "rings; a CANCEL answers the other INVITEs 200",
    onRequest(tx) {
      if (tx.method !== "INVITE") { tx.reply(200); return; }
      ringing.add(tx);
      tx.events.onTerminated = () => ringing.delete(tx);
      tx.events.onCancel = () => {
        ringing.delete(tx);
        for (const other of ringing) other.tryReply(200, { headers: [["Contact", ctx.contactFor(other.source)]] });
        ringing.clear();
      };
      tx.reply(180);
    },
  };
}
`,
);
let uac: Engine;
fileEngine((e) => {
  uac = e;
}, dir);

/** A fresh Call-ID of shard 0 of `shards` (any Call-ID in one thread): the route's state is per shard. */
const shard0CallId = (shards: number) => callIdOf(0, shards);

forEachEngine((_bed, _kind, engine) => {
  const workers = workersFlag(engine);
  describe(`siptm serve --workers ${workers}: shutdown`, () => {
    it("a new INVITE during the drain gets 503 with Retry-After; a CANCEL and a ringing INVITE in flight finish; nothing is cut short", async () => {
      const s = await serve([
        "--route",
        ROUTE,
        "--workers",
        workers,
        "--drain-timeout",
        "20000",
        ...SERVER_TIMERS,
      ]);
      const invite = (callId: string) => {
        let rang = false;
        const h = toServer(uac, s, "INVITE", {
          callId,
          onProvisional: (r) => {
            if (r.status === 180) rang = true;
          },
        });
        return { h, rang: () => rang };
      };
      const answered = invite(shard0CallId(engine.shards));
      const cancelled = invite(shard0CallId(engine.shards));
      await until("both INVITEs ringing", () => answered.rang() && cancelled.rang());

      s.proc.kill("SIGTERM");
      await until("the drain begun", () => /^stopping \(SIGTERM\): draining 2 transaction/m.test(s.stdout()));

      const refused = await invite(newCallId()).h.final;
      expect(refused.status).toBe(503);
      expect(refused.response?.header("retry-after")).toMatch(/^\d+$/);

      expect(await cancelled.h.cancel()).toBe("sent");
      expect((await cancelled.h.final).status).toBe(487);
      const outcome = await answered.h.final;
      expect(outcome.status).toBe(200);
      uac.ack2xx(answered.h, outcome.response!);

      expect((await s.exited).code).toBe(0);
      expect(s.stdout()).toMatch(/^stopped$/m);
      expect(s.stdout()).not.toMatch(/cut short/);
    }, 40_000);
  });
});
