/**
 * Child processes of the load benchmark (servers, Kamailio, SIPp): spawned
 * through here so that every one is killed, by its own pid, when the
 * benchmark ends — normally, on an error, on SIGINT/SIGTERM or on an
 * uncaught exception. Kamailio forks worker processes: those are found under
 * the child's pid in /proc and killed too if the main process leaves them.
 */
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { alive, descendants } from "./proc.js";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How a child's output is kept: its last or its first `max` characters, decoded as `encoding`. */
export interface OutputRule {
  /** "last" (the default): a ring of the newest output; "first": the output from the start, cut at `max`. */
  keep?: "last" | "first";
  /** Characters kept per stream (default 200 000). */
  max?: number;
  /** Default latin1 (SIPp and Kamailio logs); utf8 for pino JSON. */
  encoding?: BufferEncoding;
}

/**
 * A spawned child with its output kept (bounded) and its exit as a promise.
 * The load benchmark's children and the interop tests' `siptm serve`
 * (test/interop/siptm-server.ts) are both this class.
 */
export class Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private out = "";
  private err = "";
  private gone = false;
  private readonly lineWaiters: Array<{ re: RegExp; resolve: (line: string) => void }> = [];
  /** Descendant pids seen while it ran (Kamailio's workers), for the kill. */
  private knownDescendants: number[] = [];

  constructor(
    readonly name: string,
    command: string,
    readonly args: readonly string[],
    options: SpawnOptions = {},
    output: OutputRule = {},
  ) {
    this.proc = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
    if (this.proc.pid === undefined) {
      // spawn failed (ENOENT…): the 'error' event follows.
      this.pid = -1;
    } else {
      this.pid = this.proc.pid;
    }
    const max = output.max ?? 200_000;
    const first = output.keep === "first";
    const append = (kept: string, text: string) =>
      first ? (kept.length < max ? kept + text : kept) : (kept + text).slice(-max);
    const keep = (which: "out" | "err", text: string) => {
      if (which === "out") this.out = append(this.out, text);
      else this.err = append(this.err, text);
      if (this.lineWaiters.length > 0) this.checkLines();
    };
    // setEncoding: a character split over two chunks is decoded whole.
    const encoding = output.encoding ?? "latin1";
    this.proc.stdout?.setEncoding(encoding).on("data", (d: string) => keep("out", d));
    this.proc.stderr?.setEncoding(encoding).on("data", (d: string) => keep("err", d));
    this.exited = new Promise((resolve) => {
      this.proc.once("error", (e) => {
        this.err += `\nspawn error: ${e.message}`;
        this.gone = true;
        registry.delete(this);
        resolve({ code: null, signal: null });
      });
      this.proc.once("exit", (code, signal) => {
        this.gone = true;
        registry.delete(this);
        // One turn later: the output still in the pipes is read first.
        setImmediate(() => resolve({ code, signal }));
      });
    });
    registry.add(this);
  }

  get running(): boolean {
    return !this.gone;
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.err;
  }

  get commandLine(): string {
    return [this.proc.spawnfile, ...this.args].join(" ");
  }

  private checkLines(): void {
    const text = `${this.out}\n${this.err}`;
    for (let i = this.lineWaiters.length - 1; i >= 0; i--) {
      const w = this.lineWaiters[i] as { re: RegExp; resolve: (line: string) => void };
      const m = text.match(w.re);
      if (m) {
        this.lineWaiters.splice(i, 1);
        w.resolve(m[0]);
      }
    }
  }

  /** Resolves with the first output line matching `re`; rejects if the child exits first or after `timeoutMs`. */
  waitForOutput(re: RegExp, timeoutMs: number): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const text = `${this.out}\n${this.err}`;
      const m = text.match(re);
      if (m) {
        resolve(m[0]);
        return;
      }
      let done = false;
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        reject(new Error(`${this.name}: no ${re} within ${timeoutMs} ms\n${this.tail()}`));
      }, timeoutMs);
      this.lineWaiters.push({
        re,
        resolve: (line) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(line);
        },
      });
      void this.exited.then(({ code, signal }) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(
          new Error(`${this.name} exited (code ${code}, signal ${signal}) before ${re}: ${this.tail()}`),
        );
      });
    });
  }

  /** Remember the current descendants (call once the child has forked its workers). */
  recordDescendants(): number[] {
    if (this.pid > 0) this.knownDescendants = descendants(this.pid);
    return this.knownDescendants;
  }

  /** The end of stderr, then of stdout (where a failing server says why). */
  tail(max = 3000): string {
    const err = this.err.trim();
    const out = this.out.trim();
    return [err ? `stderr: ${err.slice(-max)}` : "", out ? `stdout: ${out.slice(-max)}` : ""]
      .filter((s) => s.length > 0)
      .join("\n");
  }

  /**
   * SIGTERM, SIGKILL after `graceMs`; then any recorded descendant still
   * alive gets SIGKILL too. Safe to call any number of times.
   */
  async kill(graceMs = 3000): Promise<void> {
    if (!this.gone && this.pid > 0) {
      try {
        process.kill(this.pid, "SIGTERM");
      } catch {
        // already gone
      }
      const gone = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!gone) {
        try {
          process.kill(this.pid, "SIGKILL");
        } catch {
          // already gone
        }
        await Promise.race([this.exited, sleep(2000)]);
      }
    }
    for (const pid of this.knownDescendants) {
      if (!alive(pid)) continue;
      await sleep(200);
      if (!alive(pid)) continue;
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
  }

  /** Synchronous last-resort kill (process 'exit' handler): SIGKILL to it and its recorded descendants. */
  killNow(): void {
    for (const pid of [this.pid, ...this.knownDescendants]) {
      if (pid <= 0 || !alive(pid)) continue;
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
}

const registry = new Set<Child>();
let handlersInstalled = false;

/** Temporary folders removed when the process exits, however it exits (unless released). */
const tempDirs = new Set<string>();
export function trackTempDir(dir: string): string {
  tempDirs.add(dir);
  return dir;
}
export function releaseTempDir(dir: string, remove: boolean): void {
  tempDirs.delete(dir);
  if (remove) rmSync(dir, { recursive: true, force: true });
}
function removeTempDirs(): void {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

/** Install the exit/signal handlers that kill every child still running (idempotent). */
export function installCleanupHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on("exit", () => {
    for (const c of registry) c.killNow();
    removeTempDirs();
  });
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\nload: ${signal}: stopping every child process\n`);
    void killAll().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.on("uncaughtException", (err) => {
    process.stderr.write(`\nload: uncaught exception: ${err.stack ?? err.message}\n`);
    for (const c of registry) c.killNow();
    process.exit(1);
  });
}

/** Kill every child still running, in parallel, each by its own pid. */
export async function killAll(): Promise<void> {
  await Promise.all([...registry].map((c) => c.kill(1500)));
}

/** Number of children still running (to check nothing leaks). */
export function runningChildren(): string[] {
  return [...registry].filter((c) => c.running).map((c) => `${c.name} (pid ${c.pid})`);
}
