// `siptm serve --workers 2`: the key flows of serve.test.ts / cli.test.ts /
// control.test.ts / registrar.test.ts on the sharded engine (@siptm/workers) —
// SIP to the `uas` route in the shards, a route module by path in the shards,
// the `default` proxy with its registrar shared across shards, the JSON-RPC
// methods through the sharded engine's async API, /metrics per shard, and a
// clean SIGTERM. Child processes, in-test engines; everything killed in afterAll.
import type { Engine } from "@siptm/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// The helpers of serve.test.ts's flows, here on the sharded engine: a like import list.
import {
  BUSY_ROUTE,
  call,
  callDave,
  callIdOf,
  daveAndCaller,
  FROM,
  inviteOverTcp,
  killAll,
  RINGING_UAS,
  register,
  rpc,
  SERVER_TIMERS,
  type Served,
  serve,
  serveDefault,
  TO,
  testEngine,
  toServer,
  uacStartThenCancel,
  uacWaitOptions,
  until,
} from "./helpers.js";

const WORKERS = ["--workers", "2"];
let server: Served;
let uac: Engine;

beforeAll(async () => {
  [server, uac] = await Promise.all([serve(["--route", "uas", ...WORKERS, ...SERVER_TIMERS]), testEngine()]);
});

afterAll(async () => {
  await uac?.close();
  await killAll();
});

/** `count` fresh Call-IDs that the server's 2 shards give to `shard`. */
const callIdsFor = (shard: number, count: number) => Array.from({ length: count }, () => callIdOf(shard));

interface Stats {
  created: number;
  freed: number;
  current: number;
  shards: Array<{ shard: number; created: number; current: number }>;
}

describe("--workers 2: SIP against the uas route in the shards", () => {
  it("the banner says 2 shards", () => {
    expect(server.stdout()).toMatch(/workers:\s+2 shards/);
  });

  it("OPTIONS over UDP get 200 (several Call-IDs: both shards answer)", async () => {
    // Four Call-IDs for each shard (8 random ones all land on one shard once in 128 runs).
    const callIds = [...callIdsFor(0, 4), ...callIdsFor(1, 4)];
    const outcomes = await Promise.all(
      callIds.map(
        (callId) =>
          toServer(uac, server, "OPTIONS", {
            uri: `sip:127.0.0.1:${server.udp}`,
            callId,
          }).final,
      ),
    );
    for (const o of outcomes) {
      expect(o.status).toBe(200);
      expect(o.response?.header("allow")).toContain("INVITE");
    }
    const s = await call<Stats>(server.rpc, "tm.stats");
    expect(s.shards).toHaveLength(2);
    expect(s.shards.map((x) => x.shard)).toEqual([0, 1]);
    expect(s.shards.every((x) => x.created > 0)).toBe(true);
  });

  it("INVITE over TCP gets 180 then 200 with a Contact; the ACK and a BYE follow", async () => {
    await inviteOverTcp(uac, server, FROM, TO);
  });
});

describe("--workers 2: JSON-RPC control and metrics", () => {
  it("tm.stats: totals at top level, a shards array of 2, created == freed eventually", async () => {
    await until(
      "created == freed",
      async () => {
        const s = await call<Stats>(server.rpc, "tm.stats");
        expect(s.shards).toHaveLength(2);
        expect(s.created).toBe(s.shards[0]!.created + s.shards[1]!.created);
        return s.created > 0 && s.created === s.freed && s.current === 0;
      },
      20_000,
    );
    const hs = await call<{ entries: number; shards: unknown[] }>(server.rpc, "tm.hash_stats");
    expect(hs.shards).toHaveLength(2);
  }, 30_000);

  it("GET /metrics has the merged counters and a queue depth per shard", async () => {
    const text = await (await fetch(`http://127.0.0.1:${server.rpc}/metrics`)).text();
    expect(text).toMatch(/^siptm_tm_created_total [1-9]\d*$/m);
    expect(text).toMatch(/^siptm_shard_queue_depth\{shard="0"\} \d+$/m);
    expect(text).toMatch(/^siptm_shard_queue_depth\{shard="1"\} \d+$/m);
    expect(text).toMatch(/^siptm_shard_transactions\{shard="1"\} \d+$/m);
  });

  it("tm.t_uac_wait returns the final response", async () => {
    const r = await uacWaitOptions(server, `From: ${FROM}\r\nTo: ${TO}\r\nCSeq: 42 OPTIONS`);
    expect(r.code).toBe(200);
    expect(r.headers).toContain("X-Test: yes");
  });

  it("tm.t_uac_start an INVITE to a ringing UAS, then tm.cancel: the UAS sees the CANCEL and answers 487", async () => {
    await uacStartThenCancel(server, `From: ${FROM}\r\nTo: ${TO}`);
  }, 40_000);

  it("tm.cancel of an unknown call answers none; tm.reply of an unknown id is -32001", async () => {
    expect(await call(server.rpc, "tm.cancel", ["nothing-here", 1])).toEqual({ result: "none" });
    const noTx = await rpc(server.rpc, "tm.reply", [200, ".", "no-such-tid", ".", "."]);
    expect(noTx.body.error?.code).toBe(-32001);
  });
});

describe("--workers 2: other servers", () => {
  it("--answer-after never: a ringing INVITE in a shard is answered by tm.reply (id) and tm.reply_callid", async () => {
    const s = await serve([...RINGING_UAS, "--drain-timeout", "300", ...WORKERS, ...SERVER_TIMERS]);
    const ring = (callId?: string) =>
      toServer(uac, s, "INVITE", {
        callId,
      });
    const a = ring();
    await until("a ringing INVITE", async () =>
      (await call<Array<{ callid: string; kind: string }>>(s.rpc, "tm.list")).some(
        (t) => t.callid === a.callId && t.kind === "ist",
      ),
    );
    const list = await call<Array<{ id: string; callid: string; shard: number }>>(s.rpc, "tm.list");
    const tx = list.find((t) => t.callid === a.callId)!;
    expect([0, 1]).toContain(tx.shard);
    await call(s.rpc, "tm.reply", [486, "Busy Here", tx.id, ".", "."]);
    expect((await a.final).status).toBe(486);
    const b = ring();
    await until("the second INVITE", async () =>
      (await call<Array<{ callid: string }>>(s.rpc, "tm.list")).some((t) => t.callid === b.callId),
    );
    await call(s.rpc, "tm.reply_callid", [603, ".", b.callId, b.cseq, ".", "."]);
    expect((await b.final).status).toBe(603);
    // Shutdown: an INVITE still ringing after the drain gets 503, and the server exits 0.
    const c = ring();
    await until("the third INVITE", async () =>
      (await call<Array<{ callid: string }>>(s.rpc, "tm.list")).some((t) => t.callid === c.callId),
    );
    s.proc.kill("SIGTERM");
    expect((await c.final).status).toBe(503);
    expect((await s.exited).code).toBe(0);
  }, 40_000);

  it("a route module given by path runs in the shards; SIGTERM → exit 0", async () => {
    const s = await serve(["--route", BUSY_ROUTE, "--drain-timeout", "500", ...WORKERS]);
    expect(s.stdout()).toMatch(/route:\s+busy: everything gets 486 \(2 sockets\)/);
    expect(s.stdout()).toMatch(/workers:\s+2 shards/);
    const o = await toServer(uac, s, "OPTIONS", {
      uri: `sip:127.0.0.1:${s.udp}`,
    }).final;
    expect(o.status).toBe(486);
    expect(o.response?.header("x-route")).toBe("busy");
    s.proc.kill("SIGTERM");
    const exit = await s.exited;
    expect(exit.code).toBe(0);
    expect(s.stdout()).toMatch(/^stopped/m);
  }, 30_000);

  it("--route default: a REGISTER on one shard, then a call to the AOR routed by the other shard reaches the contact", async () => {
    const server = await serveDefault("2");
    expect(server.stdout()).toMatch(/workers:\s+2 shards/);
    const dave = await daveAndCaller();
    const { callee, caller, port, methods } = dave;
    // The REGISTER's Call-ID on shard 0, the INVITE's on shard 1: only a shared registrar finds dave.
    const [regCallId] = callIdsFor(0, 1);
    const [inviteCallId] = callIdsFor(1, 1);
    try {
      const reg = await register(
        callee,
        server,
        "sip:dave@127.0.0.1",
        `<sip:dave@127.0.0.1:${port}>;expires=600`,
        {
          callId: regCallId,
          cseq: 1,
        },
      );
      expect(reg.status).toBe(200);
      expect(reg.response!.headerValues("contact").join()).toContain(
        `<sip:dave@127.0.0.1:${port}>;expires=600`,
      );
      const dump = await call<Array<{ aor: string }>>(server.rpc, "ul.dump");
      expect(dump.map((a) => a.aor)).toEqual(["sip:dave@127.0.0.1"]);
      await callDave(dave, server, inviteCallId);
      // Unregistered: the shards forget dave too (a call now is a 404 from the server itself).
      const unreg = await register(callee, server, "sip:dave@127.0.0.1", undefined, {
        callId: regCallId,
        cseq: 100,
        headers: [
          ["Contact", "*"],
          ["Expires", "0"],
        ],
      });
      expect(unreg.status).toBe(200);
      // The replicas hear of it over their broadcast channel, which nothing orders against the
      // data plane (shared-registrar.ts): a MESSAGE sent at once may still find the old binding.
      await until(
        "the shards forget dave",
        async () =>
          (
            await toServer(caller, server, "MESSAGE", {
              uri: `sip:dave@127.0.0.1:${server.udp}`,
              from: "<sip:erin@127.0.0.1>",
              to: "<sip:dave@127.0.0.1>",
              callId: callIdsFor(1, 1)[0],
            }).final
          ).status === 404,
      );
      // (A MESSAGE of the race above may have reached dave before the shards forgot him.)
      expect(methods.filter((m) => m !== "MESSAGE")).toEqual(["INVITE", "BYE"]);
      const s = await call<Stats>(server.rpc, "tm.stats");
      expect(s.shards.every((x) => x.created > 0)).toBe(true);
      server.proc.kill("SIGTERM");
      expect((await server.exited).code).toBe(0);
    } finally {
      await Promise.all([callee.close(), caller.close()]);
    }
  }, 40_000);
});
