// The `siptm serve` side of the server/proxy interop tests: the built CLI
// (packages/server/dist/cli.js) as a child process on 127.0.0.1 ports read
// back from its banner, JSON-RPC over HTTP, the `siptm rpc` client as a child
// process, REGISTER from an in-test engine, and the end-of-test check (every
// transaction the server created was freed). The same pattern as
// packages/server/test/helpers.ts, kept here so these tests do not reach into
// another package's test folder.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { Child } from "../../bench/src/lib/children.js";
import type { Engine, FinalOutcome } from "../../packages/core/src/index.js";
import { HOST, type SipHead, type SippProcess, type SippResult, sipSummary, sleep } from "./sipp.js";

export const SERVER_CLI = fileURLToPath(new URL("../../packages/server/dist/cli.js", import.meta.url));
/** The server's short timers (flags), the same values as FAST_TIMERS. */
export const SERVER_TIMERS = ["--t1", "50", "--t2", "400", "--t4", "500", "--timer-d", "500"];

/** The built CLI, or a thrown Error saying how to build it (`.ci/run` builds through `npm test` first). */
export function requireServerBuild(): string {
  if (!existsSync(SERVER_CLI))
    throw new Error(
      `${SERVER_CLI} is missing: build the packages first (\`npx turbo run build\`; .ci/run's \`npm test\` does it).`,
    );
  return SERVER_CLI;
}

const MAX_OUTPUT = 4_000_000;

/**
 * One `siptm serve` child process: the load benchmark's `Child` (spawn, output,
 * exit, kill by its own pid), keeping the output from the start, where the
 * banner and the whole SIP trace are. `kill()` is safe any time, any number of times.
 */
export class SiptmServer {
  readonly args: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIP over UDP on 127.0.0.1 (read from the banner; 0 when none). */
  udp = 0;
  /** SIP over TCP on 127.0.0.1 (read from the banner; 0 when none). */
  tcp = 0;
  /** The control server's port (read from the banner). */
  rpc = 0;
  private readonly child: Child;

  /** `trace: false` for a load or soak test: a wire log of every message would be most of its work. */
  constructor(extra: string[], opts: { trace?: boolean } = {}) {
    const cli = requireServerBuild();
    // `--trace` logs every SIP message in and out (pino JSON on stderr, from each shard with shards):
    // shown when a test fails, and read by `trace()`. One thread unless the test asks for shards.
    const trace = opts.trace === false ? [] : ["--trace"];
    const threads = extra.includes("--workers") ? trace : ["--workers", "0", ...trace];
    // A test that names its own sockets (--listen) gets only those.
    const listen = extra.includes("--listen") ? [] : ["--listen", `udp:${HOST}:0`];
    this.args = [cli, "serve", ...listen, "--rpc", `${HOST}:0`, ...threads, ...extra];
    const { SIPTM_RPC_TOKEN: _drop, ...env } = process.env;
    this.child = new Child(
      "siptm serve",
      process.execPath,
      this.args,
      { env },
      { keep: "first", max: MAX_OUTPUT, encoding: "utf8" },
    );
    this.exited = this.child.exited;
  }

  /** The process id (its resident set is read from /proc by the soak test). */
  get pid(): number | undefined {
    return this.child.pid > 0 ? this.child.pid : undefined;
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.child.running;
  }

  get stdout(): string {
    return this.child.stdout;
  }
  get stderr(): string {
    return this.child.stderr;
  }

  /** Waits for the banner's `ready` line and reads the ports from it. */
  async ready(timeoutMs = 15_000): Promise<this> {
    const end = Date.now() + timeoutMs;
    while (!/^ready/m.test(this.stdout)) {
      if (!this.running) throw new Error(`siptm serve exited before ready:\n${this.report()}`);
      if (Date.now() > end)
        throw new Error(`siptm serve not ready within ${timeoutMs} ms:\n${this.report()}`);
      await sleep(20);
    }
    const port = (re: RegExp) => Number(re.exec(this.stdout)?.[1] ?? Number.NaN);
    this.udp = port(/listen:.*?udp 127\.0\.0\.1:(\d+)/s) || 0;
    this.tcp = port(/listen:.*?tcp 127\.0\.0\.1:(\d+)/s) || 0;
    this.rpc = port(/control:\s+http:\/\/127\.0\.0\.1:(\d+)\/rpc/);
    if (!((this.udp > 0 || this.tcp > 0) && this.rpc > 0))
      throw new Error(`no ports in the banner:\n${this.stdout}`);
    return this;
  }

  /** JSON-RPC 2.0 over HTTP: the result, or a thrown Error with the JSON-RPC error. */
  async call<T = unknown>(method: string, params: unknown[] = []): Promise<T> {
    let text: string;
    try {
      const res = await fetch(`http://${HOST}:${this.rpc}/rpc`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
        signal: AbortSignal.timeout(10_000),
      });
      text = await res.text();
    } catch (err) {
      const why =
        err instanceof Error
          ? `${err.message} ${String((err as { cause?: unknown }).cause ?? "")}`
          : String(err);
      const state = this.running
        ? "running"
        : `exited (${this.child.proc.exitCode ?? this.child.proc.signalCode})`;
      throw new Error(
        `${method}: no answer from the control server (${why}); siptm serve ${state}\n${this.report()}`,
      );
    }
    const body = JSON.parse(text) as { result?: T; error?: { code: number; message: string } };
    if (body.error) throw new Error(`${method}: ${body.error.code} ${body.error.message}`);
    return body.result as T;
  }

  stats(): Promise<ServerStats> {
    return this.call<ServerStats>("tm.stats");
  }

  list(): Promise<Listed[]> {
    return this.call<Listed[]>("tm.list");
  }

  /** Every SIP message the server received or sent so far, from its `--trace` log (retransmissions included). */
  trace(): Traced[] {
    const out: Traced[] = [];
    for (const line of this.stderr.split("\n")) {
      if (!line.startsWith("{")) continue;
      let o: { dir?: string; peer?: string; sip?: string };
      try {
        o = JSON.parse(line) as typeof o;
      } catch {
        continue;
      }
      if (typeof o.sip !== "string" || (o.dir !== "in" && o.dir !== "out")) continue;
      out.push(describeTraced(o.dir, o.peer ?? "", o.sip));
    }
    return out;
  }

  /** The command line, the banner and the tail of the log (SIP trace), for failure messages. */
  report(): string {
    return [
      `command: node ${this.args.join(" ")}`,
      `--- stdout\n${this.stdout.slice(-4000)}`,
      `--- stderr (SIP trace, last lines)\n${traceTail(this.stderr, 12_000)}`,
    ].join("\n");
  }

  /** SIGTERM (the server drains, up to --drain-timeout), then SIGKILL `graceMs` later. Only this child, by its pid. */
  kill(graceMs = 3_000): Promise<void> {
    return this.child.kill(graceMs);
  }
}

/** Start `siptm serve` on ephemeral 127.0.0.1 ports (UDP only) and wait for its `ready` line. */
export async function startServer(extra: string[], opts: { trace?: boolean } = {}): Promise<SiptmServer> {
  // Start, and kill the child if it never gets ready (the same try/catch as harness.ts's engine start).
  const server = new SiptmServer(extra, opts);
  try {
    return await server.ready();
  } catch (err) {
    await server.kill();
    throw err;
  }
}

export interface ServerStats {
  created: number;
  freed: number;
  current: number;
  ref_faults: number;
  user_errors: number;
  relayed: number;
  ctx_created: number;
  ctx_freed: number;
  timeouts: number;
  merged_requests: number;
  [key: string]: unknown;
}

export interface Listed {
  id: string;
  kind: string;
  state: string;
  method: string;
  callid: string;
  cseq: number;
  holders: string[];
  timers: string[];
}

/** One SIP message of the server's `--trace` log. */
export interface Traced extends SipHead {
  dir: "in" | "out";
  /** HOST:PORT of the other side. */
  peer: string;
  /** Number of Via header field values. */
  vias: number;
  text: string;
}

function describeTraced(dir: "in" | "out", peer: string, text: string): Traced {
  const { values, ...head } = sipSummary(text);
  return {
    dir,
    peer,
    ...head,
    vias: values(/^(Via|v)\s*:/i).reduce((n, v) => n + (v.match(/SIP\s*\/\s*2\.0\s*\//gi)?.length ?? 0), 0),
    text,
  };
}

/** `node cli.js rpc --rpc 127.0.0.1:PORT METHOD ARGS…`: exit code and output. */
export async function rpcCli(
  rpcPort: number,
  args: string[],
  timeoutMs = 15_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = requireServerBuild();
  const { SIPTM_RPC_TOKEN: _drop, ...env } = process.env;
  const child = spawn(process.execPath, [cli, "rpc", "--rpc", `${HOST}:${rpcPort}`, ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once("error", () => resolve(null));
    child.once("exit", (code) => setImmediate(() => resolve(code)));
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    const code = await exited;
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

/** The JSON result of `siptm rpc METHOD ARGS…`, which must exit 0. */
export async function rpcCliResult<T = unknown>(rpcPort: number, args: string[]): Promise<T> {
  const r = await rpcCli(rpcPort, args);
  expect(r.code, `siptm rpc ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

/** Poll `check` (async) every 50 ms until true; false after `timeoutMs`. */
export async function pollUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  every = 50,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= end) return false;
    await sleep(every);
  }
}

/**
 * The server's trace of one call once its last message through the proxy, the
 * 200 to the BYE, has gone out (polled, bounded): a phone may report the call
 * closed as soon as it sends or receives the BYE, before the 200 is through.
 */
export async function callTrace(server: SiptmServer, callId: string, timeoutMs = 5_000): Promise<Traced[]> {
  const ofCall = () => server.trace().filter((t) => t.callId === callId);
  await pollUntil(
    async () => ofCall().some((t) => t.dir === "out" && t.status === 200 && t.cseqMethod === "BYE"),
    timeoutMs,
  );
  return ofCall();
}

/**
 * Once its timers have run out (polled, with a bound), every transaction the
 * server created is freed: `created == freed`, `current == 0`, no live
 * transaction in `tm.list`, every proxy context freed, no reference fault and
 * no route callback that threw.
 */
export async function expectServerDrained(server: SiptmServer, timeoutMs: number): Promise<ServerStats> {
  let last: ServerStats | undefined;
  const drained = await pollUntil(async () => {
    last = await server.stats();
    return last.created === last.freed && last.current === 0;
  }, timeoutMs);
  const live = drained ? [] : await server.list();
  expect(
    drained,
    `server not drained after ${timeoutMs} ms: created ${last?.created} freed ${last?.freed} current ${last?.current}; live: ${JSON.stringify(live, null, 1)}\n${server.report()}`,
  ).toBe(true);
  const s = last!;
  expect(s.current).toBe(0);
  expect(await server.list()).toEqual([]);
  expect(s.ctx_created, "proxy contexts made = freed").toBe(s.ctx_freed);
  expect(s.ref_faults, "reference faults").toBe(0);
  expect(s.user_errors, "route callbacks that threw").toBe(0);
  return s;
}

/**
 * The results of SIPp runs around one server, each failure message ending
 * with the server's banner and SIP trace. The first (the UAC) paces the
 * others: once it is done, a UAS still running 10 s after a failed UAC (it
 * never got its call) is killed rather than waited for; after a good UAC
 * each gets up to 60 s.
 */
export async function sippResults(
  server: SiptmServer,
  uac: SippProcess,
  ...others: SippProcess[]
): Promise<SippResult[]> {
  const first = await uac.wait(60_000);
  const bound = first.code === 0 ? 60_000 : 10_000;
  const rest = await Promise.all(
    others.map(async (p) => {
      const r = await Promise.race([p.done, sleep(bound).then(() => undefined)]);
      if (r) return r;
      await p.kill();
      return p.done;
    }),
  );
  return [first, ...rest].map((r) => ({
    ...r,
    report: () => `${r.report()}\n--- siptm serve\n${server.report()}`,
  }));
}

/**
 * The proxy sent the UAC exactly the 2xx responses to the INVITE that it got
 * from the UAS(s) (§16.7 item 4: each is forwarded), none of its own: 2xx
 * retransmission belongs to the UAS core (§13.3.1.4), and a server
 * transaction in Accepted "MUST NOT generate 2xx retransmissions on its own"
 * (RFC 6026 §7.1). Check it once the server is drained (Timer L has run out).
 */
export function expectNo2xxRetransmissions(
  server: SiptmServer,
  uasPort: number | number[],
  uacPort: number,
): void {
  const is2xxInvite = (m: Traced) =>
    m.status !== undefined && m.status >= 200 && m.status < 300 && m.cseqMethod === "INVITE";
  const uas = new Set((Array.isArray(uasPort) ? uasPort : [uasPort]).map((p) => `${HOST}:${p}`));
  const trace = server.trace();
  const received = trace.filter((m) => m.dir === "in" && uas.has(m.peer) && is2xxInvite(m)).length;
  const sent = trace.filter(
    (m) => m.dir === "out" && m.peer === `${HOST}:${uacPort}` && is2xxInvite(m),
  ).length;
  expect(received, "2xx to the INVITE received from the UAS").toBeGreaterThan(0);
  expect(
    sent,
    `2xx to the INVITE sent to the UAC (${sent}) vs received from the UAS (${received}): the proxy retransmitted the 2xx itself (RFC 6026 §7.1)\n${server.report()}`,
  ).toBe(received);
}

/**
 * REGISTER `contact` for `aor` at the server from an in-test engine (as the
 * UA owning that contact would): one REGISTER, its own Call-ID. The final
 * outcome (200 expected).
 */
export async function register(
  engine: Engine,
  server: SiptmServer,
  aor: string,
  contact: string,
  expires = 3600,
): Promise<FinalOutcome> {
  const h = engine.request({
    method: "REGISTER",
    uri: `sip:${HOST}:${server.udp}`,
    from: `<${aor}>`,
    to: `<${aor}>`,
    headers: [
      ["Contact", `<${contact}>`],
      ["Expires", String(expires)],
    ],
    nextHop: `udp:${HOST}:${server.udp}`,
  });
  return h.final;
}

/** The last SIP messages of the server's --trace log, one line each ("in/out peer: first line"), for failure messages. */
function traceTail(stderr: string, max: number): string {
  const lines: string[] = [];
  for (const line of stderr.split("\n")) {
    if (!line.trim()) continue;
    try {
      const o = JSON.parse(line) as { dir?: string; peer?: string; sip?: string; msg?: string };
      if (typeof o.sip === "string")
        lines.push(`${o.dir ?? "?"} ${o.peer ?? "?"}: ${o.sip.split("\r\n")[0]}`);
      else lines.push(line);
    } catch {
      lines.push(line);
    }
  }
  const text = lines.join("\n");
  return text.length <= max ? text : `…${text.slice(-max)}`;
}
