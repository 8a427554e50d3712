import { describe, expect, it } from "vitest";
import { lossy } from "../../src/transport/lossy.js";
import type {
  Destination,
  SendErrorTarget,
  Source,
  Transport,
  TransportSink,
} from "../../src/transport/types.js";

const DEST: Destination = { protocol: "UDP", address: "127.0.0.1", port: 5060 };
const SOURCE: Source = {
  protocol: "UDP",
  address: "127.0.0.1",
  port: 5060,
  localAddress: "127.0.0.1",
  localPort: 5070,
};

/** A transport that records what it is asked to send. */
class RecordingTransport implements Transport {
  readonly protocol = "UDP" as const;
  readonly reliable = false;
  readonly localAddress = "127.0.0.1";
  readonly localPort = 5070;
  readonly sent: Array<{ data: Buffer; dest: Destination; onError: SendErrorTarget | undefined }> = [];
  closed = 0;
  send(data: Buffer, dest: Destination, onError?: SendErrorTarget): void {
    this.sent.push({ data, dest, onError });
  }
  async close(): Promise<void> {
    this.closed++;
  }
}

function recordingSink(): TransportSink & { got: Buffer[]; framingErrors: Error[] } {
  const got: Buffer[] = [];
  const framingErrors: Error[] = [];
  return {
    got,
    framingErrors,
    onMessage(data) {
      got.push(data);
    },
    onFramingError(err) {
      framingErrors.push(err);
    },
  };
}

const datagram = (i: number) => Buffer.from(`message ${i}`);

/** Push n datagrams each way through a fresh link; return the indexes that got through. */
function run(opts: Parameters<typeof lossy>[0], n: number) {
  const link = lossy(opts);
  const inner = new RecordingTransport();
  const sink = recordingSink();
  const t = link.wrap(inner);
  const s = link.sink(sink);
  for (let i = 0; i < n; i++) {
    t.send(datagram(i), DEST);
    s.onMessage(datagram(i), SOURCE);
  }
  return {
    link,
    sent: inner.sent.map((x) => x.data.toString()),
    received: sink.got.map((x) => x.toString()),
  };
}

describe("lossy link", () => {
  it("loss 0 passes everything through unchanged, both ways", () => {
    const { link, sent, received } = run({ loss: 0 }, 50);
    expect(sent).toHaveLength(50);
    expect(received).toHaveLength(50);
    expect(sent[7]).toBe("message 7");
    expect(link.dropped).toBe(0);
    expect(link.counters).toEqual({ sent: 50, received: 50, droppedSend: 0, droppedReceive: 0 });
  });

  it("loss 1 drops everything, silently: no send reaches the inner transport, no error is reported", () => {
    const link = lossy({ loss: 1 });
    const inner = new RecordingTransport();
    const t = link.wrap(inner);
    let errors = 0;
    for (let i = 0; i < 10; i++) t.send(datagram(i), DEST, { transportError: () => errors++ });
    const sink = recordingSink();
    link.sink(sink).onMessage(datagram(0), SOURCE);
    expect(inner.sent).toHaveLength(0);
    expect(sink.got).toHaveLength(0);
    expect(errors).toBe(0);
    expect(link.dropped).toBe(11);
  });

  it("drops about the asked fraction in each direction", () => {
    const n = 10_000;
    const { link } = run({ loss: 0.1, seed: 42 }, n);
    const { droppedSend, droppedReceive, sent, received } = link.counters;
    expect(droppedSend + sent).toBe(n);
    expect(droppedReceive + received).toBe(n);
    // 10,000 draws at p = 0.1: σ = 30, so ±200 is over 6σ.
    expect(droppedSend).toBeGreaterThan(800);
    expect(droppedSend).toBeLessThan(1200);
    expect(droppedReceive).toBeGreaterThan(800);
    expect(droppedReceive).toBeLessThan(1200);
    expect(link.dropped).toBe(droppedSend + droppedReceive);
  });

  it("the same seed and the same traffic drop the same datagrams; another seed drops others", () => {
    const a = run({ loss: 0.3, seed: 7 }, 200);
    const b = run({ loss: 0.3, seed: 7 }, 200);
    const c = run({ loss: 0.3, seed: 8 }, 200);
    expect(b.sent).toEqual(a.sent);
    expect(b.received).toEqual(a.received);
    expect(c.sent).not.toEqual(a.sent);
  });

  it("direction limits the loss to one way", () => {
    const sendOnly = run({ loss: 1, direction: "send" }, 20);
    expect(sendOnly.sent).toHaveLength(0);
    expect(sendOnly.received).toHaveLength(20);
    const receiveOnly = run({ loss: 1, direction: "receive" }, 20);
    expect(receiveOnly.sent).toHaveLength(20);
    expect(receiveOnly.received).toHaveLength(0);
  });

  it("a filter decides first: true drops, false passes, undefined leaves it to the draw", () => {
    const seen: Array<[string, string, number]> = [];
    const link = lossy({
      loss: 1,
      filter: (data, direction, peer) => {
        seen.push([data.toString(), direction, peer.port]);
        if (data.toString() === "message 1") return true;
        if (data.toString() === "message 2") return false;
        return undefined;
      },
    });
    const inner = new RecordingTransport();
    const sink = recordingSink();
    const t = link.wrap(inner);
    const s = link.sink(sink);
    for (let i = 0; i < 3; i++) {
      t.send(datagram(i), DEST);
      s.onMessage(datagram(i), SOURCE);
    }
    // Only "message 2" passes: the filter let it through; 0 went to the draw (loss 1), 1 was dropped.
    expect(inner.sent.map((x) => x.data.toString())).toEqual(["message 2"]);
    expect(sink.got.map((x) => x.toString())).toEqual(["message 2"]);
    expect(seen.slice(0, 2)).toEqual([
      ["message 0", "send", 5060],
      ["message 0", "receive", 5060],
    ]);
    expect(link.counters).toEqual({ sent: 1, received: 1, droppedSend: 2, droppedReceive: 2 });
  });

  it("the wrapped transport shows the inner one's identity, forwards onError and close", async () => {
    const link = lossy({ loss: 0 });
    const inner = new RecordingTransport();
    const t = link.wrap(inner);
    expect(t.protocol).toBe("UDP");
    expect(t.reliable).toBe(false);
    expect(t.localAddress).toBe("127.0.0.1");
    expect(t.localPort).toBe(5070);
    const target: SendErrorTarget = { transportError() {} };
    t.send(datagram(0), DEST, target);
    expect(inner.sent[0]!.onError).toBe(target);
    expect(inner.sent[0]!.dest).toBe(DEST);
    await t.close();
    expect(inner.closed).toBe(1);
  });

  it("the wrapped sink forwards framing errors, and has none when the inner sink has none", () => {
    const link = lossy({ loss: 1 });
    const sink = recordingSink();
    const err = new Error("bad Content-Length");
    link.sink(sink).onFramingError?.(err, SOURCE);
    expect(sink.framingErrors).toEqual([err]);
    expect(link.sink({ onMessage() {} }).onFramingError).toBeUndefined();
  });

  it("rejects a loss outside 0..1 and an unknown direction", () => {
    expect(() => lossy({ loss: -0.1 })).toThrow(RangeError);
    expect(() => lossy({ loss: 1.5 })).toThrow(RangeError);
    expect(() => lossy({ loss: Number.NaN })).toThrow(RangeError);
    expect(() => lossy({ loss: 0.1, direction: "sideways" as "send" })).toThrow(RangeError);
  });
});
