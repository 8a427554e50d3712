// `siptm serve --workers 2` does what one thread does: the --trace wire log
// (written by the shard that handles each message, with its number; the same
// lines as in one thread), both /metrics histograms (counted in the shards,
// merged at scrape time), a route's close() at shutdown (in each shard), and
// --max-transactions as the whole server's cap (counted by the main thread over
// all shards), and the per-source rate limit counted in tm.stats and /metrics.
// Child processes, in-test engines; everything killed in afterAll.
import dgram from "node:dgram";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Engine } from "@siptm/core";
import { shardOf } from "@siptm/workers";
import { beforeAll, describe, expect, it } from "vitest";
import { forEachEngine, workersFlag } from "../../../test/setup/engines.js";
import {
  call,
  callIdOf,
  FROM,
  fileEngine,
  RINGING_UAS,
  SERVER_TIMERS,
  type Served,
  SHARD_KEY,
  serve,
  TO,
  toServer,
  uacWaitOptions,
  until,
} from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "siptm-parity-"));
let uac: Engine;
fileEngine((e) => {
  uac = e;
}, dir);

const callIdFor = (shard: number) => callIdOf(shard);

function options(s: Served, callId: string, protocol: "udp" | "tcp" = "udp") {
  const port = protocol === "udp" ? s.udp : s.tcp;
  return uac.request({
    method: "OPTIONS",
    uri: `sip:127.0.0.1:${port}${protocol === "tcp" ? ";transport=tcp" : ""}`,
    from: FROM,
    to: TO,
    callId,
    nextHop: `${protocol}:127.0.0.1:${port}`,
  });
}

interface TraceLine {
  level: number;
  component?: string;
  shard?: number;
  dir: "in" | "out";
  proto: string;
  peer: string;
  bytes: number;
  sip: string;
  msg: string;
}

/** The --trace lines on a server's stderr (JSON lines with component "sip"). */
function traceLines(s: Served): TraceLine[] {
  const out: TraceLine[] = [];
  for (const line of s.stderr().split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const o = JSON.parse(line) as TraceLine;
      if (o.component === "sip" && (o.dir === "in" || o.dir === "out")) out.push(o);
    } catch {
      // a line cut by the pipe: the next poll reads it whole
    }
  }
  return out;
}

forEachEngine((_bed, _kind, engine) => {
  const workers = engine.shards;
  describe(`--trace with --workers ${workersFlag(engine)}`, () => {
    let s: Served;
    beforeAll(async () => {
      s = await serve(["--route", "uas", "--trace", "--workers", workersFlag(engine), ...SERVER_TIMERS]);
    });

    it("runs with the workers asked for", () => {
      if (workers === 0) expect(s.stdout()).toMatch(/workers:\s+1 thread/);
      else expect(s.stdout()).toMatch(/workers:\s+2 shards/);
      expect(s.stdout()).toMatch(/logs:\s+every SIP message in and out/);
    });

    it("logs each request in and each response out, with the same fields (and the shard when sharded)", async () => {
      const ids = [callIdFor(0), callIdFor(1)];
      const outcomes = await Promise.all(ids.map((id) => options(s, id).final));
      expect(outcomes.map((o) => o.status)).toEqual([200, 200]);
      const uacPort = uac.transportFor("UDP")!.localPort;
      const find = (id: string, dir: "in" | "out") =>
        traceLines(s).find((l) => l.dir === dir && l.sip.includes(`Call-ID: ${id}\r\n`));
      await until("the trace lines", () => ids.every((id) => find(id, "in") && find(id, "out")), 10_000);
      for (const id of ids) {
        const rx = find(id, "in")!;
        const tx = find(id, "out")!;
        for (const l of [rx, tx]) {
          expect(l.level).toBe(30);
          expect(l.proto).toBe("UDP");
          expect(l.peer).toBe(`127.0.0.1:${uacPort}`);
          expect(l.bytes).toBe(Buffer.byteLength(l.sip));
          if (workers === 0) expect(l.shard).toBeUndefined();
          else expect(l.shard).toBe(shardOf(id, workers, SHARD_KEY));
        }
        expect(rx.msg).toBe(`<< OPTIONS sip:127.0.0.1:${s.udp} SIP/2.0`);
        expect(rx.sip.startsWith("OPTIONS ")).toBe(true);
        expect(tx.msg).toBe(">> SIP/2.0 200 OK");
        expect(tx.sip.startsWith("SIP/2.0 200 OK\r\n")).toBe(true);
      }
    });
  });
});

/** The value of one sample line of a /metrics text (0 when absent). */
function sample(text: string, name: string): number {
  const escaped = name.replace(/[{}"=.+]/g, (c) => `\\${c}`);
  const m = new RegExp(`^${escaped} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

describe("--workers 2: /metrics histograms", () => {
  it("the transaction duration and first response histograms count what the shards did", async () => {
    const s = await serve(["--route", "uas", "--workers", "2", ...SERVER_TIMERS]);
    // Server transactions in both shards (over TCP: freed at once, no Timer J).
    const outcomes = await Promise.all(
      [0, 0, 1, 1].map((shard) => options(s, callIdFor(shard), "tcp").final),
    );
    expect(outcomes.map((o) => o.status)).toEqual([200, 200, 200, 200]);
    // A client transaction in a shard: its first response is timed there.
    const r = await uacWaitOptions(s, `From: ${FROM}\r\nTo: ${TO}\r\nCSeq: 7 OPTIONS`);
    expect(r.code).toBe(200);
    let text = "";
    await until(
      "every freed transaction in the duration histogram",
      async () => {
        text = await (await fetch(`http://127.0.0.1:${s.rpc}/metrics`)).text();
        const counted = ["ist", "nist", "ict", "nict"]
          .map((kind) => sample(text, `siptm_tm_transaction_duration_seconds_count{kind="${kind}"}`))
          .reduce((a, b) => a + b, 0);
        const freed = sample(text, "siptm_tm_freed_total");
        return freed >= 5 && counted === freed && sample(text, "siptm_tm_current") === 0;
      },
      15_000,
    );
    expect(sample(text, 'siptm_tm_transaction_duration_seconds_count{kind="nist"}')).toBeGreaterThanOrEqual(
      4,
    );
    expect(sample(text, 'siptm_tm_transaction_duration_seconds_bucket{le="+Inf",kind="nist"}')).toBe(
      sample(text, 'siptm_tm_transaction_duration_seconds_count{kind="nist"}'),
    );
    expect(sample(text, 'siptm_tm_transaction_duration_seconds_sum{kind="nist"}')).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'siptm_tm_client_first_response_seconds_count{method="other"}')).toBe(1);
    expect(text).toMatch(/^siptm_tm_client_first_response_seconds_bucket\{le="32",method="other"\} 1$/m);
    // The queue depth of each shard is there too.
    expect(text).toMatch(/^siptm_shard_queue_depth\{shard="0"\} \d+$/m);
    expect(text).toMatch(/^siptm_shard_queue_depth\{shard="1"\} \d+$/m);
  }, 30_000);
});

describe("--workers 2: a route's close()", () => {
  it("is called in each shard on SIGTERM", async () => {
    const markers = join(dir, "close");
    mkdirSync(markers);
    const path = join(dir, "closing.mjs");
    // Each instance counts the requests it answered and writes them on close, named by its thread
    // (thread 0: the main thread's instance that only gives the banner its description).
    writeFileSync(
      path,
      `import { writeFileSync } from "node:fs";
import { threadId } from "node:worker_threads";
export default function route() {
  let answered = 0;
  return {
    description: "writes a marker on close",
    onRequest(tx) { answered++; tx.reply(200); },
    close() { writeFileSync(${JSON.stringify(markers)} + "/closed-t" + threadId, String(answered)); },
  };
}
`,
    );
    const s = await serve(["--route", path, "--workers", "2", "--drain-timeout", "300"]);
    expect(s.stdout()).toMatch(/workers:\s+2 shards/);
    const outcomes = await Promise.all([options(s, callIdFor(0)).final, options(s, callIdFor(1)).final]);
    expect(outcomes.map((o) => o.status)).toEqual([200, 200]);
    const inShards = () => readdirSync(markers).filter((f) => f !== "closed-t0");
    expect(inShards()).toEqual([]);
    s.proc.kill("SIGTERM");
    expect((await s.exited).code).toBe(0);
    const files = inShards();
    expect(files).toHaveLength(2);
    // One request answered by each shard's instance.
    expect(files.map((f) => readFileSync(join(markers, f), "utf8"))).toEqual(["1", "1"]);
  }, 30_000);
});

describe("--workers 2: --max-transactions is the whole server's cap", () => {
  it("ten ringing INVITEs that all hash to shard 0 fit a cap of 10; the 11th (on shard 1) gets 503 from the main thread", async () => {
    const s = await serve([
      ...RINGING_UAS,
      "--max-transactions",
      "10",
      "--drain-timeout",
      "300",
      "--workers",
      "2",
      ...SERVER_TIMERS,
    ]);
    expect(s.stdout()).toMatch(/limits:\s+10 transactions \(all shards together\)/);
    expect(s.stdout()).not.toMatch(/per shard/);
    expect(s.stdout()).toMatch(/hashing:\s+Call-ID → shard keyed by --secret/);
    const invite = (callId: string) =>
      toServer(uac, s, "INVITE", {
        callId,
      });
    const listed = async () => (await call<Array<{ callid: string }>>(s.rpc, "tm.list")).map((t) => t.callid);
    // Ten for shard 0: with a share of ceil(10 / 2) = 5 per shard the 6th would be refused there.
    const ten = Array.from({ length: 10 }, () => invite(callIdFor(0)));
    await until("the ten INVITEs ringing in shard 0", async () => {
      const l = await listed();
      return ten.every((h) => l.includes(h.callId));
    });
    expect(ten.every((h) => h.outcome === undefined)).toBe(true);
    // The server is full, whichever shard the next Call-ID hashes to.
    const eleventh = await invite(callIdFor(1)).final;
    expect(eleventh.status).toBe(503);
    expect(eleventh.response?.header("retry-after")).toBeDefined();
    const stats = await call<{
      table_full: number;
      current: number;
      shards: Array<{ table_full: number; current: number }>;
    }>(s.rpc, "tm.stats");
    // Refused by the coordinator: no shard saw it.
    expect(stats.table_full).toBe(1);
    expect(stats.shards.map((x) => x.table_full)).toEqual([0, 0]);
    expect(stats.shards.map((x) => x.current)).toEqual([10, 0]);
    const metrics = await (await fetch(`http://127.0.0.1:${s.rpc}/metrics`)).text();
    expect(sample(metrics, "siptm_tm_table_full_total")).toBe(1);
    s.proc.kill("SIGTERM");
    expect((await Promise.all(ten.map((h) => h.final))).every((o) => o.status === 503)).toBe(true);
    expect((await s.exited).code).toBe(0);
  }, 30_000);
});

forEachEngine((_bed, _kind, engine) => {
  const workers = workersFlag(engine);
  describe(`--workers ${workers}: the per-source rate limit`, () => {
    it("drops a source's new requests past --rate-burst, counted in tm.stats and /metrics", async () => {
      const s = await serve([
        "--route",
        "uas",
        "--rate-limit",
        "1/s",
        "--rate-burst",
        "3",
        "--workers",
        workers,
        ...SERVER_TIMERS,
      ]);
      expect(s.stdout()).toMatch(/1 new requests\/s per source IP \(burst 3\)/);
      const sock = dgram.createSocket("udp4");
      const answers: string[] = [];
      sock.on("message", (m) => answers.push(m.toString("latin1")));
      await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
      try {
        const port = sock.address().port;
        const SENT = 12;
        for (let i = 0; i < SENT; i++)
          sock.send(
            `OPTIONS sip:x@127.0.0.1:${s.udp} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bKrl${i}\r\n` +
              `Max-Forwards: 70\r\nFrom: ${FROM};tag=rl${i}\r\nTo: ${TO}\r\nCall-ID: rl-${workers}-${i}\r\n` +
              "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            s.udp,
            "127.0.0.1",
          );
        // Each request is either answered or counted as dropped (the bucket refills at 1/s, so at
        // least the 3 of the burst pass and most of the rest is dropped).
        let limited = 0;
        await until("every request answered or counted", async () => {
          limited = (await call<{ rate_limited: number }>(s.rpc, "tm.stats")).rate_limited;
          return answers.length + limited === SENT;
        });
        expect(answers.length).toBeGreaterThanOrEqual(3);
        expect(limited).toBeGreaterThan(0);
        expect(answers.every((a) => a.startsWith("SIP/2.0 200 "))).toBe(true);
        const metrics = await (await fetch(`http://127.0.0.1:${s.rpc}/metrics`)).text();
        expect(sample(metrics, "siptm_tm_rate_limited_total")).toBe(limited);
      } finally {
        sock.close();
        s.proc.kill("SIGTERM");
        await s.exited;
      }
    }, 30_000);
  });
});
