// `siptm serve --route uas` as a child process, driven as a user would: SIP
// from an in-test engine, JSON-RPC over HTTP, and the `siptm rpc` client.
import type { Engine, SipResponse } from "@siptm/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// The helpers this file drives `siptm serve` with (serve-workers.test.ts imports a like set: the same flows, sharded).
import {
  call,
  FROM,
  inviteOverTcp,
  killAll,
  rpc,
  runCli,
  SERVER_TIMERS,
  type Served,
  serve,
  TO,
  testEngine,
  toServer,
  uacStartThenCancel,
  uacWaitOptions,
  until,
} from "./helpers.js";

let server: Served;
let uac: Engine;

beforeAll(async () => {
  [server, uac] = await Promise.all([serve(["--route", "uas", ...SERVER_TIMERS]), testEngine()]);
});

afterAll(async () => {
  await uac?.close();
  await killAll();
});

describe("SIP against the uas route", () => {
  it("OPTIONS over UDP gets 200", async () => {
    const h = toServer(uac, server, "OPTIONS", {
      uri: `sip:127.0.0.1:${server.udp}`,
    });
    const outcome = await h.final;
    expect(outcome.status).toBe(200);
    expect(outcome.response?.header("allow")).toContain("INVITE");
  });

  it("INVITE over TCP gets 180 then 200 with a Contact; the ACK and a BYE follow", async () => {
    await inviteOverTcp(uac, server, FROM, TO);
  });
});

describe("JSON-RPC control", () => {
  it("tm.stats has the counters at top level and one shard", async () => {
    const s = await call<Record<string, unknown>>(server.rpc, "tm.stats");
    for (const k of ["current", "waiting", "total", "total_local", "created", "freed", "rpl_received"])
      expect(typeof s[k]).toBe("number");
    for (const k of ["rpl_generated", "rpl_sent", "2xx", "4xx", "5xx", "6xx", "retransmissions"])
      expect(typeof s[k]).toBe("number");
    const shards = s.shards as Array<Record<string, unknown>>;
    expect(shards).toHaveLength(1);
    expect(shards[0]!.shard).toBe(0);
    expect(typeof shards[0]!.created).toBe("number");
  });

  it("tm.list, tm.hash_stats, core.version, core.uptime and system.listMethods answer", async () => {
    expect(Array.isArray(await call(server.rpc, "tm.list"))).toBe(true);
    const hs = await call<{ entries: number; shards: unknown[] }>(server.rpc, "tm.hash_stats");
    expect(hs.shards).toHaveLength(1);
    const v = await call<{ name: string; version: string }>(server.rpc, "core.version");
    expect(v.name).toBe("siptm");
    expect(v.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(typeof (await call<{ uptime: number }>(server.rpc, "core.uptime")).uptime).toBe("number");
    const methods = await call<string[]>(server.rpc, "system.listMethods");
    for (const m of [
      "tm.t_uac_start",
      "tm.t_uac_wait",
      "tm.cancel",
      "tm.reply",
      "tm.reply_callid",
      "tm.list",
      "tm.stats",
      "tm.hash_stats",
      "core.uptime",
      "core.version",
      "system.listMethods",
    ])
      expect(methods).toContain(m);
  });

  it("errors are JSON-RPC errors, and the server keeps serving after each", async () => {
    const alive = async () =>
      expect(typeof (await call<{ uptime: number }>(server.rpc, "core.uptime")).uptime).toBe("number");
    const parse = await rpc(server.rpc, "", undefined, { raw: "{not json" });
    expect(parse.body.error?.code).toBe(-32700);
    await alive();
    const unknown = await rpc(server.rpc, "tm.nope");
    expect(unknown.body.error?.code).toBe(-32601);
    expect(unknown.body.error?.message).toContain("tm.nope");
    await alive();
    const missing = await rpc(server.rpc, "tm.cancel", []);
    expect(missing.body.error?.code).toBe(-32602);
    expect(missing.body.error?.message).toContain("callid");
    const badCseq = await rpc(server.rpc, "tm.cancel", ["abc", "not-a-number"]);
    expect(badCseq.body.error?.code).toBe(-32602);
    const tooMany = await rpc(server.rpc, "tm.stats", [1, 2, 3]);
    expect(tooMany.body.error?.code).toBe(-32602);
    const noFrom = await rpc(server.rpc, "tm.t_uac_start", [
      "OPTIONS",
      "sip:127.0.0.1:9",
      ".",
      ".",
      `To: ${TO}`,
    ]);
    expect(noFrom.body.error?.code).toBe(-32602);
    expect(noFrom.body.error?.message).toMatch(/From and To/);
    const noTx = await rpc(server.rpc, "tm.reply", [200, ".", "no-such-tid", ".", "."]);
    expect(noTx.body.error?.code).toBe(-32001);
    expect(noTx.body.error?.message).toMatch(/unknown transaction/);
    const invalid = await rpc(server.rpc, "", undefined, {
      raw: JSON.stringify({ id: 3, method: "tm.stats" }),
    });
    expect(invalid.body.error?.code).toBe(-32600);
    const named = await rpc(server.rpc, "tm.cancel", { callid: "nothing-here", cseq: 1 });
    expect(named.body.result).toEqual({ result: "none" });
    const big = await rpc(server.rpc, "", undefined, {
      raw: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tm.stats", params: ["x".repeat(70_000)] }),
    });
    expect(big.status).toBe(413);
    await alive();
  });

  it("GET /metrics is Prometheus text with the tm counters and histograms", async () => {
    const res = await fetch(`http://127.0.0.1:${server.rpc}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^siptm_tm_created_total \d+$/m);
    expect(text).toMatch(/^siptm_tm_current \d+$/m);
    expect(text).toContain('siptm_tm_final_replies_total{class="2xx"}');
    expect(text).toContain("siptm_tm_transaction_duration_seconds_bucket");
    expect(text).toContain("# TYPE siptm_tm_client_first_response_seconds histogram");
    expect(text).toContain('siptm_shard_queue_depth{shard="0"} 0');
  });

  it("tm.t_uac_wait sends a request and returns the final response", async () => {
    const r = await uacWaitOptions(server, `From: ${FROM}\r\nTo: ${TO}\r\nCSeq: 42 OPTIONS`);
    expect(r.code).toBe(200);
    expect(r.reason).toBe("OK");
    expect(r.headers).toContain("X-Test: yes");
    expect(r.headers).toMatch(/CSeq: 42 OPTIONS/);
  });

  it("tm.t_uac_start an INVITE to a ringing UAS, then tm.cancel: the UAS sees the CANCEL and answers 487", async () => {
    await uacStartThenCancel(server, `From: ${FROM}\r\nTo: ${TO}\r\nSubject: cancel me`, () =>
      until(
        "created == freed on the server",
        async () => {
          const s = await call<{ created: number; freed: number; current: number }>(server.rpc, "tm.stats");
          return s.created === s.freed && s.current === 0;
        },
        20_000,
      ),
    );
  }, 40_000);

  it("siptm rpc prints the JSON result, and exits 1 on an error", async () => {
    const ok = runCli(["rpc", "--rpc", `127.0.0.1:${server.rpc}`, "tm.stats"]);
    expect((await ok.exited).code).toBe(0);
    const stats = JSON.parse(ok.stdout()) as Record<string, unknown>;
    expect(typeof stats.created).toBe("number");
    expect(Array.isArray(stats.shards)).toBe(true);
    const bad = runCli(["rpc", "--rpc", `127.0.0.1:${server.rpc}`, "no.such.method"]);
    expect((await bad.exited).code).toBe(1);
    expect(bad.stderr().trim().split("\n")).toHaveLength(1);
    expect(bad.stderr()).toContain("-32601");
  });

  it("siptm rpc passes positional arguments (\\r\\n typed as text is a line break)", async () => {
    const uas = await testEngine({ onRequest: (tx) => tx.reply(202) });
    try {
      const port = uas.transportFor("TCP")!.localPort;
      const c = runCli([
        "rpc",
        "--rpc",
        `127.0.0.1:${server.rpc}`,
        "tm.t_uac_wait",
        "MESSAGE",
        `sip:bob@127.0.0.1:${port};transport=tcp`,
        ".",
        ".",
        `From: ${FROM}\\r\\nTo: ${TO}\\r\\nContent-Type: text/plain`,
        "hello",
      ]);
      expect((await c.exited).code).toBe(0);
      const r = JSON.parse(c.stdout()) as { code: number; response?: SipResponse };
      expect(r.code).toBe(202);
    } finally {
      await uas.close();
    }
  });
});
