/**
 * Complete transactions per second through a whole stack in one process —
 * parse, match, state, serialise, on both the client and the server side —
 * siptm beside the npm package `sip` doing the same work, in the same run,
 * alternating rounds so the ratio holds on a noisy machine.
 *
 * Flows: non-INVITE (OPTIONS → 200) and INVITE (INVITE → 180 → 486 → ACK,
 * the ACK built by the client transaction, §17.1.1.3). Links:
 * - "memory": an in-process link (one setImmediate flush per batch), no socket;
 * - "udp": real UDP sockets on 127.0.0.1.
 * Each system runs `count` transactions with `window` in flight.
 *
 *   node dist/transactions.js [--quick]
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createUdpTransport,
  type Destination,
  Engine,
  type SendErrorTarget,
  type Source,
  type Transport,
  type TransportSink,
} from "@siptm/core";
import { environment, packageVersion } from "./lib/env.js";

const require = createRequire(import.meta.url);
// biome-ignore lint/suspicious/noExplicitAny: the `sip` package is untyped; every value from it is one of these
type SipAny = any;
const sip: SipAny = require("sip");

const quick = process.argv.includes("--quick");
const COUNT = quick ? 2_000 : 20_000;
const WINDOW = 200;
const ROUNDS = quick ? 1 : 3;

type Flow = "OPTIONS" | "INVITE";
interface Runner {
  name: string;
  link: "memory" | "udp";
  /** Run `count` transactions of `flow` with `window` in flight; resolves when all completed. */
  run(flow: Flow, count: number, window: number): Promise<void>;
  close(): Promise<void>;
}

// --- an in-process link for siptm: a Transport whose sends are delivered in batches on setImmediate ---
class DirectLink implements Transport {
  readonly protocol = "UDP" as const;
  readonly reliable = false;
  peer!: DirectLink;
  sink!: TransportSink;
  private inbox: Buffer[] = [];
  private scheduled = false;
  constructor(
    readonly localAddress: string,
    readonly localPort: number,
  ) {}
  send(data: Buffer, _dest: Destination, _onError?: SendErrorTarget): void {
    const p = this.peer;
    p.inbox.push(data);
    if (!p.scheduled) {
      p.scheduled = true;
      setImmediate(() => p.drain());
    }
  }
  private drain(): void {
    this.scheduled = false;
    const batch = this.inbox;
    this.inbox = [];
    const source: Source = {
      protocol: "UDP",
      address: this.peer.localAddress,
      port: this.peer.localPort,
      localAddress: this.localAddress,
      localPort: this.localPort,
    };
    for (const d of batch) this.sink.onMessage(d, source);
  }
  async close(): Promise<void> {}
}

function siptmPair(): { uac: Engine; uas: Engine; uasHop: Destination } {
  const uas = new Engine({
    onRequest: (tx) => {
      if (tx.method === "INVITE") {
        tx.reply(180);
        tx.reply(486);
      } else tx.reply(200);
    },
  });
  const uac = new Engine();
  return { uac, uas, uasHop: { protocol: "UDP", address: "127.0.0.1", port: 5072 } };
}

function siptmRunner(link: "memory" | "udp"): Runner {
  const { uac, uas, uasHop } = siptmPair();
  let ready: Promise<void>;
  let hop = uasHop;
  if (link === "memory") {
    const a = new DirectLink("127.0.0.1", 5071);
    const b = new DirectLink("127.0.0.1", 5072);
    a.peer = b;
    b.peer = a;
    a.sink = uac;
    b.sink = uas;
    uac.addTransport(a);
    uas.addTransport(b);
    ready = Promise.resolve();
  } else {
    ready = (async () => {
      uas.addTransport(await createUdpTransport({ address: "127.0.0.1", port: 0, sink: uas }));
      uac.addTransport(await createUdpTransport({ address: "127.0.0.1", port: 0, sink: uac }));
      hop = { protocol: "UDP", address: "127.0.0.1", port: uas.transportFor("UDP")!.localPort };
    })();
  }
  return {
    name: "siptm",
    link,
    async run(flow, count, window) {
      await ready;
      await new Promise<void>((resolve) => {
        let started = 0;
        let done = 0;
        const start = () => {
          started++;
          uac.request({
            method: flow,
            uri: "sip:bob@127.0.0.1",
            from: "<sip:alice@127.0.0.1>",
            to: "<sip:bob@127.0.0.1>",
            nextHop: hop,
            onFinal: () => {
              done++;
              if (done === count) resolve();
              else if (started < count) start();
            },
          });
        };
        for (let i = 0; i < Math.min(window, count); i++) start();
      });
    },
    async close() {
      await uac.close();
      await uas.close();
    },
  };
}

// --- the npm `sip` package, its own transaction layer, over the same kinds of link ---
function sipRunner(link: "memory" | "udp"): Runner {
  let uacSend: (m: SipAny, cb: (rs: SipAny) => void) => void;
  let closeAll: () => void;
  const onUasRequest = (rq: SipAny, reply: (rs: SipAny) => void) => {
    if (rq.method === "INVITE") {
      reply(sip.makeResponse(rq, 180, "Ringing"));
      reply(sip.makeResponse(rq, 486, "Busy Here"));
    } else if (rq.method !== "ACK") reply(sip.makeResponse(rq, 200, "OK"));
  };
  if (link === "memory") {
    // The same glue sip.create() puts around its UDP transport, with an in-process link instead of a socket:
    // stringify → bytes → (setImmediate batch) → parse → transaction lookup.
    const mk = (
      port: number,
      deliverTo: () => (data: Buffer) => void,
      onRequest?: (rq: SipAny, layer: SipAny) => void,
    ) => {
      let inbox: Buffer[] = [];
      let scheduled = false;
      const conn = {
        protocol: "UDP",
        send(m: SipAny) {
          if (m.method) {
            m.headers.via[0].host = "127.0.0.1";
            m.headers.via[0].port = port;
            m.headers.via[0].protocol = "UDP";
            m.headers.via[0].params.rport = null;
          }
          const s = sip.stringify(m);
          deliverTo()(Buffer.from(s, "binary"));
        },
        release() {},
      };
      const layer = sip.makeTransactionLayer({}, () => conn);
      const receive = (data: Buffer) => {
        const m = sip.parse(data);
        if (!m) return;
        if (m.method) {
          m.headers.via[0].params.received = "127.0.0.1";
          if (Object.hasOwn(m.headers.via[0].params, "rport")) m.headers.via[0].params.rport = 5070;
        }
        const t = m.method ? layer.getServer(m) : layer.getClient(m);
        if (!t) {
          if (m.method && m.method !== "ACK") {
            layer.createServerTransaction(m, conn);
            onRequest?.(m, layer);
          }
        } else t.message?.(m);
      };
      const deliver = (data: Buffer) => {
        inbox.push(data);
        if (!scheduled) {
          scheduled = true;
          setImmediate(() => {
            scheduled = false;
            const batch = inbox;
            inbox = [];
            for (const d of batch) receive(d);
          });
        }
      };
      return { conn, layer, deliver };
    };
    let uasSide: SipAny;
    const uacSide = mk(5071, () => uasSide.deliver);
    uasSide = mk(
      5072,
      () => uacSide.deliver,
      (rq: SipAny, layer: SipAny) => onUasRequest(rq, (rs: SipAny) => layer.getServer(rs)?.send(rs)),
    );
    uacSend = (m, cb) => {
      m.headers.via = [{ params: {} }];
      uacSide.layer.createClientTransaction(uacSide.conn, m, cb);
    };
    closeAll = () => {
      uacSide.layer.destroy();
      uasSide.layer.destroy();
    };
  } else {
    const uas: SipAny = sip.create(
      { address: "127.0.0.1", port: 5082, tcp: false, publicAddress: "127.0.0.1" },
      (rq: SipAny) => onUasRequest(rq, (rs: SipAny) => uas.send(rs)),
    );
    // Its own hostname must differ from the target's, or `sip` takes the target for one of its flow URIs.
    const uac: SipAny = sip.create(
      { address: "127.0.0.1", port: 5081, tcp: false, publicAddress: "uac.invalid" },
      () => {},
    );
    uacSend = (m, cb) => uac.send(m, cb);
    closeAll = () => {
      uac.destroy();
      uas.destroy();
    };
  }
  let n = 0;
  return {
    name: "sip (npm)",
    link,
    async run(flow, count, window) {
      await new Promise<void>((resolve) => {
        let started = 0;
        let done = 0;
        const start = () => {
          started++;
          const id = ++n;
          uacSend(
            {
              method: flow,
              uri: `sip:bob@127.0.0.1:${link === "udp" ? 5082 : 5072}`,
              headers: {
                to: { uri: "sip:bob@127.0.0.1" },
                from: { uri: "sip:alice@127.0.0.1", params: { tag: `t${id}` } },
                "call-id": `bench-${id}-${process.pid}`,
                cseq: { method: flow, seq: 1 },
                "max-forwards": 70,
              },
            },
            (rs: SipAny) => {
              if (rs.status >= 200) {
                done++;
                if (done === count) resolve();
                else if (started < count) start();
              }
            },
          );
        };
        for (let i = 0; i < Math.min(window, count); i++) start();
      });
    },
    async close() {
      closeAll();
    },
  };
}

interface Measurement {
  system: string;
  link: string;
  flow: Flow;
  txPerSec: number;
  cpuUsPerTx: number;
}

async function measure(r: Runner, flow: Flow): Promise<Measurement> {
  await r.run(flow, Math.min(1000, COUNT), WINDOW); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await r.run(flow, COUNT, WINDOW);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return {
    system: r.name,
    link: r.link,
    flow,
    txPerSec: (COUNT / ms) * 1000,
    cpuUsPerTx: (cpu.user + cpu.system) / COUNT,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const results: Measurement[] = [];
  for (const link of ["memory", "udp"] as const) {
    for (const flow of ["OPTIONS", "INVITE"] as const) {
      const byName = new Map<string, Measurement[]>();
      for (let round = 0; round < ROUNDS; round++) {
        for (const make of [siptmRunner, sipRunner]) {
          const r = make(link);
          process.stderr.write(`\r  ${link} ${flow} round ${round + 1}/${ROUNDS}: ${r.name}…          `);
          const m = await measure(r, flow);
          await r.close();
          const list = byName.get(m.system) ?? [];
          list.push(m);
          byName.set(m.system, list);
        }
      }
      for (const [system, ms] of byName)
        results.push({
          system,
          link,
          flow,
          txPerSec: median(ms.map((m) => m.txPerSec)),
          cpuUsPerTx: median(ms.map((m) => m.cpuUsPerTx)),
        });
    }
  }
  process.stderr.write(`\r${" ".repeat(60)}\r`);
  const lines = [
    "| link | flow | system | transactions/s | CPU µs per transaction (both sides) | vs sip |",
    "| --- | --- | --- | ---: | ---: | --- |",
  ];
  for (const m of results) {
    const base = results.find((x) => x.system !== "siptm" && x.link === m.link && x.flow === m.flow)!;
    const ratio =
      m.system === "siptm" ? `${(m.txPerSec / base.txPerSec).toFixed(2)}× throughput` : "(baseline)";
    lines.push(
      `| ${m.link} | ${m.flow === "INVITE" ? "INVITE→180→486→ACK" : "OPTIONS→200"} | ${m.system} | ${Math.round(m.txPerSec).toLocaleString("en")} | ${m.cpuUsPerTx.toFixed(1)} | ${ratio} |`,
    );
  }
  const here = dirname(fileURLToPath(import.meta.url));
  const env = environment(join(here, "..", ".."), {
    "@siptm/core": packageVersion(new URL("../../packages/core/package.json", import.meta.url)),
    sip: packageVersion(new URL("../node_modules/sip/package.json", import.meta.url)),
  });
  const md = [
    "# siptm transaction benchmark",
    "",
    `- date: ${env.date}, commit ${env.commit ?? "?"}, Node ${env.node}, ${env.cpu} × ${env.cpus}`,
    `- ${COUNT} transactions per measurement, ${WINDOW} in flight, median of ${ROUNDS} alternating round(s); client and server in one process`,
    "",
    ...lines,
    "",
  ].join("\n");
  console.log(md);
  const out = join(here, "..", "results");
  mkdirSync(out, { recursive: true });
  const suffix = quick ? ".tmp" : "";
  writeFileSync(join(out, `transactions-latest.md${suffix}`), md);
  writeFileSync(
    join(out, `transactions-${env.date.slice(0, 10)}.json${suffix}`),
    JSON.stringify({ env, count: COUNT, window: WINDOW, rounds: ROUNDS, results }, null, 2),
  );
}

await main();
