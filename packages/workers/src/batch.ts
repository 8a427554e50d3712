/**
 * The data plane's wire format: many records in ONE ArrayBuffer, posted with
 * the buffer in the transfer list (moved, not copied, not structured-cloned).
 * Both directions use it: coordinator → shard (datagrams in) and shard →
 * coordinator (sends, and the per-transaction events the main-thread API
 * needs).
 *
 * Batch   = header (16 bytes) + records.
 * Header  = u32 record count | u32 ack (messages the sender finished, shard →
 *           coordinator) | u32 live transactions (shard → coordinator,
 *           0xffffffff = not told) | u32 word 3: shard → coordinator, the
 *           batches the sender finished (the coordinator keeps at most a few
 *           unfinished); coordinator → shard, flags (ACK_NOW).
 * Record  = u8 type | u8 b | u16 w | u32 n0 | u32 n1 | u16 |s0| | u16 |s1| |
 *           u32 |data| | s0 | s1 | data     (20 bytes + the three fields)
 * s0 and s1 are latin1 strings (addresses, transaction ids, reason phrases:
 * the message layer's text convention), data is message bytes. All little
 * endian. What b, w, n0, n1, s0, s1 mean depends on the type (see REC_*).
 *
 * The writer keeps references to the pending byte blobs and copies each once,
 * into a buffer of the exact size, at flush time.
 */

export const BATCH_HEADER = 16;
export const RECORD_HEADER = 20;
export const NOT_TOLD = 0xffffffff;
/**
 * Coordinator → shard, header word 3: acknowledge this batch as soon as it is
 * processed. Without it a shard may hold the acknowledgement back until it has
 * something else to send (or its next live-count report, ≤ 200 ms): a batch
 * whose messages caused no send (an ACK absorbed by its transaction, a
 * retransmission) then costs no crossing back. The coordinator asks for it
 * whenever it would otherwise have to wait: its next batch would be held
 * (ack-clocking), the queue is half full, it is closing, or a test runs the
 * shards in lockstep.
 */
export const ACK_NOW = 1;

/**
 * A message received by the coordinator (coordinator → shard).
 * b = listener index (protocol, local address and port), w = source port,
 * n0 = connection id + 1 (0: none), s0 = source address, data = the message.
 */
export const REC_IN = 1;
/**
 * A message to send (shard → coordinator).
 * b = listener index, w = destination port, n0 = connection id + 1 (0: none),
 * n1 = send-error target id (0: nobody to tell), s0 = destination address, data = the message.
 */
export const REC_SEND = 2;
/**
 * An event of a client transaction started from the main thread (shard → coordinator).
 * b = CEV_*, w = status, n0 = handle id, n1 = detail code, s0 = reason or cause, data = a response.
 */
export const REC_CLIENT = 3;
/**
 * A new server transaction for the main thread's onRequest (shard → coordinator).
 * b = listener index, w = source port, n0 = connection id + 1, s0 = source address,
 * s1 = transaction id, data = the request (its top Via stamped with received/rport).
 */
export const REC_SERVER_NEW = 4;
/**
 * An event of a server transaction the main thread holds (shard → coordinator).
 * b = SEV_*, s0 = end cause, s1 = transaction id, data = the CANCEL or ACK.
 */
export const REC_SERVER = 5;
/**
 * Lockstep (tests on a virtual clock, `ShardedEngineOptions.virtualClock`), both directions.
 * Coordinator → shard: n0 = sequence number, s0 = the time to move the shard's clock to (ms, decimal):
 * the shard runs what falls due on the way, then answers when it has processed the whole batch.
 * Shard → coordinator: n0 = the same sequence number, s0 = the deadline of the shard's earliest
 * pending timer ("" when none); everything the shard sent before it is in this batch or an earlier one.
 */
export const REC_SYNC = 6;

export const CEV_RESPONSE = 1;
/** n1 = FinalOutcome cause (CAUSES index); data = the final response when it is not the last response told. */
export const CEV_FINAL = 2;
/** n1 = CancelProgress kind (CANCEL_KINDS index); w/data the CANCEL's answer; s0 the failure cause. */
export const CEV_CANCEL = 3;
export const CEV_TERMINATED = 4;

export const SEV_CANCEL = 1;
export const SEV_ACK = 2;
/** s0 = ServerEndCause. */
export const SEV_TERMINATED = 3;
/** w = status: a final response went out (the user's reply, a 487 after CANCEL, a timeout…). */
export const SEV_FINAL_SENT = 4;

export const CAUSES = ["response", "timeout", "transport-error", "lifetime"] as const;
export const CANCEL_KINDS = ["sent", "not-sent", "answered", "failed"] as const;

const EMPTY = Buffer.alloc(0);

interface PendingRecord {
  type: number;
  b: number;
  w: number;
  n0: number;
  n1: number;
  s0: string;
  s1: string;
  data: Uint8Array;
}

export class BatchWriter {
  private records: PendingRecord[] = [];
  private size = BATCH_HEADER;

  get count(): number {
    return this.records.length;
  }
  /** Bytes the batch would take now. */
  get bytes(): number {
    return this.size;
  }

  add(
    type: number,
    b: number,
    w: number,
    n0: number,
    n1: number,
    s0: string,
    s1: string,
    data: Uint8Array = EMPTY,
  ): void {
    // The length fields are 16 bits: an over-long text (never an address or an id) is cut.
    if (s0.length > 0xffff) s0 = s0.slice(0, 0xffff);
    if (s1.length > 0xffff) s1 = s1.slice(0, 0xffff);
    this.records.push({ type, b, w, n0, n1, s0, s1, data });
    this.size += RECORD_HEADER + s0.length + s1.length + data.length;
  }

  /** Drop what is pending (a shard died before it was flushed…). */
  clear(): void {
    this.records = [];
    this.size = BATCH_HEADER;
  }

  /** Write everything pending into one new ArrayBuffer of the exact size and start over. */
  finish(ack: number, live: number, batches = 0): ArrayBuffer {
    // allocUnsafeSlow: its own ArrayBuffer (not the shared pool), so it can be transferred.
    const buf = Buffer.allocUnsafeSlow(this.size);
    this.finishInto(buf, 0, ack, live, batches);
    return buf.buffer as ArrayBuffer;
  }

  /** Write everything pending into `buf` at `at` (it needs `bytes` of room there) and start over. */
  finishInto(buf: Buffer, at: number, ack: number, live: number, batches = 0): void {
    const records = this.records;
    const view = new DataView(buf.buffer, buf.byteOffset + at, this.size);
    view.setUint32(0, records.length, true);
    view.setUint32(4, ack >>> 0, true);
    view.setUint32(8, live >>> 0, true);
    view.setUint32(12, batches >>> 0, true);
    let off = BATCH_HEADER;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const l0 = r.s0.length;
      const l1 = r.s1.length;
      const ld = r.data.length;
      view.setUint8(off, r.type);
      view.setUint8(off + 1, r.b);
      view.setUint16(off + 2, r.w, true);
      view.setUint32(off + 4, r.n0 >>> 0, true);
      view.setUint32(off + 8, r.n1 >>> 0, true);
      view.setUint16(off + 12, l0, true);
      view.setUint16(off + 14, l1, true);
      view.setUint32(off + 16, ld, true);
      off += RECORD_HEADER;
      if (l0 > 0) off += buf.write(r.s0, at + off, l0, "latin1");
      if (l1 > 0) off += buf.write(r.s1, at + off, l1, "latin1");
      if (ld > 0) {
        buf.set(r.data, at + off);
        off += ld;
      }
    }
    this.clear();
  }
}

/**
 * Reads a batch record by record into its own fields (one reader object per
 * batch; `data` is a view into the batch, valid as long as the batch is — for
 * a batch read from shared memory (the benchmark's ring, bench/src/lib/ring.ts),
 * until that memory is handed back: copy what you keep).
 */
export class BatchReader {
  readonly count: number;
  readonly ack: number;
  readonly live: number;
  readonly batches: number;
  type = 0;
  b = 0;
  w = 0;
  n0 = 0;
  n1 = 0;
  s0 = "";
  s1 = "";
  data: Buffer = EMPTY;
  private readonly buf: Buffer;
  private readonly view: DataView;
  private off = BATCH_HEADER;
  private read = 0;

  constructor(src: ArrayBuffer | Buffer) {
    this.buf = src instanceof ArrayBuffer ? Buffer.from(src) : src;
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.count = this.view.getUint32(0, true);
    this.ack = this.view.getUint32(4, true);
    this.live = this.view.getUint32(8, true);
    this.batches = this.view.getUint32(12, true);
  }

  next(): boolean {
    if (this.read >= this.count) return false;
    const view = this.view;
    const off = this.off;
    this.type = view.getUint8(off);
    this.b = view.getUint8(off + 1);
    this.w = view.getUint16(off + 2, true);
    this.n0 = view.getUint32(off + 4, true);
    this.n1 = view.getUint32(off + 8, true);
    const l0 = view.getUint16(off + 12, true);
    const l1 = view.getUint16(off + 14, true);
    const ld = view.getUint32(off + 16, true);
    let p = off + RECORD_HEADER;
    this.s0 = l0 > 0 ? this.buf.toString("latin1", p, p + l0) : "";
    p += l0;
    this.s1 = l1 > 0 ? this.buf.toString("latin1", p, p + l1) : "";
    p += l1;
    this.data = ld > 0 ? this.buf.subarray(p, p + ld) : EMPTY;
    this.off = p + ld;
    this.read++;
    return true;
  }
}
