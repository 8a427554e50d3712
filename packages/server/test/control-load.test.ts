// A real `siptm serve` holding many ringing INVITEs (route uas, --answer-after never), asked for
// big control answers: SIP is served while a batch of tm.list is built (OPTIONS probes sent one
// after another are answered before the batch's answer comes), the answer stays under
// --rpc-max-response, a batch over --rpc-max-batch is refused, and paging walks every transaction.
import { createSocket, type Socket } from "node:dgram";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, killAll, RINGING_UAS, rpc, type Served, serve, until } from "./helpers.js";

const RINGING = 1500;
const SHARDED_RINGING = 300;
/**
 * Every INVITE and probe comes from one source, and a probe is sent once (no retransmission): the
 * per-source rate limit (default 1000/s, burst 2000) would drop one of the thousands sent while a
 * batch is built on a fast run, and the probe loop would wait for it forever.
 */
const NO_RATE_LIMIT = ["--rate-limit", "0"];

interface Uac {
  socket: Socket;
  port: number;
  /** Resolves when a response with this Call-ID arrives. */
  answered(callId: string): Promise<string>;
  close(): void;
}

async function udpClient(): Promise<Uac> {
  const socket = createSocket("udp4");
  const waiting = new Map<string, (text: string) => void>();
  socket.on("message", (buf) => {
    const text = buf.toString("latin1");
    const m = /^Call-ID:\s*(\S+)/im.exec(text);
    if (!m || !text.startsWith("SIP/2.0 200")) return;
    const w = waiting.get(m[1]!);
    if (w) {
      waiting.delete(m[1]!);
      w(text);
    }
  });
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  return {
    socket,
    port: socket.address().port,
    answered: (callId) => new Promise((r) => waiting.set(callId, r)),
    close: () => socket.close(),
  };
}

function request(method: string, callId: string, port: number, target: number): Buffer {
  return Buffer.from(
    `${method} sip:bob@127.0.0.1:${target} SIP/2.0\r\n` +
      `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK${callId}\r\n` +
      "Max-Forwards: 70\r\n" +
      `From: <sip:load@127.0.0.1>;tag=${callId}\r\n` +
      "To: <sip:bob@127.0.0.1>\r\n" +
      `Call-ID: ${callId}\r\n` +
      `CSeq: 1 ${method}\r\n` +
      `Contact: <sip:load@127.0.0.1:${port}>\r\n` +
      "Content-Length: 0\r\n\r\n",
    "latin1",
  );
}

/** Send `n` INVITEs a few at a time (no burst past the socket buffers) until the server holds them all. */
async function ring(server: Served, uac: Uac, n: number, prefix: string): Promise<void> {
  for (let i = 0; i < n; i += 50) {
    for (let j = i; j < Math.min(n, i + 50); j++)
      uac.socket.send(request("INVITE", `${prefix}-${j}`, uac.port, server.udp), server.udp, "127.0.0.1");
    await until(
      "INVITEs held",
      async () => (await call<{ current: number }>(server.rpc, "tm.stats")).current >= Math.min(n, i + 50),
    );
  }
}

type Answer = { id?: number; result?: unknown; error?: { code: number; message: string } };

async function post(port: number, body: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/rpc`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body,
  });
  return { status: res.status, text: await res.text() };
}

function batchOf(n: number, method: string, params?: unknown): string {
  return JSON.stringify(Array.from({ length: n }, (_, i) => ({ jsonrpc: "2.0", id: i, method, params })));
}

/** Walk tm.list by pages of `limit`; every id seen, and the number of pages. */
/**
 * Send a batch of 16 tm.list and, until it is answered, OPTIONS probes one after another, each
 * awaited: the batch's answer and how many probes were answered while it was being built.
 */
async function probeWhileListing(
  server: Served,
  uac: Uac,
  prefix: string,
): Promise<{ big: { status: number; text: string }; during: number }> {
  let done = false;
  const pending = post(server.rpc, batchOf(16, "tm.list")).then((r) => {
    done = true;
    return r;
  });
  let during = 0;
  let sent = 0;
  while (!done) {
    const id = `${prefix}-${sent++}`;
    const answer = uac.answered(id);
    uac.socket.send(request("OPTIONS", id, uac.port, server.udp), server.udp, "127.0.0.1");
    await answer;
    if (!done) during++;
  }
  return { big: await pending, during };
}

async function walk(
  port: number,
  limit: number,
): Promise<{ ids: string[]; shards: Set<number>; pages: number }> {
  const ids: string[] = [];
  const shards = new Set<number>();
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: { items: Array<{ id: string; method: string; shard: number }>; next: string | null } =
      await call(port, "tm.list", cursor === null ? { limit } : { limit, cursor });
    expect(page.items.length).toBeLessThanOrEqual(limit);
    for (const e of page.items)
      if (e.method === "INVITE") {
        ids.push(e.id);
        shards.add(e.shard);
      }
    cursor = page.next;
    pages++;
  } while (cursor !== null && pages < 1000);
  return { ids, shards, pages };
}

afterAll(async () => {
  await killAll();
});

describe("siptm serve with many live transactions, one thread", () => {
  let server: Served;
  let uac: Uac;
  beforeAll(async () => {
    [server, uac] = await Promise.all([
      serve([...RINGING_UAS, "--rpc-max-page", "20", ...NO_RATE_LIMIT]),
      udpClient(),
    ]);
    await ring(server, uac, RINGING, "ring");
  }, 60_000);
  afterAll(() => uac?.close());

  it("OPTIONS probes sent one after another while a batch of 16 tm.list is built are answered meanwhile", async () => {
    const { big, during } = await probeWhileListing(server, uac, "probe");
    const { status, text } = big;
    expect(status).toBe(200);
    // The batch's answer is bounded by --rpc-max-response (default 4 MiB): the lists that would go
    // past it are -32011, the others are whole.
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(4 * 1024 * 1024);
    const answers = JSON.parse(text) as Answer[];
    expect(answers).toHaveLength(16);
    for (const a of answers)
      if (a.error) expect(a.error.code).toBe(-32011);
      else
        expect((a.result as Array<{ method: string }>).filter((e) => e.method === "INVITE")).toHaveLength(
          RINGING,
        );
    expect(answers.filter((a) => a.error).length).toBeGreaterThan(0);
    // Built page by page (75 pages per list, a turn of the event loop between them): SIP went on.
    expect(during).toBeGreaterThanOrEqual(20);
  });

  it("a batch over --rpc-max-batch (16) is one -32600 error", async () => {
    const { text } = await post(server.rpc, batchOf(17, "tm.stats"));
    const a = JSON.parse(text) as Answer;
    expect(a.error?.code).toBe(-32600);
    expect(a.error?.message).toMatch(/at most 16/);
  });

  it("tm.list {limit, cursor} walks every ringing INVITE once, each page at most limit, next null at the end", async () => {
    const { ids, pages } = await walk(server.rpc, 20);
    expect(ids).toHaveLength(RINGING);
    expect(new Set(ids).size).toBe(RINGING);
    expect(pages).toBeGreaterThanOrEqual(RINGING / 20);
    const over = await rpc(server.rpc, "tm.list", { limit: 21 });
    expect(over.body.error?.code).toBe(-32602);
  });
});

describe("siptm serve --workers 2 with many live transactions", () => {
  let server: Served;
  let uac: Uac;
  beforeAll(async () => {
    [server, uac] = await Promise.all([
      serve([...RINGING_UAS, "--workers", "2", "--rpc-max-page", "25", ...NO_RATE_LIMIT]),
      udpClient(),
    ]);
    await ring(server, uac, SHARDED_RINGING, "shard");
  }, 60_000);
  afterAll(() => uac?.close());

  it("tm.list pages go shard by shard: every ringing INVITE once, from both shards; the unpaged list has them all", async () => {
    const { ids, shards } = await walk(server.rpc, 25);
    expect(ids).toHaveLength(SHARDED_RINGING);
    expect(new Set(ids).size).toBe(SHARDED_RINGING);
    expect([...shards].sort()).toEqual([0, 1]);
    const all = await call<Array<{ id: string; method: string }>>(server.rpc, "tm.list");
    expect(
      all
        .filter((e) => e.method === "INVITE")
        .map((e) => e.id)
        .sort(),
    ).toEqual([...ids].sort());
    const hs = await call<{ entries: number }>(server.rpc, "tm.hash_stats");
    expect(hs.entries).toBeGreaterThanOrEqual(SHARDED_RINGING);
  });

  it("OPTIONS probes sent while a batch of 16 tm.list is gathered from the shards are answered meanwhile", async () => {
    const { big, during } = await probeWhileListing(server, uac, "sprobe");
    const answers = JSON.parse(big.text) as Answer[];
    expect(answers).toHaveLength(16);
    expect(during).toBeGreaterThanOrEqual(5);
  });
});
