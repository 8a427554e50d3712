/**
 * SIPp (https://sipp.sourceforge.net, Debian package sip-tester) as the load
 * generator of the load benchmark: one bounded run (-m calls at -r calls/s,
 * a wall-clock -timeout and our own kill after it), its final statistics
 * read back from the -trace_stat CSV, and its own CPU use sampled from /proc
 * while it runs (a SIPp near 100 % of a core is the limit, not the server).
 */
import { spawnSync } from "node:child_process";
import * as dgram from "node:dgram";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Child, releaseTempDir, sleep, trackTempDir } from "./children.js";
import { CpuSampler } from "./proc.js";

export const HOST = "127.0.0.1";
/** Send and receive buffer of every SIPp socket (and what the servers are asked for where they can). */
export const BUFF_SIZE = 4_194_304;

/** The SIPp version line, or undefined when `bin` is not SIPp. */
export function sippVersion(bin: string): string | undefined {
  const probe = spawnSync(bin, ["-v"], { encoding: "utf8", timeout: 10_000 });
  const out = `${probe.stdout ?? ""}${probe.stderr ?? ""}`;
  const m = out.match(/SIPp v[^\s,]+/);
  return probe.error || !m ? undefined : m[0];
}

/** A UDP port on 127.0.0.1 that was free a moment ago, not one handed out before in this run. */
const handedOut = new Set<number>();
export async function freeUdpPort(): Promise<number> {
  for (;;) {
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind({ address: HOST, port: 0, exclusive: true }, () => resolve());
    });
    const port = socket.address().port;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    // The TCP port of the same number must be free too for servers that listen on both.
    if (!handedOut.has(port) && !handedOut.has(port + 1)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** True when some socket is bound to this UDP port (read from /proc/net/udp, no probing bind). */
export function udpPortBound(port: number): boolean {
  let table: string;
  try {
    table = readFileSync("/proc/net/udp", "latin1");
  } catch {
    return false;
  }
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return table.split("\n").some((line) => line.trim().split(/\s+/)[1]?.endsWith(hex) === true);
}

export async function waitForUdpPort(port: number, timeoutMs: number, child?: Child): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (udpPortBound(port)) return;
    if (child && !child.running)
      throw new Error(`${child.name} exited before binding UDP ${port}\n${child.tail()}`);
    await sleep(25);
  }
  throw new Error(`nothing bound UDP 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/**
 * The options every SIPp run of siptm's (load benchmark and interop tests) shares after its own:
 * our address, its port and number of calls, the socket buffers, a wall-clock timeout that fails the run, no stdin, the statistics CSV
 * (`file("stat.csv")`, read back after the run) written each second, and the errors log.
 */
export function sippCommonArgs(
  run: { port: number; calls: number; timeoutSeconds: number },
  file: (name: string) => string,
): string[] {
  return [
    "-i",
    HOST,
    "-p",
    String(run.port),
    "-m",
    String(run.calls),
    "-buff_size",
    String(BUFF_SIZE),
    "-timeout",
    `${run.timeoutSeconds}s`,
    "-timeout_error",
    "-nostdin",
    "-trace_stat",
    "-stf",
    file("stat.csv"),
    "-fd",
    "1",
    "-trace_err",
    "-error_file",
    file("errors.log"),
  ];
}

export interface SippRunOptions {
  bin: string;
  /** `-sn NAME` (built-in) or `-sf FILE`. */
  scenario: { builtin: string } | { file: string };
  /** Local SIP port (-p). */
  port: number;
  /** host:port written into the scenario ([remote_ip]:[remote_port]); omitted for a UAS. */
  remote?: string;
  /** -rsa host:port: where messages are actually sent (the proxy), when not `remote`. */
  sendTo?: string;
  /** -m */
  calls: number;
  /** -r calls/s (UAC only). */
  rate?: number;
  /** SIPp's own -timeout, seconds (it quits, counting it an error); our kill follows 5 s later. */
  timeoutSeconds: number;
  /** -l: most simultaneous calls (default: `calls`, i.e. no throttling). */
  limit?: number;
  extra?: readonly string[];
  name: string;
}

/** The final counters of a SIPp run (the last -trace_stat row). */
export interface SippStats {
  outgoing: number;
  incoming: number;
  successful: number;
  failed: number;
  retransmissions: number;
  /** Non-zero Failed*(C) counters by name (why calls failed). */
  failures: Record<string, number>;
  /** Messages that matched no call (DeadCallMsgs + OutOfCallMsgs). */
  strayMessages: number;
  current: number;
}

export interface SippRunResult {
  name: string;
  command: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Killed by us after the wall-clock limit. */
  killed: boolean;
  /** Wall seconds from spawn to exit. */
  wallSeconds: number;
  stats: SippStats | undefined;
  /** SIPp's CPU: seconds, and average / busiest-second share of one core. */
  cpu: { seconds: number; average: number; peak: number };
  /** The first lines of SIPp's error log and stderr when something went wrong. */
  errors: string;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return "";
  }
}

/** The last row of a -trace_stat CSV (';'-separated, header first). */
export function parseStatCsv(text: string): SippStats | undefined {
  const rows = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  if (rows.length < 2) return undefined;
  const header = (rows[0] as string).split(";");
  const last = (rows[rows.length - 1] as string).split(";");
  const at = (name: string): number => {
    const i = header.indexOf(name);
    return i < 0 ? 0 : Number(last[i]) || 0;
  };
  const failures: Record<string, number> = {};
  header.forEach((h, i) => {
    if (h.startsWith("Failed") && h.endsWith("(C)") && h !== "FailedCall(C)") {
      const v = Number(last[i]) || 0;
      if (v > 0) failures[h.slice(6, -3)] = v;
    }
  });
  return {
    outgoing: at("OutgoingCall(C)"),
    incoming: at("IncomingCall(C)"),
    successful: at("SuccessfulCall(C)"),
    failed: at("FailedCall(C)"),
    retransmissions: at("Retransmissions(C)"),
    failures,
    strayMessages: at("DeadCallMsgs(C)") + at("OutOfCallMsgs(C)"),
    current: at("CurrentCall"),
  };
}

/** One SIPp process; `result` settles when it has exited (or was killed at the wall-clock limit). */
export class SippRun {
  readonly child: Child;
  readonly dir: string;
  readonly result: Promise<SippRunResult>;
  private readonly started = performance.now();

  constructor(readonly opts: SippRunOptions) {
    this.dir = trackTempDir(mkdtempSync(join(tmpdir(), "siptm-load-sipp-")));
    const file = (n: string) => join(this.dir, n);
    const scenario =
      "builtin" in opts.scenario ? ["-sn", opts.scenario.builtin] : ["-sf", opts.scenario.file];
    const args = [
      ...(opts.remote ? [opts.remote] : []),
      ...scenario,
      ...(opts.sendTo ? ["-rsa", opts.sendTo] : []),
      ...(opts.rate !== undefined ? ["-r", String(opts.rate)] : []),
      "-l",
      String(opts.limit ?? opts.calls),
      ...sippCommonArgs(opts, file),
      "-max_log_size",
      "200000",
      ...(opts.extra ?? []),
    ];
    const child = new Child(opts.name, opts.bin, args, { cwd: this.dir });
    this.child = child;
    const sampler = new CpuSampler({ pids: () => [child.pid] });
    this.result = (async () => {
      const killTimer = setTimeout(() => void child.kill(2000), (opts.timeoutSeconds + 5) * 1000);
      const { code, signal } = await child.exited;
      clearTimeout(killTimer);
      const wallSeconds = (performance.now() - this.started) / 1000;
      const cpu = sampler.stop();
      const stats = parseStatCsv(readText(file("stat.csv")));
      const bad = code !== 0 || stats === undefined || stats.failed > 0;
      const errors = bad
        ? [
            readText(file("errors.log")).split("\n").slice(0, 6).join("\n"),
            child.stderr.slice(-1500),
            stats === undefined ? child.stdout.slice(-1500) : "",
          ]
            .filter((s) => s.trim().length > 0)
            .join("\n")
        : "";
      return {
        name: opts.name,
        command: child.commandLine,
        code,
        signal,
        killed: signal !== null,
        wallSeconds,
        stats,
        cpu: { seconds: cpu.cpuSeconds, average: cpu.average, peak: cpu.peak },
        errors,
      };
    })();
  }

  /** Resolves once SIPp holds its UDP port (a UAS is ready for calls). */
  listening(timeoutMs = 10_000): Promise<void> {
    return waitForUdpPort(this.opts.port, timeoutMs, this.child);
  }

  async stop(): Promise<void> {
    await this.child.kill(2000);
  }

  /** The counters SIPp has written so far (its statistics row of every second). */
  poll(): SippStats | undefined {
    return parseStatCsv(readText(join(this.dir, "stat.csv")));
  }

  /** Remove SIPp's folder (statistics, error log). */
  cleanup(): void {
    releaseTempDir(this.dir, true);
  }

  /** Keep SIPp's folder after the benchmark ends. */
  keep(): void {
    releaseTempDir(this.dir, false);
  }
}
