/**
 * A one-way ring of batches in a SharedArrayBuffer: one writer thread, one
 * reader thread, the MessagePort as the doorbell. The alternative to the
 * sharded engine's transferred batches (packages/workers/src/batch.ts) that
 * the crossing benchmark (crossing.ts) measures beside them.
 *
 * Why it was tried: moving a batch as a transferred ArrayBuffer costs a fresh
 * backing store per batch (allocated in one thread, freed in the other) plus
 * the transfer — about 35 µs of the sender's time for a 20 KB batch in a
 * loop, against 1.5 µs to post a number. With the ring the writer copies the
 * batch into shared memory and posts only the ring position.
 *
 * Why the engine does not use it: measured end to end here (2 cores), the
 * ring was no faster — per message about the same as transferred batches of
 * 32–64, better only for batches of 8 or fewer, worse for 256 — and the
 * sharded engine under load sends batches of 20–200 (ack-clocked batching).
 * The cost that stays is the port's message dispatch per batch, which a ring
 * keeps unless it also drops doorbells while the reader is busy.
 *
 * Layout: 8-byte header (u32 read counter, stored by the reader with
 * Atomics; u32 unused) + CAPACITY bytes of entries. An entry is u32 length
 * + the batch (batch.ts format), padded to 4 bytes; a u32 SKIP at the end of
 * the region means "go on at its start". Counters count bytes modulo 2^32,
 * so used = (written − read) mod 2^32 tells full from empty.
 *
 * Ordering: the writer writes an entry, then posts its doorbell on the
 * port; the reader reads the entry when the doorbell arrives (a port hands
 * over messages in order and synchronises the two threads), and stores its
 * new read counter when it has finished with the bytes (after that the
 * writer may overwrite them: a reader must copy what it keeps). When the
 * ring has no room (the reader is far behind: a busy or stuck shard), the
 * writer falls back to a transferred ArrayBuffer on the same port, so order
 * is kept and nothing waits.
 */
import { BatchReader, type BatchWriter } from "@siptm/workers/batch";

export const RING_HEADER = 8;
/** Bytes of entries per ring: room for several full batches (batchBytes default 256 KiB). */
export const RING_CAPACITY = 2 * 1024 * 1024;
const SKIP = 0xffffffff;

/** A ring: the shared memory both ends map. */
export function newRing(capacity = RING_CAPACITY): SharedArrayBuffer {
  // A power of two divides 2^32: offsets stay right when the counters wrap.
  if (capacity < 1024 || (capacity & (capacity - 1)) !== 0)
    throw new RangeError("ring capacity: a power of two, at least 1024");
  return new SharedArrayBuffer(RING_HEADER + capacity);
}

/** What a port carries on the data plane: a doorbell (ring position), a transferred batch, or something else. */
export interface DoorbellPort {
  postMessage(value: unknown, transfer?: readonly ArrayBuffer[]): void;
}

export class RingWriter {
  private readonly header: Uint32Array;
  private readonly bytes: Buffer;
  private readonly view: DataView;
  private readonly capacity: number;
  private written: number;
  private scratch = Buffer.allocUnsafeSlow(64 * 1024);
  /** Batches that went as transferred buffers because the ring was full. */
  overflows = 0;

  /** `start`: where the counters begin (both ends alike; tests start near 2^32 to see them wrap). */
  constructor(
    sab: SharedArrayBuffer,
    private readonly port: DoorbellPort,
    start = 0,
  ) {
    this.written = start >>> 0;
    this.header = new Uint32Array(sab, 0, 2);
    this.capacity = sab.byteLength - RING_HEADER;
    this.bytes = Buffer.from(sab, RING_HEADER, this.capacity);
    this.view = new DataView(sab, RING_HEADER, this.capacity);
  }

  /** Post what `writer` holds (it starts over), through the ring when it has room. */
  post(writer: BatchWriter, ack: number, live: number, batches: number): void {
    const size = writer.bytes;
    const need = (4 + size + 3) & ~3;
    const cap = this.capacity;
    const used = (this.written - Atomics.load(this.header, 0)) >>> 0;
    let off = this.written % cap;
    const tail = off + need > cap ? cap - off : 0;
    if (used + tail + need > cap) {
      this.overflows++;
      const ab = writer.finish(ack, live, batches);
      this.port.postMessage(ab, [ab]);
      return;
    }
    if (tail > 0) {
      this.view.setUint32(off, SKIP, true);
      off = 0;
    }
    this.view.setUint32(off, size, true);
    // Written into private memory first, then copied into the ring in one go: V8 writes into shared
    // memory field by field far slower than one block copy.
    if (this.scratch.length < size)
      this.scratch = Buffer.allocUnsafeSlow(Math.max(size, this.scratch.length * 2));
    writer.finishInto(this.scratch, 0, ack, live, batches);
    this.scratch.copy(this.bytes, off + 4, 0, size);
    this.written = (this.written + tail + need) >>> 0;
    this.port.postMessage(this.written);
  }
}

export class RingReader {
  private readonly header: Uint32Array;
  private readonly bytes: Buffer;
  private readonly view: DataView;
  private readonly capacity: number;
  private read: number;
  private pendingEnd = 0;
  private scratch = Buffer.allocUnsafeSlow(64 * 1024);

  constructor(sab: SharedArrayBuffer, start = 0) {
    this.read = start >>> 0;
    this.pendingEnd = this.read;
    this.header = new Uint32Array(sab, 0, 2);
    this.capacity = sab.byteLength - RING_HEADER;
    this.bytes = Buffer.from(sab, RING_HEADER, this.capacity);
    this.view = new DataView(sab, RING_HEADER, this.capacity);
    Atomics.store(this.header, 0, this.read);
  }

  /**
   * The batch a doorbell announced (`end`: the writer's counter after it).
   * Its bytes stay the writer's until `release()`: copy what outlives it.
   */
  open(end: number): BatchReader {
    const cap = this.capacity;
    let off = this.read % cap;
    let len = this.view.getUint32(off, true);
    if (len === SKIP) {
      off = 0;
      len = this.view.getUint32(0, true);
    }
    this.pendingEnd = end >>> 0;
    // Copied out in one go (V8 reads shared memory field by field far slower than it copies a block),
    // into memory reused by the next batch.
    if (this.scratch.length < len)
      this.scratch = Buffer.allocUnsafeSlow(Math.max(len, this.scratch.length * 2));
    this.bytes.copy(this.scratch, 0, off + 4, off + 4 + len);
    return new BatchReader(this.scratch.subarray(0, len));
  }

  /** Done with the batch `open()` returned: the writer may reuse its bytes. */
  release(): void {
    this.read = this.pendingEnd;
    Atomics.store(this.header, 0, this.read);
  }
}
