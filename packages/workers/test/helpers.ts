// Test helpers: bounded waits, addresses. Only 127.0.0.1.
import { createUdpTransport, Engine, type EngineOptions } from "@siptm/core";
import { ShardedEngine, type ShardedEngineOptions } from "../src/coordinator.js";

/** The brief's short timers. */
export const FAST = { t1: 50, t2: 400, t4: 500, timerD: 500 };

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `cond` until it holds; throw after `ms` (bounded, no timing assertion). */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  ms = 10_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export function udp(port: number) {
  return { protocol: "UDP" as const, address: "127.0.0.1", port };
}

/** A plain core Engine on an ephemeral UDP port of 127.0.0.1 (the peer of a flow). */
export async function peerEngine(opts: EngineOptions = {}): Promise<{ engine: Engine; port: number }> {
  const engine = new Engine({ timers: FAST, refFaults: "throw", ...opts });
  engine.addTransport(await createUdpTransport({ address: "127.0.0.1", port: 0, sink: engine }));
  return { engine, port: engine.transportFor("UDP")!.localPort };
}

export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

export const FROM = "<sip:alice@127.0.0.1>";
export const TO = "<sip:bob@127.0.0.1>";

/**
 * A ShardedEngine of 2 shards on an ephemeral UDP port of 127.0.0.1, short timers, reference
 * faults thrown, a short drain (a file's afterEach need not wait for Timer M/D of the last
 * transactions), `opts` over that; added to `open`, which the file's afterEach closes.
 */
export async function shardedEngine(
  open: Array<{ close(): Promise<void> }>,
  opts: Partial<ShardedEngineOptions> = {},
): Promise<ShardedEngine> {
  const e = await ShardedEngine.create({
    shards: 2,
    listen: [{ protocol: "UDP", address: "127.0.0.1", port: 0 }],
    engine: { timers: FAST, refFaults: "throw" },
    drainTimeoutMs: 300,
    ...opts,
  });
  open.push(e);
  return e;
}
