/**
 * Load benchmark in the manner of RFC 7501/7502: real peers over UDP on
 * 127.0.0.1, SIPp as the load generator, siptm beside Kamailio and the npm
 * `sip` package doing the same work, in the same run, alternating.
 *
 *   node dist/load.js              full run: 20 s steps, writes bench/results/load-*
 *   node dist/load.js --quick      CI smoke run (1 s at 500 calls/s per system and scenario), *.tmp files only
 *
 * Options: --step=SECONDS  --rates=250,500,…  --scenarios=uas,cancel,proxy,register
 *          --systems=siptm,kamailio,sip  --memory=10000,50000,100000 (0 = skip)
 *          --shards=1,2,4 (the siptm --workers N variants beside the one-thread server)
 *          --no-install (do not apt-get what is missing)  --keep-files (keep SIPp's folders)
 *          --render=results/load-DATE.json (write the Markdown and the chart of a recorded run again)
 *          --interleaved (all systems started at once, taking turns at each rate, instead of
 *          one system at a time)
 *
 * Scenarios (SIPp always -buff_size 4194304, bounded by -m and a wall-clock timeout):
 *  - uas:      SIPp's built-in uac (INVITE, 180, 200, ACK, BYE, 200) against each system's UAS;
 *  - cancel:   scenarios/uac-cancel.xml (INVITE, 180, CANCEL, 200, 487, ACK) against a server that rings forever;
 *  - proxy:    SIPp uac → the system as a stateful proxy → SIPp's built-in uas on another port (the
 *              Request-URI names the UAS, SIPp sends to the proxy with -rsa);
 *  - register: scenarios/register.xml (REGISTER, 200; a new user per call) against a registrar.
 *
 * Method: each system steps up through the offered rates, one full step at each, until a step
 * fails (a failed call, retransmissions above 1 % of calls, or the step not finished on time);
 * the Session Establishment Rate is the highest rate that held. At every step the server's CPU
 * (/proc utime+stime, all its processes) and memory are read, and SIPp's own CPU is sampled: a
 * SIPp near 100 % of a core is the limit, not the server. The cost table is the step at
 * --cost-rate (500/s). The systems run one after the other, each with its own server started for
 * its series and stopped after it (--interleaved: all started at once, taking turns at each rate
 * in a rotating order).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chartSpec, renderChartSvg } from "./lib/chart.js";
import { installCleanupHandlers, killAll, runningChildren, sleep } from "./lib/children.js";
import { environment, packageVersion } from "./lib/env.js";
import {
  COST_HEADER,
  costRows,
  findSeries,
  type GoalResult,
  type LoadReport,
  MEMORY_HEADER,
  type MemoryPoint,
  type MemoryResult,
  markdownReport,
  memoryRows,
  pct,
  SER_HEADER,
  type SeriesResult,
  type StepResult,
  type SystemInfo,
  serRows,
  shardingGoals,
  stepAt,
  textTable,
  worseStatus,
} from "./lib/load-report.js";
import { CpuSampler, groupMemory, MachineSampler, udpReceiveBufferDrops } from "./lib/proc.js";
import { freeUdpPort, HOST, SippRun, sippVersion } from "./lib/sipp-load.js";
import { snapshotPackages } from "./lib/snapshot.js";
import {
  KAMAILIO_MEMORY,
  kamailioVersion,
  type Paths,
  type RunningServer,
  type ScenarioName,
  type SystemSpec,
  siptmMetric,
  siptmRpc,
  startServer,
} from "./lib/systems.js";

const CORES = os.cpus().length;
const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const REPO_DIR = resolve(BENCH_DIR, "..");
const SCENARIO_DIR = join(BENCH_DIR, "scenarios");
const ALL_SCENARIOS: readonly ScenarioName[] = ["uas", "cancel", "proxy", "register"];

interface Args {
  quick: boolean;
  stepSeconds: number;
  rates: number[];
  scenarios: ScenarioName[];
  systems: string[];
  memoryTargets: number[];
  install: boolean;
  keepFiles: boolean;
  /** Re-render the tables and chart of a recorded run (its JSON file) without running anything. */
  render: string | undefined;
  costRate: number;
  goalRate: number;
  /** siptm --workers N variants measured beside the one-thread server. */
  shards: number[];
  /**
   * One system at a time (its own server, started for its series and stopped after it), the
   * default; --interleaved: all started at once, taking turns at each rate. Interleaving spreads
   * a slow phase of the machine over every system, but a server waiting for its turn still runs
   * the timers of its earlier steps (Timer J: 32 s after every CANCEL and BYE) during another
   * system's step, which made the sharded rows vary from run to run.
   */
  sequential: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const quick = argv.includes("--quick");
  const args: Args = {
    quick,
    stepSeconds: quick ? 1 : 20,
    rates: quick ? [500] : [500, 1000, 2000, 3000, 4000, 6000, 8000],
    scenarios: [...ALL_SCENARIOS],
    systems: ["siptm", "kamailio", "sip"],
    memoryTargets: quick ? [2000] : [10_000, 50_000, 100_000],
    install: true,
    keepFiles: false,
    render: undefined,
    costRate: 500,
    goalRate: 2000,
    shards: [1, 2, 4],
    sequential: true,
  };
  const list = (v: string) =>
    v
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x.length > 0);
  for (const a of argv) {
    const [key, value = ""] = a.split("=", 2) as [string, string | undefined];
    if (a === "--quick") continue;
    else if (key === "--step") args.stepSeconds = Number(value);
    else if (key === "--rates") args.rates = list(value).map(Number);
    else if (key === "--scenarios") args.scenarios = list(value) as ScenarioName[];
    else if (key === "--systems") args.systems = list(value);
    else if (key === "--memory")
      args.memoryTargets = list(value)
        .map(Number)
        .filter((n) => n > 0);
    else if (key === "--cost-rate") args.costRate = Number(value);
    else if (key === "--shards")
      args.shards = list(value)
        .map(Number)
        .filter((n) => Number.isInteger(n) && n > 0);
    else if (key === "--render") args.render = value;
    else if (a === "--no-install") args.install = false;
    else if (a === "--keep-files") args.keepFiles = true;
    else if (a === "--sequential") args.sequential = true;
    else if (a === "--interleaved") args.sequential = false;
    else if (a === "--help" || a === "-h") {
      console.log(
        "usage: node dist/load.js [--quick] [--step=S] [--rates=R1,R2,…] [--scenarios=uas,cancel,proxy,register]\n" +
          "                         [--systems=siptm,kamailio,sip] [--memory=N1,N2,…] [--cost-rate=R] [--no-install] [--keep-files] [--interleaved]\n" +
          "       node dist/load.js --render=results/load-DATE.json   (tables and chart of a recorded run again)",
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  if (!(args.stepSeconds > 0)) throw new Error("--step must be > 0");
  if (args.rates.some((r) => !(r > 0))) throw new Error("--rates must be positive numbers");
  args.rates.sort((a, b) => a - b);
  for (const s of args.scenarios) if (!ALL_SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}`);
  if (!args.rates.includes(args.costRate)) args.costRate = args.rates[0] as number;
  return args;
}

// ---------------------------------------------------------------- preflight

/** `apt-get install -y` the packages (as root, Debian), once; true when it worked. */
function aptInstall(packages: readonly string[], quick: boolean): { ok: boolean; reason: string } {
  if (typeof process.getuid === "function" && process.getuid() !== 0)
    return { ok: false, reason: "not root (apt-get needs root)" };
  if (!existsSync("/usr/bin/apt-get")) return { ok: false, reason: "no apt-get on this system" };
  console.log(`installing ${packages.join(", ")} from Debian (apt-get)…`);
  const timeout = quick ? 180_000 : 600_000;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const update = spawnSync("apt-get", ["update"], { encoding: "utf8", timeout, env });
  if (update.status !== 0)
    return { ok: false, reason: `apt-get update failed: ${(update.stderr ?? "").trim().split("\n").at(-1)}` };
  const install = spawnSync("apt-get", ["install", "-y", ...packages], { encoding: "utf8", timeout, env });
  if (install.status !== 0)
    return {
      ok: false,
      reason: `apt-get install failed: ${(install.stderr ?? "").trim().split("\n").at(-1)}`,
    };
  return { ok: true, reason: "" };
}

function which(bin: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${bin}`], { encoding: "utf8" });
  const path = (r.stdout ?? "").trim();
  return r.status === 0 && path ? path : undefined;
}

interface Tools {
  sipp?: string;
  sippVersion?: string;
  kamailio?: string;
  kamailioVersion?: string;
  skipped: string[];
}

function preflight(args: Args): Tools {
  const tools: Tools = { skipped: [] };
  const sippBin = process.env.SIPP_BIN ?? which("sipp") ?? "sipp";
  const kamBin = process.env.KAMAILIO_BIN ?? which("kamailio") ?? "/usr/sbin/kamailio";
  let sv = sippVersion(sippBin);
  let kv = args.systems.includes("kamailio") ? kamailioVersion(kamBin) : "not wanted";
  const missing = [...(sv ? [] : ["sip-tester"]), ...(kv ? [] : ["kamailio"])];
  let installReason = "";
  if (missing.length > 0) {
    if (args.install) {
      const r = aptInstall(missing, args.quick);
      installReason = r.reason;
      sv = sippVersion(process.env.SIPP_BIN ?? which("sipp") ?? "sipp");
      if (args.systems.includes("kamailio"))
        kv = kamailioVersion(process.env.KAMAILIO_BIN ?? which("kamailio") ?? kamBin);
    } else installReason = "--no-install";
  }
  if (sv) {
    tools.sipp = process.env.SIPP_BIN ?? which("sipp") ?? "sipp";
    tools.sippVersion = sv;
  } else tools.skipped.push(`SIPp (sip-tester) not available${installReason ? `: ${installReason}` : ""}`);
  if (args.systems.includes("kamailio")) {
    if (kv) {
      tools.kamailio = process.env.KAMAILIO_BIN ?? which("kamailio") ?? kamBin;
      tools.kamailioVersion = kv;
    } else
      tools.skipped.push(
        `Kamailio not available${installReason ? `: ${installReason}` : ""}: its rows are skipped`,
      );
  }
  return tools;
}

/** Does `siptm serve --workers 2` shard? Read from its banner. */
async function siptmSharding(paths: Paths): Promise<{ sharded: boolean; line: string }> {
  const server = await startServer(
    { id: "siptm-probe", label: "siptm", kind: "siptm", workers: 2 },
    "uas",
    paths,
  );
  try {
    const line =
      server.banner
        .split("\n")
        .find((l) => l.includes("workers:"))
        ?.trim() ?? "";
    return { sharded: line !== "" && !/running in 1 thread/.test(line), line };
  } finally {
    await server.stop();
  }
}

// ---------------------------------------------------------------- one step

interface StepContext {
  args: Args;
  tools: Required<Pick<Tools, "sipp">>;
}

/** The SIPp UAC arguments for a scenario against `server`. */
function uacFor(scenario: ScenarioName, serverPort: number, uasPort: number | undefined) {
  switch (scenario) {
    case "uas":
      return { scenario: { builtin: "uac" }, remote: `${HOST}:${serverPort}` };
    case "cancel":
      return { scenario: { file: join(SCENARIO_DIR, "uac-cancel.xml") }, remote: `${HOST}:${serverPort}` };
    case "register":
      return { scenario: { file: join(SCENARIO_DIR, "register.xml") }, remote: `${HOST}:${serverPort}` };
    case "proxy":
      // The Request-URI (and To) name the SIPp UAS; every message is sent to the proxy.
      return { scenario: { builtin: "uac" }, remote: `${HOST}:${uasPort}`, sendTo: `${HOST}:${serverPort}` };
  }
}

async function runStep(
  ctx: StepContext,
  scenario: ScenarioName,
  server: RunningServer,
  rate: number,
  order: number,
  stepSeconds = ctx.args.stepSeconds,
): Promise<StepResult> {
  const { args } = ctx;
  const calls = Math.round(rate * stepSeconds);
  const timeoutSeconds = Math.ceil(stepSeconds * 1.5 + 15);
  let uas: SippRun | undefined;
  if (scenario === "proxy") {
    uas = new SippRun({
      bin: ctx.tools.sipp,
      name: `sipp uas (${server.spec.id})`,
      scenario: { builtin: "uas" },
      port: await freeUdpPort(),
      calls,
      timeoutSeconds: timeoutSeconds + 5,
    });
    await uas.listening();
  }
  const uacPort = await freeUdpPort();
  const target = uacFor(scenario, server.port, uas?.opts.port);
  const serverCpu = new CpuSampler(server.group);
  const machineCpu = new MachineSampler();
  const drops0 = udpReceiveBufferDrops();
  const uac = new SippRun({
    bin: ctx.tools.sipp,
    name: `sipp uac (${scenario} ${rate}/s → ${server.spec.id})`,
    port: uacPort,
    calls,
    rate,
    timeoutSeconds,
    ...target,
  });
  // Stop a step as soon as it cannot hold any more (a failed call, retransmissions past 1 % of
  // the step's calls, or past its time): an overloaded run otherwise lasts until SIPp's timeout,
  // and its backlog would still load the machine during the next system's step.
  const allowed = stepSeconds * 1.1 + 2;
  const t0 = performance.now();
  let aborted: string | undefined;
  for (;;) {
    const finished = await Promise.race([uac.result.then(() => true), sleep(1000).then(() => false)]);
    if (finished) break;
    const now = uac.poll();
    const elapsed = (performance.now() - t0) / 1000;
    const uasFailed = uas?.poll()?.failed ?? 0;
    if (now && now.failed + uasFailed > 0) aborted = `stopped after ${elapsed.toFixed(0)} s: calls failing`;
    else if (now && now.retransmissions > calls * 0.01)
      aborted = `stopped after ${elapsed.toFixed(0)} s: retransmissions past 1 % of the step's calls`;
    else if (elapsed > allowed + 3) aborted = `stopped after ${elapsed.toFixed(0)} s: the step overran`;
    if (aborted) {
      await uac.stop();
      break;
    }
  }
  const r = await uac.result;
  const srv = serverCpu.stop();
  const machine = machineCpu.stop();
  let uasResult: Awaited<SippRun["result"]> | undefined;
  if (uas) {
    // The built-in uas keeps each call 4 s after its BYE (timewait): no need to wait for that.
    // SIPp writes its statistics once more when terminated (failed calls counted so far).
    await Promise.race([uas.result, sleep(300)]);
    await uas.stop();
    uasResult = await uas.result;
  }
  const mem = groupMemory(server.group);
  const drops1 = udpReceiveBufferDrops();
  const drops = drops0 === undefined || drops1 === undefined ? undefined : drops1 - drops0;
  const stats = r.stats;
  const reasons: string[] = [];
  const successful = stats?.successful ?? 0;
  const failed = (stats?.failed ?? 0) + (uasResult?.stats?.failed ?? 0);
  const retrans = stats?.retransmissions ?? 0;
  const retransPct = (100 * retrans) / Math.max(1, stats?.outgoing ?? calls);
  if (!stats) reasons.push(`no statistics from SIPp (exit ${r.code}${r.signal ? `, ${r.signal}` : ""})`);
  else {
    if (failed > 0) {
      const why = Object.entries({ ...stats.failures, ...(uasResult?.stats?.failures ?? {}) })
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
      reasons.push(`${failed} failed call${failed === 1 ? "" : "s"}${why ? ` (${why})` : ""}`);
    }
    if (successful < calls && failed === 0 && !aborted)
      reasons.push(`${calls - successful} calls unfinished`);
    if (retransPct > 1) reasons.push(`retransmissions ${retransPct.toFixed(1)}% of calls`);
  }
  if (aborted) {
    // How many calls were still open when the step was stopped: a handful means messages lost
    // that nobody retransmits (the call waits for SIPp's 10 s timeout), many means overload.
    const open = stats?.current;
    reasons.push(
      open !== undefined && open > 0 ? `${aborted} with ${open} call${open === 1 ? "" : "s"} open` : aborted,
    );
  } else if (r.killed) reasons.push("SIPp killed at the wall-clock limit");
  else if (r.code !== 0 && stats && failed === 0) reasons.push(`SIPp exit code ${r.code}`);
  if (r.wallSeconds > allowed && reasons.length === 0)
    reasons.push(`took ${r.wallSeconds.toFixed(1)} s for a ${stepSeconds} s step (rate not sustained)`);
  const pass = reasons.length === 0;
  // Datagrams the kernel dropped at a full socket buffer during the step (any socket of the
  // machine: SIPp's, the server's): said beside the reasons of a failed step.
  if (!pass && drops !== undefined && drops > 0)
    reasons.push(`${drops} datagram${drops === 1 ? "" : "s"} dropped at full socket buffers (kernel)`);
  const sippPeak = Math.max(r.cpu.peak, uasResult?.cpu.peak ?? 0);
  const total = srv.average + r.cpu.average + (uasResult?.cpu.average ?? 0);
  const limit = pass
    ? undefined
    : sippPeak >= 0.9
      ? "load generator"
      : srv.peak >= 0.9
        ? "server CPU"
        : machine.peak >= 0.9 || total >= 0.9 * CORES
          ? "machine CPU (every core busy)"
          : "none seen";
  const result: StepResult = {
    scenario,
    system: server.spec.id,
    rate,
    calls,
    stepSeconds,
    order,
    pass,
    reasons,
    limit,
    successful,
    failed,
    retransmissions: retrans,
    retransPct,
    failures: { ...(stats?.failures ?? {}) },
    strayMessages: stats?.strayMessages ?? 0,
    ...(drops !== undefined ? { udpDrops: drops } : {}),
    wallSeconds: r.wallSeconds,
    server: {
      cpuSeconds: srv.cpuSeconds,
      average: srv.average,
      peak: srv.peak,
      cpuUsPerCall: (srv.cpuSeconds / Math.max(1, successful || calls)) * 1e6,
      memoryBytes: server.processes > 1 ? mem.pss : mem.rss,
      rssBytes: mem.rss,
      pssBytes: mem.pss,
      processes: mem.processes,
    },
    sipp: { average: r.cpu.average, peak: r.cpu.peak, exitCode: r.code },
    machine: { average: machine.average * CORES, peak: machine.peak * CORES, cores: CORES },
    ...(uasResult
      ? {
          sippUas: {
            average: uasResult.cpu.average,
            peak: uasResult.cpu.peak,
            exitCode: uasResult.code,
            failed: uasResult.stats?.failed ?? 0,
          },
        }
      : {}),
  };
  if (!pass && (r.errors || uasResult?.errors))
    process.stdout.write(
      `      SIPp said: ${`${r.errors}\n${uasResult?.errors ?? ""}`.trim().split("\n").slice(0, 3).join(" | ").slice(0, 400)}\n`,
    );
  if (!args.keepFiles || pass) {
    uac.cleanup();
    uas?.cleanup();
  } else {
    uac.keep();
    uas?.keep();
    process.stdout.write(`      SIPp files kept in ${uac.dir}${uas ? ` and ${uas.dir}` : ""}\n`);
  }
  return result;
}

const T0 = Date.now();
function clock(): string {
  const s = Math.floor((Date.now() - T0) / 1000);
  return `[${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}]`;
}

function progressLine(st: StepResult, label: string): string {
  const head = `${clock()} ${st.scenario.padEnd(8)} ${String(st.rate).padStart(5)}/s  ${label.padEnd(16)}`;
  const cpu = `server ${pct(st.server.average).padStart(4)} (peak ${pct(st.server.peak)})  ${st.server.cpuUsPerCall.toFixed(0).padStart(4)} µs/call  SIPp ${pct(st.sipp.average)}${st.sippUas ? ` + UAS ${pct(st.sippUas.average)}` : ""}  machine ${st.machine.average.toFixed(1)}/${st.machine.cores} cores`;
  return st.pass
    ? `${head} held     ${cpu}`
    : `${head} FAILED   ${cpu}\n      ${st.reasons.join("; ")} → limit: ${st.limit}`;
}

// ---------------------------------------------------------------- step-up per scenario

async function stepUp(
  ctx: StepContext,
  scenario: ScenarioName,
  systems: readonly SystemSpec[],
  paths: Paths,
  rotation: number,
): Promise<SeriesResult[]> {
  const { args } = ctx;
  const servers = new Map<string, RunningServer>();
  const steps = new Map<string, StepResult[]>();
  const stopped = new Map<string, string | undefined>();
  const skipped = new Map<string, string>();
  try {
    const started = await Promise.allSettled(systems.map((sys) => startServer(sys, scenario, paths)));
    started.forEach((r, i) => {
      const sys = systems[i] as SystemSpec;
      if (r.status === "fulfilled") {
        servers.set(sys.id, r.value);
        steps.set(sys.id, []);
      } else {
        const err = r.reason;
        const msg = err instanceof Error ? err.message.split("\n").slice(0, 3).join(" | ") : String(err);
        skipped.set(sys.id, `did not start: ${msg}`);
        process.stdout.write(`${clock()} ${scenario}: ${sys.label} did not start: ${msg}\n`);
      }
    });
    if (!args.quick) {
      // Unmeasured warm-up of every server (JIT, pools, caches): 3 s at 250 calls/s.
      for (const sys of systems) {
        const server = servers.get(sys.id);
        if (!server) continue;
        const w = await runStep(ctx, scenario, server, 250, 0, 3);
        console.log(
          `${clock()} ${scenario.padEnd(8)} warm-up ${sys.label}: ${w.pass ? "ok" : w.reasons.join("; ")}`,
        );
        await sleep(500);
      }
    }
    for (let i = 0; i < args.rates.length; i++) {
      const rate = args.rates[i] as number;
      const active = systems.filter((s) => servers.has(s.id) && !stopped.has(s.id));
      if (active.length === 0) break;
      const shift = (i + rotation) % active.length;
      const order = [...active.slice(shift), ...active.slice(0, shift)];
      for (let k = 0; k < order.length; k++) {
        const sys = order[k] as SystemSpec;
        const server = servers.get(sys.id) as RunningServer;
        if (!server.child.running) {
          stopped.set(sys.id, "the server process exited");
          continue;
        }
        const st = await runStep(ctx, scenario, server, rate, k);
        (steps.get(sys.id) as StepResult[]).push(st);
        console.log(progressLine(st, sys.label));
        if (!st.pass) {
          stopped.set(sys.id, st.reasons.join("; "));
          // An overloaded server may still be working through its backlog: stop it now so it
          // does not take CPU from the systems still stepping.
          await server.stop();
        }
        await sleep(args.quick ? 200 : 1000);
      }
    }
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()));
  }
  return systems.map((sys): SeriesResult => {
    const list = steps.get(sys.id) ?? [];
    const skip = skipped.get(sys.id);
    const held = list.filter((s) => s.pass);
    const fail = list.find((s) => !s.pass);
    const last = held.at(-1);
    return {
      scenario,
      system: sys.id,
      ser: last ? last.rate : null,
      reachedTop: fail === undefined && list.length === args.rates.length,
      ...(fail ? { firstFailure: { rate: fail.rate, reasons: fail.reasons, limit: fail.limit } } : {}),
      generatorBoundAtSer: last !== undefined && Math.max(last.sipp.peak, last.sippUas?.peak ?? 0) >= 0.9,
      steps: list,
      ...(skip ? { skipped: skip } : {}),
    };
  });
}

// ---------------------------------------------------------------- memory per transaction

async function waitCurrent(rpcPort: number, atLeast: number, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  let current = 0;
  while (Date.now() < end) {
    const stats = (await siptmRpc(rpcPort, "tm.stats")) as { current?: number };
    current = stats.current ?? 0;
    if (current >= atLeast) return current;
    await sleep(250);
  }
  return current;
}

async function memoryRun(ctx: StepContext, paths: Paths): Promise<MemoryResult> {
  const { args } = ctx;
  const spec: SystemSpec = { id: "siptm", label: "siptm (1 thread)", kind: "siptm", workers: 0 };
  const server = await startServer(spec, "memory", paths);
  const sipps: SippRun[] = [];
  const rpc = server.rpcPort as number;
  const rate = 2000;
  const warm = args.quick ? 200 : 1000;
  const settle = async () => {
    await sleep(args.quick ? 500 : 3000);
    return {
      rss: groupMemory(server.group).rss,
      heap: await siptmMetric(rpc, "siptm_nodejs_heap_size_used_bytes").catch(() => undefined),
    };
  };
  /** A SIPp that starts `calls` INVITEs the server keeps ringing (uac-ring.xml), at `rate`. */
  const ringing = async (name: string, calls: number): Promise<void> => {
    const run = new SippRun({
      bin: ctx.tools.sipp,
      name,
      scenario: { file: join(SCENARIO_DIR, "uac-ring.xml") },
      remote: `${HOST}:${server.port}`,
      port: await freeUdpPort(),
      calls,
      rate,
      timeoutSeconds: 3600,
    });
    sipps.push(run);
  };
  try {
    // Warm-up: the code paths are compiled and the pools sized before the baseline is read.
    await ringing("sipp ring warm-up", warm);
    let current = await waitCurrent(rpc, warm, 30_000);
    if (current < warm) throw new Error(`warm-up: only ${current} of ${warm} transactions open`);
    const base = await settle();
    console.log(
      `${clock()} memory   baseline: ${current} ringing INVITEs held, RSS ${(base.rss / 1048576).toFixed(1)} MB`,
    );
    const points: MemoryPoint[] = [];
    let held = 0;
    let prevRss = base.rss;
    for (const target of args.memoryTargets) {
      const more = target - held;
      if (more <= 0) continue;
      await ringing(`sipp ring +${more}`, more);
      current = await waitCurrent(rpc, warm + target, Math.ceil((more / rate) * 1000) + 60_000);
      if (current < warm + target) throw new Error(`only ${current} of ${warm + target} transactions open`);
      held = target;
      const m = await settle();
      const point: MemoryPoint = {
        held: target,
        current,
        rssBytes: m.rss,
        heapUsedBytes: m.heap,
        perTxnBytes: (m.rss - base.rss) / target,
        marginalBytes: (m.rss - prevRss) / more,
        heapPerTxnBytes:
          m.heap !== undefined && base.heap !== undefined ? (m.heap - base.heap) / target : undefined,
      };
      points.push(point);
      prevRss = m.rss;
      console.log(
        `${clock()} memory   ${String(target).padStart(6)} held: RSS ${(m.rss / 1048576).toFixed(1)} MB → ${point.perTxnBytes.toFixed(0)} bytes per transaction` +
          (point.heapPerTxnBytes !== undefined ? ` (V8 heap ${point.heapPerTxnBytes.toFixed(0)})` : ""),
      );
    }
    return {
      system: "siptm",
      baseline: { held: warm, rssBytes: base.rss, heapUsedBytes: base.heap },
      points,
    };
  } finally {
    await Promise.all(sipps.map((s) => s.stop()));
    for (const s of sipps) s.cleanup();
    await server.stop();
  }
}

// ---------------------------------------------------------------- goals

function goals(report: Omit<LoadReport, "goals">, args: Args): GoalResult[] {
  const out: GoalResult[] = [];
  const rateFor = (scenario: ScenarioName, other: string): number | undefined => {
    for (const r of [args.goalRate, args.costRate]) {
      const a = stepAt(findSeries(report as LoadReport, scenario, "siptm"), r);
      const b = stepAt(findSeries(report as LoadReport, scenario, other), r);
      if (a?.pass && b?.pass) return r;
    }
    return undefined;
  };
  for (const [other, name] of [
    ["kamailio", "Kamailio"],
    ["sip", "npm sip"],
  ] as const) {
    const details: string[] = [];
    let met = 0;
    let total = 0;
    for (const scenario of args.scenarios) {
      const rate = rateFor(scenario, other);
      if (rate === undefined) continue;
      const a = stepAt(findSeries(report as LoadReport, scenario, "siptm"), rate) as StepResult;
      const b = stepAt(findSeries(report as LoadReport, scenario, other), rate) as StepResult;
      const ratio = a.server.cpuUsPerCall / b.server.cpuUsPerCall;
      total++;
      if (ratio <= 0.5) met++;
      details.push(
        `${scenario} ${a.server.cpuUsPerCall.toFixed(0)} vs ${b.server.cpuUsPerCall.toFixed(0)} µs = ${ratio.toFixed(2)}×${rate !== args.goalRate ? ` (at ${rate}/s: ${args.rates.includes(args.goalRate) ? `${args.goalRate}/s did not hold for both` : `no ${args.goalRate}/s step in this run`})` : ""}`,
      );
    }
    out.push({
      name: `CPU per call of siptm (1 thread) ≤ ½ of ${name}'s at ${args.goalRate} calls/s`,
      status: total === 0 ? "n/a" : met === total ? "met" : "not met",
      detail:
        total === 0 ? `no step held by both systems` : `${met} of ${total} scenarios: ${details.join("; ")}`,
    });
  }
  {
    const details: string[] = [];
    let status: GoalResult["status"] = "n/a";
    for (const scenario of args.scenarios) {
      const a = findSeries(report as LoadReport, scenario, "siptm");
      const b = findSeries(report as LoadReport, scenario, "kamailio");
      if (!a || !b || a.skipped || b.skipped) continue;
      const sa = a.ser ?? 0;
      const sb = b.ser ?? 0;
      let s: GoalResult["status"];
      if (sa >= sb) s = "met";
      else if (a.firstFailure?.limit === "load generator" || a.generatorBoundAtSer) s = "inconclusive";
      else s = "not met";
      status = worseStatus(status, s);
      details.push(
        `${scenario} ${a.reachedTop ? "≥" : ""}${sa} vs ${b.reachedTop ? "≥" : ""}${sb} calls/s (siptm limit: ${a.firstFailure?.limit ?? (a.reachedTop ? "top of the rate list" : "?")}; Kamailio limit: ${b.firstFailure?.limit ?? (b.reachedTop ? "top of the rate list" : "?")}) → ${s}`,
      );
    }
    out.push({
      name: "SER of siptm no lower than Kamailio's where the load generator is not the limit",
      status,
      detail: details.join("; ") || "no scenario ran both",
    });
  }
  out.push(...shardingGoals(report as LoadReport, args.shards));
  {
    const m = report.memory;
    const last = m?.points.at(-1);
    out.push({
      name: "memory < 4 KB per ringing INVITE transaction",
      status: !last ? "n/a" : last.perTxnBytes < 4096 ? "met" : "not met",
      detail: !last
        ? (m?.skipped ?? "not measured")
        : (m?.points ?? []).map((p) => `${p.perTxnBytes.toFixed(0)} bytes RSS at ${p.held}`).join(", ") +
          (args.quick ? " (--quick: 2k only, dominated by noise)" : ""),
    });
  }
  return out;
}

// ---------------------------------------------------------------- main

/** Run at the end, whatever happens (temporary folders). */
const cleanups: Array<() => void> = [];

/** Uncommitted changes under `dir` of the repository (undefined when git cannot tell). */
function gitDirty(repo: string, dir: string): boolean | undefined {
  const r = spawnSync("git", ["status", "--porcelain", "--", dir], { cwd: repo, encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim().length > 0 : undefined;
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const args = parseArgs(process.argv.slice(2));
  const started = Date.now();
  if (args.render) {
    const { chart: _chart, ...report } = JSON.parse(
      readFileSync(resolve(args.render), "utf8"),
    ) as LoadReport & {
      chart?: unknown;
    };
    await writeOutputs(report, false);
    return 0;
  }
  const tools = preflight(args);
  const skipped = [...tools.skipped];
  if (!tools.sipp) {
    console.log(`load: skipped: ${skipped.join("; ")}`);
    return args.quick ? 0 : 1;
  }
  if (!existsSync(join(REPO_DIR, "packages/server/dist/cli.js")))
    throw new Error("packages/server/dist/cli.js is missing: run `npm run build` first");
  // The servers run from a private copy of the built packages: a rebuild in the shared
  // working tree during the run cannot break or change them.
  const snapshot = snapshotPackages(REPO_DIR, ["core", "workers", "server"]);
  cleanups.push(() => snapshot.cleanup());
  const dirty = gitDirty(REPO_DIR, "packages");
  // The commit the copied build came from (HEAD may move while the run goes on).
  const startCommit = environment(REPO_DIR, {}).commit;
  const paths: Paths = {
    repo: snapshot.root,
    bench: BENCH_DIR,
    node: process.execPath,
    kamailio: tools.kamailio ?? "kamailio",
  };

  const systems: SystemSpec[] = [];
  const infos: SystemInfo[] = [];
  const notes: string[] = [];
  const siptmVersion = packageVersion(new URL("../../packages/server/package.json", import.meta.url)) ?? "?";
  if (args.systems.includes("siptm")) {
    const probe = await siptmSharding(paths);
    systems.push({ id: "siptm", label: "siptm (1 thread)", kind: "siptm", workers: 0 });
    infos.push({
      id: "siptm",
      label: "siptm (1 thread)",
      version: `siptm ${siptmVersion}, node ${process.version}`,
      processes: "1",
      command:
        "node packages/server/dist/cli.js serve --workers 0 --route uas|default [--answer-after never]",
    });
    if (probe.sharded) {
      if (args.quick)
        notes.push(`--quick: siptm --workers ${args.shards.join("/")} run in the uas scenario only.`);
      for (const w of args.shards) {
        systems.push({ id: `siptm-w${w}`, label: `siptm --workers ${w}`, kind: "siptm", workers: w });
        infos.push({
          id: `siptm-w${w}`,
          label: `siptm --workers ${w}`,
          version: `siptm ${siptmVersion}`,
          processes: `1 (${w} worker thread${w > 1 ? "s" : ""})`,
          command: `node packages/server/dist/cli.js serve --workers ${w} …`,
        });
      }
    } else {
      skipped.push(
        `siptm --workers ${args.shards.join("/")} not measured: the server runs in one thread (banner: "${probe.line}")`,
      );
    }
  }
  if (args.systems.includes("kamailio") && tools.kamailio) {
    systems.push({ id: "kamailio", label: "Kamailio (-n 1)", kind: "kamailio" });
    infos.push({
      id: "kamailio",
      label: "Kamailio (-n 1)",
      version: tools.kamailioVersion ?? "?",
      processes: "measured below (main + 1 SIP worker + timers)",
      command: `kamailio -f bench/kamailio/{uas,proxy,registrar}.cfg -DD -E -m ${KAMAILIO_MEMORY.shmMb} -M ${KAMAILIO_MEMORY.pkgMb} -n 1 -l udp:127.0.0.1:PORT [-A RING_FOREVER]`,
    });
  }
  if (args.systems.includes("sip")) {
    systems.push({ id: "sip", label: "npm sip", kind: "sip" });
    infos.push({
      id: "sip",
      label: "npm sip",
      version: `sip ${packageVersion(new URL("../../node_modules/sip/package.json", import.meta.url)) ?? "?"}, node ${process.version}`,
      processes: "1",
      command: "node bench/dist/sip-uas.js --port PORT --mode uas|ring|proxy|registrar",
    });
  }
  for (const s of skipped) console.log(`load: skipped: ${s}`);

  const ctx: StepContext = { args, tools: { sipp: tools.sipp } };
  console.log(
    `load: ${args.scenarios.join(", ")} × ${systems.map((s) => s.label).join(", ")}; steps ${args.rates.join(", ")} calls/s, ${args.stepSeconds} s each${args.quick ? " (--quick: indicative only)" : ""}`,
  );
  const series: SeriesResult[] = [];
  let rotation = 0;
  for (const scenario of args.scenarios) {
    // --quick keeps to about a minute: the sharded siptm runs in the uas scenario only.
    const here = args.quick && scenario !== "uas" ? systems.filter((s) => (s.workers ?? 0) === 0) : systems;
    if (args.sequential) {
      // One system at a time, the starting one rotating across scenarios.
      const shift = rotation++ % here.length;
      for (const sys of [...here.slice(shift), ...here.slice(0, shift)])
        series.push(...(await stepUp(ctx, scenario, [sys], paths, 0)));
    } else series.push(...(await stepUp(ctx, scenario, here, paths, rotation++)));
  }
  // Kamailio's process count, as measured.
  const kamInfo = infos.find((i) => i.id === "kamailio");
  const kamStep = series.find((s) => s.system === "kamailio")?.steps[0];
  if (kamInfo && kamStep)
    infos[infos.indexOf(kamInfo)] = {
      ...kamInfo,
      processes: `${kamStep.server.processes} (main, one UDP worker, timer processes; CPU summed over all)`,
    };

  let memory: MemoryResult | undefined;
  if (args.memoryTargets.length > 0 && args.systems.includes("siptm")) {
    try {
      memory = await memoryRun(ctx, paths);
    } catch (err) {
      const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
      console.log(`  memory   FAILED: ${msg}`);
      memory = {
        system: "siptm",
        baseline: { held: 0, rssBytes: 0, heapUsedBytes: undefined },
        points: [],
        skipped: `failed: ${msg}`,
      };
    }
  }

  notes.push(
    `The servers ran from a copy of packages/{core,workers,server}/dist taken at the start${
      dirty
        ? " (the working tree had uncommitted changes under packages/: the build is of those, not of the commit named above)"
        : ""
    }.`,
    "CPU µs per call counts everything the server process did while SIPp ran (parsing, transactions, timers, GC, the event loop); for Kamailio the sum over its processes.",
    "All processes (SIPp UAC, SIPp UAS for the proxy scenario, the server) share the machine's cores; a SIPp near 100 % of a core limits the offered load, not the server.",
    "siptm and npm sip are one Node.js process each; Kamailio runs one SIP worker (-n 1) plus its timer processes.",
  );
  const env = environment(REPO_DIR, {
    "@siptm/server": siptmVersion,
    sip: packageVersion(new URL("../../node_modules/sip/package.json", import.meta.url)),
    kamailio: tools.kamailioVersion?.replace(/^kamailio /, ""),
    sipp: tools.sippVersion,
    vega: packageVersion(new URL("../../node_modules/vega/package.json", import.meta.url)),
    "vega-lite": packageVersion(new URL("../../node_modules/vega-lite/package.json", import.meta.url)),
  });
  const environmentRecord = { ...env, commit: startCommit };
  const partial: Omit<LoadReport, "goals"> = {
    benchmark: "load",
    environment: environmentRecord,
    settings: {
      quick: args.quick,
      stepSeconds: args.stepSeconds,
      rates: args.rates,
      costRate: args.costRate,
      goalRate: args.goalRate,
      memoryTargets: args.memoryTargets,
      sipp: tools.sippVersion ?? "SIPp",
      notes,
    },
    systems: infos,
    skipped,
    series,
    memory,
  };
  const report: LoadReport = { ...partial, goals: goals(partial, args) };

  await writeOutputs(report, true);
  console.log(`(${((Date.now() - started) / 1000).toFixed(0)} s)`);
  const leaked = runningChildren();
  if (leaked.length > 0) console.log(`load: still running, killing: ${leaked.join(", ")}`);
  return 0;
}

/**
 * Write the result files (JSON only when `withJson`: a re-render keeps the recorded one) and
 * print the tables.
 */
async function writeOutputs(report: LoadReport, withJson: boolean): Promise<void> {
  const st = report.settings;
  const resultsDir = join(BENCH_DIR, "results");
  mkdirSync(resultsDir, { recursive: true });
  const names = st.quick
    ? { json: "load-quick.json.tmp", md: "load-quick.md.tmp", svg: "load-quick.svg.tmp" }
    : {
        json: `load-${report.environment.date.slice(0, 10)}.json`,
        md: "load-latest.md",
        svg: "load-latest.svg",
      };
  let chartFile: string | undefined;
  try {
    writeFileSync(join(resultsDir, names.svg), await renderChartSvg(report));
    chartFile = st.quick ? undefined : names.svg;
  } catch (err) {
    console.log(`load: chart not rendered: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (withJson)
    writeFileSync(
      join(resultsDir, names.json),
      `${JSON.stringify({ ...report, chart: chartSpec(report) }, null, 2)}\n`,
    );
  writeFileSync(join(resultsDir, names.md), markdownReport(report, chartFile));

  console.log("\nSession Establishment Rate (highest offered calls/s that held a full step):\n");
  console.log(textTable(SER_HEADER, serRows(report)));
  for (const rate of [...new Set([st.costRate, st.goalRate])]) {
    const rows = costRows(report, rate);
    if (rows.length === 0) continue;
    console.log(`\nCost at ${rate} calls/s:\n`);
    console.log(textTable(COST_HEADER, rows));
  }
  if (report.memory && !report.memory.skipped) {
    console.log("\nMemory per ringing INVITE transaction (siptm):\n");
    console.log(textTable(MEMORY_HEADER, memoryRows(report.memory)));
  }
  console.log("\nGoals:");
  for (const g of report.goals) console.log(`- ${g.name}: ${g.status} — ${g.detail}`);
  console.log(
    `\nwrote ${withJson ? `bench/results/${names.json}, ` : ""}bench/results/${names.md}, bench/results/${names.svg}`,
  );
}

function runCleanups(): void {
  for (const c of cleanups.splice(0)) {
    try {
      c();
    } catch {
      // best effort
    }
  }
}
process.on("exit", runCleanups);

main()
  .then(async (code) => {
    await killAll();
    runCleanups();
    process.exitCode = code;
  })
  .catch(async (err) => {
    console.error(`load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await killAll();
    runCleanups();
    process.exitCode = 1;
  });
