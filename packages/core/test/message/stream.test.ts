import { describe, expect, it } from "vitest";
import { SipParseError } from "../../src/message/errors.js";
import { parseMessage } from "../../src/message/parser.js";
import { StreamFramer } from "../../src/message/stream.js";
import { thrownParseError } from "./helpers.js";

function message(callId: string, body = "", clName = "Content-Length"): Buffer {
  return Buffer.from(
    [
      "OPTIONS sip:x@example.com SIP/2.0",
      "Via: SIP/2.0/TCP a.example.com;branch=z9hG4bK1",
      "To: <sip:x@example.com>",
      "From: <sip:y@example.com>;tag=1",
      `Call-ID: ${callId}`,
      "CSeq: 1 OPTIONS",
      `${clName}: ${Buffer.byteLength(body)}`,
      "",
      body,
    ].join("\r\n"),
    "latin1",
  );
}

interface Seen {
  messages: Buffer[];
  keepAlives: string[];
  events: string[];
}

function collector(): Seen & { onMessage: (m: Buffer) => void; onKeepAlive: (k: "ping" | "pong") => void } {
  const seen: Seen = { messages: [], keepAlives: [], events: [] };
  return {
    ...seen,
    onMessage: (m) => {
      seen.messages.push(m);
      seen.events.push(`msg:${parseMessage(m, { datagram: false }).callId}`);
    },
    onKeepAlive: (k) => {
      seen.keepAlives.push(k);
      seen.events.push(k);
    },
    get messages() {
      return seen.messages;
    },
    get keepAlives() {
      return seen.keepAlives;
    },
    get events() {
      return seen.events;
    },
  };
}

function framingError(f: StreamFramer, data: Buffer): SipParseError {
  return thrownParseError(() => f.push(data, () => {}), "expected a framing error");
}

describe("StreamFramer", () => {
  it("frames several messages in one chunk, zero-copy", () => {
    const a = message("a", "body-a");
    const b = message("b");
    const c = message("c", "x\r\n\r\ny");
    const chunk = Buffer.concat([a, b, c]);
    const f = new StreamFramer();
    const col = collector();
    f.push(chunk, col.onMessage, col.onKeepAlive);
    expect(col.messages.map((m) => m.toString("latin1"))).toEqual([a, b, c].map((m) => m.toString("latin1")));
    expect(col.messages[0]!.buffer).toBe(chunk.buffer);
    expect(f.buffered).toBe(0);
  });

  it("frames messages fed one byte at a time", () => {
    const data = Buffer.concat([message("a", "hello"), message("b", "\r\n\r\n"), message("c", "", "l")]);
    const f = new StreamFramer();
    const col = collector();
    for (let i = 0; i < data.length; i++) f.push(data.subarray(i, i + 1), col.onMessage, col.onKeepAlive);
    expect(col.events).toEqual(["msg:a", "msg:b", "msg:c"]);
    expect(Buffer.concat(col.messages).equals(data)).toBe(true);
    expect(f.buffered).toBe(0);
  });

  it("frames a message split in two at every offset", () => {
    const data = Buffer.concat([message("a", "some body"), message("b")]);
    for (let cut = 1; cut < data.length; cut++) {
      const f = new StreamFramer();
      const got: Buffer[] = [];
      f.push(data.subarray(0, cut), (m) => got.push(m));
      f.push(data.subarray(cut), (m) => got.push(m));
      expect(Buffer.concat(got).equals(data)).toBe(true);
      expect(got).toHaveLength(2);
    }
  });

  it("messages copied out of the internal buffer are not overwritten later", () => {
    const a = message("a", "AAAA");
    const b = message("b", "BBBB");
    const f = new StreamFramer();
    const got: Buffer[] = [];
    f.push(a.subarray(0, 10), (m) => got.push(m));
    f.push(Buffer.concat([a.subarray(10), b.subarray(0, 20)]), (m) => got.push(m));
    f.push(b.subarray(20), (m) => got.push(m));
    expect(got[0]!.equals(a)).toBe(true);
    expect(got[1]!.equals(b)).toBe(true);
  });

  it("reports RFC 5626 keep-alives between messages", () => {
    const f = new StreamFramer();
    const col = collector();
    f.push(Buffer.from("\r\n\r\n"), col.onMessage, col.onKeepAlive);
    f.push(Buffer.from("\r\n"), col.onMessage, col.onKeepAlive);
    f.push(
      Buffer.concat([message("a"), Buffer.from("\r\n\r\n"), message("b"), Buffer.from("\r\n")]),
      col.onMessage,
      col.onKeepAlive,
    );
    expect(col.events).toEqual(["ping", "pong", "msg:a", "ping", "msg:b", "pong"]);
    // a ping whose second CRLF comes later is two pongs; a ping split after CR waits
    const g = new StreamFramer();
    const col2 = collector();
    g.push(Buffer.from("\r\n\r"), col2.onMessage, col2.onKeepAlive);
    expect(col2.events).toEqual([]);
    g.push(Buffer.from("\n"), col2.onMessage, col2.onKeepAlive);
    expect(col2.events).toEqual(["ping"]);
    expect(g.buffered).toBe(0);
  });

  it("keep-alives without a handler are consumed silently", () => {
    const f = new StreamFramer();
    const got: Buffer[] = [];
    f.push(Buffer.concat([Buffer.from("\r\n\r\n\r\n"), message("a")]), (m) => got.push(m));
    expect(got).toHaveLength(1);
  });

  it("framing faults throw SipParseError", () => {
    const noCl = Buffer.from(
      "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nCall-ID: x\r\n\r\n",
      "latin1",
    );
    expect(framingError(new StreamFramer(), noCl).code).toBe("bad-content-length");
    for (const v of ["-5", "abc", "1 2", "", "5x"]) {
      const m = Buffer.from(`OPTIONS sip:x SIP/2.0\r\nContent-Length: ${v}\r\n\r\n`);
      expect(framingError(new StreamFramer(), m).code).toBe("bad-content-length");
    }
    const dup = Buffer.from("OPTIONS sip:x SIP/2.0\r\nContent-Length: 5\r\nl: 6\r\n\r\n");
    expect(framingError(new StreamFramer(), dup).code).toBe("bad-content-length");
    const same = Buffer.from("OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\nl: 0\r\n\r\n");
    const got: Buffer[] = [];
    new StreamFramer().push(same, (m) => got.push(m));
    expect(got).toHaveLength(1);
    expect(framingError(new StreamFramer(), Buffer.from("\r\x00")).code).toBe("bad-start-line");
  });

  it("refuses a head or a message larger than the limit", () => {
    const f = new StreamFramer({ maxMessageSize: 200 });
    let err: unknown;
    try {
      for (let i = 0; i < 50; i++) f.push(Buffer.from(`X-Header-${i}: value value value\r\n`), () => {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SipParseError);
    expect((err as SipParseError).status).toBe(513);
    const g = new StreamFramer({ maxMessageSize: 200 });
    expect(framingError(g, Buffer.from("OPTIONS sip:x SIP/2.0\r\nContent-Length: 500\r\n\r\n")).code).toBe(
      "too-large",
    );
  });

  it("buffered and reset", () => {
    const f = new StreamFramer();
    const data = message("a", "body");
    f.push(data.subarray(0, 30), () => {});
    expect(f.buffered).toBe(30);
    f.reset();
    expect(f.buffered).toBe(0);
    const got: Buffer[] = [];
    f.push(data, (m) => got.push(m));
    expect(got).toHaveLength(1);
  });

  it("a callback may reset the framer: framing stops there", () => {
    const f = new StreamFramer();
    const got: Buffer[] = [];
    f.push(Buffer.concat([message("a"), message("b")]), (m) => {
      got.push(m);
      f.reset();
    });
    expect(got).toHaveLength(1);
    expect(f.buffered).toBe(0);
  });

  it("a large head fed in small chunks is scanned once (linear)", () => {
    const headers = Array.from({ length: 200 }, (_, i) => `X-H${i}: ${"v".repeat(200)}`).join("\r\n");
    const data = Buffer.from(`OPTIONS sip:x SIP/2.0\r\n${headers}\r\nContent-Length: 0\r\n\r\n`, "latin1");
    const f = new StreamFramer({ maxMessageSize: 100000 });
    const got: Buffer[] = [];
    const t = performance.now();
    for (let i = 0; i < data.length; i += 7) f.push(data.subarray(i, i + 7), (m) => got.push(m));
    const ms = performance.now() - t;
    expect(got).toHaveLength(1);
    expect(got[0]!.equals(data)).toBe(true);
    // 6000 pushes over 41 KB: quadratic rescanning would take seconds
    expect(ms).toBeLessThan(1000);
  });
});
