/**
 * Micro benchmark: the coordinator's Call-ID hash, the unkeyed FNV-1a it used
 * before beside the keyed SipHash-2-4 it uses now (@siptm/workers hash.ts),
 * over the same Call-IDs in the same run. Each timed call hashes a ring of
 * Call-IDs in place in their datagram-like buffers, as the coordinator does.
 *
 *   node dist/hash.js            ~1.5 s per case and round (3 rounds, ~30 s)
 *   node dist/hash.js --quick    ~0.3 s per case and round
 *   node dist/hash.js --time=500 custom time per case, ms
 */
import { newCallId } from "@siptm/core";
import { hashBytes, hashKey } from "@siptm/workers";
import { type BenchCase, runSuite, sink, sinkChecksum } from "./lib/suite.js";

/** The shard hash before: FNV-1a 32-bit over bytes [start, end) (kept here as the baseline). */
function fnv1a(bytes: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const RING = 256;
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const timeArg = args.find((a) => a.startsWith("--time="));
const time = timeArg ? Number(timeArg.slice(7)) : quick ? 300 : 1500;

const key = hashKey(Uint8Array.from({ length: 16 }, (_, i) => i * 7 + 1));

interface Shape {
  name: string;
  make: () => string;
}
const SHAPES: Shape[] = [
  // What siptm itself writes (newCallId): random hex + "@host".
  { name: "siptm Call-ID", make: () => newCallId("192.0.2.10") },
  // Short and long ends of what UAs send (RFC 3261 §8.1.1.4 leaves the form open).
  { name: "16 bytes", make: () => Math.random().toString(36).slice(2, 10).padEnd(16, "x") },
  {
    name: "64 bytes",
    make: () =>
      `${Math.random().toString(16).slice(2).padEnd(40, "0")}@pbx-frontend.example.com`.slice(0, 64),
  },
];

function cases(): { cases: BenchCase[]; sizes: Map<string, number> } {
  const out: BenchCase[] = [];
  const sizes = new Map<string, number>();
  for (const shape of SHAPES) {
    // Each Call-ID inside a buffer with bytes around it, hashed as a [start, end) range.
    const bufs: Buffer[] = [];
    const starts: number[] = [];
    const ends: number[] = [];
    for (let i = 0; i < RING; i++) {
      const id = shape.make();
      const b = Buffer.from(`Call-ID: ${id}\r\nCSeq: 1 INVITE\r\n`, "latin1");
      bufs.push(b);
      starts.push(9);
      ends.push(9 + id.length);
    }
    sizes.set(shape.name, ends[0]! - starts[0]!);
    const common = { group: shape.name, bytes: ends[0]! - starts[0]!, batch: RING };
    // Two loops written out: each measured loop calls its hash directly, not through a parameter.
    out.push(
      {
        ...common,
        operation: "FNV-1a 32 (before, unkeyed)",
        impl: "before",
        run: () => {
          let acc = 0;
          for (let i = 0; i < RING; i++) acc ^= fnv1a(bufs[i]!, starts[i]!, ends[i]!);
          sink(acc);
        },
      },
      {
        ...common,
        operation: "SipHash-2-4 (now, keyed)",
        impl: "now",
        run: () => {
          let acc = 0;
          for (let i = 0; i < RING; i++) acc ^= hashBytes(key, bufs[i]!, starts[i]!, ends[i]!);
          sink(acc);
        },
      },
    );
  }
  return { cases: out, sizes };
}

const { cases: all, sizes } = cases();
// Alternating rounds, the median of each case: on a shared machine one round can be hit by noise.
const ROUNDS = 3;
const runs = Array.from({ length: ROUNDS }, () =>
  runSuite(all, { time, warmupTime: Math.min(300, time / 3), preWarmCalls: 200 }),
);
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const nsOf = (group: string, impl: string) =>
  median(runs.map((r) => 1e9 / r.find((x) => x.group === group && x.impl === impl)!.opsPerSec));
console.log(
  `Call-ID hash, ns per Call-ID (median of ${ROUNDS} alternating rounds; node ${process.version}; ${time} ms per case)\n`,
);
console.log(
  `${"Call-ID".padEnd(16)}${"bytes".padStart(6)}${"FNV-1a (before)".padStart(18)}${"SipHash-2-4".padStart(14)}${"ratio".padStart(8)}`,
);
for (const shape of SHAPES) {
  const before = nsOf(shape.name, "before");
  const now = nsOf(shape.name, "now");
  console.log(
    `${shape.name.padEnd(16)}${String(sizes.get(shape.name)).padStart(6)}${before.toFixed(1).padStart(18)}${now.toFixed(1).padStart(14)}${(now / before).toFixed(2).padStart(7)}×`,
  );
}
console.log(`\n(checksum ${sinkChecksum()})`);
