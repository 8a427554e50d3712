// The typed records of the data plane (batch.ts): for each record kind, what its writer
// puts in a batch comes back field for field from its reader, edge values included —
// connection id 0 and none, the largest u32 numbers, empty strings, latin1 text with
// high bytes, empty and non-empty message bytes.
import { describe, expect, it } from "vitest";
import {
  BatchReader,
  BatchWriter,
  CEV_CANCEL,
  CEV_FINAL,
  CEV_RESPONSE,
  CEV_TERMINATED,
  decodeConnectionId,
  encodeConnectionId,
  MAX_CONNECTION_ID,
  newClientRecord,
  newInRecord,
  newSendRecord,
  newServerNewRecord,
  newServerRecord,
  newSyncRecord,
  REC_CLIENT,
  REC_IN,
  REC_SEND,
  REC_SERVER,
  REC_SERVER_NEW,
  REC_SYNC,
  readClient,
  readIn,
  readSend,
  readServer,
  readServerNew,
  readSync,
  SEV_ACK,
  SEV_CANCEL,
  SEV_FINAL_SENT,
  SEV_TERMINATED,
  writeClientCancel,
  writeClientFinal,
  writeClientResponse,
  writeClientTerminated,
  writeIn,
  writeSend,
  writeServerAck,
  writeServerCancel,
  writeServerFinalSent,
  writeServerNew,
  writeServerTerminated,
  writeSync,
} from "../src/batch.js";

const MAX_U32 = 0xffffffff;
/** Latin1 text with bytes above 0x7f (the message layer's strings: one char per byte). */
const HIGH = "caf\u00e9 \u00ff\u00a0\u0080 r\u00e9ponse";
const b = (s: string) => Buffer.from(s, "latin1");
const MSG = b(`OPTIONS sip:x SIP/2.0\r\nSubject: ${HIGH}\r\n\r\n`);
const EMPTY = Buffer.alloc(0);

/** Write with `write`, carry the batch as its transferred ArrayBuffer, and read every record back with `read`. */
function roundTrip<T>(type: number, write: (w: BatchWriter) => void, read: (r: BatchReader) => T): T[] {
  const w = new BatchWriter();
  write(w);
  const n = w.count;
  const r = new BatchReader(w.finish(0, 0));
  expect(r.count).toBe(n);
  const out: T[] = [];
  while (r.next()) {
    expect(r.type).toBe(type);
    // Copy what the scratch holds now: the next record overwrites it.
    out.push(structuredClone(read(r)));
  }
  return out;
}

/** Each case written by `write`, read back by `read`: the same records, in order. */
function expectRoundTrip<C extends object>(
  type: number,
  cases: readonly C[],
  write: (w: BatchWriter, c: C) => void,
  read: (r: BatchReader) => object,
): void {
  const got = roundTrip(
    type,
    (w) => {
      for (const c of cases) write(w, c);
    },
    read,
  );
  const asData = (rec: object) => plain(rec as { data?: Buffer });
  expect(got.map(asData)).toEqual(cases.map(asData));
}

/** Buffers as latin1 text, so that records compare as plain data. */
function plain<T extends { data?: Buffer }>(rec: T): Omit<T, "data"> & { data?: string } {
  const { data, ...rest } = rec;
  return data === undefined ? rest : { ...rest, data: Buffer.from(data).toString("latin1") };
}

describe("connection ids", () => {
  it("travel as id + 1, 0 meaning none", () => {
    expect(encodeConnectionId(undefined)).toBe(0);
    expect(encodeConnectionId(0)).toBe(1);
    expect(encodeConnectionId(MAX_CONNECTION_ID)).toBe(MAX_U32);
    expect(decodeConnectionId(0)).toBeUndefined();
    expect(decodeConnectionId(1)).toBe(0);
    expect(decodeConnectionId(MAX_U32)).toBe(MAX_CONNECTION_ID);
    for (const id of [undefined, 0, 1, 7, 65_536, MAX_CONNECTION_ID])
      expect(decodeConnectionId(encodeConnectionId(id))).toBe(id);
  });

  it("an id the field cannot hold travels as none, never as another connection", () => {
    expect(encodeConnectionId(MAX_U32)).toBe(0);
    expect(encodeConnectionId(2 ** 40)).toBe(0);
    expect(encodeConnectionId(-1)).toBe(0);
  });
});

describe("typed records round-trip through a batch", () => {
  const conns = [undefined, 0, 1, MAX_CONNECTION_ID] as const;

  it("REC_IN: listener, source address and port, connection id, message", () => {
    const cases = conns.map((connectionId, i) => ({
      listener: [0, 1, 254, 255][i]!,
      address: ["127.0.0.1", "::1", "", HIGH][i]!,
      port: [5060, 0, 65535, 1][i]!,
      connectionId,
      data: i === 2 ? EMPTY : MSG,
    }));
    expectRoundTrip(
      REC_IN,
      cases,
      (w, c) => writeIn(w, c.listener, c.address, c.port, c.connectionId, c.data),
      (r) => readIn(r, newInRecord()),
    );
  });

  // One test per record kind, alike in form on purpose: each lists its own fields' edge values and calls
  // its own writer and reader (the typed pairs of batch.ts); expectRoundTrip is the shared part.
  it("REC_SEND: listener, destination, connection id, send-error target, TLS server name, message", () => {
    const cases = conns.map((connectionId, i) => ({
      listener: [0, 3, 255, 1][i]!,
      address: ["10.0.0.1", "", "2001:db8::1", HIGH][i]!,
      port: [5060, 65535, 0, 5061][i]!,
      connectionId,
      errorTarget: [0, 1, MAX_U32, 0xfffffff0][i]!,
      serverName: [undefined, "sip.example.test", undefined, HIGH][i],
      data: i === 1 ? EMPTY : MSG,
    }));
    expectRoundTrip(
      REC_SEND,
      cases,
      (w, c) =>
        writeSend(w, c.listener, c.address, c.port, c.connectionId, c.errorTarget, c.data, c.serverName),
      (r) => readSend(r, newSendRecord()),
    );
  });

  it("REC_SERVER_NEW: listener, source, connection id, transaction id, request", () => {
    const cases = conns.map((connectionId, i) => ({
      listener: [0, 1, 255, 2][i]!,
      address: ["127.0.0.1", "", "::ffff:1.2.3.4", HIGH][i]!,
      port: [5060, 0, 65535, 40000][i]!,
      connectionId,
      id: ["abc-s0i1.1", "", `x-s1i2.${"f".repeat(40)}`, HIGH][i]!,
      data: i === 1 ? EMPTY : MSG,
    }));
    expectRoundTrip(
      REC_SERVER_NEW,
      cases,
      (w, c) => writeServerNew(w, c.listener, c.address, c.port, c.connectionId, c.id, c.data),
      (r) => readServerNew(r, newServerNewRecord()),
    );
  });

  it("REC_CLIENT: response, final (each cause), cancel progress (each kind), termination", () => {
    const got = roundTrip(
      REC_CLIENT,
      (w) => {
        writeClientResponse(w, 1, 180, MSG);
        writeClientResponse(w, MAX_U32, 199, EMPTY);
        writeClientFinal(w, 0, 200, "OK", "response");
        writeClientFinal(w, 7, 408, "", "timeout", MSG);
        writeClientFinal(w, MAX_U32, 503, HIGH, "transport-error");
        writeClientFinal(w, 2, 500, "Lifetime", "lifetime");
        writeClientCancel(w, 3, "sent");
        writeClientCancel(w, 3, "not-sent");
        writeClientCancel(w, 3, "answered", 200, "", MSG);
        writeClientCancel(w, MAX_U32, "failed", 0, "transport-error");
        writeClientCancel(w, 4, "failed", 0, "timeout");
        writeClientTerminated(w, MAX_U32);
        writeClientTerminated(w, 0);
      },
      (r) => readClient(r, newClientRecord()),
    );
    const rec = (
      event: number,
      handleId: number,
      status: number,
      text: string,
      cause: string,
      cancel: string | undefined,
      data: Buffer,
    ) => ({ event, handleId, status, text, cause, cancel, data });
    const none = undefined;
    expect(got.map(plain)).toEqual(
      [
        rec(CEV_RESPONSE, 1, 180, "", "response", none, MSG),
        rec(CEV_RESPONSE, MAX_U32, 199, "", "response", none, EMPTY),
        rec(CEV_FINAL, 0, 200, "OK", "response", none, EMPTY),
        rec(CEV_FINAL, 7, 408, "", "timeout", none, MSG),
        rec(CEV_FINAL, MAX_U32, 503, HIGH, "transport-error", none, EMPTY),
        rec(CEV_FINAL, 2, 500, "Lifetime", "lifetime", none, EMPTY),
        rec(CEV_CANCEL, 3, 0, "", "response", "sent", EMPTY),
        rec(CEV_CANCEL, 3, 0, "", "response", "not-sent", EMPTY),
        rec(CEV_CANCEL, 3, 200, "", "response", "answered", MSG),
        rec(CEV_CANCEL, MAX_U32, 0, "transport-error", "response", "failed", EMPTY),
        rec(CEV_CANCEL, 4, 0, "timeout", "response", "failed", EMPTY),
        rec(CEV_TERMINATED, MAX_U32, 0, "", "response", none, EMPTY),
        rec(CEV_TERMINATED, 0, 0, "", "response", none, EMPTY),
      ].map(plain),
    );
  });

  it("REC_SERVER: CANCEL, ACK, termination (its cause), final sent (its status)", () => {
    const got = roundTrip(
      REC_SERVER,
      (w) => {
        writeServerCancel(w, "id-1", MSG);
        writeServerAck(w, "", MSG);
        writeServerAck(w, HIGH, EMPTY);
        writeServerTerminated(w, "id-2", "ack-timeout");
        writeServerTerminated(w, "id-3", "transport-error");
        writeServerFinalSent(w, "id-4", 699);
      },
      (r) => readServer(r, newServerRecord()),
    );
    const rec = (event: number, id: string, cause: string, status: number, data: Buffer) => ({
      event,
      id,
      cause,
      status,
      data,
    });
    expect(got.map(plain)).toEqual(
      [
        rec(SEV_CANCEL, "id-1", "", 0, MSG),
        rec(SEV_ACK, "", "", 0, MSG),
        rec(SEV_ACK, HIGH, "", 0, EMPTY),
        rec(SEV_TERMINATED, "id-2", "ack-timeout", 0, EMPTY),
        rec(SEV_TERMINATED, "id-3", "transport-error", 0, EMPTY),
        rec(SEV_FINAL_SENT, "id-4", "", 699, EMPTY),
      ].map(plain),
    );
  });

  it("REC_SYNC: sequence number and a time, or none", () => {
    const cases = [
      { seq: 1, time: 0 },
      { seq: MAX_U32, time: 32_000.5 },
      { seq: 0, time: undefined },
      { seq: 42, time: 1e15 },
    ];
    expectRoundTrip(
      REC_SYNC,
      cases,
      (w, c) => writeSync(w, c.seq, c.time),
      (r) => readSync(r, newSyncRecord()),
    );
  });

  it("a reader fills the scratch it is given and returns it: no object per record", () => {
    const w = new BatchWriter();
    writeIn(w, 1, "127.0.0.1", 5060, 3, MSG);
    writeIn(w, 2, "::1", 5061, undefined, EMPTY);
    const r = new BatchReader(w.finish(0, 0));
    const scratch = newInRecord();
    const seen: Array<[number, number | undefined]> = [];
    while (r.next()) {
      expect(readIn(r, scratch)).toBe(scratch);
      seen.push([scratch.listener, scratch.connectionId]);
    }
    expect(seen).toEqual([
      [1, 3],
      [2, undefined],
    ]);
  });

  it("kinds mix in one batch, each read back by its own reader", () => {
    const w = new BatchWriter();
    writeIn(w, 0, "127.0.0.1", 5060, undefined, MSG);
    writeSync(w, 9, 1234);
    writeSend(w, 1, "::1", 5062, 0, 5, EMPTY);
    const r = new BatchReader(w.finish(0, 0));
    const types: number[] = [];
    while (r.next()) {
      types.push(r.type);
      if (r.type === REC_IN) expect(readIn(r, newInRecord()).connectionId).toBeUndefined();
      if (r.type === REC_SYNC) expect(readSync(r, newSyncRecord())).toEqual({ seq: 9, time: 1234 });
      if (r.type === REC_SEND) expect(readSend(r, newSendRecord()).connectionId).toBe(0);
    }
    expect(types).toEqual([REC_IN, REC_SYNC, REC_SEND]);
  });
});
