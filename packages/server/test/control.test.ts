// A server with a control token and --answer-after never: the token is
// enforced on every call, and ringing INVITEs are answered through tm.reply
// and tm.reply_callid.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Engine, FinalOutcome } from "@siptm/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  killAll,
  RINGING_UAS,
  rpc,
  runCli,
  SERVER_TIMERS,
  type Served,
  serve,
  testEngine,
  until,
} from "./helpers.js";

const TOKEN = "s3cret-token";
let server: Served;
let uac: Engine;

beforeAll(async () => {
  [server, uac] = await Promise.all([
    serve([...RINGING_UAS, "--drain-timeout", "300", ...SERVER_TIMERS], {
      SIPTM_RPC_TOKEN: TOKEN,
    }),
    testEngine(),
  ]);
});

afterAll(async () => {
  await uac?.close();
  await killAll();
});

describe("control token", () => {
  it("refuses calls without the token or with a wrong one, and keeps serving", async () => {
    const none = await rpc(server.rpc, "tm.stats");
    expect(none.status).toBe(401);
    expect(none.body.error?.code).toBe(-32010);
    const wrong = await rpc(server.rpc, "tm.stats", undefined, { token: "nope" });
    expect(wrong.status).toBe(401);
    const metrics = await fetch(`http://127.0.0.1:${server.rpc}/metrics`);
    expect(metrics.status).toBe(401);
    await metrics.text();
    const right = await rpc(server.rpc, "tm.stats", undefined, { token: TOKEN });
    expect(right.status).toBe(200);
    expect(typeof (right.body.result as { created: number }).created).toBe("number");
  });

  it("siptm rpc takes the token from --rpc-token or SIPTM_RPC_TOKEN", async () => {
    const flag = runCli(["rpc", "--rpc", `127.0.0.1:${server.rpc}`, "--rpc-token", TOKEN, "core.version"]);
    expect((await flag.exited).code).toBe(0);
    expect(JSON.parse(flag.stdout()).name).toBe("siptm");
    const env = runCli(["rpc", "--rpc", `127.0.0.1:${server.rpc}`, "core.uptime"], {
      SIPTM_RPC_TOKEN: TOKEN,
    });
    expect((await env.exited).code).toBe(0);
    const without = runCli(["rpc", "--rpc", `127.0.0.1:${server.rpc}`, "core.uptime"]);
    expect((await without.exited).code).toBe(1);
    expect(without.stderr()).toContain("unauthorized");
  });

  it("siptm rpc --config reads the address and the token from the server's config file; a flag wins over it, it wins over the environment", async () => {
    const dir = mkdtempSync(join(tmpdir(), "siptm-rpc-config-"));
    try {
      const file = join(dir, "siptm.json");
      writeFileSync(file, JSON.stringify({ rpc: `127.0.0.1:${server.rpc}`, rpcToken: TOKEN, route: "uas" }));
      const fromFile = runCli(["rpc", "-c", file, "core.version"], {
        SIPTM_RPC: "127.0.0.1:9",
        SIPTM_RPC_TOKEN: "nope",
      });
      expect((await fromFile.exited).code, fromFile.stderr()).toBe(0);
      expect(JSON.parse(fromFile.stdout()).name).toBe("siptm");
      const flagWins = runCli(["rpc", "--config", file, "--rpc-token", "nope", "core.version"]);
      expect((await flagWins.exited).code).toBe(1);
      expect(flagWins.stderr()).toContain("unauthorized");
      writeFileSync(file, JSON.stringify({ rpc: "off" }));
      const off = runCli(["rpc", "-c", file, "core.version"]);
      expect((await off.exited).code).toBe(2);
      expect(off.stderr()).toMatch(/control interface is off/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("answering ringing INVITEs over RPC", () => {
  function invite(): { final: Promise<FinalOutcome>; callId: string; cseq: number } {
    const h = uac.request({
      method: "INVITE",
      uri: `sip:bob@127.0.0.1:${server.udp}`,
      from: "<sip:alice@127.0.0.1>",
      to: "<sip:bob@127.0.0.1>",
      nextHop: `udp:127.0.0.1:${server.udp}`,
    });
    return { final: h.final, callId: h.callId, cseq: h.cseq };
  }
  type Listed = { id: string; kind: string; state: string; callid: string; cseq: number; shard: number };
  const ringing = async (callId: string): Promise<Listed | undefined> => {
    const list = await call<Listed[]>(server.rpc, "tm.list", [], TOKEN);
    return list.find((t) => t.callid === callId && t.kind === "ist" && t.state === "proceeding");
  };

  it("tm.reply by transaction id", async () => {
    const inv = invite();
    await until("the INVITE ringing on the server", async () => (await ringing(inv.callId)) !== undefined);
    const tx = (await ringing(inv.callId))!;
    expect(tx.shard).toBe(0);
    const r = await rpc(server.rpc, "tm.reply", [486, "Busy Here", tx.id, ".", "X-Why: test"], {
      token: TOKEN,
    });
    expect(r.body.result).toEqual({ result: "sent" });
    const outcome = await inv.final;
    expect(outcome.status).toBe(486);
    expect(outcome.response?.header("x-why")).toBe("test");
    const again = await rpc(server.rpc, "tm.reply", [200, ".", tx.id, ".", "."], { token: TOKEN });
    expect(again.body.error?.code).toBeLessThan(-31999);
  });

  it("tm.reply_callid by Call-ID and CSeq", async () => {
    const inv = invite();
    await until("the INVITE ringing on the server", async () => (await ringing(inv.callId)) !== undefined);
    const r = await rpc(server.rpc, "tm.reply_callid", [603, "Decline", inv.callId, inv.cseq, ".", "."], {
      token: TOKEN,
    });
    expect(r.body.result).toEqual({ result: "sent" });
    expect((await inv.final).status).toBe(603);
  });

  it("on SIGTERM an INVITE still ringing after the drain gets 503, and the server exits 0", async () => {
    const inv = invite();
    await until("the INVITE ringing on the server", async () => (await ringing(inv.callId)) !== undefined);
    server.proc.kill("SIGTERM");
    expect((await inv.final).status).toBe(503);
    expect((await server.exited).code).toBe(0);
    expect(server.stdout()).toMatch(/stopping \(SIGTERM\): draining \d+ transaction/);
  });
});
