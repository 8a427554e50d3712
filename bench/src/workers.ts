/**
 * Load benchmark of the sharded engine (@siptm/workers) against the core
 * engine in one thread, all in the same run, over real UDP on 127.0.0.1.
 *
 *   node dist/workers.js           full run (20000 transactions per case, concurrency 200, 3 rounds)
 *   node dist/workers.js --quick   short run (2000 per case, concurrency 50, 1 round)
 *   node dist/workers.js --count=N --concurrency=C --rounds=R --shards=1,2,4
 *
 * Rounds alternate the systems under test (A B C D, A B C D, …) so that a
 * slow phase of a shared machine does not land on one of them only; each
 * row is the round with the median transactions/s.
 *
 * The load generator is a core Engine (UAC) in its own worker thread, so the
 * main thread holds only the system under test: the core Engine answering
 * requests itself, or the ShardedEngine's coordinator with N shard threads
 * answering with a route module (this file's default export, loaded in each
 * shard: the fast path, no main-thread handler).
 *
 * Per case it prints transactions/s (as the load generator saw them), the
 * process CPU per SIP message at the system under test (process.cpuUsage():
 * all threads, the load generator included, which is the same in every case),
 * the main thread's busy time per message (event-loop utilization: for the
 * sharded engine, the coordinator's cost per message) and the shards' own
 * busy time per message (time inside their batch processing). The cost of
 * crossing threads is read from the differences to the one-thread case.
 */
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { createUdpTransport, Engine, type ServerTransactionHandle } from "@siptm/core";
import { type EngineStats, ShardedEngine } from "@siptm/workers";

const SELF = fileURLToPath(import.meta.url);

// --- the route module (default export): runs in every shard -----------------------------

function answer(tx: ServerTransactionHandle): void {
  if (tx.method === "INVITE") tx.reply(200, undefined, { headers: [["Contact", "<sip:bench@127.0.0.1>"]] });
  else tx.reply(200);
}

/** Route module for the shards: answer everything at once. */
export default function route(engine: Engine): void {
  engine.onRequest = answer;
}

// --- the load generator (a worker thread) -------------------------------------------------

interface RunCommand {
  cmd: "run";
  port: number;
  method: "OPTIONS" | "INVITE";
  count: number;
  concurrency: number;
}
interface RunResult {
  elapsedMs: number;
  ok: number;
  failed: number;
}

async function loadGenerator(): Promise<void> {
  // Short Timer M (2xx accepted) and T4 (Timer K): the generator's own table stays small across
  // rounds, so a later round is not slowed by the state of earlier ones.
  const engine = new Engine({ timers: { timerM: 2000, t4: 1000 } });
  engine.addTransport(await createUdpTransport({ address: "127.0.0.1", port: 0, sink: engine }));
  parentPort!.on("message", (m: RunCommand | { cmd: "close" }) => {
    if (m.cmd === "close") {
      void engine.close().then(() => parentPort!.close());
      return;
    }
    void run(engine, m).then((r) => parentPort!.postMessage(r));
  });
  parentPort!.postMessage({ ready: true });
}

function run(engine: Engine, m: RunCommand): Promise<RunResult> {
  const hop = { protocol: "UDP" as const, address: "127.0.0.1", port: m.port };
  let started = 0;
  let done = 0;
  let ok = 0;
  let failed = 0;
  const t0 = performance.now();
  return new Promise((resolveRun) => {
    const next = (): void => {
      if (started >= m.count) return;
      started++;
      const h = engine.request({
        method: m.method,
        uri: "sip:bench@127.0.0.1",
        from: "<sip:load@127.0.0.1>",
        to: "<sip:bench@127.0.0.1>",
        nextHop: hop,
      });
      void h.final.then((o) => {
        if (o.status === 200) {
          ok++;
          if (m.method === "INVITE" && o.response) engine.ack2xx(h, o.response);
        } else failed++;
        done++;
        if (done === m.count) resolveRun({ elapsedMs: performance.now() - t0, ok, failed });
        else next();
      });
    };
    for (let i = 0; i < m.concurrency; i++) next();
  });
}

// --- the orchestration (main thread) -----------------------------------------------------

interface Args {
  quick: boolean;
  count: number;
  concurrency: number;
  rounds: number;
  shards: number[];
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { quick: false, count: 20_000, concurrency: 200, rounds: 3, shards: [1, 2, 4] };
  for (const a of argv) {
    if (a === "--quick") {
      args.quick = true;
      args.count = 2_000;
      args.concurrency = 50;
      args.rounds = 1;
    } else if (a.startsWith("--rounds=")) args.rounds = Number(a.slice(9));
    else if (a.startsWith("--count=")) args.count = Number(a.slice(8));
    else if (a.startsWith("--concurrency=")) args.concurrency = Number(a.slice(14));
    else if (a.startsWith("--shards=")) args.shards = a.slice(9).split(",").map(Number);
    else if (a === "--help" || a === "-h") {
      console.log(
        "usage: node dist/workers.js [--quick] [--count=N] [--concurrency=C] [--rounds=R] [--shards=1,2,4]",
      );
      process.exit(0);
    } else {
      console.error(`unknown argument: ${a}`);
      process.exit(2);
    }
  }
  if (
    !(args.count > 0) ||
    !(args.concurrency > 0) ||
    !(args.rounds >= 1) ||
    args.shards.some((n) => !(n >= 1))
  )
    throw new Error("bad --count, --concurrency, --rounds or --shards");
  return args;
}

interface Target {
  name: string;
  port: number;
  /** SIP messages through the system under test so far (in + out). */
  messages(): Promise<number>;
  /** Milliseconds the shards spent processing batches so far (0 for the core engine). */
  shardBusyMs(): Promise<number>;
  /** Batches posted to / from the shards so far (0 for the core engine). */
  batches(): Promise<number>;
  close(): Promise<void>;
}

async function coreTarget(perTx: number): Promise<Target> {
  const engine = new Engine({ onRequest: answer });
  engine.addTransport(await createUdpTransport({ address: "127.0.0.1", port: 0, sink: engine }));
  return {
    name: "core Engine, 1 thread",
    port: engine.transportFor("UDP")!.localPort,
    // Requests in, responses out (+ the ACK of INVITE); retransmissions are counted apart.
    messages: async () => engine.stats.total * perTx + engine.stats.retransmissions,
    shardBusyMs: async () => 0,
    batches: async () => 0,
    close: () => engine.close(),
  };
}

async function shardedTarget(shards: number): Promise<Target> {
  const engine = await ShardedEngine.create({
    shards,
    listen: [{ protocol: "UDP", address: "127.0.0.1", port: 0 }],
    route: SELF,
    drainTimeoutMs: 0,
  });
  return {
    name: `ShardedEngine, ${shards} shard${shards > 1 ? "s" : ""}`,
    port: engine.addresses[0]!.port,
    messages: async () => {
      const s: EngineStats = await engine.stats();
      return s.in_messages + s.out_messages;
    },
    shardBusyMs: async () => (await engine.stats()).shards.reduce((t, e) => t + e.busyMs, 0),
    batches: async () => {
      const s = await engine.stats();
      return s.in_batches + s.out_batches;
    },
    close: () => engine.close(),
  };
}

class LoadGenerator {
  private readonly worker: Worker;
  private waiting: ((v: unknown) => void) | undefined;
  readonly ready: Promise<unknown>;
  constructor() {
    this.worker = new Worker(SELF, { workerData: { role: "loadgen" } });
    this.worker.on("message", (m: unknown) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(m);
    });
    this.ready = new Promise((r) => {
      this.waiting = r;
    });
  }
  run(cmd: Omit<RunCommand, "cmd">): Promise<RunResult> {
    return new Promise((r) => {
      this.waiting = r as (v: unknown) => void;
      this.worker.postMessage({ cmd: "run", ...cmd });
    });
  }
  async close(): Promise<void> {
    this.worker.postMessage({ cmd: "close" });
    await new Promise((r) => this.worker.once("exit", r));
  }
}

interface Row {
  scenario: string;
  target: string;
  txPerSec: number;
  failed: number;
  /** Process CPU (all threads) per message at the system under test, µs. */
  cpuPerMsg: number;
  /** Main thread busy per message, µs (the coordinator, or the whole core engine). */
  mainPerMsg: number;
  /** Shard threads busy (inside batch processing) per message, µs. */
  shardPerMsg: number;
  /** Messages per batch, both directions (0: no batches, the core engine). */
  perBatch: number;
}

async function measure(
  gen: LoadGenerator,
  target: Target,
  method: "OPTIONS" | "INVITE",
  count: number,
  concurrency: number,
): Promise<Row> {
  // Warm-up: JIT on both sides, sockets, shards.
  await gen.run({ port: target.port, method, count: Math.min(1000, count), concurrency });
  const m0 = await target.messages();
  const s0 = await target.shardBusyMs();
  const b0 = await target.batches();
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const r = await gen.run({ port: target.port, method, count, concurrency });
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  const messages = (await target.messages()) - m0;
  const shardMs = (await target.shardBusyMs()) - s0;
  const batches = (await target.batches()) - b0;
  return {
    scenario: method === "INVITE" ? "INVITE→200→ACK" : "OPTIONS→200",
    target: target.name,
    txPerSec: (r.ok / r.elapsedMs) * 1000,
    failed: r.failed,
    cpuPerMsg: (cpu.user + cpu.system) / messages,
    mainPerMsg: (elu.active * 1000) / messages,
    shardPerMsg: (shardMs * 1000) / messages,
    perBatch: batches > 0 ? messages / batches : 0,
  };
}

function table(rows: Row[]): string {
  const head = [
    "scenario",
    "system under test",
    "tx/s",
    "failed",
    "CPU µs/msg (all threads)",
    "main thread µs/msg",
    "shards µs/msg",
    "msgs/batch",
  ];
  const body = rows.map((r) => [
    r.scenario,
    r.target,
    r.txPerSec.toFixed(0),
    String(r.failed),
    r.cpuPerMsg.toFixed(1),
    r.mainPerMsg.toFixed(1),
    r.shardPerMsg.toFixed(1),
    r.perBatch > 0 ? r.perBatch.toFixed(1) : "-",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  console.log(
    `siptm workers benchmark: ${args.count} transactions per case at concurrency ${args.concurrency}, ` +
      `Node ${process.version}, ${(await import("node:os")).availableParallelism()} CPUs`,
  );
  const gen = new LoadGenerator();
  await gen.ready;
  const rows: Row[] = [];
  for (const method of ["OPTIONS", "INVITE"] as const) {
    const perTx = method === "INVITE" ? 3 : 2;
    const makers: Array<() => Promise<Target>> = [
      () => coreTarget(perTx),
      ...args.shards.map((n) => () => shardedTarget(n)),
    ];
    const byTarget: Row[][] = makers.map(() => []);
    for (let round = 0; round < args.rounds; round++) {
      for (const [i, make] of makers.entries()) {
        const target = await make();
        try {
          const row = await measure(gen, target, method, args.count, args.concurrency);
          byTarget[i]!.push(row);
          console.log(
            `  round ${round + 1}  ${row.scenario.padEnd(15)} ${row.target.padEnd(24)} ${row.txPerSec.toFixed(0).padStart(7)} tx/s`,
          );
        } finally {
          await target.close();
        }
      }
    }
    for (const list of byTarget) {
      const sorted = [...list].sort((a, b) => a.txPerSec - b.txPerSec);
      rows.push(sorted[Math.floor(sorted.length / 2)]!);
    }
  }
  await gen.close();
  console.log(`\n${table(rows)}\n`);
  for (const scenario of new Set(rows.map((r) => r.scenario))) {
    const core = rows.find((r) => r.scenario === scenario && r.target.startsWith("core"));
    const one = rows.find((r) => r.scenario === scenario && r.target.endsWith(", 1 shard"));
    if (!core || !one) continue;
    console.log(
      `${scenario}: crossing threads costs ${(one.cpuPerMsg - core.cpuPerMsg).toFixed(1)} µs CPU per message ` +
        `(1 shard vs one thread, all threads); the coordinator spends ${one.mainPerMsg.toFixed(1)} µs per message ` +
        `on the main thread, the shard ${one.shardPerMsg.toFixed(1)} µs, the one-thread engine ${core.mainPerMsg.toFixed(1)} µs.`,
    );
  }
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === "loadgen") {
  void loadGenerator();
} else if (isMainThread && process.argv[1] && resolve(process.argv[1]) === SELF) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
