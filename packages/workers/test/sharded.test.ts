// What only the sharded engine has: route modules in the shards, routing by
// Call-ID and by branch marker, TCP through the coordinator, a shard dying
// under load, backpressure, graceful shutdown. Real sockets on 127.0.0.1,
// short timers; everything closed in afterEach.
import dgram from "node:dgram";
import { createTcpTransport, type Engine, newCallId, type ServerTransactionHandle } from "@siptm/core";
import { afterEach, describe, expect, it } from "vitest";
import { SHARD_LOST, ShardedEngine, type ShardedEngineOptions } from "../src/coordinator.js";
import { defaultHashKey, hashKey, shardOf } from "../src/hash.js";
import { blockShard, crashShard, reportNow } from "../src/testing.js";
import { deferred, FROM, peerEngine, shardedEngine, sleep, TO, udp, waitFor } from "./helpers.js";

/** The engines here take the process's default key. */
const KEY = hashKey(defaultHashKey());

const ROUTE = new URL("./fixtures/route.mjs", import.meta.url);
const open: Array<{ close(): Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.close()));
});

const sharded = (opts: Partial<ShardedEngineOptions> = {}) => shardedEngine(open, opts);

async function peer(
  onRequest?: (tx: ServerTransactionHandle) => void,
): Promise<{ engine: Engine; port: number }> {
  const p = await peerEngine(onRequest ? { onRequest } : {});
  open.push(p.engine);
  return p;
}

/** `count` fresh Call-IDs that hash to `shard` of `n`. */
function callIdsFor(shard: number, n: number, count: number): string[] {
  const out: string[] = [];
  while (out.length < count) {
    const id = newCallId();
    if (shardOf(id, n, KEY) === shard) out.push(id);
  }
  return out;
}

const options = (port: number, callId?: string) => ({
  method: "OPTIONS",
  uri: "sip:bob@127.0.0.1",
  from: FROM,
  to: TO,
  nextHop: udp(port),
  ...(callId ? { callId } : {}),
});

describe("routing", () => {
  it("a route module answers in the shard that owns the Call-ID", async () => {
    const se = await sharded({ route: ROUTE });
    const p = await peer();
    const ids = [...callIdsFor(0, 2, 3), ...callIdsFor(1, 2, 3)];
    const outcomes = await Promise.all(
      ids.map((id) => p.engine.request(options(se.addresses[0]!.port, id)).final),
    );
    for (const [i, o] of outcomes.entries()) {
      expect(o.status).toBe(200);
      expect(o.response?.header("x-shard")).toBe(String(shardOf(ids[i]!, 2, KEY)));
    }
    const s = await se.stats();
    expect(s.shards.map((e) => e.created)).toEqual([3, 3]);
  });

  it("Call-IDs crafted to land on shard 0 under the old unkeyed FNV-1a spread over both shards (keyed hash)", async () => {
    const keyBytes = Uint8Array.from({ length: 16 }, (_, i) => 0x40 + i);
    const se = await sharded({ route: ROUTE, hashKey: keyBytes });
    const p = await peer();
    const fnv1a = (s: string) => {
      let h = 0x811c9dc5;
      for (let i = 0; i < s.length; i++) h = Math.imul(h ^ (s.charCodeAt(i) & 0xff), 0x01000193);
      return h >>> 0;
    };
    const crafted: string[] = [];
    for (let i = 0; crafted.length < 24; i++)
      if (fnv1a(`aim${i}@attacker`) % 2 === 0) crafted.push(`aim${i}@attacker`);
    const outcomes = await Promise.all(
      crafted.map((id) => p.engine.request(options(se.addresses[0]!.port, id)).final),
    );
    const key = hashKey(keyBytes);
    const want = [0, 0];
    for (const [i, o] of outcomes.entries()) {
      expect(o.status).toBe(200);
      // Each one answered by the shard the keyed hash names, the engine's own shardOf agreeing.
      expect(o.response?.header("x-shard")).toBe(String(shardOf(crafted[i]!, 2, key)));
      expect(se.shardOf(crafted[i]!)).toBe(shardOf(crafted[i]!, 2, key));
      want[shardOf(crafted[i]!, 2, key)]!++;
    }
    const s = await se.stats();
    expect(s.shards.map((e) => e.created)).toEqual(want);
    expect(Math.min(...want)).toBeGreaterThan(0);
  });

  it("a route module gets the coordinator's sockets with their bound ports (ctx.listeners)", async () => {
    const se = await sharded({ route: ROUTE });
    const p = await peer();
    const o = await p.engine.request(options(se.addresses[0]!.port)).final;
    expect(o.status).toBe(200);
    expect(o.response?.header("x-listeners")).toBe(`UDP:127.0.0.1:${se.addresses[0]!.port}`);
  });

  it("a response finds its shard by the branch marker, whatever its Call-ID hashes to", async () => {
    const se = await sharded({ route: ROUTE });
    const relayTo = await peer((tx) => tx.reply(200));
    const p = await peer();
    // The MESSAGE lands on shard 0; the route there starts an OPTIONS whose Call-ID hashes to shard 1.
    const [messageCallId] = callIdsFor(0, 2, 1);
    const [foreign] = callIdsFor(1, 2, 1);
    const h = p.engine.request({
      method: "MESSAGE",
      uri: "sip:bob@127.0.0.1",
      from: FROM,
      to: TO,
      callId: messageCallId,
      headers: [
        ["X-Relay-Call-ID", foreign!],
        ["X-Relay-Port", String(relayTo.port)],
      ],
      nextHop: udp(se.addresses[0]!.port),
    });
    const o = await h.final;
    expect([o.status, o.reason]).toEqual([200, "Relayed"]);
    const s = await se.stats();
    expect(s.stray_responses).toBe(0);
    expect(s.shards[1]!.created).toBe(0);
  });

  it("TCP: messages framed by the coordinator, answered on the same connection", async () => {
    const se = await sharded({
      route: ROUTE,
      listen: [
        { protocol: "UDP", address: "127.0.0.1", port: 0 },
        { protocol: "TCP", address: "127.0.0.1", port: 0 },
      ],
    });
    const p = await peer();
    p.engine.addTransport(await createTcpTransport({ address: "127.0.0.1", port: 0, sink: p.engine }));
    const tcpPort = se.addresses.find((a) => a.protocol === "TCP")!.port;
    const outcomes = await Promise.all(
      [0, 1, 2, 3].map(
        () =>
          p.engine.request({
            ...options(0),
            nextHop: { protocol: "TCP", address: "127.0.0.1", port: tcpPort },
          }).final,
      ),
    );
    expect(outcomes.map((o) => o.status)).toEqual([200, 200, 200, 200]);
  });

  it("the main-thread onRequest gets what a route forwards, and replies through the shard", async () => {
    const seen: string[] = [];
    const se = await sharded({
      route: ROUTE,
      onRequest: (tx) => {
        seen.push(tx.method);
        tx.reply(202, { reason: "Main Thread" }).catch(() => {});
      },
    });
    const p = await peer();
    const info = await p.engine.request({ ...options(se.addresses[0]!.port), method: "INFO" }).final;
    const opt = await p.engine.request(options(se.addresses[0]!.port)).final;
    expect([info.status, info.reason]).toEqual([202, "Main Thread"]);
    expect(opt.status).toBe(200); // answered by the route, in the shard
    expect(seen).toEqual(["INFO"]);
  });
});

describe("starting", () => {
  it("create() rejects when a shard cannot load its route module", async () => {
    const warnings: string[] = [];
    await expect(
      ShardedEngine.create({
        shards: 2,
        listen: [{ protocol: "UDP", address: "127.0.0.1", port: 0 }],
        route: new URL("./fixtures/no-such-route.mjs", import.meta.url),
        logger: { warn: (_o, msg) => warnings.push(msg) },
      }),
    ).rejects.toThrow();
    expect(warnings.some((w) => w.includes("failed to start"))).toBe(true);
  });

  it("create() rejects a hash key that is not 16 bytes", async () => {
    await expect(
      ShardedEngine.create({
        shards: 2,
        listen: [{ protocol: "UDP", address: "127.0.0.1", port: 0 }],
        hashKey: new Uint8Array(8),
      }),
    ).rejects.toThrow(/16 bytes/);
  });
});

describe("a shard dies", () => {
  it("mid-load: the other shard's calls all complete, the dead one restarts, stats count the loss", async () => {
    const warnings: string[] = [];
    const se = await sharded({ testHooks: true, logger: { warn: (_o, msg) => warnings.push(msg) } });
    const arrived = { n: 0 };
    // 180 then a late 200 (as fixtures/route.mjs answers an INVITE): this peer's own delay and Contact.
    const p = await peer((tx) => {
      arrived.n++;
      tx.reply(180);
      setTimeout(() => {
        try {
          tx.reply(200, { headers: [["Contact", "<sip:peer@127.0.0.1>"]] });
        } catch {}
      }, 300);
    });
    const on0 = callIdsFor(0, 2, 5);
    const on1 = callIdsFor(1, 2, 5);
    const invite = (callId: string) =>
      se.request({
        method: "INVITE",
        uri: "sip:bob@127.0.0.1",
        from: FROM,
        to: TO,
        callId,
        nextHop: udp(p.port),
      });
    const h0 = await Promise.all(on0.map(invite));
    const h1 = await Promise.all(on1.map(invite));
    await waitFor(() => arrived.n === 10, 5000, "all INVITEs at the peer");
    // Shard 1's last report counts its 5 INVITEs.
    await waitFor(async () => (await se.stats()).shards[1]!.current >= 5, 5000, "shard 1 to report");

    await crashShard(se, 1, "exit");

    const o0 = await Promise.all(h0.map((h) => h.final));
    const o1 = await Promise.all(h1.map((h) => h.final));
    expect(o0.map((o) => o.status)).toEqual([200, 200, 200, 200, 200]);
    expect(o1.every((o) => o.status === SHARD_LOST.status && o.reason === SHARD_LOST.reason)).toBe(true);
    expect(h1.every((h) => h.terminated)).toBe(true);
    for (const [i, h] of h0.entries()) await se.ack2xx(h, o0[i]!.response!);

    await se.ready();
    const s = await se.stats();
    expect(s.restarts).toBe(1);
    expect(s.lost).toBeGreaterThanOrEqual(5);
    expect(s.shards[1]!.lost).toBe(s.lost);
    expect(s.shards[0]!.lost).toBe(0);
    expect(s.shards.every((e) => e.alive)).toBe(true);
    expect(warnings.some((w) => w.includes("shard 1 died"))).toBe(true);

    // The new shard 1 works.
    p.engine.onRequest = (tx) => tx.reply(200);
    const again = await se.request(options(p.port, callIdsFor(1, 2, 1)[0]));
    expect((await again.final).status).toBe(200);
  });

  it("an uncaught throw in the shard's thread is a death too", async () => {
    const se = await sharded({ testHooks: true, logger: { warn: () => {} } });
    await crashShard(se, 0, "throw");
    await se.ready();
    const s = await se.stats();
    expect(s.restarts).toBe(1);
    expect(s.shards[0]!.restarts).toBe(1);
    const p = await peer((tx) => tx.reply(200));
    const h = await se.request(options(p.port, callIdsFor(0, 2, 1)[0]));
    expect((await h.final).status).toBe(200);
  });
});

describe("backpressure", () => {
  it("past the queue bound new requests get 503; responses and retransmissions pass; it recovers", async () => {
    const se = await sharded({ shards: 1, route: ROUTE, queueLimit: 4, testHooks: true });
    const uas = await peer((tx) => setTimeout(() => tx.reply(200), 100));
    const flood = await peer();
    const port = se.addresses[0]!.port;

    // A request of ours whose response will arrive while the shard is stuck.
    const mine = await se.request(options(uas.port));
    await blockShard(se, 0, 500);
    const results = await Promise.all(
      Array.from({ length: 20 }, () => flood.engine.request(options(port)).final),
    );
    const rejected = results.filter((o) => o.status === 503);
    const accepted = results.filter((o) => o.status === 200);
    expect(rejected.length).toBeGreaterThan(0);
    expect(accepted.length).toBeGreaterThan(0);
    expect(rejected.length + accepted.length).toBe(20);
    expect(rejected[0]!.response?.header("retry-after")).toBe("5");
    expect((await mine.final).status).toBe(200);

    const s = await se.stats();
    expect(s.overload_rejected).toBe(rejected.length);
    expect(s.shards[0]!.overloaded).toBe(rejected.length);
    // The peer retransmitted the accepted OPTIONS (T1 = 50 ms) while the shard was stuck: they passed.
    expect(s.overload_passed).toBeGreaterThan(0);

    // The flood is over: the queue empties and new requests succeed again.
    await waitFor(async () => (await se.stats()).shards[0]!.inFlight === 0, 5000, "the queue to empty");
    const after: number[] = [];
    for (let i = 0; i < 5; i++) after.push((await flood.engine.request(options(port)).final).status);
    expect(after).toEqual([200, 200, 200, 200, 200]);
  });

  it('overload "drop" answers nothing and counts it', async () => {
    const se = await sharded({ shards: 1, route: ROUTE, queueLimit: 2, overload: "drop", testHooks: true });
    const flood = await peer();
    await blockShard(se, 0, 300);
    const handles = Array.from({ length: 8 }, () => flood.engine.request(options(se.addresses[0]!.port)));
    await sleep(100);
    const s = await se.stats();
    expect(s.overload_dropped).toBeGreaterThan(0);
    expect(s.overload_rejected).toBe(0);
    // The dropped ones are retransmitted and get through once the shard is back.
    const outcomes = await Promise.all(handles.map((h) => h.final));
    expect(outcomes.filter((o) => o.status === 200).length).toBeGreaterThan(0);
  });
});

describe("batching", () => {
  /**
   * Send `n` datagrams from one socket, 5 ms apart (each in its own event-loop turn at the
   * coordinator), once each; `message(i, localPort)` writes the i-th.
   */
  async function oneByOne(port: number, n: number, message: (i: number, localPort: number) => string) {
    const sock = dgram.createSocket("udp4");
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
    try {
      for (let i = 0; i < n; i++) {
        const msg = message(i, sock.address().port);
        await new Promise<void>((r, j) => sock.send(msg, port, "127.0.0.1", (e) => (e ? j(e) : r())));
        await sleep(5);
      }
    } finally {
      sock.close();
    }
  }

  /** 20 OPTIONS datagrams, one a turn. */
  function trickle(port: number): Promise<void> {
    return oneByOne(port, 20, (i, local) => {
      const callId = newCallId();
      return (
        `OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${local};branch=z9hG4bK-trickle-${i}-${callId}\r\n` +
        `Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=t${i}\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: ${callId}\r\n` +
        `CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`
      );
    });
  }

  async function batchesFor20(batchesInFlight: number | undefined): Promise<number> {
    const se = await sharded({
      shards: 1,
      route: ROUTE,
      testHooks: true,
      ...(batchesInFlight ? { batchesInFlight } : {}),
    });
    const before = await se.stats();
    await blockShard(se, 0, 400);
    await trickle(se.addresses[0]!.port);
    await waitFor(async () => (await se.stats()).shards[0]!.inFlight === 0, 5000, "the shard to take all 20");
    const after = await se.stats();
    expect(after.in_messages - before.in_messages).toBe(20);
    return after.in_batches - before.in_batches;
  }

  it("a busy shard gets what arrives meanwhile in one held batch, not one batch per turn", async () => {
    // The first message goes at once; the shard is stuck on it, so the other 19 (19 turns) wait as one batch.
    expect(await batchesFor20(1)).toBe(2);
    // Default: two batches in flight, then one held batch.
    expect(await batchesFor20(undefined)).toBe(3);
  });

  /** `n` ACKs that match no transaction (the shard absorbs them: nothing to send), one a turn. */
  function strayAcks(port: number, n: number): Promise<void> {
    return oneByOne(
      port,
      n,
      (i, local) =>
        `ACK sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${local};branch=z9hG4bK-stray-${i}\r\n` +
        `Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a${i}\r\nTo: <sip:bob@127.0.0.1>;tag=b${i}\r\n` +
        `Call-ID: stray-${i}@127.0.0.1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n`,
    );
  }

  it("a batch that sends nothing costs no crossing back: its acknowledgement rides the next batch", async () => {
    // No periodic report during the test: acknowledgements travel only when due or with other records.
    const se = await sharded({ shards: 1, route: ROUTE, batchesInFlight: 4, reportIntervalMs: 60_000 });
    const port = se.addresses[0]!.port;
    const before = await se.stats();
    await strayAcks(port, 3);
    await waitFor(async () => (await se.stats()).shards[0]!.messages === 3, 5000, "the shard to take 3 ACKs");
    let now = await se.stats();
    // Three batches in, none back: nothing waited for their acknowledgement (under 4 in flight).
    expect(now.in_batches - before.in_batches).toBe(3);
    expect(now.out_batches - before.out_batches).toBe(0);
    expect(now.shards[0]!.inFlight).toBe(3);
    // An OPTIONS: its 200 goes back in one batch, which acknowledges all four.
    const p = await peer();
    const h = p.engine.request(options(port));
    expect((await h.final).status).toBe(200);
    await waitFor(async () => (await se.stats()).shards[0]!.inFlight === 0, 5000, "the acknowledgements");
    now = await se.stats();
    expect(now.out_batches - before.out_batches).toBe(1);
  });

  it("the coordinator asks for the acknowledgement when its next batch would be held (never stalls)", async () => {
    // One batch in flight: every batch would hold the next one back, so every batch asks to be
    // acknowledged at once (with no periodic report, a batch left unacknowledged would hold the rest).
    const se = await sharded({ shards: 1, route: ROUTE, batchesInFlight: 1, reportIntervalMs: 60_000 });
    const before = await se.stats();
    await strayAcks(se.addresses[0]!.port, 4);
    await waitFor(async () => (await se.stats()).shards[0]!.messages === 4, 5000, "the shard to take 4 ACKs");
    await waitFor(async () => (await se.stats()).shards[0]!.inFlight === 0, 5000, "all acknowledged");
    const now = await se.stats();
    expect(now.out_batches - before.out_batches).toBe(now.in_batches - before.in_batches);
  });

  it("an acknowledgement held back goes with the periodic report", async () => {
    // The shard's report timer is out of the way (60 s): the test runs the report itself
    // (reportNow: what the timer runs), so it sees what crosses back before the report and with it.
    const se = await sharded({
      shards: 1,
      route: ROUTE,
      batchesInFlight: 4,
      reportIntervalMs: 60_000,
      testHooks: true,
    });
    const before = await se.stats();
    await strayAcks(se.addresses[0]!.port, 1);
    await waitFor(
      async () => (await se.stats()).shards[0]!.messages === 1,
      5000,
      "the shard to take the ACK",
    );
    let now = await se.stats();
    // Processed, and held back: no batch crossed back, the coordinator still counts it in flight.
    expect(now.in_batches - before.in_batches).toBe(1);
    expect(now.out_batches - before.out_batches).toBe(0);
    expect(now.shards[0]!.inFlight).toBe(1);
    // The report carries the acknowledgement of that one batch (0 if it had gone at once)…
    expect(await reportNow(se, 0)).toBe(1);
    await waitFor(async () => (await se.stats()).shards[0]!.inFlight === 0, 5000, "the report");
    // …in the one batch that crossed back.
    now = await se.stats();
    expect(now.out_batches - before.out_batches).toBe(1);
    expect(now.in_batches - before.in_batches).toBe(1);
  });

  it("the report timer sends a held-back acknowledgement unasked", async () => {
    const se = await sharded({ shards: 1, route: ROUTE, batchesInFlight: 4, reportIntervalMs: 50 });
    await strayAcks(se.addresses[0]!.port, 1);
    await waitFor(async () => (await se.stats()).shards[0]!.inFlight === 0, 5000, "the report");
  });
});

describe("graceful shutdown", () => {
  it("lets transactions in flight finish, turns new requests away meanwhile, then ends the threads", async () => {
    const se = await sharded({ drainTimeoutMs: 1000 });
    const p = await peer((tx) => {
      tx.reply(180);
      setTimeout(() => {
        try {
          tx.reply(486);
        } catch {}
      }, 150);
    });
    // The provisional handler goes in with the request: a 180 may come back before request() resolves.
    const ringing = deferred();
    let rung = 0;
    const handles = await Promise.all(
      Array.from({ length: 6 }, () =>
        se.request({
          method: "INVITE",
          uri: "sip:bob@127.0.0.1",
          from: FROM,
          to: TO,
          nextHop: udp(p.port),
          onProvisional: (r) => {
            if (r.status === 180 && ++rung === 6) ringing.resolve();
          },
        }),
      ),
    );
    await ringing.promise;
    const closing = se.close();
    // While draining, a new request is turned away.
    const late = await p.engine.request(options(se.addresses[0]!.port)).final;
    expect(late.status).toBe(503);
    await expect(se.request(options(p.port))).rejects.toThrow(/closed/);
    await closing;
    const outcomes = await Promise.all(handles.map((h) => h.final));
    expect(outcomes.map((o) => o.status)).toEqual([486, 486, 486, 486, 486, 486]);
    const s = await se.stats();
    expect(s.shards.every((e) => !e.alive)).toBe(true);
  });

  it("is bounded: transactions that would not end are abandoned after the drain time", async () => {
    const se = await sharded({ drainTimeoutMs: 300 });
    const p = await peer((tx) => tx.reply(180)); // never a final
    const handles = await Promise.all(
      Array.from({ length: 4 }, () =>
        se.request({ method: "INVITE", uri: "sip:bob@127.0.0.1", from: FROM, to: TO, nextHop: udp(p.port) }),
      ),
    );
    await sleep(100);
    await se.close();
    const outcomes = await Promise.all(handles.map((h) => h.final));
    expect(outcomes.every((o) => o.status === 503 && o.reason === "Shard Closed")).toBe(true);
    await se.close(); // twice is fine
  });
});
