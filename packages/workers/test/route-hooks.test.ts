// The route hooks of a shard (route-hooks.ts): control functions a route provides and the
// main thread calls on every shard (ShardedEngine.routeCall), close hooks run at shutdown,
// and wire taps. Real sockets on 127.0.0.1; everything closed in afterEach.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newCallId } from "@siptm/core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { ShardedEngineOptions } from "../src/coordinator.js";
import { defaultHashKey, hashKey, shardOf } from "../src/hash.js";
import { crashShard } from "../src/testing.js";
import { FROM, peerEngine, shardedEngine, TO, udp } from "./helpers.js";

/** The engines here take the process's default key. */
const KEY = hashKey(defaultHashKey());

const dir = mkdtempSync(join(tmpdir(), "siptm-route-hooks-"));
const open: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.close()));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The fixture route; `sub`: a directory (under `dir`) where its close hooks write. */
function route(sub?: string): URL {
  const url = new URL("./fixtures/hooks-route.mjs", import.meta.url);
  if (sub) url.searchParams.set("dir", join(dir, sub));
  return url;
}

const sharded = (opts: Partial<ShardedEngineOptions> = {}) =>
  shardedEngine(open, { route: route(), ...opts });

/** A fresh Call-ID that the 2 shards give to `shard`. */
function callIdFor(shard: number): string {
  for (;;) {
    const id = newCallId();
    if (shardOf(id, 2, KEY) === shard) return id;
  }
}

describe("routeCall", () => {
  it("calls the function the route provided in every shard, with the arguments; one result per shard, in order", async () => {
    const se = await sharded();
    expect(await se.routeCall("echo", 7, "x", { a: [1, 2] })).toEqual([
      [0, 7, "x", { a: [1, 2] }],
      [1, 7, "x", { a: [1, 2] }],
    ]);
    // An async function: its promise is awaited in the shard.
    expect(await se.routeCall("later", 20)).toEqual([0, 10]);
  });

  it("rejects with the shard's error when the function throws, and with ENOROUTEFN for a name not provided", async () => {
    const se = await sharded();
    await expect(se.routeCall("boom")).rejects.toThrow(/boom in shard \d/);
    await expect(se.routeCall("boom")).rejects.toMatchObject({ name: "RangeError" });
    await expect(se.routeCall("nothing")).rejects.toMatchObject({ code: "ENOROUTEFN" });
    // The shards are fine afterwards.
    expect(await se.routeCall("echo")).toEqual([[0], [1]]);
  });

  it("a restarted shard answers from its new incarnation", async () => {
    const se = await sharded({ testHooks: true, logger: { warn: () => {} } });
    expect(
      ((await se.routeCall("seen")) as Array<{ incarnation: number }>).map((s) => s.incarnation),
    ).toEqual([1, 1]);
    await crashShard(se, 1, "exit");
    await se.ready();
    const after = (await se.routeCall("seen")) as Array<{ shard: number; incarnation: number }>;
    expect(after.map((s) => [s.shard, s.incarnation])).toEqual([
      [0, 1],
      [1, 2],
    ]);
  });
});

describe("route keys", () => {
  it("reach every shard with its task (not the module URL), and a restarted shard gets the same", async () => {
    const key = new Uint8Array(32).fill(7);
    const se = await sharded({ routeKeys: { flowToken: key }, testHooks: true, logger: { warn: () => {} } });
    const hex = Buffer.from(key).toString("hex");
    expect(await se.routeCall("keys")).toEqual([{ flowToken: hex }, { flowToken: hex }]);
    await crashShard(se, 0, "exit");
    await se.ready();
    expect(await se.routeCall("keys")).toEqual([{ flowToken: hex }, { flowToken: hex }]);
  });
});

describe("tap", () => {
  it("sees every message each shard's engine receives and sends; a throwing tap changes nothing", async () => {
    const se = await sharded();
    const p = await peerEngine();
    open.push(p.engine);
    const port = se.addresses[0]!.port;
    const ids = [callIdFor(0), callIdFor(0), callIdFor(1)];
    const outcomes = await Promise.all(
      ids.map(
        (callId) =>
          p.engine.request({
            method: "OPTIONS",
            uri: "sip:bob@127.0.0.1",
            from: FROM,
            to: TO,
            callId,
            nextHop: udp(port),
          }).final,
      ),
    );
    expect(outcomes.map((o) => o.status)).toEqual([200, 200, 200]);
    const seen = (await se.routeCall("seen")) as Array<{
      in: number;
      out: number;
      firstIn: string;
      firstOut: string;
    }>;
    // Each request in and its 200 out, in the shard of its Call-ID (more with UDP retransmissions).
    expect(seen[0]!.in).toBeGreaterThanOrEqual(2);
    expect(seen[0]!.out).toBeGreaterThanOrEqual(2);
    expect(seen[1]!.in).toBeGreaterThanOrEqual(1);
    expect(seen[1]!.out).toBeGreaterThanOrEqual(1);
    expect(seen[0]!.in + seen[1]!.in).toBeLessThan(10);
    expect(seen[1]!.firstIn).toBe("UDP OPTIONS sip:bob@127.0.0.1 SIP/2.0");
    expect(seen[1]!.firstOut).toBe("UDP SIP/2.0 200 OK");
  });
});

describe("onClose", () => {
  it("runs in every shard when the engine closes, after the drain", async () => {
    const sub = join(dir, "closed");
    mkdirSync(sub);
    const se = await sharded({ route: route("closed") });
    expect(existsSync(join(sub, "closed-0"))).toBe(false);
    await se.close();
    // Each shard's hook ran, with no transaction left (the drain came first).
    expect(readFileSync(join(sub, "closed-0"), "utf8")).toBe("0");
    expect(readFileSync(join(sub, "closed-1"), "utf8")).toBe("0");
  });
});
