// The benchmark's data plane ring (bench/src/lib/ring.ts): batches through shared memory with the port
// as doorbell, falling back to transferred buffers when the reader is behind.

import { BatchReader, BatchWriter, REC_IN } from "@siptm/workers/batch";
import { describe, expect, it } from "vitest";
import { newRing, RingReader, RingWriter } from "../../bench/src/lib/ring.js";

/** A port that keeps what is posted, in order. */
function fakePort() {
  const posted: unknown[] = [];
  return { posted, postMessage: (m: unknown) => void posted.push(m) };
}

/** A batch of `n` records whose bytes tell which batch and record they are. */
function fill(w: BatchWriter, batch: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const data = Buffer.alloc(1 + ((batch * 7 + i * 13) % 300), `${batch}.${i};`);
    w.add(REC_IN, i % 3, batch & 0xffff, batch, i, `10.0.${batch % 256}.${i}`, i % 2 ? "x" : "", data);
  }
}

function check(r: BatchReader, batch: number, n: number): void {
  expect(r.count).toBe(n);
  expect(r.ack).toBe(batch);
  for (let i = 0; i < n; i++) {
    expect(r.next()).toBe(true);
    expect([r.type, r.b, r.w, r.n0, r.n1, r.s0, r.s1]).toEqual([
      REC_IN,
      i % 3,
      batch & 0xffff,
      batch,
      i,
      `10.0.${batch % 256}.${i}`,
      i % 2 ? "x" : "",
    ]);
    expect(r.data.equals(Buffer.alloc(1 + ((batch * 7 + i * 13) % 300), `${batch}.${i};`))).toBe(true);
  }
  expect(r.next()).toBe(false);
}

/** Read what was posted, in order, as the shard and the coordinator do. */
function drain(posted: unknown[], reader: RingReader, each: (r: BatchReader) => void): void {
  for (const m of posted.splice(0)) {
    if (typeof m === "number") {
      each(reader.open(m));
      reader.release();
    } else if (m instanceof ArrayBuffer) each(new BatchReader(m));
    else throw new Error("unexpected message");
  }
}

/**
 * `batches` batches (batch b holding `per(b)` records) through a ring of `size` bytes whose
 * counters start at `start`, each read back and checked byte for byte as soon as it is posted.
 */
function throughRing(size: number, batches: number, per: (b: number) => number, start?: number) {
  const sab = newRing(size);
  const port = fakePort();
  const w = start === undefined ? new RingWriter(sab, port) : new RingWriter(sab, port, start);
  const reader = start === undefined ? new RingReader(sab) : new RingReader(sab, start);
  const bw = new BatchWriter();
  let next = 0;
  for (let b = 0; b < batches; b++) {
    fill(bw, b, per(b));
    w.post(bw, b, 0, 1);
    drain(port.posted, reader, (r) => {
      check(r, next, per(next));
      next++;
    });
  }
  expect(next).toBe(batches);
  return { w, port };
}

describe("ring", () => {
  it("carries batches of many sizes around a small ring, wrapping many times, byte for byte", () => {
    const { w } = throughRing(4096, 400, (b) => 1 + (b % 5));
    // Everything went through the ring: 400 batches of up to ~1.5 KB wrapped a 4 KiB ring many times.
    expect(w.overflows).toBe(0);
  });

  it("keeps counters right where they wrap past 2^32", () => {
    const { w, port } = throughRing(1024, 60, () => 1, 2 ** 32 - 3000);
    expect(w.overflows).toBe(0);
    expect(port.posted).toEqual([]);
  });

  it("a reader behind makes the writer fall back to transferred buffers, in order, and the ring is used again once released", () => {
    const sab = newRing(2048);
    const port = fakePort();
    const w = new RingWriter(sab, port);
    const reader = new RingReader(sab);
    const bw = new BatchWriter();
    for (let b = 0; b < 12; b++) {
      fill(bw, b, 3);
      w.post(bw, b, 0, 1);
    }
    // Nothing released yet: the first batches fit in the ring, the rest went as buffers.
    const kinds = port.posted.map((m) => (typeof m === "number" ? "ring" : "buffer"));
    expect(kinds[0]).toBe("ring");
    expect(kinds).toContain("buffer");
    expect(w.overflows).toBe(kinds.filter((k) => k === "buffer").length);
    expect(kinds.indexOf("buffer")).toBe(kinds.lastIndexOf("ring") + 1);
    let next = 0;
    drain(port.posted, reader, (r) => {
      check(r, next, 3);
      next++;
    });
    expect(next).toBe(12);
    // All released: the next batch goes through the ring again.
    fill(bw, 12, 3);
    w.post(bw, 12, 0, 1);
    expect(typeof port.posted[0]).toBe("number");
    drain(port.posted, reader, (r) => check(r, 12, 3));
  });

  it("a batch larger than the ring goes as a buffer", () => {
    const sab = newRing(1024);
    const port = fakePort();
    const w = new RingWriter(sab, port);
    const bw = new BatchWriter();
    fill(bw, 1, 20);
    expect(bw.bytes).toBeGreaterThan(1024);
    w.post(bw, 1, 0, 1);
    expect(port.posted[0]).toBeInstanceOf(ArrayBuffer);
    drain(port.posted, new RingReader(sab), (r) => check(r, 1, 20));
  });

  it("refuses a capacity that is not a power of two", () => {
    expect(() => newRing(3000)).toThrow(RangeError);
    expect(() => newRing(512)).toThrow(RangeError);
  });
});
