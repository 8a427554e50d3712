/**
 * The systems under test of the load benchmark, each started as a child
 * process on its own 127.0.0.1 port, doing the same work per scenario:
 *
 *  - siptm: `node packages/server/dist/cli.js serve` (route uas or default);
 *  - Kamailio: `kamailio -DD -E` in the foreground with a bench/kamailio/ config;
 *  - npm sip: `node bench/dist/sip-uas.js` (the package's own transport and transactions).
 *
 * Each running server exposes the processes to measure (Kamailio: the main
 * process and every worker it forked) and a stop that kills all of them.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Child, releaseTempDir, sleep, trackTempDir } from "./children.js";
import { alive, type ProcessGroup } from "./proc.js";
import { freeUdpPort, HOST, waitForUdpPort } from "./sipp-load.js";

export type ScenarioName = "uas" | "cancel" | "proxy" | "register";
/** The memory-per-transaction run: INVITEs that ring forever. */
export type ServerRole = ScenarioName | "memory";

export type SystemKind = "siptm" | "kamailio" | "sip";

export interface SystemSpec {
  /** Short id used in tables and the JSON: "siptm", "siptm-w1", "kamailio", "sip". */
  readonly id: string;
  /** Name shown in tables. */
  readonly label: string;
  readonly kind: SystemKind;
  /** siptm: --workers N. */
  readonly workers?: number;
}

export interface Paths {
  /** Repository root. */
  readonly repo: string;
  /** bench/ */
  readonly bench: string;
  readonly node: string;
  readonly kamailio: string;
}

export interface RunningServer {
  readonly spec: SystemSpec;
  readonly role: ServerRole;
  readonly port: number;
  /** siptm: the control port (JSON-RPC, /metrics). */
  readonly rpcPort?: number;
  readonly child: Child;
  /** The processes whose CPU and memory count (Kamailio: main + workers). */
  readonly group: ProcessGroup;
  readonly processes: number;
  /** The banner (siptm) or the start-up output, for the record. */
  readonly banner: string;
  stop(): Promise<void>;
}

/**
 * What every benchmarked `siptm serve` runs with: quiet logs, no status line;
 * stopping between runs does not wait for transactions still in their timers;
 * no per-source rate limit (a load generator is one source sending thousands
 * of requests per second: the limit would measure itself, not the server).
 */
export const BENCH_SERVER_FLAGS: readonly string[] = [
  "--log-level",
  "error",
  "--status-interval",
  "0",
  "--drain-timeout",
  "100",
  "--rate-limit",
  "0",
];

/** A TCP port on 127.0.0.1 that was free a moment ago (for siptm's control server). */
export async function freeTcpPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: HOST, port: 0, exclusive: true }, () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no TCP port");
  return address.port;
}

/** The Kamailio config and extra defines for a scenario. */
function kamailioConfig(role: ServerRole): { file: string; defines: string[] } {
  switch (role) {
    case "uas":
      return { file: "uas.cfg", defines: [] };
    case "cancel":
    case "memory":
      return { file: "uas.cfg", defines: ["RING_FOREVER"] };
    case "proxy":
      return { file: "proxy.cfg", defines: [] };
    case "register":
      return { file: "registrar.cfg", defines: [] };
  }
}

/** siptm serve flags for a scenario (besides listen/rpc/workers). */
function siptmRouteArgs(role: ServerRole): string[] {
  switch (role) {
    case "uas":
      return ["--route", "uas"];
    case "cancel":
      return ["--route", "uas", "--answer-after", "never"];
    case "memory":
      // Keep every ringing INVITE open for the whole measurement.
      return [
        "--route",
        "uas",
        "--answer-after",
        "never",
        "--fr-inv-timer",
        "3600000",
        "--drain-timeout",
        "100",
      ];
    case "proxy":
    case "register":
      return ["--route", "default"];
  }
}

function sipMode(role: ServerRole): string {
  switch (role) {
    case "uas":
      return "uas";
    case "cancel":
    case "memory":
      return "ring";
    case "proxy":
      return "proxy";
    case "register":
      return "registrar";
  }
}

/** Kamailio's memory pools, MB: shared (-m; tm keeps its transactions there) and per process (-M). */
export const KAMAILIO_MEMORY = { shmMb: 512, pkgMb: 8 };

export function kamailioVersion(bin: string): string | undefined {
  const probe = spawnSync(bin, ["-v"], { encoding: "utf8", timeout: 10_000 });
  const m = `${probe.stdout ?? ""}`.match(/version:\s*(kamailio [^\s]+)/);
  return probe.error || !m ? undefined : m[1];
}

/** Wait until `child` prints its ready line and binds UDP `port`; kill it if it does not. */
async function whenReady(child: Child, port: number): Promise<void> {
  try {
    await child.waitForOutput(/^ready.*$/m, 15_000);
    await waitForUdpPort(port, 5_000, child);
  } catch (err) {
    await child.kill();
    throw err;
  }
}

export async function startServer(spec: SystemSpec, role: ServerRole, paths: Paths): Promise<RunningServer> {
  const port = await freeUdpPort();
  if (spec.kind === "siptm") {
    const rpcPort = await freeTcpPort();
    const args = [
      join(paths.repo, "packages/server/dist/cli.js"),
      "serve",
      "--listen",
      `udp:${HOST}:${port}`,
      "--rpc",
      `${HOST}:${rpcPort}`,
      "--workers",
      String(spec.workers ?? 0),
      ...BENCH_SERVER_FLAGS,
      ...siptmRouteArgs(role),
    ];
    const child = new Child(`${spec.id} (${role})`, paths.node, args);
    await whenReady(child, port);
    const banner = child.stdout.trim();
    return {
      spec,
      role,
      port,
      rpcPort,
      child,
      group: { pids: () => [child.pid] },
      processes: 1,
      banner,
      stop: () => child.kill(5000),
    };
  }
  if (spec.kind === "sip") {
    const child = new Child(`${spec.id} (${role})`, paths.node, [
      join(paths.bench, "dist/sip-uas.js"),
      "--port",
      String(port),
      "--mode",
      sipMode(role),
    ]);
    await whenReady(child, port);
    return {
      spec,
      role,
      port,
      child,
      group: { pids: () => [child.pid] },
      processes: 1,
      banner: child.stdout.trim(),
      stop: () => child.kill(3000),
    };
  }
  // Kamailio, in the foreground (-DD: no daemon, -E: log to stderr), one SIP worker (-n 1).
  const { file, defines } = kamailioConfig(role);
  const runDir = trackTempDir(mkdtempSync(join(tmpdir(), "siptm-load-kamailio-")));
  const args = [
    "-f",
    join(paths.bench, "kamailio", file),
    "-DD",
    "-E",
    "-m",
    String(KAMAILIO_MEMORY.shmMb),
    "-M",
    String(KAMAILIO_MEMORY.pkgMb),
    "-n",
    "1",
    "-l",
    `udp:${HOST}:${port}`,
    "-Y",
    runDir,
    "-P",
    join(runDir, "kamailio.pid"),
    ...defines.flatMap((d) => ["-A", d]),
  ];
  const child = new Child(`${spec.id} (${role})`, paths.kamailio, args, { cwd: runDir });
  try {
    await waitForUdpPort(port, 15_000, child);
    await stableDescendants(child);
  } catch (err) {
    await child.kill();
    releaseTempDir(runDir, true);
    throw err;
  }
  const workers = child.recordDescendants();
  const pids = [child.pid, ...workers];
  return {
    spec,
    role,
    port,
    child,
    group: { pids: () => pids.filter((p) => alive(p)) },
    processes: pids.length,
    banner: `${child.commandLine}\n${child.stderr.trim()}`,
    stop: async () => {
      await child.kill(5000);
      releaseTempDir(runDir, true);
    },
  };
}

/** A JSON-RPC call to a siptm server's control port. */
export async function siptmRpc(rpcPort: number, method: string, params: unknown[] = []): Promise<unknown> {
  const res = await fetch(`http://${HOST}:${rpcPort}/rpc`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await res.json()) as { result?: unknown; error?: { message: string } };
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

/** One value from a siptm server's Prometheus /metrics (undefined when absent). */
export async function siptmMetric(rpcPort: number, name: string): Promise<number | undefined> {
  const res = await fetch(`http://${HOST}:${rpcPort}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, "m"));
  return m ? Number(m[1]) : undefined;
}

/** Kamailio forks its workers around the bind: wait (up to 4 s) until their number is stable. */
export async function stableDescendants(child: { recordDescendants(): number[] }): Promise<void> {
  let last = -1;
  for (let i = 0; i < 40; i++) {
    const n = child.recordDescendants().length;
    if (n === last && n > 0) return;
    last = n;
    await sleep(100);
  }
}
