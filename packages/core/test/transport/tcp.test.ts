import * as net from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TransportBindError, TransportSendError } from "../../src/transport/errors.js";
import { createTcpTransport, type TcpTransport } from "../../src/transport/tcp.js";
import type { Destination, TransportSink } from "../../src/transport/types.js";
import {
  clientOfNewTransport,
  closeAll,
  collectErrors,
  collector,
  HOST,
  listener,
  rawClient,
  sipMessage,
  transport,
} from "./tcp-helpers.js";

/** A port with nobody listening: listen on an ephemeral port, then close. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen({ host: HOST, port: 0 }, resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterEach(closeAll);

describe("TCP transport", () => {
  it("listens on an ephemeral port; reliable", async () => {
    const t = await transport({ sink: collector() });
    expect(t.protocol).toBe("TCP");
    expect(t.reliable).toBe(true);
    expect(t.localAddress).toBe(HOST);
    expect(t.localPort).toBeGreaterThan(0);
    expect(t.connectionCount).toBe(0);
  });

  // The same test as ws.test.ts's for its own transport: different factories and protocol names.
  it("rejects EADDRINUSE with a typed error", async () => {
    const t = await transport({ sink: collector() });
    const err = await createTcpTransport({ address: HOST, port: t.localPort, sink: collector() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransportBindError);
    expect((err as TransportBindError).code).toBe("EADDRINUSE");
    expect((err as TransportBindError).message).toContain(`TCP ${HOST}:${t.localPort}`);
  });

  it("one message split into many small writes arrives whole", async () => {
    const { sink, t, c } = await clientOfNewTransport();
    const msg = sipMessage("split", "a body of some length");
    for (let i = 0; i < msg.length; i += 17) {
      c.socket.write(msg.subarray(i, Math.min(i + 17, msg.length)));
      await sleep(1);
    }
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    expect(sink.received[0]!.data.equals(msg)).toBe(true);
    const src = sink.received[0]!.source;
    expect(src.protocol).toBe("TCP");
    expect(src.address).toBe(HOST);
    expect(src.port).toBe(c.socket.localPort);
    expect(src.localAddress).toBe(HOST);
    expect(src.localPort).toBe(t.localPort);
    expect(src.connectionId).toBeTypeOf("number");
    expect(t.connectionCount).toBe(1);
  });

  it("two messages in one write arrive as two", async () => {
    const { sink, c } = await clientOfNewTransport();
    const m1 = sipMessage("one", "first");
    const m2 = sipMessage("two", "second body");
    c.socket.write(Buffer.concat([m1, m2]));
    await vi.waitFor(() => expect(sink.received).toHaveLength(2));
    expect(sink.received[0]!.data.equals(m1)).toBe(true);
    expect(sink.received[1]!.data.equals(m2)).toBe(true);
    expect(sink.received[0]!.source.connectionId).toBe(sink.received[1]!.source.connectionId);
  });

  it("answers an RFC 5626 ping (CRLFCRLF) with a pong (CRLF)", async () => {
    const { sink, c } = await clientOfNewTransport();
    c.socket.write("\r\n\r\n");
    await vi.waitFor(() => expect(c.read()).toBe("\r\n"));
    expect(sink.received).toHaveLength(0);
    expect(sink.framingErrors).toHaveLength(0);
  });

  it("sends a response back on the connection the request came on", async () => {
    const { sink, t, c } = await clientOfNewTransport();
    c.socket.write(sipMessage("req"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    const src = sink.received[0]!.source;
    const response = Buffer.from("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    // Even with a Via address that is not the peer's: the connection wins (RFC 3261 §18.2.2).
    t.send(response, { protocol: "TCP", address: "127.0.0.1", port: 5, connectionId: src.connectionId });
    await vi.waitFor(() => expect(c.read()).toBe(response.toString()));
    expect(t.connectionCount).toBe(1);
    // Without a connection id, the peer's address:port finds the same connection.
    t.send(response, { protocol: "TCP", address: src.address, port: src.port });
    await vi.waitFor(() => expect(c.read()).toBe(response.toString().repeat(2)));
    expect(t.connectionCount).toBe(1);
  });

  it("reuses one connection to the same address:port; sends made before it is up are queued in order", async () => {
    const aSink = collector();
    const bSink = collector();
    const a = await transport({ sink: aSink });
    const b = await transport({ sink: bSink });
    const dest: Destination = { protocol: "TCP", address: HOST, port: b.localPort };
    const m0 = sipMessage("m0");
    const m0copy = Buffer.from(m0);
    a.send(m0, dest);
    m0.fill(0x20); // the caller reuses its buffer while the connection is still coming up
    for (let i = 1; i < 5; i++) a.send(sipMessage(`m${i}`), dest);
    expect(a.connectionCount).toBe(1);
    await vi.waitFor(() => expect(bSink.received).toHaveLength(5));
    a.send(sipMessage("m5"), dest);
    await vi.waitFor(() => expect(bSink.received).toHaveLength(6));
    expect(a.connectionCount).toBe(1);
    expect(b.connectionCount).toBe(1);
    expect(bSink.received.map((r) => r.data.toString().match(/Call-ID: (\S+)/)![1])).toEqual([
      "m0",
      "m1",
      "m2",
      "m3",
      "m4",
      "m5",
    ]);
    expect(bSink.received[0]!.data.equals(m0copy)).toBe(true);
    const ids = new Set(bSink.received.map((r) => r.source.connectionId));
    expect(ids.size).toBe(1);

    // b answers on that connection; a hears it with its outbound connection's id.
    const reply = sipMessage("back");
    b.send(reply, {
      protocol: "TCP",
      address: HOST,
      port: 1,
      connectionId: bSink.received[0]!.source.connectionId,
    });
    await vi.waitFor(() => expect(aSink.received).toHaveLength(1));
    expect(aSink.received[0]!.data.equals(reply)).toBe(true);
    expect(aSink.received[0]!.source.port).toBe(b.localPort);
    expect(a.connectionCount).toBe(1);
  });

  it("a connect failure reports transportError on every queued send's target", async () => {
    const t = await transport({ sink: collector() });
    const port = await deadPort();
    const errors: Error[][] = [[], [], []];
    for (const list of errors) {
      t.send(
        sipMessage("x"),
        { protocol: "TCP", address: HOST, port },
        { transportError: (e) => list.push(e) },
      );
    }
    t.send(sipMessage("no-target"), { protocol: "TCP", address: HOST, port }); // no target: silently lost
    await vi.waitFor(() => expect(errors.every((l) => l.length === 1)).toBe(true));
    for (const [e] of errors) {
      expect(e).toBeInstanceOf(TransportSendError);
      expect((e as TransportSendError).code).toBe("ECONNREFUSED");
      expect(e!.message).toMatch(/^ECONNREFUSED TCP 127\.0\.0\.1:\d+/);
    }
    await vi.waitFor(() => expect(t.connectionCount).toBe(0));
  });

  it("closes an idle connection", async () => {
    const { sink, t, c } = await clientOfNewTransport({ idleTimeoutMs: 50 });
    c.socket.write(sipMessage("then-silence"));
    await c.closed;
    expect(sink.received).toHaveLength(1);
    await vi.waitFor(() => expect(t.connectionCount).toBe(0));
  });

  it("closes an idle outbound connection too; the next send opens a new one", async () => {
    const bSink = collector();
    const a = await transport({ sink: collector(), idleTimeoutMs: 50 });
    const b = await transport({ sink: bSink });
    const dest: Destination = { protocol: "TCP", address: HOST, port: b.localPort };
    a.send(sipMessage("1"), dest);
    await vi.waitFor(() => expect(bSink.received).toHaveLength(1));
    await vi.waitFor(() => expect(a.connectionCount).toBe(0));
    a.send(sipMessage("2"), dest);
    await vi.waitFor(() => expect(bSink.received).toHaveLength(2));
    expect(bSink.received[1]!.source.connectionId).not.toBe(bSink.received[0]!.source.connectionId);
  });

  it("a framing error is reported, then the connection is closed", async () => {
    const sink = collector();
    const t = await transport({ sink, limits: { maxMessageSize: 1000 } });
    const c = await rawClient(t.localPort);
    const good = sipMessage("good");
    const bad = Buffer.from(
      "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nCall-ID: bad\r\nContent-Length: 99999999\r\n\r\n",
      "latin1",
    );
    c.socket.write(Buffer.concat([good, bad]));
    await c.closed;
    expect(sink.received).toHaveLength(1);
    expect(sink.received[0]!.data.equals(good)).toBe(true);
    expect(sink.framingErrors).toHaveLength(1);
    expect(sink.framingErrors[0]![1].connectionId).toBe(sink.received[0]!.source.connectionId);
    await vi.waitFor(() => expect(t.connectionCount).toBe(0));
  });

  it("what the sink sends from onFramingError still goes out before the close", async () => {
    const reply = Buffer.from("SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let t!: TcpTransport;
    const sink: TransportSink = {
      onMessage() {},
      onFramingError(_err, source) {
        t.send(reply, {
          protocol: "TCP",
          address: source.address,
          port: source.port,
          connectionId: source.connectionId,
        });
      },
    };
    t = await transport({ sink, limits: { maxMessageSize: 500 } });
    const c = await rawClient(t.localPort);
    c.socket.write("OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 100000\r\n\r\n");
    await c.closed;
    expect(c.read()).toBe(reply.toString());
  });

  it("a response to a connection that is gone opens a new connection to the address", async () => {
    const sink = collector();
    const t = await transport({ sink });
    const peer = await listener();
    const c = await rawClient(t.localPort);
    c.socket.write(sipMessage("req"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    const id = sink.received[0]!.source.connectionId!;
    // A reset, not a FIN: after a FIN the connection stays usable for responses (half-close).
    c.socket.resetAndDestroy();
    await vi.waitFor(() => expect(t.hasConnection(id)).toBe(false));
    t.send(Buffer.from("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"), {
      protocol: "TCP",
      address: HOST,
      port: peer.port,
      connectionId: id,
    });
    await vi.waitFor(() => expect(peer.got()).toContain("200 OK"));
  });

  it("close() destroys every connection and fails sends still queued; later sends fail too", async () => {
    const sink = collector();
    const a = await createTcpTransport({ address: HOST, port: 0, sink });
    const b = await transport({ sink: collector() });
    const c = await rawClient(a.localPort);
    c.socket.write(sipMessage("x"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    const { errors, target } = collectErrors();
    a.send(sipMessage("queued"), { protocol: "TCP", address: HOST, port: b.localPort }, target);
    expect(a.connectionCount).toBe(2);
    await a.close();
    await c.closed;
    expect(a.connectionCount).toBe(0);
    expect(errors.map((e) => (e as TransportSendError).code)).toEqual(["ECLOSED"]);
    a.send(sipMessage("after"), { protocol: "TCP", address: HOST, port: b.localPort }, target);
    await vi.waitFor(() => expect(errors).toHaveLength(2));
    expect((errors[1] as TransportSendError).code).toBe("ECLOSED");
  });

  it("works over IPv6 ::1 when the machine has it", async (ctx) => {
    const probe = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      probe.once("error", () => resolve(false));
      probe.listen({ host: "::1", port: 0 }, () => probe.close(() => resolve(true)));
    });
    if (!ok) ctx.skip();
    const bSink = collector();
    const a = await transport({ address: "::1", sink: collector() });
    const b = await transport({ address: "::1", sink: bSink });
    a.send(sipMessage("v6"), { protocol: "TCP", address: "::1", port: b.localPort });
    await vi.waitFor(() => expect(bSink.received).toHaveLength(1));
    const src = bSink.received[0]!.source;
    expect(src.address).toBe("::1");
    expect(src.localAddress).toBe("::1");
    expect(src.localPort).toBe(b.localPort);
    // b reaches a's listening address with a new connection; a's send to b reuses its own.
    a.send(sipMessage("v6-2"), { protocol: "TCP", address: "0:0:0:0:0:0:0:1", port: b.localPort });
    await vi.waitFor(() => expect(bSink.received).toHaveLength(2));
    expect(a.connectionCount).toBe(1);
  });

  it("refuses inbound connections beyond maxConnections", async () => {
    const t = await transport({ sink: collector(), maxConnections: 1 });
    await rawClient(t.localPort);
    await vi.waitFor(() => expect(t.connectionCount).toBe(1));
    const second = await rawClient(t.localPort);
    await second.closed;
    expect(t.connectionCount).toBe(1);
    const { errors, target } = collectErrors();
    t.send(sipMessage("x"), { protocol: "TCP", address: HOST, port: 9 }, target);
    await vi.waitFor(() => expect(errors).toHaveLength(1));
    expect((errors[0] as TransportSendError).code).toBe("EMFILE");
  });
});
