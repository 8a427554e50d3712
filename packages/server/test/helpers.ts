// Test helpers: run the built `siptm` CLI as a child process (as a user
// would), talk JSON-RPC to it over HTTP, and make in-test SIP engines.
import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  type ClientTransactionHandle,
  createTcpTransport,
  createUdpTransport,
  Engine,
  type EngineOptions,
  type FinalOutcome,
  newCallId,
  type RequestOptions,
  type ServerTransactionHandle,
} from "@siptm/core";
import { hashKey, shardOf } from "@siptm/workers";
import { afterAll, beforeAll, expect } from "vitest";
import { deriveKey, SHARD_HASH_LABEL } from "../src/secret.js";

export const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
/** A route module given by path: every request gets 486 Busy Here with `X-Route: busy`. */
export const BUSY_ROUTE = fileURLToPath(new URL("./fixtures/busy-route.mjs", import.meta.url));
/** Short timers for the engines made in tests. */
export const FAST = { t1: 20, t2: 160, t4: 200, timerD: 200, autoInv100: 10 };
/** Short timers for the server under test (flags). */
export const SERVER_TIMERS = ["--t1", "50", "--t2", "400", "--t4", "500", "--timer-d", "500"];
/** `siptm serve --route default` on `workers` (the --workers value), the test timers, a short drain, then `extra`. */
export function serveDefault(workers: string, extra: string[] = []): Promise<Served> {
  return serve([
    "--route",
    "default",
    "--workers",
    workers,
    "--drain-timeout",
    "500",
    ...SERVER_TIMERS,
    ...extra,
  ]);
}
/** The UAS route answering no INVITE by itself: each rings until the control interface answers it. */
export const RINGING_UAS = ["--route", "uas", "--answer-after", "never"];
/**
 * The secret every test server gets (SIPTM_SECRET), and the Call-ID hash key its shards use — derived
 * here as any node of a cluster derives it, so a test knows which shard a Call-ID goes to.
 */
export const TEST_SECRET = "test-secret-of-the-cluster";
export const SHARD_KEY = hashKey(deriveKey(TEST_SECRET, SHARD_HASH_LABEL));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Child {
  readonly proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<Exit>;
}

export interface Served extends Child {
  udp: number;
  tcp: number;
  rpc: number;
}

const children = new Set<ChildProcess>();

/** Run the CLI with these arguments (no SIPTM_RPC_TOKEN inherited). */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const { SIPTM_RPC_TOKEN: _drop, SIPTM_RPC: _dropAddress, ...base } = process.env;
  const proc = spawn(process.execPath, [CLI, ...args], {
    env: { ...base, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(proc);
  let out = "";
  let err = "";
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exited = new Promise<Exit>((resolve) => {
    proc.on("exit", (code, signal) => {
      children.delete(proc);
      // let the pipes drain
      setImmediate(() => resolve({ code, signal }));
    });
  });
  return { proc, stdout: () => out, stderr: () => err, exited };
}

/** Start `siptm serve` on ephemeral ports (read back from the banner) and wait until it is ready. */
export async function serve(extra: string[], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  env = { SIPTM_SECRET: TEST_SECRET, ...env };
  const child = runCli(
    [
      "serve",
      "--listen",
      "udp:127.0.0.1:0",
      "--listen",
      "tcp:127.0.0.1:0",
      "--rpc",
      "127.0.0.1:0",
      "--workers",
      "0",
      ...extra,
    ],
    env,
  );
  const deadline = Date.now() + 15_000;
  let done: Exit | undefined;
  void child.exited.then((e) => {
    done = e;
  });
  while (!/^ready/m.test(child.stdout())) {
    if (done) throw new Error(`siptm serve exited (${done.code}) before ready: ${child.stderr()}`);
    if (Date.now() > deadline) throw new Error(`siptm serve not ready: ${child.stdout()} ${child.stderr()}`);
    await sleep(20);
  }
  const out = child.stdout();
  const port = (re: RegExp) => Number(re.exec(out)?.[1]);
  return {
    ...child,
    udp: port(/listen:\s+udp 127\.0\.0\.1:(\d+)/),
    tcp: port(/listen:\s+tcp 127\.0\.0\.1:(\d+)/),
    rpc: port(/control:\s+http:\/\/127\.0\.0\.1:(\d+)\/rpc/),
  };
}

/** Kill every child still running (afterEach/afterAll). */
export async function killAll(): Promise<void> {
  const list = [...children];
  for (const p of list) p.kill("SIGKILL");
  await Promise.all(list.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once("exit", r)))));
}

export interface RpcAnswer {
  status: number;
  body: { result?: unknown; error?: { code: number; message: string } } & Record<string, unknown>;
}

/** POST a JSON-RPC call (or raw text) to /rpc. */
export async function rpc(
  port: number,
  method: string,
  params?: unknown,
  opts: { token?: string; raw?: string } = {},
): Promise<RpcAnswer> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (opts.token !== undefined) headers.Authorization = `Bearer ${opts.token}`;
  const res = await fetch(`http://127.0.0.1:${port}/rpc`, {
    method: "POST",
    headers,
    body: opts.raw ?? JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

/** The result of a call that must succeed. */
export async function call<T = unknown>(
  port: number,
  method: string,
  params?: unknown,
  token?: string,
): Promise<T> {
  const a = await rpc(port, method, params, { token });
  if (a.body.error) throw new Error(`${method}: ${a.body.error.code} ${a.body.error.message}`);
  return a.body.result as T;
}

/** An engine on 127.0.0.1 with UDP and TCP on ephemeral ports. */
export async function testEngine(opts: EngineOptions = {}): Promise<Engine> {
  const e = new Engine({ refFaults: "throw", timers: FAST, ...opts });
  e.addTransport(await createUdpTransport({ address: "127.0.0.1", port: 0, sink: e }));
  e.addTransport(await createTcpTransport({ address: "127.0.0.1", port: 0, sink: e }));
  return e;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `probe` until it returns true (bounded); throws with `what` otherwise. */
export async function until(
  what: string,
  probe: () => boolean | Promise<boolean>,
  ms = 15_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/**
 * tm.t_uac_start of an INVITE (extra headers `headers`) to an in-test UAS that
 * rings, then tm.cancel once the server's transaction is proceeding: the
 * CANCEL goes out at once ("sent"; before the 180 it would wait, "pending"),
 * the UAS sees it and answers 487. `then` runs before the UAS closes.
 */
export async function uacStartThenCancel(
  server: Served,
  headers: string,
  then: () => Promise<void> = async () => {},
): Promise<void> {
  let invite: ServerTransactionHandle | undefined;
  let cancelled = false;
  const uas = await testEngine({
    onRequest: (tx) => {
      invite = tx;
      tx.events.onCancel = () => {
        cancelled = true;
      };
      tx.reply(180);
    },
  });
  try {
    const port = uas.transportFor("UDP")!.localPort;
    const started = await call<{ callid: string; cseq: number; tid: string }>(server.rpc, "tm.t_uac_start", [
      "INVITE",
      `sip:bob@127.0.0.1:${port}`,
      `udp:127.0.0.1:${port}`,
      `udp:127.0.0.1:${server.udp}`,
      headers,
    ]);
    expect(started.tid).toBeTruthy();
    await until("the INVITE at the UAS", () => invite !== undefined);
    expect(invite!.request.callId).toBe(started.callid);
    expect(invite!.request.cseq.seq).toBe(started.cseq);
    await until("the 180 at the server", async () => {
      const list = await call<Array<{ id: string; state: string }>>(server.rpc, "tm.list");
      return list.some((t) => t.id === started.tid && t.state === "proceeding");
    });
    const c = await call<{ result: string }>(server.rpc, "tm.cancel", [started.callid, String(started.cseq)]);
    expect(c.result).toBe("sent");
    await until("the CANCEL at the UAS", () => cancelled);
    await until("the 487", () => invite!.finalStatus === 487);
    await then();
  } finally {
    await uas.close();
  }
}

/** An in-test callee, dave, and a caller: dave answers an INVITE 200 with his Contact, anything else 200. */
export interface Dave {
  callee: Engine;
  caller: Engine;
  /** The callee's UDP port. */
  port: number;
  /** The methods of the requests the callee got, and of the ACKs of its 2xx. */
  methods: string[];
  acks: string[];
}

export async function daveAndCaller(): Promise<Dave> {
  const methods: string[] = [];
  const acks: string[] = [];
  const callee = await testEngine({
    onRequest: (tx) => {
      methods.push(tx.method);
      if (tx.method === "INVITE") {
        tx.events.onAck = (ack) => acks.push(ack.method);
        tx.reply(200, { headers: [["Contact", `<sip:dave@127.0.0.1:${port}>`]] });
      } else tx.reply(200);
    },
  });
  const port = callee.transportFor("UDP")!.localPort;
  const caller = await testEngine();
  return { callee, caller, port, methods, acks };
}

/**
 * The caller (erin) calls sip:dave@127.0.0.1 through the proxy `server`: the
 * 200 carries the server's Record-Route, the ACK reaches dave and the BYE is
 * answered; dave saw the INVITE and the BYE only.
 */
export async function callDave(dave: Dave, server: Served, callId?: string): Promise<void> {
  const invite = dave.caller.request({
    method: "INVITE",
    uri: "sip:dave@127.0.0.1",
    from: "<sip:erin@127.0.0.1>",
    to: "<sip:dave@127.0.0.1>",
    callId,
    nextHop: `udp:127.0.0.1:${server.udp}`,
  });
  const answer = await invite.final;
  expect(answer.status).toBe(200);
  expect(answer.response!.headerValues("record-route").join()).toContain(`127.0.0.1:${server.udp}`);
  const bye = dave.caller.ackAndBye(invite, answer.response!);
  expect((await bye.final).status).toBe(200);
  await until("the ACK at the callee", () => dave.acks.length > 0);
  expect(dave.methods).toEqual(["INVITE", "BYE"]);
}

/** A fresh Call-ID that a server of `shards` shards (keyed with TEST_SECRET) gives to `shard`; any one in one thread. */
export function callIdOf(shard: number, shards = 2): string {
  for (;;) {
    const id = newCallId();
    if (shards < 2 || shardOf(id, shards, SHARD_KEY) === shard) return id;
  }
}

/** tm.t_uac_wait of an OPTIONS (`headers`: its From, To, CSeq …) to an in-test UAS that answers 200 with X-Test: yes. */
export async function uacWaitOptions(
  server: Pick<Served, "rpc">,
  headers: string,
): Promise<{ code: number; reason: string; headers: string; body: string }> {
  const uas = await testEngine({ onRequest: (tx) => tx.reply(200, { headers: [["X-Test", "yes"]] }) });
  try {
    const port = uas.transportFor("UDP")!.localPort;
    return await call(server.rpc, "tm.t_uac_wait", [
      "OPTIONS",
      `sip:uas@127.0.0.1:${port}`,
      ".",
      ".",
      headers,
    ]);
  } finally {
    await uas.close();
  }
}

/**
 * An INVITE from `uac` over TCP to a server on the `uas` route: a 180, then a
 * 200 with a TCP Contact of the server; the ACK and a BYE (answered 200) follow.
 */
export async function inviteOverTcp(uac: Engine, server: Served, from: string, to: string): Promise<void> {
  const seen: number[] = [];
  const h = uac.request({
    method: "INVITE",
    uri: `sip:bob@127.0.0.1:${server.tcp};transport=tcp`,
    from,
    to,
    nextHop: `tcp:127.0.0.1:${server.tcp}`,
    onResponse: (r) => seen.push(r.status),
  });
  const outcome = await h.final;
  expect(outcome.status).toBe(200);
  expect(seen).toContain(180);
  expect(outcome.response?.header("contact")).toMatch(/^<sip:siptm@127\.0\.0\.1:\d+;transport=tcp>$/);
  uac.ack2xx(h, outcome.response!);
  const bye = uac.ackAndBye(h, outcome.response!);
  expect((await bye.final).status).toBe(200);
}

export const FROM = "<sip:alice@127.0.0.1>";
export const TO = "<sip:bob@127.0.0.1>";

/**
 * A request from alice (FROM) to bob (TO) that `uac` sends to the server's UDP
 * port, to sip:bob@ the server unless `extra` names another Request-URI.
 */
export function toServer(
  uac: Engine,
  server: Pick<Served, "udp">,
  method: string,
  extra: Partial<RequestOptions> = {},
): ClientTransactionHandle {
  return uac.request({
    method,
    uri: `sip:bob@127.0.0.1:${server.udp}`,
    from: FROM,
    to: TO,
    nextHop: `udp:127.0.0.1:${server.udp}`,
    ...extra,
  });
}

/**
 * A REGISTER of `aor` (its From and To) that `ua` sends to the server's UDP
 * port, with one Contact header `contact` (none when undefined) before any
 * header of `extra`; Request-URI sip:127.0.0.1 unless `extra` names another.
 * Its final outcome.
 */
export function register(
  ua: Engine,
  server: Pick<Served, "udp">,
  aor: string,
  contact: string | undefined,
  extra: Partial<RequestOptions> = {},
): Promise<FinalOutcome> {
  const { headers = [], ...rest } = extra;
  return ua.request({
    method: "REGISTER",
    uri: "sip:127.0.0.1",
    from: `<${aor}>`,
    to: `<${aor}>`,
    nextHop: `udp:127.0.0.1:${server.udp}`,
    ...rest,
    headers: contact === undefined ? headers : [["Contact", contact], ...headers],
  }).final;
}

/**
 * A test file's in-test engine: made before the file's tests and handed to `set`; after them it
 * closes, every server the file started is killed, and `dir` (when given) is removed.
 */
export function fileEngine(set: (engine: Engine) => void, dir?: string): void {
  let engine: Engine | undefined;
  beforeAll(async () => {
    engine = await testEngine();
    set(engine);
  });
  afterAll(async () => {
    await engine?.close();
    await killAll();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
}
