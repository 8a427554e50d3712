/**
 * Load benchmark of the sharded engine (@siptm/workers) against the core
 * engine in one thread, all in the same run, over real UDP on 127.0.0.1.
 *
 *   node dist/workers.js           full run (30000 transactions per case, concurrency 1000, 3 rounds)
 *   node dist/workers.js --quick   short run (2000 per case, concurrency 50, 1 round)
 *   node dist/workers.js --count=N --concurrency=C --rounds=R --shards=1,2,4 --generators=raw,engine --warmup=N --no-crossing
 *
 * Rounds alternate the systems under test (A B C D, A B C D, …) so that a
 * slow phase of a shared machine does not land on one of them only; each
 * row is the round with the median transactions/s.
 *
 * The load generator runs in its own worker thread, so the main thread holds
 * only the system under test: the core Engine answering requests itself, or
 * the ShardedEngine's coordinator with N shard threads answering with a route
 * module (this file's default export, loaded in each shard: the fast path, no
 * main-thread handler). Two generators, each against every system: "raw"
 * sends template-built datagrams and reads status codes, about what SIPp
 * costs, so the system under test gets most of the machine; "engine" is a
 * siptm core Engine running full UAC transactions, which costs about as much
 * as the system under test and so takes half of a 2-core machine.
 *
 * Per case it prints transactions/s (as the load generator saw them), the
 * process CPU per SIP message at the system under test (process.cpuUsage():
 * all threads, the load generator included, which is the same in every case),
 * the main thread's busy time per message (event-loop utilization: for the
 * sharded engine, the coordinator's cost per message) and the shards' own
 * busy time per message (time inside their batch processing). The cost of
 * crossing threads is read from the differences to the one-thread case, and
 * measured alone first (crossing.ts: the data plane without SIP work).
 */
import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { createUdpTransport, Engine, type ServerTransactionHandle } from "@siptm/core";
import { type EngineStats, ShardedEngine } from "@siptm/workers";
import { crossingBenchmark, crossingTable } from "./crossing.js";
import { pipeTable } from "./lib/report.js";

const SELF = fileURLToPath(import.meta.url);

// --- the route module (default export): runs in every shard -----------------------------

function answer(tx: ServerTransactionHandle): void {
  if (tx.method === "INVITE") tx.reply(200, { headers: [["Contact", "<sip:bench@127.0.0.1>"]] });
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

/** Which load generator: a siptm core Engine (full UAC transactions) or raw datagrams (a SIPp-like cost). */
type GeneratorKind = "engine" | "raw";
interface RunResult {
  elapsedMs: number;
  ok: number;
  failed: number;
}

async function loadGenerator(kind: GeneratorKind): Promise<void> {
  if (kind === "raw") return rawGenerator();
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

/**
 * The raw generator: what SIPp does, at a fraction of a full UAC's cost, so
 * that the system under test gets most of the machine. Requests are built from
 * a template by string concatenation (a fresh Call-ID, branch and From tag per
 * transaction) and sent from one UDP socket; a response is tied to its
 * transaction by the number in its top Via branch (z9hG4bKraw<n>.) and judged
 * by its status code. The 2xx of an INVITE is ACKed (a new branch, the 2xx's
 * To tag). A request unanswered after 500 ms is sent again, up to 6 times
 * (loss on the loopback is rare; this only keeps a run from hanging).
 */
async function rawGenerator(): Promise<void> {
  const { createSocket } = await import("node:dgram");
  const socket = createSocket("udp4");
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
  socket.setRecvBufferSize(4 * 1024 * 1024);
  socket.setSendBufferSize(4 * 1024 * 1024);
  const localPort = socket.address().port;
  let job: RawJob | undefined;
  socket.on("message", (msg) => job?.onResponse(msg));
  parentPort!.on("message", (m: RunCommand | { cmd: "close" }) => {
    if (m.cmd === "close") {
      socket.close(() => parentPort!.close());
      return;
    }
    job = new RawJob(m, localPort, (data) => socket.send(data, m.port, "127.0.0.1"));
    void job.run().then((r) => {
      job = undefined;
      parentPort!.postMessage(r);
    });
  });
  parentPort!.postMessage({ ready: true });
}

let rawRun = 0;

class RawJob {
  private readonly prefix = `r${(rawRun++).toString(36)}x`;
  private readonly sentAt: Float64Array;
  private readonly tries: Uint8Array;
  private readonly data: Array<Buffer | undefined>;
  private started = 0;
  private done = 0;
  private ok = 0;
  private failed = 0;
  private readonly t0 = performance.now();
  private finish: ((r: RunResult) => void) | undefined;

  constructor(
    private readonly m: RunCommand,
    private readonly localPort: number,
    private readonly send: (data: Buffer) => void,
  ) {
    this.sentAt = new Float64Array(m.count);
    this.tries = new Uint8Array(m.count);
    this.data = new Array(m.count);
  }

  run(): Promise<RunResult> {
    return new Promise((resolveRun) => {
      this.finish = resolveRun;
      const timer = setInterval(() => this.resend(), 100);
      const end = this.finish;
      this.finish = (r) => {
        clearInterval(timer);
        end(r);
      };
      for (let i = 0; i < this.m.concurrency; i++) this.next();
    });
  }

  private request(n: number): Buffer {
    const m = this.m.method;
    const id = `${this.prefix}${n}`;
    const body =
      m === "INVITE"
        ? "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        : "";
    return Buffer.from(
      `${m} sip:bench@127.0.0.1:${this.m.port} SIP/2.0\r\n` +
        `Via: SIP/2.0/UDP 127.0.0.1:${this.localPort};branch=z9hG4bKraw${n}.${id}\r\n` +
        "Max-Forwards: 70\r\n" +
        `From: <sip:load@127.0.0.1>;tag=${id}\r\n` +
        "To: <sip:bench@127.0.0.1>\r\n" +
        `Call-ID: ${id}@127.0.0.1\r\n` +
        `CSeq: 1 ${m}\r\n` +
        (m === "INVITE"
          ? `Contact: <sip:load@127.0.0.1:${this.localPort}>\r\nContent-Type: application/sdp\r\n`
          : "") +
        `Content-Length: ${body.length}\r\n\r\n${body}`,
      "latin1",
    );
  }

  private next(): void {
    if (this.started >= this.m.count) return;
    const n = this.started++;
    const data = this.request(n);
    this.data[n] = data;
    this.sentAt[n] = performance.now();
    this.tries[n] = 1;
    this.send(data);
  }

  private resend(): void {
    const now = performance.now();
    for (let n = 0; n < this.started; n++) {
      const data = this.data[n];
      if (!data || now - this.sentAt[n]! < 500) continue;
      if (this.tries[n]! >= 7) {
        this.data[n] = undefined;
        this.end(false);
        continue;
      }
      this.tries[n]!++;
      this.sentAt[n] = now;
      this.send(data);
    }
  }

  onResponse(msg: Buffer): void {
    // "SIP/2.0 200 OK": the status at bytes 8–10; the transaction number after "branch=z9hG4bKraw".
    const status = (msg[8]! - 48) * 100 + (msg[9]! - 48) * 10 + (msg[10]! - 48);
    if (status < 200) return;
    const at = msg.indexOf("branch=z9hG4bKraw");
    if (at < 0) return;
    let n = 0;
    let i = at + 17;
    for (; msg[i]! >= 48 && msg[i]! <= 57; i++) n = n * 10 + msg[i]! - 48;
    if (n >= this.started || !this.data[n]) return; // a retransmitted final: already done
    this.data[n] = undefined;
    if (status === 200 && this.m.method === "INVITE") this.send(this.ack(msg, n));
    this.end(status === 200);
  }

  /** The ACK of a 2xx (RFC 3261 §13.2.2.4): a new branch, the 2xx's To (with its tag). */
  private ack(res: Buffer, n: number): Buffer {
    const id = `${this.prefix}${n}`;
    const toAt = res.indexOf("\r\nTo:");
    const toEnd = toAt < 0 ? -1 : res.indexOf("\r\n", toAt + 2);
    const to = toAt < 0 ? "To: <sip:bench@127.0.0.1>" : res.toString("latin1", toAt + 2, toEnd);
    return Buffer.from(
      `ACK sip:bench@127.0.0.1:${this.m.port} SIP/2.0\r\n` +
        `Via: SIP/2.0/UDP 127.0.0.1:${this.localPort};branch=z9hG4bKack${n}.${id}\r\n` +
        "Max-Forwards: 70\r\n" +
        `From: <sip:load@127.0.0.1>;tag=${id}\r\n${to}\r\n` +
        `Call-ID: ${id}@127.0.0.1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n`,
      "latin1",
    );
  }

  private end(ok: boolean): void {
    if (ok) this.ok++;
    else this.failed++;
    this.done++;
    if (this.done === this.m.count)
      this.finish?.({ elapsedMs: performance.now() - this.t0, ok: this.ok, failed: this.failed });
    else this.next();
  }
}

// --- the orchestration (main thread) -----------------------------------------------------

interface Args {
  quick: boolean;
  count: number;
  concurrency: number;
  rounds: number;
  shards: number[];
  generators: GeneratorKind[];
  /** Warm-up transactions per engine thread (one thread: ×1; N shards: ×N) before each measured case. */
  warmup: number;
  /** Measure the data plane alone first (crossing.ts); --no-crossing skips it. */
  crossing: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = {
    quick: false,
    count: 30_000,
    concurrency: 1000,
    rounds: 3,
    shards: [1, 2, 4],
    generators: ["raw", "engine"],
    warmup: 12_000,
    crossing: true,
  };
  for (const a of argv) {
    if (a === "--quick") {
      args.quick = true;
      args.count = 2_000;
      args.concurrency = 50;
      args.rounds = 1;
      args.warmup = 500;
    } else if (a.startsWith("--rounds=")) args.rounds = Number(a.slice(9));
    else if (a.startsWith("--count=")) args.count = Number(a.slice(8));
    else if (a.startsWith("--concurrency=")) args.concurrency = Number(a.slice(14));
    else if (a.startsWith("--shards=")) args.shards = a.slice(9).split(",").map(Number);
    else if (a.startsWith("--generators=")) args.generators = a.slice(13).split(",") as GeneratorKind[];
    else if (a.startsWith("--warmup=")) args.warmup = Number(a.slice(9));
    else if (a === "--no-crossing") args.crossing = false;
    else if (a === "--help" || a === "-h") {
      console.log(
        "usage: node dist/workers.js [--quick] [--count=N] [--concurrency=C] [--rounds=R] [--shards=1,2,4] [--generators=raw,engine] [--warmup=N] [--no-crossing]",
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
    !(args.warmup >= 0) ||
    args.shards.some((n) => !(n >= 1)) ||
    args.generators.length === 0 ||
    args.generators.some((g) => g !== "raw" && g !== "engine")
  )
    throw new Error("bad --count, --concurrency, --rounds, --shards, --generators or --warmup");
  return args;
}

interface Target {
  name: string;
  port: number;
  /** Threads running the engine: 1 for the core engine, the shard count for the sharded one. */
  threads: number;
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
    threads: 1,
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
    threads: shards,
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
  constructor(readonly kind: GeneratorKind) {
    this.worker = new Worker(SELF, { workerData: { role: "loadgen", kind } });
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
  generator: GeneratorKind;
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
  /** Context switches of all the process's threads per message (Linux /proc; -1 elsewhere). */
  switchesPerMsg: number;
}

/** Context switches (voluntary + involuntary) of every thread of this process so far; -1 without /proc. */
function contextSwitches(): number {
  try {
    let total = 0;
    for (const t of readdirSync("/proc/self/task")) {
      const status = readFileSync(`/proc/self/task/${t}/status`, "latin1");
      for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s*(\d+)$/gm)) total += Number(m[1]);
    }
    return total;
  } catch {
    return -1;
  }
}

async function measure(
  gen: LoadGenerator,
  target: Target,
  method: "OPTIONS" | "INVITE",
  count: number,
  concurrency: number,
  warmup: number,
): Promise<Row> {
  // Warm-up: sockets, and the JIT of every thread of the system under test. Each shard is a fresh
  // V8 isolate that compiles the engine's code anew, where the one-thread engine reuses the main
  // thread's code from earlier cases; so the warm-up grows with the number of shards, and every
  // engine thread has seen about the same number of transactions before the measurement. 12000 per
  // thread: with 3000, 4 shards still paid for compiling during the measurement (52.7 µs CPU per
  // message against 37.1 after 12000; 1 shard 39.6 and 35.8) — a server that has run for a while
  // has compiled its code in every thread.
  if (warmup > 0) await gen.run({ port: target.port, method, count: warmup * target.threads, concurrency });
  const m0 = await target.messages();
  const s0 = await target.shardBusyMs();
  const b0 = await target.batches();
  const cs0 = contextSwitches();
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const r = await gen.run({ port: target.port, method, count, concurrency });
  const cs = contextSwitches();
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  const messages = (await target.messages()) - m0;
  const shardMs = (await target.shardBusyMs()) - s0;
  const batches = (await target.batches()) - b0;
  return {
    generator: gen.kind,
    scenario: method === "INVITE" ? "INVITE→200→ACK" : "OPTIONS→200",
    target: target.name,
    txPerSec: (r.ok / r.elapsedMs) * 1000,
    failed: r.failed,
    cpuPerMsg: (cpu.user + cpu.system) / messages,
    mainPerMsg: (elu.active * 1000) / messages,
    shardPerMsg: (shardMs * 1000) / messages,
    perBatch: batches > 0 ? messages / batches : 0,
    // Threads that ended during the case (none should) would make this low; -1 when not on Linux.
    switchesPerMsg: cs0 < 0 || cs < 0 ? -1 : (cs - cs0) / messages,
  };
}

function table(rows: Row[]): string {
  const head = [
    "generator",
    "scenario",
    "system under test",
    "tx/s",
    "failed",
    "CPU µs/msg (all threads)",
    "main thread µs/msg",
    "shards µs/msg",
    "msgs/batch",
    "context switches/msg",
  ];
  const body = rows.map((r) => [
    r.generator,
    r.scenario,
    r.target,
    r.txPerSec.toFixed(0),
    String(r.failed),
    r.cpuPerMsg.toFixed(1),
    r.mainPerMsg.toFixed(1),
    r.shardPerMsg.toFixed(1),
    r.perBatch > 0 ? r.perBatch.toFixed(1) : "-",
    r.switchesPerMsg >= 0 ? r.switchesPerMsg.toFixed(2) : "-",
  ]);
  return pipeTable(head, body);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  console.log(
    `siptm workers benchmark: ${args.count} transactions per case at concurrency ${args.concurrency}, ` +
      `Node ${process.version}, ${(await import("node:os")).availableParallelism()} CPUs`,
  );
  // First the data plane alone (crossing.ts): the cost of crossing threads without SIP work.
  if (args.crossing) {
    const crossing = await crossingBenchmark(args.quick);
    console.log(
      "\nCrossing threads alone (400-byte messages there and an answer back, at most 2 batches in flight, " +
        "one postMessage per message with 64 in flight):\n",
    );
    console.log(`${crossingTable(crossing)}\n`);
  }
  const rows: Row[] = [];
  for (const kind of args.generators) {
    const gen = new LoadGenerator(kind);
    await gen.ready;
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
            const row = await measure(gen, target, method, args.count, args.concurrency, args.warmup);
            byTarget[i]!.push(row);
            console.log(
              `  ${kind.padEnd(6)} round ${round + 1}  ${row.scenario.padEnd(15)} ${row.target.padEnd(24)} ${row.txPerSec.toFixed(0).padStart(7)} tx/s`,
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
  }
  console.log(`\n${table(rows)}\n`);
  for (const kind of args.generators) {
    for (const scenario of new Set(rows.map((r) => r.scenario))) {
      const of = rows.filter((r) => r.generator === kind && r.scenario === scenario);
      const core = of.find((r) => r.target.startsWith("core"));
      const one = of.find((r) => r.target.endsWith(", 1 shard"));
      if (!core || !one) continue;
      const best = of.reduce((a, b) => (b.txPerSec > a.txPerSec ? b : a));
      console.log(
        `${kind} generator, ${scenario}: crossing threads costs ${(one.cpuPerMsg - core.cpuPerMsg).toFixed(1)} µs CPU per message ` +
          `(1 shard vs one thread, all threads); the coordinator spends ${one.mainPerMsg.toFixed(1)} µs per message ` +
          `on the main thread, the shard ${one.shardPerMsg.toFixed(1)} µs, the one-thread engine ${core.mainPerMsg.toFixed(1)} µs; ` +
          `most tx/s: ${best.target} (${(best.txPerSec / core.txPerSec).toFixed(2)}× one thread).`,
      );
    }
    // The goal: sharded at least as fast as one thread at every shard count, 2 shards faster, on
    // this machine, because the coordinator's socket work and the shards' SIP work overlap on its
    // cores. That needs a core the generator leaves free: the raw generator (about SIPp's cost)
    // does; the engine generator takes a whole core of two itself, so its rows show what the
    // crossing costs when there is nothing to overlap, and are not held to the goal.
    const of = rows.filter((r) => r.generator === kind);
    const ratios = of
      .filter((r) => !r.target.startsWith("core"))
      .map((r) => {
        const core = of.find((c) => c.scenario === r.scenario && c.target.startsWith("core"))!;
        return { r, x: r.txPerSec / core.txPerSec };
      });
    const list = ratios.map(({ x }) => x.toFixed(2)).join(", ");
    if (kind === "engine") {
      console.log(
        `engine generator (it takes a whole core: no core left for the overlap the goal is about, so not held to it): ${list}× one thread`,
      );
      continue;
    }
    const below = ratios.filter(({ x }) => x < 1);
    const two = ratios.filter(({ r }) => r.target.endsWith(", 2 shards"));
    console.log(
      `${kind} generator, goal "never below one thread, 2 shards above"${args.quick ? " (--quick: a smoke run, not a measurement)" : ""}: ` +
        (below.length === 0 && two.every(({ x }) => x > 1)
          ? `met (${list}× one thread)`
          : `not met — ${below.map(({ r, x }) => `${r.scenario} ${r.target} ${x.toFixed(2)}×`).join(", ") || "2 shards not above one thread"}`),
    );
  }
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === "loadgen") {
  void loadGenerator((workerData as { kind: GeneratorKind }).kind);
} else if (isMainThread && process.argv[1] && resolve(process.argv[1]) === SELF) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
