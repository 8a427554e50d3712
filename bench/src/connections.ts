/**
 * Connections benchmark: what TLS and WebSocket connections cost a server,
 * siptm beside Kamailio measured in the same run, on 127.0.0.1.
 *
 *   node dist/connections.js           full run (10000 held, 500 calls/s for 20 s, 2000 handshakes)
 *   node dist/connections.js --quick   smoke run (500 held, 100 calls/s for 3 s, 200 handshakes), *.tmp files only
 *
 * Options: --held=N  --rate=R  --seconds=S  --handshakes=N  --concurrency=C  --connections=C (calls)
 *          --scenario=invite|options  --parts=memory,cpu,handshakes  --systems=siptm,kamailio
 *
 * Parts:
 *  (a) memory: N idle connections held (the handshake, then one CRLFCRLF keep-alive each, RFC 5626
 *      §3.5.1) against `siptm serve --workers 0 --route uas` and Kamailio (tls module; xhttp +
 *      websocket modules, plain WS), over TLS and over WS. Per connection: (after − before)/N of the
 *      server's memory. siptm: VmRSS of its one process, and the V8 heap used and the external memory
 *      (`siptm_nodejs_heap_size_used_bytes`, `siptm_nodejs_external_memory_bytes` from /metrics).
 *      Kamailio: its processes share one memory segment (connections and TLS state live in it), so
 *      the sum of their VmRSS counts a shared page once per process that touched it: the table shows
 *      the sum of Pss (smaps_rollup: a shared page split between the processes mapping it, so it
 *      counts once in the total) and, beside it, the plain VmRSS sum. The load generator runs in
 *      child processes of its own (src/lib/stream-uac.ts, at most 5000 connections each).
 *  (b) cpu: siptm --workers 0 and --workers 2, calls at a fixed rate over UDP, TCP, TLS and WS (a
 *      few persistent connections, INVITE→200, ACK, BYE→200), a fresh server per cell; the server's
 *      utime+stime (/proc/PID/stat, every thread) during the run divided by the completed calls,
 *      and the generator's failed calls.
 *  (c) handshakes: N full TLS handshakes (a new connection each, no resumption), C at once, against
 *      siptm and Kamailio's tls module: handshakes per second and server CPU per handshake.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  Child,
  installCleanupHandlers,
  killAll,
  releaseTempDir,
  runningChildren,
  sleep,
  trackTempDir,
} from "./lib/children.js";
import { type BenchEnvironment, environment, packageVersion } from "./lib/env.js";
import { alive, cpuSeconds, pssBytes, rssBytes } from "./lib/proc.js";
import { pipeTable } from "./lib/report.js";
import {
  BENCH_SERVER_FLAGS,
  freeTcpPort,
  kamailioVersion,
  siptmMetric,
  stableDescendants,
} from "./lib/systems.js";

const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const REPO_DIR = resolve(BENCH_DIR, "..");
const HOST = "127.0.0.1";
const TLS_DIR = join(REPO_DIR, "packages/core/test/fixtures/tls");
const CERT = join(TLS_DIR, "server.pem");
const KEY = join(TLS_DIR, "server.key");
const CA = join(TLS_DIR, "ca.pem");
const UAC = join(BENCH_DIR, "dist/lib/stream-uac.js");
const CLI = join(REPO_DIR, "packages/server/dist/cli.js");
const KAMAILIO = "/usr/sbin/kamailio";
/** Connections one generator process holds at most. */
const PER_GENERATOR = 5000;
/** Kamailio's shared memory (-m, MB): every connection and its TLS state live there. */
const KAMAILIO_SHM_MB = 2048;

type Part = "memory" | "cpu" | "handshakes";
type Held = "tls" | "ws";
type CallTransport = "udp" | "tcp" | "tls" | "ws";

interface Args {
  quick: boolean;
  held: number;
  rate: number;
  seconds: number;
  handshakes: number;
  concurrency: number;
  connections: number;
  scenario: "invite" | "options";
  parts: Part[];
  systems: string[];
  shards: number[];
}

function parseArgs(argv: readonly string[]): Args {
  const quick = argv.includes("--quick");
  const a: Args = {
    quick,
    held: quick ? 500 : 10_000,
    rate: quick ? 100 : 500,
    seconds: quick ? 3 : 20,
    handshakes: quick ? 200 : 2000,
    concurrency: 50,
    connections: 4,
    scenario: "invite",
    parts: ["memory", "cpu", "handshakes"],
    systems: ["siptm", "kamailio"],
    shards: [0, 2],
  };
  const list = (v: string) =>
    v
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x.length > 0);
  for (const arg of argv) {
    const [key, value = ""] = arg.split("=", 2) as [string, string | undefined];
    const n = () => {
      const x = Number(value);
      if (!Number.isFinite(x) || x <= 0) throw new Error(`${key} must be a positive number`);
      return x;
    };
    if (arg === "--quick") continue;
    if (key === "--held") a.held = Math.min(n(), 18_000);
    else if (key === "--rate") a.rate = n();
    else if (key === "--seconds") a.seconds = Math.min(n(), 300);
    else if (key === "--handshakes") a.handshakes = Math.min(n(), 100_000);
    else if (key === "--concurrency") a.concurrency = Math.min(n(), 1000);
    else if (key === "--connections") a.connections = Math.min(n(), 64);
    else if (key === "--scenario") {
      if (value !== "invite" && value !== "options") throw new Error("--scenario must be invite or options");
      a.scenario = value;
    } else if (key === "--parts") {
      a.parts = list(value) as Part[];
      for (const p of a.parts)
        if (!["memory", "cpu", "handshakes"].includes(p)) throw new Error(`unknown part ${p}`);
    } else if (key === "--systems") a.systems = list(value);
    else if (key === "--shards") a.shards = list(value).map(Number);
    else if (arg === "--help" || arg === "-h") {
      console.log(
        "usage: node dist/connections.js [--quick] [--held=N] [--rate=R] [--seconds=S] [--handshakes=N] [--concurrency=C]\n" +
          "                                [--connections=C] [--scenario=invite|options] [--parts=memory,cpu,handshakes]\n" +
          "                                [--systems=siptm,kamailio] [--shards=0,2]",
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (see --help)`);
  }
  return a;
}

// ------------------------------------------------------------------ helpers

async function waitForTcpPort(port: number, timeoutMs: number, child: Child): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (!child.running) throw new Error(`${child.name} exited: ${child.tail()}`);
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect({ host: HOST, port });
      s.once("connect", () => {
        s.destroy();
        res(true);
      });
      s.once("error", () => res(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${child.name}: port ${port} not open within ${timeoutMs} ms\n${child.tail()}`);
}

/** The hard open-file limit (the soft one is raised to it in every child). */
const HARD_NOFILE = (() => {
  const r = spawnSync("bash", ["-c", "ulimit -Hn"], { encoding: "utf8" });
  const n = Number((r.stdout ?? "").trim());
  return Number.isFinite(n) && n > 0 ? n : 1024;
})();

/** Spawn through bash with the soft open-file limit raised to the hard one; `exec` keeps the pid. */
function spawnRaised(
  name: string,
  command: string,
  args: readonly string[],
  options: { cwd?: string; stdin?: boolean } = {},
): Child {
  const quoted = [command, ...args].map((s) => `'${s.replace(/'/g, "'\\''")}'`).join(" ");
  return new Child(name, "bash", ["-c", `ulimit -n ${HARD_NOFILE}; exec ${quoted}`], {
    stdio: [options.stdin ? "pipe" : "ignore", "pipe", "pipe"],
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
}

/** Server-side sockets on `port` in the given states (ss), the count the server really holds. */
function socketsOn(port: number, states: readonly string[] = ["established"]): number {
  const r = spawnSync("ss", ["-tnH", ...states.flatMap((s) => ["state", s]), `( sport = :${port} )`], {
    encoding: "utf8",
  });
  return (r.stdout ?? "").split("\n").filter((l) => l.trim().length > 0).length;
}

interface Server {
  readonly system: "siptm" | "kamailio";
  readonly label: string;
  readonly child: Child;
  readonly ports: Partial<Record<CallTransport, number>>;
  readonly rpcPort?: number;
  pids(): number[];
  stop(): Promise<void>;
}

async function startSiptm(
  transports: readonly CallTransport[],
  workers: number,
  maxConnections: number,
): Promise<Server> {
  const ports: Partial<Record<CallTransport, number>> = {};
  const listen: string[] = [];
  for (const t of transports) {
    const p = await freeTcpPort();
    ports[t] = p;
    listen.push("--listen", `${t}:${HOST}:${p}`);
  }
  const rpcPort = await freeTcpPort();
  const args = [
    CLI,
    "serve",
    ...listen,
    "--tls-cert",
    CERT,
    "--tls-key",
    KEY,
    "--rpc",
    `${HOST}:${rpcPort}`,
    "--workers",
    String(workers),
    "--route",
    "uas",
    ...BENCH_SERVER_FLAGS,
    // One generator is one source IP holding thousands of connections: the per-IP cap would
    // measure itself.
    "--tcp-max-per-ip",
    "0",
    "--tcp-max-connections",
    String(maxConnections),
  ];
  const child = spawnRaised(`siptm --workers ${workers}`, process.execPath, args);
  try {
    await child.waitForOutput(/^ready.*$/m, 20_000);
    for (const t of transports) if (t !== "udp") await waitForTcpPort(ports[t] as number, 10_000, child);
  } catch (err) {
    await child.kill();
    throw err;
  }
  return {
    system: "siptm",
    label: `siptm --workers ${workers}`,
    child,
    ports,
    rpcPort,
    pids: () => [child.pid],
    stop: () => child.kill(5000),
  };
}

async function startKamailio(transport: Held, maxConnections: number): Promise<Server> {
  const port = await freeTcpPort();
  const runDir = trackTempDir(mkdtempSync(join(tmpdir(), "siptm-conn-kamailio-")));
  const cfg = readFileSync(join(BENCH_DIR, "kamailio/connections.cfg"), "utf8")
    .replaceAll("@CERT@", CERT)
    .replaceAll("@KEY@", KEY)
    .replaceAll("@MAXCONN@", String(maxConnections))
    .replaceAll("@MAXFILES@", String(HARD_NOFILE));
  const cfgFile = join(runDir, "connections.cfg");
  writeFileSync(cfgFile, cfg);
  const args = [
    "-f",
    cfgFile,
    "-DD",
    "-E",
    "-m",
    String(KAMAILIO_SHM_MB),
    "-M",
    "8",
    "-l",
    `${transport === "tls" ? "tls" : "tcp"}:${HOST}:${port}`,
    "-Y",
    runDir,
    "-P",
    join(runDir, "kamailio.pid"),
    "-A",
    transport === "tls" ? "WITH_TLS" : "WITH_WS",
  ];
  const child = spawnRaised(`kamailio (${transport})`, KAMAILIO, args, { cwd: runDir });
  try {
    await waitForTcpPort(port, 20_000, child);
    await stableDescendants(child);
  } catch (err) {
    await child.kill();
    releaseTempDir(runDir, true);
    throw err;
  }
  const all = [child.pid, ...child.recordDescendants()];
  return {
    system: "kamailio",
    label: `Kamailio ${transport === "tls" ? "tls" : "xhttp+websocket"}`,
    child,
    ports: { [transport]: port },
    pids: () => all.filter((p) => alive(p)),
    stop: async () => {
      await child.kill(5000);
      releaseTempDir(runDir, true);
    },
  };
}

interface Event {
  event: string;
  [k: string]: unknown;
}

/** A generator child: its JSON lines, one after another. */
class Generator {
  readonly child: Child;
  private lines: Event[] = [];
  private seen = 0;
  private buffer = "";
  private waiters: Array<() => void> = [];

  constructor(name: string, args: readonly string[]) {
    this.child = spawnRaised(name, process.execPath, [UAC, ...args], { stdin: true });
    this.child.proc.stdout?.on("data", (d: Buffer) => {
      this.buffer += d.toString("utf8");
      let nl = this.buffer.indexOf("\n");
      while (nl >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line.startsWith("{")) {
          try {
            this.lines.push(JSON.parse(line) as Event);
          } catch {
            // not ours
          }
        }
        nl = this.buffer.indexOf("\n");
      }
      for (const w of this.waiters.splice(0)) w();
    });
    void this.child.exited.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** The next event named `name` (an "error" event or the child's exit rejects). */
  async next(name: string, timeoutMs: number): Promise<Event> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      while (this.seen < this.lines.length) {
        const e = this.lines[this.seen++] as Event;
        if (e.event === name) return e;
        if (e.event === "error") throw new Error(`${this.child.name}: ${String(e.message)}`);
      }
      if (!this.child.running)
        throw new Error(`${this.child.name} exited before "${name}": ${this.child.tail()}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`${this.child.name}: no "${name}" within ${timeoutMs} ms`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  send(line: string): void {
    this.child.proc.stdin?.write(`${line}\n`);
  }

  async end(): Promise<void> {
    this.child.proc.stdin?.end();
    await Promise.race([this.child.exited, sleep(10_000)]);
    await this.child.kill(2000);
  }
}

// ------------------------------------------------------------------ (a) memory

interface MemoryRow {
  transport: Held;
  system: string;
  held: number;
  failed: number;
  serverCount: number;
  openSeconds: number;
  processes: number;
  /** Bytes per connection. */
  rss: number;
  pss?: number;
  heap?: number;
  external?: number;
  before: Record<string, number>;
  after: Record<string, number>;
  /** 3 s after the clients closed. */
  afterClose: Record<string, number>;
  /** Server sockets on the port (established or CLOSE-WAIT) 3 s after the clients closed. */
  leftOpen: number;
  closedByServer: number;
}

async function serverMemory(server: Server): Promise<Record<string, number>> {
  const pids = server.pids();
  let rss = 0;
  let pss = 0;
  for (const p of pids) {
    rss += rssBytes(p) ?? 0;
    pss += pssBytes(p) ?? 0;
  }
  const out: Record<string, number> = { rss, pss, processes: pids.length };
  if (server.rpcPort !== undefined) {
    out.heap = (await siptmMetric(server.rpcPort, "siptm_nodejs_heap_size_used_bytes")) ?? Number.NaN;
    out.external = (await siptmMetric(server.rpcPort, "siptm_nodejs_external_memory_bytes")) ?? Number.NaN;
  }
  return out;
}

/** Open `count` connections from ⌈count/5000⌉ generator processes; resolves when all are held. */
async function holdConnections(
  transport: Held,
  port: number,
  count: number,
  concurrency: number,
): Promise<{
  gens: Generator[];
  opened: number;
  failed: number;
  openSeconds: number;
  errors: Record<string, number>;
}> {
  const n = Math.max(1, Math.ceil(count / PER_GENERATOR));
  const gens: Generator[] = [];
  for (let i = 0; i < n; i++) {
    const share = Math.floor(count / n) + (i < count % n ? 1 : 0);
    gens.push(
      new Generator(`generator hold ${transport} #${i + 1}`, [
        "hold",
        "--transport",
        transport,
        "--port",
        String(port),
        "--count",
        String(share),
        "--concurrency",
        String(Math.max(1, Math.round(concurrency / n))),
        "--ca",
        CA,
      ]),
    );
  }
  let opened = 0;
  let failed = 0;
  let openSeconds = 0;
  const errors: Record<string, number> = {};
  try {
    for (const g of gens) {
      const e = await g.next("held", 600_000);
      opened += Number(e.opened);
      failed += Number(e.failed);
      openSeconds = Math.max(openSeconds, Number(e.openSeconds));
      for (const [k, v] of Object.entries((e.errors ?? {}) as Record<string, number>))
        errors[k] = (errors[k] ?? 0) + v;
    }
  } catch (err) {
    await Promise.all(gens.map((g) => g.end()));
    throw err;
  }
  return { gens, opened, failed, openSeconds, errors };
}

async function closeHeld(gens: Generator[]): Promise<number> {
  let closedByServer = 0;
  for (const g of gens) g.send("close");
  for (const g of gens) {
    try {
      const e = await g.next("closed", 30_000);
      closedByServer += Number(e.closedByServer);
    } catch {
      // counted as nothing closed
    }
  }
  await Promise.all(gens.map((g) => g.end()));
  return closedByServer;
}

async function measureMemory(a: Args, transport: Held, system: string): Promise<MemoryRow> {
  const maxConn = Math.min(HARD_NOFILE - 300, a.held + 1000);
  const server =
    system === "siptm" ? await startSiptm([transport], 0, maxConn) : await startKamailio(transport, maxConn);
  const port = server.ports[transport] as number;
  try {
    // Warm-up: 100 connections opened and closed, so code loaded at the first connection
    // (TLS contexts, the WebSocket upgrade path) is in "before", not in the per-connection cost.
    const warm = await holdConnections(transport, port, 100, 20);
    await closeHeld(warm.gens);
    await sleep(1500);
    const before = await serverMemory(server);
    const held = await holdConnections(transport, port, a.held, a.concurrency);
    await sleep(2000);
    const serverCount = socketsOn(port);
    const after = await serverMemory(server);
    const closedByServer = await closeHeld(held.gens);
    // Three seconds after the clients closed: what the server still keeps (a leak would stay).
    await sleep(3000);
    const leftOpen = socketsOn(port, ["established", "close-wait"]);
    const afterClose = await serverMemory(server);
    const n = held.opened;
    const per = (k: string) => ((after[k] ?? 0) - (before[k] ?? 0)) / Math.max(n, 1);
    const row: MemoryRow = {
      transport,
      system: server.label,
      held: n,
      failed: held.failed,
      serverCount,
      openSeconds: held.openSeconds,
      processes: after.processes ?? 1,
      rss: per("rss"),
      before,
      after,
      afterClose,
      leftOpen,
      closedByServer,
    };
    row.pss = per("pss");
    if (system === "siptm") {
      row.heap = per("heap");
      row.external = per("external");
    }
    if (Object.keys(held.errors).length > 0)
      console.log(`  ${server.label} ${transport}: connect errors ${JSON.stringify(held.errors)}`);
    console.log(
      `  ${transport} ${server.label}: ${n} held (${held.failed} failed, server holds ${serverCount}) in ${held.openSeconds.toFixed(1)} s; ` +
        `RSS ${kb(row.rss)}${row.pss !== undefined ? `, Pss ${kb(row.pss)}` : ""}${row.heap !== undefined ? `, heap ${kb(row.heap)}, external ${kb(row.external ?? 0)}` : ""} per connection`,
    );
    return row;
  } finally {
    await server.stop();
  }
}

// ------------------------------------------------------------------ (b) cpu per call

interface CpuRow {
  workers: number;
  transport: CallTransport;
  rate: number;
  seconds: number;
  started: number;
  completed: number;
  failed: number;
  failures: Record<string, number>;
  statuses: Record<string, number>;
  serverCpuSeconds: number;
  /** Server CPU µs per completed call. */
  usPerCall: number;
  /** Server CPU as a share of one core over the run. */
  serverCores: number;
  generatorCpuSeconds: number;
  latencyMs: { p50: number; p99: number; max: number };
  leftOpen?: number;
}

async function measureCpu(a: Args, workers: number, transport: CallTransport): Promise<CpuRow> {
  const server = await startSiptm([transport], workers, 1000);
  const port = server.ports[transport] as number;
  const gen = new Generator(`generator calls ${transport}`, [
    "calls",
    "--transport",
    transport,
    "--port",
    String(port),
    "--rate",
    String(a.rate),
    "--seconds",
    String(a.seconds),
    "--connections",
    String(a.connections),
    "--scenario",
    a.scenario,
    "--timeout",
    "8000",
    "--ca",
    CA,
  ]);
  try {
    await gen.next("connected", 30_000);
    await sleep(500);
    const cpu0 = cpuSeconds(server.child.pid) ?? 0;
    const t0 = performance.now();
    gen.send("go");
    const r = await gen.next("result", (a.seconds + 30) * 1000);
    const wall = (performance.now() - t0) / 1000;
    const cpu = (cpuSeconds(server.child.pid) ?? 0) - cpu0;
    const completed = Number(r.completed);
    const row: CpuRow = {
      workers,
      transport,
      rate: a.rate,
      seconds: a.seconds,
      started: Number(r.started),
      completed,
      failed: Number(r.failed),
      failures: r.failures as Record<string, number>,
      statuses: r.statuses as Record<string, number>,
      serverCpuSeconds: cpu,
      usPerCall: completed > 0 ? (cpu / completed) * 1e6 : Number.NaN,
      serverCores: cpu / wall,
      generatorCpuSeconds: Number(r.generatorCpuSeconds),
      latencyMs: r.latencyMs as CpuRow["latencyMs"],
    };
    await gen.end();
    if (transport !== "udp" && server.rpcPort !== undefined) {
      // Connections the server still counts once the generator is gone (half-closed ones wait for their idle timeout).
      await sleep(500);
      const name = transport === "ws" ? "siptm_ws_connections" : `siptm_${transport}_connections`;
      row.leftOpen = await siptmMetric(server.rpcPort, name);
    }
    console.log(
      `  workers ${workers} ${transport.toUpperCase().padEnd(3)}: ${completed}/${row.started} calls, ${row.failed} failed${row.failed > 0 ? ` ${JSON.stringify(row.failures)} ${JSON.stringify(row.statuses)}` : ""}; ` +
        `server ${row.usPerCall.toFixed(0)} µs CPU/call (${(row.serverCores * 100).toFixed(0)} % of a core); p50 ${row.latencyMs.p50.toFixed(1)} ms, p99 ${row.latencyMs.p99.toFixed(1)} ms`,
    );
    return row;
  } finally {
    await gen.end();
    await server.stop();
  }
}

// ------------------------------------------------------------------ (c) handshakes

interface HandshakeRow {
  system: string;
  count: number;
  ok: number;
  failed: number;
  resumed: number;
  errors: Record<string, number>;
  wallSeconds: number;
  perSecond: number;
  serverCpuSeconds: number;
  /** Server CPU ms per handshake. */
  msPerHandshake: number;
  generatorCpuSeconds: number;
}

async function measureHandshakes(a: Args, system: string): Promise<HandshakeRow> {
  const server = system === "siptm" ? await startSiptm(["tls"], 0, 4000) : await startKamailio("tls", 4000);
  const port = server.ports.tls as number;
  try {
    // Warm-up (first-connection costs out of the count).
    const warm = new Generator("generator handshakes (warm-up)", [
      "handshakes",
      "--port",
      String(port),
      "--count",
      "20",
      "--concurrency",
      "5",
      "--ca",
      CA,
    ]);
    await warm.next("result", 60_000);
    await warm.end();
    await sleep(500);
    const cpu0 = server.pids().reduce((s, p) => s + (cpuSeconds(p) ?? 0), 0);
    const gen = new Generator("generator handshakes", [
      "handshakes",
      "--port",
      String(port),
      "--count",
      String(a.handshakes),
      "--concurrency",
      String(a.concurrency),
      "--ca",
      CA,
    ]);
    const r = await gen.next("result", 600_000);
    const cpu = server.pids().reduce((s, p) => s + (cpuSeconds(p) ?? 0), 0) - cpu0;
    await gen.end();
    const ok = Number(r.ok);
    const row: HandshakeRow = {
      system: server.label,
      count: a.handshakes,
      ok,
      failed: Number(r.failed),
      resumed: Number(r.resumed),
      errors: r.errors as Record<string, number>,
      wallSeconds: Number(r.wallSeconds),
      perSecond: Number(r.perSecond),
      serverCpuSeconds: cpu,
      msPerHandshake: ok > 0 ? (cpu / ok) * 1000 : Number.NaN,
      generatorCpuSeconds: Number(r.generatorCpuSeconds),
    };
    console.log(
      `  ${server.label}: ${ok}/${a.handshakes} handshakes (${row.failed} failed) in ${row.wallSeconds.toFixed(1)} s = ${row.perSecond.toFixed(0)}/s; ` +
        `server ${row.msPerHandshake.toFixed(2)} ms CPU per handshake; generator ${((row.generatorCpuSeconds / ok) * 1000).toFixed(2)} ms`,
    );
    return row;
  } finally {
    await server.stop();
  }
}

// ------------------------------------------------------------------ report

const kb = (bytes: number) => `${(Math.abs(bytes) < 51.2 ? 0 : bytes / 1024).toFixed(1)} KB`;
const fmt = (n: number | undefined, digits = 1) =>
  n === undefined || !Number.isFinite(n) ? "–" : n.toFixed(digits);

function memoryTable(rows: readonly MemoryRow[]): string {
  const head = [
    "transport",
    "server",
    "held",
    "failed",
    "server holds",
    "RSS / conn",
    "Pss / conn",
    "V8 heap / conn",
    "external / conn",
    "processes",
    "left 3 s after close",
  ];
  const body = rows.map((r) => [
    r.transport.toUpperCase(),
    r.system,
    String(r.held),
    String(r.failed),
    String(r.serverCount),
    kb(r.rss),
    r.pss === undefined ? "–" : kb(r.pss),
    r.heap === undefined ? "–" : kb(r.heap),
    r.external === undefined ? "–" : kb(r.external),
    String(r.processes),
    String(r.leftOpen),
  ]);
  return pipeTable(head, body);
}

function cpuTable(rows: readonly CpuRow[]): string {
  const head = [
    "siptm",
    "transport",
    "calls done / started",
    "failed",
    "server CPU µs / call",
    "vs UDP",
    "server % of a core",
    "p50 ms",
    "p99 ms",
    "generator CPU s",
    "left open",
  ];
  const body = rows.map((r) => {
    const udp = rows.find((x) => x.workers === r.workers && x.transport === "udp");
    return [
      `--workers ${r.workers}`,
      r.transport.toUpperCase(),
      `${r.completed} / ${r.started}`,
      String(r.failed),
      fmt(r.usPerCall, 0),
      udp && Number.isFinite(udp.usPerCall) && r.transport !== "udp"
        ? `${(r.usPerCall / udp.usPerCall).toFixed(2)}×`
        : r.transport === "udp"
          ? "(baseline)"
          : "–",
      fmt(r.serverCores * 100, 0),
      fmt(r.latencyMs.p50),
      fmt(r.latencyMs.p99),
      fmt(r.generatorCpuSeconds, 2),
      r.leftOpen === undefined ? "–" : String(r.leftOpen),
    ];
  });
  return pipeTable(head, body);
}

function handshakeTable(rows: readonly HandshakeRow[]): string {
  const head = [
    "server",
    "handshakes done / asked",
    "failed",
    "wall s",
    "handshakes / s",
    "server CPU ms / handshake",
    "one core's worth / s",
    "generator CPU ms / handshake",
  ];
  const body = rows.map((r) => [
    r.system,
    `${r.ok} / ${r.count}`,
    String(r.failed),
    fmt(r.wallSeconds),
    fmt(r.perSecond, 0),
    fmt(r.msPerHandshake, 2),
    fmt(1000 / r.msPerHandshake, 0),
    fmt(r.ok > 0 ? (r.generatorCpuSeconds / r.ok) * 1000 : Number.NaN, 2),
  ]);
  return pipeTable(head, body);
}

function markdown(
  env: BenchEnvironment,
  a: Args,
  memory: MemoryRow[],
  cpu: CpuRow[],
  hs: HandshakeRow[],
  notes: string[],
): string {
  const versions = Object.entries(env.versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  const out = [
    "# Connections benchmark: TLS and WebSocket",
    "",
    `- date: ${env.date}${env.commit ? `, commit ${env.commit}` : ""}`,
    `- Node ${env.node} (V8 ${env.v8}), ${env.platform} ${env.arch}`,
    `- CPU: ${env.cpu} × ${env.cpus} (a shared VM: other work ran beside it)`,
    `- packages: ${versions}`,
    `- settings: ${a.held} idle connections held; calls ${a.scenario} at ${a.rate}/s for ${a.seconds} s over ${a.connections} connections; ${a.handshakes} TLS handshakes, ${a.concurrency} at once`,
    "",
  ];
  if (memory.length > 0)
    out.push(
      "## Memory per idle connection",
      "",
      "(after − before) / held, the server's processes read from /proc: RSS = VmRSS summed over them, Pss = Pss (smaps_rollup) summed over them. Kamailio's processes share one memory segment (its connections and TLS state live there): the VmRSS sum counts a shared page once in every process that touched it, the Pss sum counts it once — Pss is the figure to compare. siptm `--workers 0` is one process (its RSS and Pss deltas agree); V8 heap used and external memory from its /metrics. Before: after a warm-up of 100 connections opened and closed. Left: server sockets on the port (established or CLOSE-WAIT) 3 s after the clients closed theirs.",
      "",
      memoryTable(memory),
      "",
    );
  if (cpu.length > 0)
    out.push(
      "## CPU per call",
      "",
      `siptm \`--route uas\`, a fresh server per row; ${a.scenario === "invite" ? "INVITE→180/200, ACK, BYE→200" : "OPTIONS→200"}; server utime+stime (all threads) during the run / completed calls. Left open: connections siptm still counts 0.5 s after the generator closed its own (a half-closed TCP/TLS connection that carried requests is kept until its idle timeout, so responses can still go out on it).`,
      "",
      cpuTable(cpu),
      "",
    );
  if (hs.length > 0)
    out.push(
      "## TLS handshakes",
      "",
      "Full handshakes (a new connection each, no session resumption), closed at once; TLS 1.3, ECDSA P-256 certificate; Kamailio with one TCP worker (`tcp_children=1`), siptm in one thread, so each does its handshakes on one core. The generator (Node clients, verifying the chain) shares the 2 cores and spends more CPU per handshake than either server, so handshakes/s is bounded by the machine; server CPU per handshake, and one core divided by it, is the comparison that carries over.",
      "",
      handshakeTable(hs),
      "",
    );
  if (notes.length > 0) out.push("Notes:", "", ...notes.map((n) => `- ${n}`), "");
  return out.join("\n");
}

// ------------------------------------------------------------------ main

async function main(): Promise<number> {
  installCleanupHandlers();
  const a = parseArgs(process.argv.slice(2));
  for (const f of [CLI, UAC, CERT, KEY, CA])
    if (!existsSync(f)) throw new Error(`${f} is missing (npm run build first)`);
  const withKamailio = a.systems.includes("kamailio");
  const notes: string[] = [];
  let kamailio: string | undefined;
  if (withKamailio) {
    const mods = "/usr/lib/x86_64-linux-gnu/kamailio/modules";
    if (!existsSync(KAMAILIO)) {
      notes.push("Kamailio not found: its rows are missing");
      a.systems = a.systems.filter((s) => s !== "kamailio");
    } else if (!existsSync(join(mods, "tls.so")) || !existsSync(join(mods, "websocket.so"))) {
      notes.push(
        "Kamailio's tls/websocket modules missing (apt-get install kamailio-tls-modules kamailio-websocket-modules): its rows are missing",
      );
      a.systems = a.systems.filter((s) => s !== "kamailio");
    } else kamailio = kamailioVersion(KAMAILIO);
  }
  const env = environment(REPO_DIR, {
    "@siptm/core": packageVersion(new URL("../../packages/core/package.json", import.meta.url)),
    ws: packageVersion(new URL("../../node_modules/ws/package.json", import.meta.url)),
    kamailio,
  });
  console.log(`connections benchmark${a.quick ? " (--quick)" : ""}: open-file limit ${HARD_NOFILE}`);
  const memory: MemoryRow[] = [];
  const cpu: CpuRow[] = [];
  const hs: HandshakeRow[] = [];
  const t0 = Date.now();
  if (a.parts.includes("memory")) {
    console.log(`\n(a) memory per idle connection, ${a.held} held`);
    for (const t of ["tls", "ws"] as const)
      for (const s of a.systems) memory.push(await measureMemory(a, t, s));
  }
  if (a.parts.includes("cpu")) {
    console.log(`\n(b) CPU per call, ${a.scenario} at ${a.rate}/s for ${a.seconds} s`);
    for (const w of a.shards)
      for (const t of ["udp", "tcp", "tls", "ws"] as const) cpu.push(await measureCpu(a, w, t));
  }
  if (a.parts.includes("handshakes")) {
    console.log(`\n(c) TLS handshakes, ${a.handshakes} at ${a.concurrency} at once`);
    for (const s of a.systems) hs.push(await measureHandshakes(a, s));
  }
  await killAll();
  const left = runningChildren();
  if (left.length > 0) notes.push(`children still running at the end: ${left.join(", ")}`);
  if (cpu.some((r) => r.failed > 0) || hs.some((r) => r.failed > 0) || memory.some((r) => r.failed > 0))
    notes.push("some calls, connections or handshakes failed: see the failed columns (and the JSON for why)");
  const md = markdown(env, a, memory, cpu, hs, notes);
  console.log(`\n${md}`);
  const resultsDir = join(BENCH_DIR, "results");
  mkdirSync(resultsDir, { recursive: true });
  const day = env.date.slice(0, 10);
  const names = a.quick
    ? { md: "connections-quick.md.tmp", json: "connections-quick.json.tmp" }
    : { md: "connections-latest.md", json: `connections-${day}.json` };
  writeFileSync(join(resultsDir, names.md), md);
  writeFileSync(
    join(resultsDir, names.json),
    `${JSON.stringify({ benchmark: "connections", environment: env, settings: a, memory, cpu, handshakes: hs, notes }, null, 2)}\n`,
  );
  console.log(
    `wrote results/${names.md} and results/${names.json} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
  );
  const failed =
    cpu.some((r) => r.failed > 0) || hs.some((r) => r.failed > 0) || memory.some((r) => r.failed > 0);
  if (failed) console.log("WARNING: some calls, connections or handshakes failed (see the failed columns)");
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err) => {
    console.error(`connections: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await killAll();
    process.exitCode = 1;
  },
);
