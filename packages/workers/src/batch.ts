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
 * Those positional fields are this file's business only: each record kind has
 * one typed writer (`writeIn`, `writeSend`, `writeClient*`, `writeServerNew`,
 * `writeServer*`, `writeSync`, the fields as arguments) and one typed reader
 * (`readIn`, `readSend`, `readClient`, `readServerNew`, `readServer`,
 * `readSync`), used by the coordinator and the shard alike. A reader fills a
 * scratch object the caller keeps (one per kind, reused record after record):
 * no object per record on the read side, as when the fields were read in place.
 * A connection id travels as `encodeConnectionId` / `decodeConnectionId` say.
 *
 * The writer keeps references to the pending byte blobs and copies each once,
 * into a buffer of the exact size, at flush time.
 */
import type { CancelProgress, FinalOutcome, ServerEndCause, Source } from "@siptm/core";
import type { ListenerInfo } from "./protocol.js";

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
 * n0 = connection id (encodeConnectionId), s0 = source address, data = the message.
 * Written by `writeIn`, read by `readIn`.
 */
export const REC_IN = 1;
/**
 * A message to send (shard → coordinator).
 * b = listener index, w = destination port, n0 = connection id (encodeConnectionId),
 * n1 = send-error target id (0: nobody to tell), s0 = destination address, data = the message.
 * Written by `writeSend`, read by `readSend`.
 */
export const REC_SEND = 2;
/**
 * An event of a client transaction started from the main thread (shard → coordinator).
 * b = CEV_*, w = status, n0 = handle id, n1 = detail code, s0 = reason or cause, data = a response.
 * Written by `writeClientResponse`, `writeClientFinal`, `writeClientCancel`,
 * `writeClientTerminated`; read by `readClient`.
 */
export const REC_CLIENT = 3;
/**
 * A new server transaction for the main thread's onRequest (shard → coordinator).
 * b = listener index, w = source port, n0 = connection id (encodeConnectionId), s0 = source address,
 * s1 = transaction id, data = the request (its top Via stamped with received/rport).
 * Written by `writeServerNew`, read by `readServerNew`.
 */
export const REC_SERVER_NEW = 4;
/**
 * An event of a server transaction the main thread holds (shard → coordinator).
 * b = SEV_*, w = status, s0 = end cause, s1 = transaction id, data = the CANCEL or ACK.
 * Written by `writeServerCancel`, `writeServerAck`, `writeServerTerminated`,
 * `writeServerFinalSent`; read by `readServer`.
 */
export const REC_SERVER = 5;
/**
 * Lockstep (tests on a virtual clock, `ShardedEngineOptions.virtualClock`), both directions.
 * Coordinator → shard: n0 = sequence number, s0 = the time to move the shard's clock to (ms, decimal):
 * the shard runs what falls due on the way, then answers when it has processed the whole batch.
 * Shard → coordinator: n0 = the same sequence number, s0 = the deadline of the shard's earliest
 * pending timer ("" when none); everything the shard sent before it is in this batch or an earlier one.
 * Written by `writeSync`, read by `readSync`.
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

  /** `onAdd`: called after each record is added (the shard's outgoing batch schedules its flush). */
  constructor(private readonly onAdd?: () => void) {}

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
    this.onAdd?.();
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

// --- typed records: one writer and one reader per kind ---------------------------------

/** The largest connection id a record carries (the u32 field holds id + 1; 0 means none). */
export const MAX_CONNECTION_ID = 0xfffffffe;

/**
 * A connection id as its u32 field: 0 = none, else id + 1. An id past
 * MAX_CONNECTION_ID (the core's transports count from 1: four billion
 * connections) cannot be told and travels as none.
 */
export function encodeConnectionId(id: number | undefined): number {
  return id === undefined || id > MAX_CONNECTION_ID || id < 0 ? 0 : id + 1;
}

/** The connection id of a u32 field written by `encodeConnectionId`. */
export function decodeConnectionId(field: number): number | undefined {
  return field === 0 ? undefined : field - 1;
}

// One writer, reader and fresh record per kind, each typed for its own fields, on purpose: no
// generic record or field table on the data path. Only the addressed fields are read in common.

/** What REC_IN, REC_SEND and REC_SERVER_NEW share: a socket of the coordinator and a peer, in the same fields. */
export interface AddressedRecord {
  /** The coordinator's socket, by its index in listen order. */
  listener: number;
  address: string;
  port: number;
  connectionId: number | undefined;
}

/** The addressed fields of the record `r` is on, into `into`. */
function readAddressed(r: BatchReader, into: AddressedRecord): void {
  into.listener = r.b;
  into.address = r.s0;
  into.port = r.w;
  into.connectionId = decodeConnectionId(r.n0);
}

/** Where a received message came from, on socket `l` (a REC_IN or REC_SERVER_NEW read on either thread). */
export function sourceOf(l: ListenerInfo, rec: AddressedRecord): Source {
  return {
    protocol: l.protocol,
    address: rec.address,
    port: rec.port,
    localAddress: l.address,
    localPort: l.port,
    connectionId: rec.connectionId,
  };
}

/** REC_IN: a message the coordinator received on socket `listener` from `address`:`port`. */
export interface InRecord extends AddressedRecord {
  data: Buffer;
}

export function writeIn(
  w: BatchWriter,
  listener: number,
  address: string,
  port: number,
  connectionId: number | undefined,
  data: Uint8Array,
): void {
  w.add(REC_IN, listener, port, encodeConnectionId(connectionId), 0, address, "", data);
}

/** The REC_IN record `r` is on, into `into` (returned). */
export function readIn(r: BatchReader, into: InRecord): InRecord {
  readAddressed(r, into);
  into.data = r.data;
  return into;
}

export function newInRecord(): InRecord {
  return { listener: 0, address: "", port: 0, connectionId: undefined, data: EMPTY };
}

/**
 * REC_SEND: a message for the coordinator to send from socket `listener` to
 * `address`:`port`; `errorTarget` names whom to tell of a failed send (0: nobody).
 */
export interface SendRecord extends AddressedRecord {
  errorTarget: number;
  /** TLS: the SIP domain the peer's certificate must show, and the SNI (RFC 5922); undefined: none. */
  serverName: string | undefined;
  data: Buffer;
}

export function writeSend(
  w: BatchWriter,
  listener: number,
  address: string,
  port: number,
  connectionId: number | undefined,
  errorTarget: number,
  data: Uint8Array,
  serverName?: string,
): void {
  w.add(
    REC_SEND,
    listener,
    port,
    encodeConnectionId(connectionId),
    errorTarget,
    address,
    serverName ?? "",
    data,
  );
}

export function readSend(r: BatchReader, into: SendRecord): SendRecord {
  readAddressed(r, into);
  into.errorTarget = r.n1;
  into.serverName = r.s1 === "" ? undefined : r.s1;
  into.data = r.data;
  return into;
}

export function newSendRecord(): SendRecord {
  return {
    listener: 0,
    address: "",
    port: 0,
    connectionId: undefined,
    errorTarget: 0,
    serverName: undefined,
    data: EMPTY,
  };
}

export type FinalCause = FinalOutcome["cause"];
export type CancelKind = CancelProgress["kind"];

/** REC_CLIENT: an event (CEV_*) of the client transaction behind main-thread handle `handleId`. */
export interface ClientRecord {
  event: number;
  handleId: number;
  /** CEV_RESPONSE, CEV_FINAL: the status; CEV_CANCEL "answered": the CANCEL's answer's (else 0). */
  status: number;
  /** CEV_FINAL: the reason phrase. CEV_CANCEL "failed": the cause. Else "". */
  text: string;
  /** CEV_FINAL: the outcome's cause ("response" for any other event, or a cause not known). */
  cause: FinalCause;
  /** CEV_CANCEL: the progress kind (undefined for any other event, or a kind not known). */
  cancel: CancelKind | undefined;
  /** A response: the one told (CEV_RESPONSE), the final when not the last told (CEV_FINAL), the CANCEL's answer. */
  data: Buffer;
}

export function writeClientResponse(
  w: BatchWriter,
  handleId: number,
  status: number,
  data: Uint8Array,
): void {
  w.add(REC_CLIENT, CEV_RESPONSE, status, handleId, 0, "", "", data);
}

export function writeClientFinal(
  w: BatchWriter,
  handleId: number,
  status: number,
  reason: string,
  cause: FinalCause,
  data: Uint8Array = EMPTY,
): void {
  w.add(REC_CLIENT, CEV_FINAL, status, handleId, CAUSES.indexOf(cause), reason, "", data);
}

/** `status` and `data`: the answer of an "answered" CANCEL; `cause`: why it "failed". */
export function writeClientCancel(
  w: BatchWriter,
  handleId: number,
  kind: CancelKind,
  status = 0,
  cause = "",
  data: Uint8Array = EMPTY,
): void {
  w.add(REC_CLIENT, CEV_CANCEL, status, handleId, CANCEL_KINDS.indexOf(kind), cause, "", data);
}

export function writeClientTerminated(w: BatchWriter, handleId: number): void {
  w.add(REC_CLIENT, CEV_TERMINATED, 0, handleId, 0, "", "");
}

export function readClient(r: BatchReader, into: ClientRecord): ClientRecord {
  const event = r.b;
  into.event = event;
  into.handleId = r.n0;
  into.status = r.w;
  into.text = r.s0;
  into.cause = event === CEV_FINAL ? (CAUSES[r.n1] ?? "response") : "response";
  into.cancel = event === CEV_CANCEL ? CANCEL_KINDS[r.n1] : undefined;
  into.data = r.data;
  return into;
}

export function newClientRecord(): ClientRecord {
  return { event: 0, handleId: 0, status: 0, text: "", cause: "response", cancel: undefined, data: EMPTY };
}

/**
 * REC_SERVER_NEW: a new server transaction `id` for the main thread's onRequest, its request (the
 * top Via stamped with received/rport) received on socket `listener` from `address`:`port`.
 */
export interface ServerNewRecord extends AddressedRecord {
  id: string;
  data: Buffer;
}

export function writeServerNew(
  w: BatchWriter,
  listener: number,
  address: string,
  port: number,
  connectionId: number | undefined,
  id: string,
  data: Uint8Array,
): void {
  w.add(REC_SERVER_NEW, listener, port, encodeConnectionId(connectionId), 0, address, id, data);
}

export function readServerNew(r: BatchReader, into: ServerNewRecord): ServerNewRecord {
  readAddressed(r, into);
  into.id = r.s1;
  into.data = r.data;
  return into;
}

export function newServerNewRecord(): ServerNewRecord {
  return { listener: 0, address: "", port: 0, connectionId: undefined, id: "", data: EMPTY };
}

/** REC_SERVER: an event (SEV_*) of server transaction `id`, which the main thread holds. */
export interface ServerRecord {
  event: number;
  id: string;
  /** SEV_TERMINATED: how it ended (else ""). */
  cause: string;
  /** SEV_FINAL_SENT: the status that went out (else 0). */
  status: number;
  /** SEV_CANCEL, SEV_ACK: the request. */
  data: Buffer;
}

export function writeServerCancel(w: BatchWriter, id: string, cancel: Uint8Array): void {
  w.add(REC_SERVER, SEV_CANCEL, 0, 0, 0, "", id, cancel);
}

export function writeServerAck(w: BatchWriter, id: string, ack: Uint8Array): void {
  w.add(REC_SERVER, SEV_ACK, 0, 0, 0, "", id, ack);
}

export function writeServerTerminated(w: BatchWriter, id: string, cause: ServerEndCause): void {
  w.add(REC_SERVER, SEV_TERMINATED, 0, 0, 0, cause, id);
}

export function writeServerFinalSent(w: BatchWriter, id: string, status: number): void {
  w.add(REC_SERVER, SEV_FINAL_SENT, status, 0, 0, "", id);
}

export function readServer(r: BatchReader, into: ServerRecord): ServerRecord {
  into.event = r.b;
  into.id = r.s1;
  into.cause = r.s0;
  into.status = r.w;
  into.data = r.data;
  return into;
}

export function newServerRecord(): ServerRecord {
  return { event: 0, id: "", cause: "", status: 0, data: EMPTY };
}

/**
 * REC_SYNC (lockstep): sequence number `seq` and a time — coordinator → shard, the time to move
 * the shard's clock to; shard → coordinator, the shard's earliest pending deadline (undefined: none).
 */
export interface SyncRecord {
  seq: number;
  time: number | undefined;
}

export function writeSync(w: BatchWriter, seq: number, time: number | undefined): void {
  w.add(REC_SYNC, 0, 0, seq, 0, time === undefined ? "" : String(time), "");
}

export function readSync(r: BatchReader, into: SyncRecord): SyncRecord {
  into.seq = r.n0;
  into.time = r.s0 === "" ? undefined : Number(r.s0);
  return into;
}

export function newSyncRecord(): SyncRecord {
  return { seq: 0, time: undefined };
}
