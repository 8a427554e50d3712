/**
 * The cost of crossing threads alone, without SIP work: the sharded engine's
 * data plane (batch.ts: many records in one ArrayBuffer, moved with the
 * transfer list) beside one postMessage per message with a structured-cloned
 * object, in the same run. Part of the workers benchmark (workers.ts runs it
 * first); also on its own:
 *
 *   node dist/crossing.js [--quick]
 *
 * Two ways of moving a batch: as a transferred ArrayBuffer (a new one per
 * batch: what the sharded engine does), and through a ring in shared memory
 * where the port carries only a number (lib/ring.ts: measured, not used by
 * the engine — its header says why).
 *
 * A message is a 400-byte SIP request with its source address and port. The
 * main thread plays the coordinator: it writes the records, posts the batch,
 * keeps at most two batches in flight (as the coordinator does) and reads the
 * echo worker's answers. The echo worker plays a shard: it reads each record,
 * copies the bytes out (a shard keeps them with the transaction), and answers
 * with one send record per message (a response) in its own batch. Per
 * message: the main thread's busy time (event-loop utilization, the
 * coordinator's share) and the CPU of the whole process (both threads).
 */
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { BatchReader, BatchWriter, REC_IN, REC_SEND } from "@siptm/workers/batch";
import { pipeTable } from "./lib/report.js";
import { newRing, RingReader, RingWriter } from "./lib/ring.js";

const SELF = fileURLToPath(import.meta.url);

const MESSAGE = Buffer.from(
  "OPTIONS sip:bob@127.0.0.1:5060 SIP/2.0\r\n" +
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-524287-1---1b6a2c6e55f1e4a3;rport\r\n" +
    "Max-Forwards: 70\r\n" +
    "From: <sip:alice@127.0.0.1:5061>;tag=8f3a9c\r\n" +
    "To: <sip:bob@127.0.0.1:5060>\r\n" +
    "Call-ID: 7d1e0c2b9a4f4e6b8c1d2e3f4a5b6c7d@127.0.0.1\r\n" +
    "CSeq: 1 OPTIONS\r\n" +
    "Contact: <sip:alice@127.0.0.1:5061>\r\n" +
    "Accept: application/sdp\r\n" +
    "User-Agent: siptm-bench\r\n" +
    "Content-Length: 0\r\n\r\n",
  "latin1",
);

interface PerMessage {
  data: Uint8Array;
  address: string;
  port: number;
}

// --- the echo worker (plays a shard) -------------------------------------------------------

interface RingsCommand {
  cmd: "rings";
  /** Driver → echo, echo → driver. */
  toEcho: SharedArrayBuffer;
  fromEcho: SharedArrayBuffer;
}

function echo(): void {
  const port = parentPort!;
  const out = new BatchWriter();
  let ringIn: RingReader | undefined;
  let ringOut: RingWriter | undefined;
  const answer = (r: BatchReader, viaRing: boolean) => {
    while (r.next()) {
      const data = Buffer.allocUnsafe(r.data.length);
      data.set(r.data);
      out.add(REC_SEND, r.b, r.w, r.n0, 0, r.s0, "", data);
    }
    if (viaRing) ringOut!.post(out, r.count, 0, 1);
    else {
      const ab = out.finish(r.count, 0, 1);
      port.postMessage(ab, [ab]);
    }
  };
  port.on("message", (m: number | ArrayBuffer | PerMessage | RingsCommand | { cmd: "close" }) => {
    if (typeof m === "number") {
      answer(ringIn!.open(m), true);
      ringIn!.release();
    } else if (m instanceof ArrayBuffer) {
      answer(new BatchReader(m), false);
    } else if ("cmd" in m) {
      if (m.cmd === "rings") {
        ringIn = new RingReader(m.toEcho);
        ringOut = new RingWriter(m.fromEcho, port);
      } else port.close();
    } else {
      // One structured clone each way per message.
      const data = Buffer.allocUnsafe(m.data.length);
      data.set(m.data);
      port.postMessage({ data, address: m.address, port: m.port } satisfies PerMessage);
    }
  });
}

// --- the driver (plays the coordinator) ----------------------------------------------------

export interface CrossingRow {
  mode: string;
  /** Messages per second, both ways (each message crosses there and its answer back). */
  perSec: number;
  /** Main thread busy per message, µs (a message and its answer). */
  mainUs: number;
  /** Process CPU (both threads) per message, µs. */
  cpuUs: number;
}

function startEcho(): Promise<Worker> {
  const w = new Worker(SELF, { workerData: { role: "echo" } });
  return new Promise((r, j) => {
    w.once("online", () => r(w));
    w.once("error", j);
  });
}

/** Batches both ways: transferred ArrayBuffers, or through a pair of rings with the port as doorbell. */
async function runBatched(w: Worker, total: number, batch: number, ring: boolean): Promise<CrossingRow> {
  const writer = new BatchWriter();
  let toEcho: RingWriter | undefined;
  let fromEcho: RingReader | undefined;
  if (ring) {
    const rings: RingsCommand = { cmd: "rings", toEcho: newRing(), fromEcho: newRing() };
    w.postMessage(rings);
    toEcho = new RingWriter(rings.toEcho, w);
    fromEcho = new RingReader(rings.fromEcho);
  }
  let sent = 0;
  let answered = 0;
  let inFlight = 0;
  const fill = () => {
    while (inFlight < 2 && sent < total) {
      const n = Math.min(batch, total - sent);
      for (let i = 0; i < n; i++) writer.add(REC_IN, 0, 5061, 0, 0, "127.0.0.1", "", MESSAGE);
      if (toEcho) toEcho.post(writer, 0, 0, 0);
      else {
        const ab = writer.finish(0, 0);
        w.postMessage(ab, [ab]);
      }
      sent += n;
      inFlight++;
    }
  };
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((done) => {
    const onMessage = (m: ArrayBuffer | number) => {
      const r = typeof m === "number" ? fromEcho!.open(m) : new BatchReader(m);
      let bytes = 0;
      while (r.next()) bytes += r.data.length + r.s0.length;
      if (bytes === 0) throw new Error("empty answer");
      answered += r.ack;
      if (typeof m === "number") fromEcho!.release();
      inFlight--;
      if (answered >= total) {
        w.off("message", onMessage);
        done();
      } else fill();
    };
    w.on("message", onMessage);
    fill();
  });
  return row(`${ring ? "ring" : "transferred"} batches of ${batch}`, total, t0, elu0, cpu0);
}

async function runPerMessage(w: Worker, total: number, window: number): Promise<CrossingRow> {
  let sent = 0;
  let answered = 0;
  const post = () => {
    w.postMessage({ data: MESSAGE, address: "127.0.0.1", port: 5061 } satisfies PerMessage);
    sent++;
  };
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((done) => {
    const onMessage = (m: PerMessage) => {
      if (m.data.length === 0) throw new Error("empty answer");
      answered++;
      if (answered >= total) {
        w.off("message", onMessage);
        done();
      } else if (sent < total) post();
    };
    w.on("message", onMessage);
    while (sent < Math.min(window, total)) post();
  });
  return row("one postMessage per message", total, t0, elu0, cpu0);
}

function row(
  mode: string,
  total: number,
  t0: number,
  elu0: ReturnType<typeof performance.eventLoopUtilization>,
  cpu0: NodeJS.CpuUsage,
): CrossingRow {
  const ms = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  return {
    mode,
    perSec: (total / ms) * 1000,
    mainUs: (elu.active * 1000) / total,
    cpuUs: (cpu.user + cpu.system) / total,
  };
}

/** Median of `rounds` by main-thread cost. */
async function median(rounds: number, f: () => Promise<CrossingRow>): Promise<CrossingRow> {
  const rows: CrossingRow[] = [];
  for (let i = 0; i < rounds; i++) rows.push(await f());
  rows.sort((a, b) => a.mainUs - b.mainUs);
  return rows[Math.floor(rows.length / 2)]!;
}

export async function crossingBenchmark(quick: boolean): Promise<CrossingRow[]> {
  const w = await startEcho();
  const total = quick ? 20_000 : 200_000;
  const rounds = quick ? 1 : 3;
  try {
    // Warm-up: JIT on both sides.
    await runBatched(w, 20_000, 64, false);
    await runBatched(w, 20_000, 64, true);
    await runPerMessage(w, 5_000, 64);
    const rows: CrossingRow[] = [];
    rows.push(await median(rounds, () => runPerMessage(w, total / 4, 64)));
    for (const ring of [false, true])
      for (const b of [1, 8, 32, 64, 256])
        rows.push(await median(rounds, () => runBatched(w, b === 1 ? total / 4 : total, b, ring)));
    return rows;
  } finally {
    w.postMessage({ cmd: "close" });
    await new Promise((r) => w.once("exit", r));
  }
}

export function crossingTable(rows: readonly CrossingRow[]): string {
  const head = ["data plane", "messages/s", "main thread µs/msg", "CPU µs/msg (both threads)"];
  const body = rows.map((r) => [r.mode, r.perSec.toFixed(0), r.mainUs.toFixed(2), r.cpuUs.toFixed(2)]);
  return pipeTable(head, body);
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === "echo") {
  echo();
} else if (isMainThread && process.argv[1] && resolve(process.argv[1]) === SELF) {
  const quick = process.argv.includes("--quick");
  crossingBenchmark(quick).then(
    (rows) => console.log(crossingTable(rows)),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
