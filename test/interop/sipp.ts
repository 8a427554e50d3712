// Running SIPp (https://sipp.sourceforge.net, Debian package sip-tester) as a
// child process for the interop tests: a free port, the fixed options every
// run uses, its statistics read back, and a kill that always happens.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as dgram from "node:dgram";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, onTestFinished } from "vitest";
import {
  freeUdpPort,
  udpPortBound as procUdpPortBound,
  sippCommonArgs,
} from "../../bench/src/lib/sipp-load.js";

export const HOST = "127.0.0.1";

/** A SIP message's head as the traces show it (see `sipSummary`). */
export interface SipHead {
  /** The request or status line. */
  start: string;
  /** Request method, or undefined for a response. */
  method: string | undefined;
  /** Response status, or undefined for a request. */
  status: number | undefined;
  /** The CSeq method. */
  cseqMethod: string;
  /** The CSeq number. */
  cseq: number;
  callId: string;
}

/**
 * A SIP message's head as the traces show it: the start line, the method (requests) or status
 * (responses), the CSeq method and number, the Call-ID; `values(re)` lists the values of the
 * header lines `re` matches. The one reader of the siptm, Kamailio and browser traces.
 */
export function sipSummary(text: string): SipHead & { values: (re: RegExp) => string[] } {
  const lines = (text.split("\r\n\r\n")[0] ?? "").split("\r\n");
  const start = lines[0] ?? "";
  const values = (re: RegExp) =>
    lines.filter((l) => re.test(l)).map((l) => l.slice(l.indexOf(":") + 1).trim());
  const status = /^SIP\/2\.0 (\d{3})/.exec(start);
  const cseq = (values(/^CSeq\s*:/i)[0] ?? "").split(/\s+/);
  return {
    start,
    method: status ? undefined : start.split(" ")[0],
    status: status ? Number(status[1]) : undefined,
    cseqMethod: cseq[1] ?? "",
    cseq: Number(cseq[0]),
    callId: values(/^(Call-ID|i)\s*:/i)[0] ?? "",
    values,
  };
}
export const SCENARIOS = join(dirname(fileURLToPath(import.meta.url)), "scenarios");

/** The sipp binary, or a thrown Error saying how to get it: a missing SIPp fails the tests, it never skips them. */
export function requireSipp(): string {
  const bin = process.env.SIPP_BIN ?? "sipp";
  const probe = spawnSync(bin, ["-v"], { encoding: "utf8", timeout: 10_000 });
  const out = `${probe.stdout ?? ""}${probe.stderr ?? ""}`;
  if (probe.error || !/SIPp v\d/.test(out)) {
    throw new Error(
      `SIPp is not installed (tried "${bin}": ${probe.error?.message ?? "no version banner"}). ` +
        "Install it with `apt-get install -y sip-tester` (Debian's package providing `sipp`), " +
        "or point SIPP_BIN at the binary. .ci/run installs it before `npm run test:interop`.",
    );
  }
  return bin;
}

/** A UDP port that was free a moment ago on 127.0.0.1, not one handed out before (the load benchmark's). */
export { freeUdpPort };

/**
 * True when some socket is bound to this UDP port. Read from /proc/net/udp,
 * so that looking does not take the port for an instant (a probing bind
 * could make SIPp's own bind fail); a probing bind only where /proc is not.
 */
async function udpPortBound(port: number): Promise<boolean> {
  if (existsSync("/proc/net/udp")) return procUdpPortBound(port);
  const socket = dgram.createSocket("udp4");
  return new Promise((resolve) => {
    socket.once("error", () => {
      socket.close();
      resolve(true);
    });
    socket.bind({ address: HOST, port, exclusive: true }, () => socket.close(() => resolve(false)));
  });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * SIGTERM to `child`, then SIGKILL if it has not exited `graceMs` later: only this child, by its
 * pid. `gone()` tells whether it has exited, `exited` settles when it does. Safe any number of times.
 */
export async function stopChild(
  child: ChildProcess,
  gone: () => boolean,
  exited: Promise<unknown>,
  graceMs: number,
): Promise<void> {
  if (gone() || child.pid === undefined) return;
  child.kill("SIGTERM");
  const done = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done && !gone()) {
    child.kill("SIGKILL");
    await exited;
  }
}

/** The child processes a test file starts (add each): all killed after the file's tests, whatever happened. */
export function killedAfterAll<T extends { kill(): Promise<void> }>(): Set<T> {
  const running = new Set<T>();
  afterAll(async () => {
    await Promise.all([...running].map((c) => c.kill()));
  });
  return running;
}

/** Poll `check` every `every` ms until it returns true; false after `timeoutMs`. */
export async function waitUntil(check: () => boolean, timeoutMs: number, every = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (check()) return true;
    if (Date.now() >= end) return false;
    await sleep(every);
  }
}

export interface SippOptions {
  /** Scenario file name in scenarios/ (or `builtin`). */
  scenario?: string;
  /** One of SIPp's built-in scenarios (`-sn uac`, `-sn uas`…) instead of a file. */
  builtin?: string;
  /** Local SIP port of SIPp (-p). */
  port: number;
  /** Number of calls (-m): SIPp exits after that many calls ended. */
  calls: number;
  /** Call rate per second (-r). */
  rate: number;
  /** host:port of the peer, for a UAC scenario. */
  remote?: string;
  /** Extra arguments (retransmission limits, -trace_msg…). */
  extra?: string[];
}

export interface SippResult {
  /** SIPp's exit code: 0 = every call succeeded, 1 = some failed, 99 = no call processed, 255/254 = fatal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  successful: number | undefined;
  failed: number | undefined;
  /** Folder holding SIPp's files (statistics, screen, errors, message trace). */
  dir: string;
  /** The final screen (-trace_screen), errors log and the command line, for failure messages. */
  report(): string;
}

/** One SIPp process. `done` settles when it exits; `kill()` is safe to call any time, any number of times. */
export class SippProcess {
  readonly dir: string;
  /** SIPp's own SIP port on 127.0.0.1. */
  readonly port: number;
  readonly args: string[];
  readonly done: Promise<SippResult>;
  private readonly child: ChildProcess;
  private stdout = "";
  private stderr = "";
  private exited = false;

  constructor(bin: string, opts: SippOptions) {
    if (opts.builtin === undefined && opts.scenario === undefined)
      throw new Error("SippProcess: give a scenario file or a built-in scenario");
    this.dir = mkdtempSync(join(tmpdir(), "siptm-sipp-"));
    this.port = opts.port;
    const file = (name: string) => join(this.dir, name);
    this.args = [
      ...(opts.remote ? [opts.remote] : []),
      ...(opts.builtin !== undefined ? ["-sn", opts.builtin] : ["-sf", join(SCENARIOS, opts.scenario!)]),
      "-r",
      String(opts.rate),
      ...sippCommonArgs({ port: opts.port, calls: opts.calls, timeoutSeconds: 60 }, file),
      "-trace_screen",
      "-screen_file",
      file("screen.log"),
      "-trace_msg",
      "-message_file",
      file("messages.log"),
      ...(opts.extra ?? []),
    ];
    this.child = spawn(bin, this.args, { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout?.on("data", (d: Buffer) => {
      if (this.stdout.length < 1_000_000) this.stdout += d.toString("latin1");
    });
    this.child.stderr?.on("data", (d: Buffer) => {
      if (this.stderr.length < 1_000_000) this.stderr += d.toString("latin1");
    });
    this.done = new Promise<SippResult>((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        this.exited = true;
        resolve(this.result(code, signal));
      };
      this.child.once("error", (err) => {
        this.stderr += `\nspawn error: ${err.message}`;
        finish(null, null);
      });
      this.child.once("exit", (code, signal) => finish(code, signal));
    });
  }

  get commandLine(): string {
    return ["sipp", ...this.args].join(" ");
  }

  /** Resolves once SIPp holds its UDP port (it is ready for INVITEs); throws if it exits or takes too long. */
  async listening(timeoutMs = 10_000): Promise<void> {
    const port = this.port;
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (this.exited) {
        const r = await this.done;
        throw new Error(`SIPp exited before listening (code ${r.code}):\n${r.report()}`);
      }
      if (await udpPortBound(port)) return;
      await sleep(50);
    }
    throw new Error(`SIPp did not bind 127.0.0.1:${port} within ${timeoutMs} ms`);
  }

  /** The result, or a kill and a thrown Error after `timeoutMs`. */
  async wait(timeoutMs: number): Promise<SippResult> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const r = await Promise.race([this.done, timeout]);
    clearTimeout(timer);
    if (r === "timeout") {
      await this.kill();
      const killed = await this.done;
      throw new Error(`SIPp did not finish within ${timeoutMs} ms (killed):\n${killed.report()}`);
    }
    return r;
  }

  /** SIGTERM, then SIGKILL if it is still there 2 s later. Only this child, by its pid. */
  kill(): Promise<void> {
    return stopChild(this.child, () => this.exited, this.done, 2_000);
  }

  private result(code: number | null, signal: NodeJS.Signals | null): SippResult {
    const dir = this.dir;
    const counts = readCallCounts(join(dir, "stat.csv"));
    const commandLine = this.commandLine;
    const stdout = this.stdout;
    const stderr = this.stderr;
    return {
      code,
      signal,
      stdout,
      stderr,
      successful: counts?.successful,
      failed: counts?.failed,
      dir,
      report: () =>
        [
          `command: ${commandLine}`,
          `exit: code ${code} signal ${signal}; files in ${dir}`,
          `calls: successful ${counts?.successful ?? "?"}, failed ${counts?.failed ?? "?"}`,
          `--- screen\n${tail(readText(join(dir, "screen.log")) || stdout, 4000)}`,
          `--- errors\n${tail(readText(join(dir, "errors.log")), 4000)}`,
          `--- stderr\n${tail(stderr, 2000)}`,
        ].join("\n"),
    };
  }
}

/**
 * Call inside a test: SIPp's folder is removed when the test passes, kept
 * (and named in the failure message) when it fails. SIPTM_KEEP_SIPP_FILES=1
 * keeps it always (for the message trace of a good run).
 */
export function discardFilesIfPassed(sipp: SippProcess): void {
  onTestFinished((ctx) => {
    if (ctx.task.result?.state === "pass" && !process.env.SIPTM_KEEP_SIPP_FILES)
      rmSync(sipp.dir, { recursive: true, force: true });
  });
}

/**
 * Inside a test: one SIPp at 10 calls/s on a free port, added to `running`
 * (for the file's afterAll to kill) and its files removed if the test passes;
 * with `listen` (a UAS) it is awaited until it holds its port.
 */
export async function startSipp(
  running: Set<{ kill(): Promise<void> }>,
  opts: Omit<SippOptions, "port" | "rate"> & { rate?: number; listen?: boolean },
): Promise<SippProcess> {
  const port = await freeUdpPort();
  const p = new SippProcess(requireSipp(), { rate: 10, ...opts, port });
  running.add(p);
  discardFilesIfPassed(p);
  if (opts.listen) await p.listening();
  return p;
}

/** SuccessfulCall(C) and FailedCall(C) from the last row of SIPp's -trace_stat CSV (';'-separated). */
export function readCallCounts(path: string): { successful: number; failed: number } | undefined {
  const rows = readText(path)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  if (rows.length < 2) return undefined;
  const header = rows[0]!.split(";");
  const last = rows[rows.length - 1]!.split(";");
  const at = (name: string) => {
    const i = header.indexOf(name);
    return i < 0 ? Number.NaN : Number(last[i]);
  };
  const successful = at("SuccessfulCall(C)");
  const failed = at("FailedCall(C)");
  if (Number.isNaN(successful) || Number.isNaN(failed)) return undefined;
  return { successful, failed };
}

function readText(path: string): string {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return "";
  }
}

function tail(text: string, max: number): string {
  return text.length <= max ? text : `…${text.slice(-max)}`;
}
