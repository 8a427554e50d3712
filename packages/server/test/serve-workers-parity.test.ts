// `siptm serve --workers 2` does what one thread does: the --trace wire log
// (written by the shard that handles each message, with its number; the same
// lines as in one thread), both /metrics histograms (counted in the shards,
// merged at scrape time), a route's close() at shutdown (in each shard), and
// --max-transactions as the whole server's cap (divided among the shards).
// Child processes, in-test engines; everything killed in afterAll.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Engine, newCallId } from "@siptm/core";
import { shardOf } from "@siptm/workers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, killAll, SERVER_TIMERS, type Served, serve, testEngine, until } from "./helpers.js";

const FROM = "<sip:alice@127.0.0.1>";
const TO = "<sip:bob@127.0.0.1>";
const dir = mkdtempSync(join(tmpdir(), "siptm-parity-"));
let uac: Engine;

beforeAll(async () => {
  uac = await testEngine();
});

afterAll(async () => {
  await uac?.close();
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

/** A fresh Call-ID that 2 shards give to `shard`. */
function callIdFor(shard: number): string {
  for (;;) {
    const id = newCallId();
    if (shardOf(id, 2) === shard) return id;
  }
}

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

describe.each([0, 2])("--trace with --workers %i", (workers) => {
  let s: Served;
  beforeAll(async () => {
    s = await serve(["--route", "uas", "--trace", "--workers", String(workers), ...SERVER_TIMERS]);
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
        else expect(l.shard).toBe(shardOf(id, workers));
      }
      expect(rx.msg).toBe(`<< OPTIONS sip:127.0.0.1:${s.udp} SIP/2.0`);
      expect(rx.sip.startsWith("OPTIONS ")).toBe(true);
      expect(tx.msg).toBe(">> SIP/2.0 200 OK");
      expect(tx.sip.startsWith("SIP/2.0 200 OK\r\n")).toBe(true);
    }
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
    const uas = await testEngine({ onRequest: (tx) => tx.reply(200) });
    try {
      const port = uas.transportFor("UDP")!.localPort;
      const r = await call<{ code: number }>(s.rpc, "tm.t_uac_wait", [
        "OPTIONS",
        `sip:uas@127.0.0.1:${port}`,
        ".",
        ".",
        `From: ${FROM}\r\nTo: ${TO}\r\nCSeq: 7 OPTIONS`,
      ]);
      expect(r.code).toBe(200);
    } finally {
      await uas.close();
    }
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
  it("each shard holds its share, ceil(N / shards): the share's next new request gets 503", async () => {
    const s = await serve([
      "--route",
      "uas",
      "--answer-after",
      "never",
      "--max-transactions",
      "2",
      "--drain-timeout",
      "300",
      "--workers",
      "2",
      ...SERVER_TIMERS,
    ]);
    expect(s.stdout()).toMatch(/limits:\s+2 transactions \(1 per shard\)/);
    const invite = (callId: string) =>
      uac.request({
        method: "INVITE",
        uri: `sip:bob@127.0.0.1:${s.udp}`,
        from: FROM,
        to: TO,
        callId,
        nextHop: `udp:127.0.0.1:${s.udp}`,
      });
    const listed = async (callId: string) =>
      (await call<Array<{ callid: string }>>(s.rpc, "tm.list")).some((t) => t.callid === callId);
    // Shard 0 takes one ringing INVITE; a second one there is over its share.
    const a = invite(callIdFor(0));
    await until("the first INVITE ringing in shard 0", () => listed(a.callId));
    const b = invite(callIdFor(0));
    const bFinal = await b.final;
    expect(bFinal.status).toBe(503);
    expect(bFinal.response?.header("retry-after")).toBeDefined();
    // Shard 1 still has its own share.
    const c = invite(callIdFor(1));
    await until("an INVITE ringing in shard 1", () => listed(c.callId));
    const stats = await call<{ table_full: number; shards: Array<{ table_full: number }> }>(
      s.rpc,
      "tm.stats",
    );
    expect(stats.shards.map((x) => x.table_full)).toEqual([1, 0]);
    s.proc.kill("SIGTERM");
    expect((await a.final).status).toBe(503);
    expect((await c.final).status).toBe(503);
    expect((await s.exited).code).toBe(0);
  }, 30_000);
});
