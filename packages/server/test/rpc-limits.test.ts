// The JSON-RPC layer in-process, over a scripted engine: batches are capped and run one call after
// another, lists are paged (and built page by page with turns of the event loop between pages),
// answers are bounded, and caller-supplied header fields are checked before anything reaches the
// engine.
import { buildResponse, parseMessage, type SipRequest } from "@siptm/core";
import type { AuditPage, ShardAuditEntry, TransactionEngine } from "@siptm/workers";
import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { Registrar } from "../src/registrar.js";
import { type RpcLimits, RpcServer } from "../src/rpc.js";

interface Recorded {
  requests: Array<Record<string, unknown>>;
  replies: unknown[][];
}

/** A TransactionEngine holding `n` ringing server transactions, recording requests and replies. */
function scripted(n: number, opts: { final?: Promise<unknown> } = {}) {
  const entries: ShardAuditEntry[] = Array.from({ length: n }, (_, i) => ({
    id: `e1.${(i + 1).toString(36)}`,
    kind: "ist",
    state: "proceeding",
    method: "INVITE",
    callId: `call-${i}-${"x".repeat(30)}@127.0.0.9`,
    cseq: 1,
    ageMs: 1000,
    shard: 0,
    holders: ["table", "handle", "timer:lifetime"],
    timers: ["lifetime"],
  }));
  const rec: Recorded = { requests: [], replies: [] };
  const tm = {
    audit: () => entries,
    auditPage: (after: string | undefined, limit: number): AuditPage => {
      let start = 0;
      if (after !== undefined) {
        const i = entries.findIndex((e) => e.id === after);
        if (i < 0) throw new RangeError(`cursor ${after} is not a transaction id of this engine`);
        start = i + 1;
      }
      const page = entries.slice(start, start + limit);
      return { entries: page, next: start + limit < entries.length ? page[page.length - 1]!.id : undefined };
    },
    stats: () => ({ current: n, shards: [{ shard: 0 }] }),
    request: (o: Record<string, unknown>) => {
      rec.requests.push(o);
      return {
        id: "t.1",
        callId: (o.callId as string | undefined) ?? "generated",
        cseq: (o.cseq as number | undefined) ?? 1,
        final: opts.final ?? new Promise(() => {}),
      };
    },
    replyById: (...args: unknown[]) => {
      rec.replies.push(args);
    },
    replyByCallId: (...args: unknown[]) => {
      rec.replies.push(args);
    },
    cancel: () => "none",
    ack2xx: () => undefined,
    close: async () => {},
  } as unknown as TransactionEngine;
  return { tm, rec, entries };
}

function rpcOver(tm: TransactionEngine, limits: Partial<RpcLimits> = {}, registrar = new Registrar()) {
  return new RpcServer({
    tm,
    resolveAll: async () => [{ protocol: "UDP", address: "127.0.0.1", port: 5070 }],
    registrar,
    sockets: [{ protocol: "UDP", address: "127.0.0.1", port: 5060 }],
    logger: createLogger("silent"),
    version: "0.0.0",
    coreVersion: "0.0.0",
    startedAt: Date.now(),
    draining: () => false,
    limits,
  });
}

type Answer = { id?: unknown; result?: unknown; error?: { code: number; message: string } };

async function callOne(rpc: RpcServer, method: string, params?: unknown): Promise<Answer> {
  return JSON.parse((await rpc.handle(JSON.stringify({ jsonrpc: "2.0", id: 1, method, params })))!) as Answer;
}

/**
 * Every page of the paged `method` (`params` of the cursor, null for the first page), ten at the
 * most: the `key` of each item in order and how many pages; each page holds `limit` items at most.
 */
async function allPages(
  rpc: RpcServer,
  method: string,
  params: (cursor: string | null) => unknown,
  limit: number,
  key: (item: Record<string, unknown>) => string,
): Promise<{ seen: string[]; pages: number }> {
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page = (await callOne(rpc, method, params(cursor))).result as {
      items: Array<Record<string, unknown>>;
      next: string | null;
    };
    expect(page.items.length).toBeLessThanOrEqual(limit);
    seen.push(...page.items.map(key));
    cursor = page.next;
    pages++;
  } while (cursor !== null && pages < 10);
  return { seen, pages };
}

function batch(n: number, method: string, params?: unknown): string {
  return JSON.stringify(Array.from({ length: n }, (_, i) => ({ jsonrpc: "2.0", id: i, method, params })));
}

/** Counts event-loop turns (setImmediate callbacks) until stopped. */
function turnCounter(): { stop(): number } {
  let turns = 0;
  let on = true;
  const tick = () => {
    if (!on) return;
    turns++;
    setImmediate(tick);
  };
  setImmediate(tick);
  return {
    stop() {
      on = false;
      return turns;
    },
  };
}

describe("JSON-RPC batches", () => {
  it("a batch longer than the cap is one -32600 error; a batch at the cap is answered call by call", async () => {
    const { tm } = scripted(3);
    const rpc = rpcOver(tm, { maxBatch: 4 });
    const over = JSON.parse((await rpc.handle(batch(5, "tm.stats")))!) as Answer;
    expect(over.error?.code).toBe(-32600);
    expect(over.error?.message).toMatch(/batch of 5 calls; at most 4/);
    expect(rpc.refused.batch).toBe(1);
    const at = JSON.parse((await rpc.handle(batch(4, "tm.stats")))!) as Answer[];
    expect(at.map((a) => a.id)).toEqual([0, 1, 2, 3]);
    expect(at.every((a) => a.result !== undefined)).toBe(true);
  });

  it("the calls of a batch of tm.list run one after another, the event loop turning between pages", async () => {
    const { tm } = scripted(2000);
    const rpc = rpcOver(tm, { maxBatch: 16, maxPage: 100, maxResponseBytes: 64 * 1024 * 1024 });
    const turns = turnCounter();
    const out = JSON.parse((await rpc.handle(batch(16, "tm.list")))!) as Answer[];
    const n = turns.stop();
    expect(out).toHaveLength(16);
    for (const a of out) expect(a.result as unknown[]).toHaveLength(2000);
    // 16 calls of 20 pages each: a turn between pages and between calls.
    expect(n).toBeGreaterThanOrEqual(16 * 19);
  });

  it("lists asked for at once (two connections) are built one after the other", async () => {
    const { tm } = scripted(300);
    const asked: Array<string | undefined> = [];
    const pageOf = tm.auditPage.bind(tm);
    (tm as { auditPage: unknown }).auditPage = (after: string | undefined, limit: number) => {
      asked.push(after);
      return pageOf(after, limit);
    };
    const rpc = rpcOver(tm, { maxPage: 100 });
    await Promise.all([callOne(rpc, "tm.list"), callOne(rpc, "tm.list"), callOne(rpc, "tm.hash_stats")]);
    // Three walks of three pages, not interleaved.
    expect(asked).toEqual([
      undefined,
      "e1.2s",
      "e1.5k",
      undefined,
      "e1.2s",
      "e1.5k",
      undefined,
      "e1.2s",
      "e1.5k",
    ]);
  });

  it("tm.hash_stats counts page by page, the event loop turning between pages", async () => {
    const { tm } = scripted(1000);
    const rpc = rpcOver(tm, { maxPage: 100 });
    const turns = turnCounter();
    const a = await callOne(rpc, "tm.hash_stats");
    expect(turns.stop()).toBeGreaterThanOrEqual(9);
    expect(a.result).toEqual({
      entries: 1000,
      shards: [{ shard: 0, entries: 1000, ist: 1000, nist: 0, ict: 0, nict: 0 }],
    });
  });

  it("the answer is bounded: an unpaged tm.list past the cap is -32011, and in a batch the calls past it", async () => {
    const { tm } = scripted(2000);
    const cap = 200_000;
    const rpc = rpcOver(tm, { maxPage: 100, maxResponseBytes: cap });
    const one = await callOne(rpc, "tm.list");
    expect(one.error?.code).toBe(-32011);
    expect(one.error?.message).toMatch(/page it with \{limit, cursor\}/);
    const text = (await rpc.handle(batch(16, "tm.list", { limit: 100 })))!;
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(cap);
    const answers = JSON.parse(text) as Answer[];
    expect(answers).toHaveLength(16);
    const ok = answers.filter((a) => a.result !== undefined);
    const refused = answers.filter((a) => a.error?.code === -32011);
    expect(ok.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    expect(ok.length + refused.length).toBe(16);
    expect(rpc.refused.response).toBeGreaterThan(0);
  });
});

describe("the answer cap holds for every size of batch answer", () => {
  it("whatever room the first calls leave, the whole batch answer stays within the cap and every call is answered", async () => {
    const { tm } = scripted(2000);
    const page = (await rpcOver(tm, { maxPage: 100 }).handle(batch(1, "tm.list", { limit: 100 })))!;
    const one = Buffer.byteLength(page) - 2; // one call's answer, without the brackets
    // Caps from one answer to three, in steps that land at every offset from a boundary: before,
    // the -32011 answers of the calls after the budget ran out went past the cap.
    for (let cap = one + 2; cap < 3 * one + 400; cap += 37) {
      const rpc = rpcOver(tm, { maxPage: 100, maxResponseBytes: cap });
      const text = (await rpc.handle(batch(16, "tm.list", { limit: 100 })))!;
      expect(Buffer.byteLength(text), `cap ${cap}`).toBeLessThanOrEqual(cap);
      const answers = JSON.parse(text) as Answer[];
      expect(answers).toHaveLength(16);
      for (const a of answers) if (a.error) expect(a.error.code).toBe(-32011);
    }
  });

  it("a batch whose answers could not fit even as errors is one -32011", async () => {
    const { tm } = scripted(10);
    const rpc = rpcOver(tm, { maxResponseBytes: 300 });
    const answer = JSON.parse((await rpc.handle(batch(16, "tm.list", { limit: 1 })))!) as Answer;
    expect(answer.error?.code).toBe(-32011);
  });
});

describe("tm.list and ul.dump paging", () => {
  it("tm.list without params keeps its array; with {limit, cursor} one page and next (null on the last)", async () => {
    const { tm, entries } = scripted(250);
    const rpc = rpcOver(tm, { maxPage: 100 });
    const all = (await callOne(rpc, "tm.list")).result as Array<{ id: string; callid: string }>;
    expect(all.map((e) => e.id)).toEqual(entries.map((e) => e.id));
    expect(Object.keys(all[0]!).sort()).toEqual(
      ["age", "callid", "cseq", "holders", "id", "kind", "method", "shard", "state", "timers"].sort(),
    );
    const { seen, pages } = await allPages(
      rpc,
      "tm.list",
      (cursor) => (cursor === null ? { limit: 60 } : { limit: 60, cursor }),
      60,
      (e) => e.id as string,
    );
    expect(seen).toEqual(entries.map((e) => e.id));
    expect(pages).toBe(5);
    // Positional, as siptm rpc sends them: LIMIT [CURSOR]; a cursor alone pages by the default.
    const pos = (await callOne(rpc, "tm.list", ["2", entries[0]!.id])).result as {
      items: Array<{ id: string }>;
    };
    expect(pos.items.map((e) => e.id)).toEqual([entries[1]!.id, entries[2]!.id]);
    const byCursor = (await callOne(rpc, "tm.list", { cursor: entries[0]!.id })).result as {
      items: unknown[];
    };
    expect(byCursor.items).toHaveLength(100);
  });

  it("a limit past the maximum, a limit of 0 and a bad cursor are -32602", async () => {
    const { tm } = scripted(10);
    const rpc = rpcOver(tm, { maxPage: 100 });
    expect((await callOne(rpc, "tm.list", { limit: 101 })).error?.code).toBe(-32602);
    expect((await callOne(rpc, "tm.list", { limit: 0 })).error?.code).toBe(-32602);
    const bad = await callOne(rpc, "tm.list", { limit: 5, cursor: "not-an-id" });
    expect(bad.error?.code).toBe(-32602);
    expect(bad.error?.message).toMatch(/cursor/);
    expect((await callOne(rpc, "ul.dump", { limit: 101 })).error?.code).toBe(-32602);
    for (const params of [
      { limit: "abc" },
      { limit: 1.5 },
      { limit: -1 },
      { cursor: {} },
      { cursor: "x".repeat(3000) },
      { cursor: 5 },
      { bogus: 1 },
      [1, 2, 3],
    ])
      for (const method of ["tm.list", "ul.dump"]) {
        const a = await callOne(rpc, method, params);
        if (method === "ul.dump" && JSON.stringify(params) === '{"cursor":5}')
          expect(a.result).toEqual({ items: [], next: null });
        else expect(a.error?.code, `${method} ${JSON.stringify(params)}`).toBe(-32602);
      }
  });

  it("ul.dump pages AORs in order with next; without params the whole array as before", async () => {
    const registrar = new Registrar();
    for (let i = 0; i < 30; i++)
      expect(registrar.register(register(`u${String(i).padStart(2, "0")}`)).status).toBe(200);
    // Users %-decoded into the AOR (a space, a NUL): their AORs are cursors too.
    for (const user of ["sp%20ace", "nul%00l"]) expect(registrar.register(register(user)).status).toBe(200);
    const rpc = rpcOver(scripted(0).tm, { maxPage: 100 }, registrar);
    const all = (await callOne(rpc, "ul.dump")).result as Array<{ aor: string; contacts: unknown[] }>;
    expect(all).toHaveLength(32);
    expect(all.map((a) => a.aor)).toContain("sip:sp ace@example.com");
    type Page = { items: Array<{ aor: string }>; next: string | null };
    const p1 = (await callOne(rpc, "ul.dump", { limit: 1 })).result as Page;
    expect(p1.next).toBe("sip:nul\u0000l@example.com");
    const p2 = (await callOne(rpc, "ul.dump", { limit: 1, cursor: p1.next })).result as Page;
    expect(p2.items.map((a) => a.aor)).toEqual(["sip:sp ace@example.com"]);
    const p3 = (await callOne(rpc, "ul.dump", { limit: 1, cursor: p2.next })).result as Page;
    expect(p3.items.map((a) => a.aor)).toEqual(["sip:u00@example.com"]);
    expect(all[0]!.contacts).toHaveLength(1);
    const { seen, pages } = await allPages(
      rpc,
      "ul.dump",
      (cursor) => (cursor === null ? [7] : [7, cursor]),
      7,
      (a) => a.aor as string,
    );
    expect(seen).toEqual(all.map((a) => a.aor).sort());
    expect(pages).toBe(5);
  });

  it("ul.lookup of something that is not a SIP URI is -32602 with the reason", async () => {
    const rpc = rpcOver(scripted(0).tm);
    const a = await callOne(rpc, "ul.lookup", ["not-an-aor"]);
    expect(a.error?.code).toBe(-32602);
    expect(a.error?.message).toMatch(/not-an-aor.*not a SIP URI/);
    expect((await callOne(rpc, "ul.lookup", ["sip:nobody@example.com"])).result).toEqual([]);
  });
});

function register(user: string): SipRequest {
  const m = parseMessage(
    Buffer.from(
      "REGISTER sip:example.com SIP/2.0\r\n" +
        `Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKreg${user}\r\n` +
        "Max-Forwards: 70\r\n" +
        `From: <sip:${user}@example.com>;tag=r1\r\n` +
        `To: <sip:${user}@example.com>\r\n` +
        `Call-ID: reg-${user}@127.0.0.9\r\n` +
        "CSeq: 1 REGISTER\r\n" +
        `Contact: <sip:${user}@127.0.0.9:5062>;expires=600\r\n` +
        "Content-Length: 0\r\n\r\n",
      "latin1",
    ),
  );
  if (!m.isRequest) throw new Error("request expected");
  return m;
}

const BASE = "From: <sip:a@127.0.0.1>\r\nTo: <sip:b@127.0.0.1>";

describe("caller-supplied header fields (RFC 3261 §7.3.1, §7.3.3, §20, §25.1)", () => {
  const uacRefused: Array<[string, RegExp]> = [
    ["Via: SIP/2.0/UDP 192.0.2.66;branch=z9hG4bKevil", /Via is written by the transaction layer/],
    ["v: SIP/2.0/UDP 192.0.2.66;branch=z9hG4bKevil", /Via is written by the transaction layer/],
    ["Content-Length: 0", /Content-Length is written by the transaction layer/],
    ["l: 12", /Content-Length is written by the transaction layer/],
    ["Call-ID: one\r\nCall-ID: two", /Call-ID given twice/],
    ["Call-ID: one\r\ni: two", /Call-ID given twice/],
    ["From: <sip:evil@192.0.2.66>", /From given twice/],
    ["f: <sip:evil@192.0.2.66>", /From given twice/],
    ["t: <sip:evil@192.0.2.66>", /To given twice/],
    ["CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS", /CSeq given twice/],
    ["Max-Forwards: 1\r\nMax-Forwards: 70", /Max-Forwards given twice/],
    ["Content-Type: a/b\r\nc: c/d", /Content-Type given twice/],
    ["Expires: 1\r\nExpires: 2", /Expires given twice/],
    ["X-Evil: a\u0000b", /control characters \(0x00/],
    ["X-Evil: a\u0007b", /control characters \(0x07/],
    ["X-Evil: a\u007fb", /control characters \(0x7f/],
    ["X-Evil: a\rInjected: yes", /control characters \(0x0d/],
    ["Subject: \u0000", /control characters/],
  ];
  for (const [extra, reason] of uacRefused)
    it(`tm.t_uac_start refuses ${JSON.stringify(extra)} with -32602 and sends nothing`, async () => {
      const { tm, rec } = scripted(0);
      const rpc = rpcOver(tm);
      const a = await callOne(rpc, "tm.t_uac_start", [
        "OPTIONS",
        "sip:b@127.0.0.1:5070",
        ".",
        ".",
        `${BASE}\r\n${extra}`,
      ]);
      expect(a.error?.code).toBe(-32602);
      expect(a.error?.message).toMatch(reason);
      expect(rec.requests).toHaveLength(0);
    });

  it("tm.t_uac_start passes list headers given several times, HTAB, and one of each single header", async () => {
    const { tm, rec } = scripted(0);
    const rpc = rpcOver(tm);
    const headers = `${BASE}\r\ni: my-call\r\nCSeq: 7 OPTIONS\r\nRoute: <sip:p1;lr>\r\nRoute: <sip:p2;lr>\r\nX-A: 1\r\nX-A: 2\r\nSubject: a\tb\r\nExpires: 5`;
    const a = await callOne(rpc, "tm.t_uac_start", ["OPTIONS", "sip:b@127.0.0.1:5070", ".", ".", headers]);
    expect(a.result).toEqual({ callid: "my-call", cseq: 7, tid: "t.1" });
    expect(rec.requests[0]!.headers).toEqual([
      ["Route", "<sip:p1;lr>"],
      ["Route", "<sip:p2;lr>"],
      ["X-A", "1"],
      ["X-A", "2"],
      ["Subject", "a\tb"],
      ["Expires", "5"],
    ]);
  });

  const replyRefused: Array<[string, RegExp]> = [
    ["Via: SIP/2.0/UDP 192.0.2.66;branch=z9hG4bKevil", /Via is written/],
    ["Content-Length: 0", /Content-Length is written/],
    ["l: 0", /Content-Length is written/],
    ["From: <sip:evil@192.0.2.66>", /From is written/],
    ["i: other-call", /Call-ID is written/],
    ["CSeq: 1 INVITE", /CSeq is written/],
    ["Contact: <sip:a@127.0.0.1>\r\nServer: a\r\nServer: b", /Server given twice/],
    ["Content-Type: a/b\r\nc: c/d", /Content-Type given twice/],
    ["X-Evil: a\u0000b", /control characters/],
  ];
  for (const [headers, reason] of replyRefused)
    it(`tm.reply and tm.reply_callid refuse ${JSON.stringify(headers)} with -32602 and answer nothing`, async () => {
      const { tm, rec } = scripted(1);
      const rpc = rpcOver(tm);
      const a = await callOne(rpc, "tm.reply", [200, "OK", "e1.1", ".", headers]);
      expect(a.error?.code).toBe(-32602);
      expect(a.error?.message).toMatch(reason);
      const b = await callOne(rpc, "tm.reply_callid", [200, "OK", "call-0", 1, ".", headers]);
      expect(b.error?.code).toBe(-32602);
      expect(rec.replies).toHaveLength(0);
    });

  it("a reason phrase or a To tag with a control character is refused by the builder (RangeError)", () => {
    const req = register("x");
    expect(() => buildResponse(req, 200, { reason: "O\u0000K" })).toThrow(RangeError);
    expect(() => buildResponse(req, 200, { toTag: "a\u0001" })).toThrow(RangeError);
  });
});

describe("tm.t_uac_start named parameters", () => {
  it("nexthop and socket may be left out, as '.' positionally", async () => {
    const { tm, rec } = scripted(0);
    const rpc = rpcOver(tm);
    const a = await callOne(rpc, "tm.t_uac_start", {
      method: "OPTIONS",
      ruri: "sip:b@127.0.0.1:5070",
      headers: BASE,
    });
    expect(a.error).toBeUndefined();
    expect(rec.requests).toHaveLength(1);
    const missing = await callOne(rpc, "tm.t_uac_start", { method: "OPTIONS", ruri: "sip:b@127.0.0.1:5070" });
    expect(missing.error?.code).toBe(-32602);
    expect(missing.error?.message).toMatch(/missing parameter "headers"/);
    const positional = await callOne(rpc, "tm.t_uac_start", ["OPTIONS", "sip:b@127.0.0.1:5070"]);
    expect(positional.error?.code).toBe(-32602);
    expect(positional.error?.message).toMatch(/missing parameter "nexthop"/);
  });
});
