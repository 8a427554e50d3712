import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import type * as tls from "node:tls";
import { afterEach, describe, expect, it, vi } from "vitest";
import { WebSocket } from "ws";
import { VirtualClock } from "../../src/clock.js";
import { TransportBindError, type TransportSendError } from "../../src/transport/errors.js";
import { fingerprintOf } from "../../src/transport/tls.js";
import type { Source, TransportSink } from "../../src/transport/types.js";
import { createWsTransport, type WsTransport, type WsTransportOptions } from "../../src/transport/ws.js";
import { rawClient as raw, sockets } from "./tcp-helpers.js";

const HOST = "127.0.0.1";

/** An OPTIONS as a WebSocket client sends it (Via host under .invalid, RFC 7118 §5). */
function sipMessage(callId: string, opts: { contentLength?: boolean; body?: string } = {}): Buffer {
  const body = opts.body ?? "";
  return Buffer.from(
    `OPTIONS sip:bob@${HOST} SIP/2.0\r\n` +
      `Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK-${callId}\r\n` +
      "From: <sip:alice@example.invalid>;tag=1\r\n" +
      `To: <sip:bob@${HOST}>\r\n` +
      `Call-ID: ${callId}\r\n` +
      "CSeq: 1 OPTIONS\r\n" +
      "Max-Forwards: 70\r\n" +
      (opts.contentLength === false ? "" : `Content-Length: ${Buffer.byteLength(body)}\r\n`) +
      "\r\n" +
      body,
    "utf8",
  );
}

interface Sink extends TransportSink {
  received: Array<{ data: Buffer; source: Source }>;
  closedConns: Source[];
}

function collector(): Sink {
  const received: Sink["received"] = [];
  const closedConns: Source[] = [];
  return {
    received,
    closedConns,
    onMessage: (data, source) => received.push({ data: Buffer.from(data), source }),
    onConnectionClosed: (source) => closedConns.push(source),
  };
}

const transports: WsTransport[] = [];
const clients: WebSocket[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(transports.splice(0).map((t) => t.close()));
});

/** A WS transport on an ephemeral port, on a virtual clock unless one is given (closed after the test). */
async function transport(
  opts: Partial<WsTransportOptions> = {},
): Promise<{ t: WsTransport; sink: Sink; clock: VirtualClock }> {
  const sink = (opts.sink as Sink | undefined) ?? collector();
  const clock = (opts.clock as VirtualClock | undefined) ?? new VirtualClock();
  const t = await createWsTransport({ address: HOST, port: 0, ...opts, sink, clock });
  transports.push(t);
  return { t, sink, clock };
}

interface Client {
  ws: WebSocket;
  /** Messages received, with their frame kind. */
  got: Array<{ data: Buffer; binary: boolean }>;
  pings: number;
  /** The client's own port (the server's Source.port). */
  port: number;
  closed: Promise<{ code: number; reason: string }>;
  peerCertificate: tls.PeerCertificate | undefined;
}

type ClientOptions = ConstructorParameters<typeof WebSocket>[2] & { protocols?: string[] };

/** A `ws` client that completes its handshake (rejects on an HTTP error), closed after the test. */
function connect(url: string, opts: ClientOptions = {}): Promise<Client> {
  const { protocols = ["sip"], ...rest } = opts;
  const ws = new WebSocket(url, protocols, rest);
  clients.push(ws);
  const got: Client["got"] = [];
  const client: Client = {
    ws,
    got,
    pings: 0,
    port: 0,
    peerCertificate: undefined,
    closed: new Promise((resolve) =>
      ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })),
    ),
  };
  ws.on("message", (data: Buffer, binary: boolean) => got.push({ data, binary }));
  ws.on("ping", () => client.pings++);
  ws.on("upgrade", (res) => {
    const s = res.socket as net.Socket & Partial<tls.TLSSocket>;
    client.port = s.localPort ?? 0;
    client.peerCertificate = s.getPeerCertificate?.();
  });
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(client));
    ws.once("error", reject);
  });
}

/** The HTTP status and body a refused handshake got. */
function refused(url: string, opts: ClientOptions = {}): Promise<{ status: number; body: string }> {
  const { protocols = ["sip"], ...rest } = opts;
  const ws = new WebSocket(url, protocols, rest);
  clients.push(ws);
  return new Promise((resolve, reject) => {
    ws.once("open", () => reject(new Error("handshake accepted")));
    ws.on("error", () => {});
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
  });
}

const url = (t: WsTransport, path = "/") => `ws://${HOST}:${t.localPort}${path}`;

describe("WebSocket opening handshake (RFC 7118 §4, RFC 6455 §4)", () => {
  it("listens on an ephemeral port; reliable; protocol WS", async () => {
    const { t } = await transport();
    expect(t.protocol).toBe("WS");
    expect(t.reliable).toBe(true);
    expect(t.localAddress).toBe(HOST);
    expect(t.localPort).toBeGreaterThan(0);
    expect(t.stats.ws_connections).toBe(0);
  });

  // The same test as tcp.test.ts's for this transport: different factories and protocol names.
  it("rejects a port in use with a TransportBindError", async () => {
    const { t } = await transport();
    const err = await createWsTransport({ address: HOST, port: t.localPort, sink: collector() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransportBindError);
    expect((err as TransportBindError).code).toBe("EADDRINUSE");
    expect((err as TransportBindError).message).toContain(`WS ${HOST}:${t.localPort}`);
  });

  it("a handshake without the sip subprotocol gets 400 and is closed; with it, sip is accepted", async () => {
    const { t } = await transport();
    const none = await refused(url(t), { protocols: [] });
    expect(none.status).toBe(400);
    expect(none.body).toContain("WebSocket subprotocol sip required (RFC 7118");
    const other = await refused(url(t), { protocols: ["xmpp"] });
    expect(other.status).toBe(400);
    expect(t.stats.ws_handshake_rejected).toBe(2);
    await vi.waitFor(() => expect(t.handshakeCount).toBe(0));
    expect(t.connectionCount).toBe(0);

    const c = await connect(url(t), { protocols: ["xmpp", "sip"] });
    expect(c.ws.protocol).toBe("sip");
    await vi.waitFor(() => expect(t.connectionCount).toBe(1));
    expect(t.stats.ws_connections).toBe(1);
    expect(t.stats.ws_handshake_rejected).toBe(2);
  });

  it("a plain HTTP request gets 426 Upgrade Required naming websocket and sip, and is closed", async () => {
    const { t } = await transport();
    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get({ host: HOST, port: t.localPort, path: "/", agent: false }, resolve).on("error", reject),
    );
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (d: string) => {
      body += d;
    });
    await new Promise((r) => res.on("end", r));
    expect(res.statusCode).toBe(426);
    expect(res.headers.upgrade).toBe("websocket");
    expect(res.headers["sec-websocket-protocol"]).toBe("sip");
    expect(body).toContain("RFC 7118");
    expect(t.stats.ws_handshake_rejected).toBe(1);
    await vi.waitFor(() => expect(t.handshakeCount).toBe(0));
  });

  it("garbage on the port: 400, closed, and the transport keeps serving", async () => {
    const { t, sink } = await transport();
    const g = await raw(t.localPort);
    g.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a, 0x80, 0x81]));
    await g.closed;
    expect(g.read()).toMatch(/^HTTP\/1\.1 400 /);
    const g2 = await raw(t.localPort);
    g2.socket.write(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
    await g2.closed;
    expect(g2.read()).toMatch(/^HTTP\/1\.1 431 /);
    expect(t.stats.ws_handshake_rejected).toBe(2);
    expect(t.handshakeCount).toBe(0);
    const c = await connect(url(t));
    c.ws.send(sipMessage("after-garbage"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
  });

  it("a malformed handshake (no key, wrong version, POST) is refused with the RFC 6455 status", async () => {
    const { t } = await transport();
    const ask = async (head: string) => {
      const s = await raw(t.localPort);
      s.socket.write(head);
      await s.closed;
      return s.read();
    };
    const base = "Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: sip\r\n";
    const key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    expect(await ask(`GET / HTTP/1.1\r\n${base}Sec-WebSocket-Version: 13\r\n\r\n`)).toMatch(
      /^HTTP\/1\.1 400 /,
    );
    const v = await ask(`GET / HTTP/1.1\r\n${base}${key}Sec-WebSocket-Version: 7\r\n\r\n`);
    expect(v).toMatch(/^HTTP\/1\.1 426 /);
    expect(v).toContain("Sec-WebSocket-Version: 13");
    expect(await ask(`POST / HTTP/1.1\r\n${base}${key}Sec-WebSocket-Version: 13\r\n\r\n`)).toMatch(
      /^HTTP\/1\.1 405 /,
    );
    // The same head, done right, is accepted: 101 with the sip subprotocol.
    const s = await raw(t.localPort);
    s.socket.write(`GET / HTTP/1.1\r\n${base}${key}Sec-WebSocket-Version: 13\r\n\r\n`);
    await vi.waitFor(() => expect(s.read()).toContain("\r\n\r\n"));
    expect(s.read()).toMatch(/^HTTP\/1\.1 101 /);
    expect(s.read()).toContain("Sec-WebSocket-Protocol: sip\r\n");
    expect(t.stats.ws_handshake_rejected).toBe(3);
  });

  it("path: only the configured path is upgraded (the query ignored); others get 404", async () => {
    const { t } = await transport({ path: "/sip" });
    expect((await refused(url(t, "/other"))).status).toBe(404);
    await connect(url(t, "/sip?token=1"));
    expect(t.connectionCount).toBe(1);
  });
});

describe("WebSocket framing (RFC 7118 §5)", () => {
  it("text and binary frames are both delivered whole, with the connection's Source", async () => {
    const { t, sink } = await transport();
    const c = await connect(url(t));
    const text = sipMessage("text-frame", { body: "héllo" });
    const binary = sipMessage("binary-frame", { body: "bin" });
    c.ws.send(text.toString("utf8"));
    c.ws.send(binary, { binary: true });
    await vi.waitFor(() => expect(sink.received).toHaveLength(2));
    expect(sink.received[0]!.data.equals(text)).toBe(true);
    expect(sink.received[1]!.data.equals(binary)).toBe(true);
    const source = sink.received[0]!.source;
    expect(source).toEqual({
      protocol: "WS",
      address: HOST,
      port: c.port,
      localAddress: HOST,
      localPort: t.localPort,
      connectionId: source.connectionId,
    });
    expect(c.port).toBeGreaterThan(0);
    expect(t.hasConnection(source.connectionId!)).toBe(true);
    expect(sink.received[1]!.source).toBe(source);
  });

  it("a message without Content-Length is delivered as it is", async () => {
    const { t, sink } = await transport();
    const c = await connect(url(t));
    const msg = sipMessage("no-cl", { contentLength: false, body: "v=0\r\n" });
    c.ws.send(msg);
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    expect(sink.received[0]!.data.equals(msg)).toBe(true);
  });

  it("CRLFCRLF is answered with CRLF (RFC 5626 §3.5.1), not given to the sink; blank messages are dropped", async () => {
    const { t, sink } = await transport();
    const c = await connect(url(t));
    c.ws.send("\r\n\r\n");
    await vi.waitFor(() => expect(c.got).toHaveLength(1));
    expect(c.got[0]!.data.toString("latin1")).toBe("\r\n");
    expect(c.got[0]!.binary).toBe(false);
    c.ws.send("");
    c.ws.send("\r\n");
    c.ws.send(" \t\r\n ", { binary: true });
    c.ws.send(sipMessage("after-blank"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    expect(sink.received[0]!.data.toString()).toContain("Call-ID: after-blank");
    expect(c.got).toHaveLength(1);
  });

  it("many pings at once get at most one pong each, never a queue behind a pending one", async () => {
    const { t } = await transport();
    const c = await connect(url(t));
    for (let i = 0; i < 200; i++) c.ws.send("\r\n\r\n");
    c.ws.send(sipMessage("ping-burst"));
    c.ws.send("\r\n\r\n");
    await vi.waitFor(() => expect(c.got.length).toBeGreaterThan(0));
    // Every pong is a single CRLF; at most one per ping.
    await new Promise((r) => setTimeout(r, 50));
    expect(c.got.length).toBeLessThanOrEqual(201);
    for (const m of c.got) expect(m.data.toString("latin1")).toBe("\r\n");
  });

  it("a message larger than maxMessageBytes closes the connection with 1009, counted", async () => {
    const { t, sink } = await transport({ maxMessageBytes: 1024 });
    const c = await connect(url(t));
    const fits = sipMessage("just-fits", { body: "x".repeat(900) });
    const exact = sipMessage("just-fits", { body: "x".repeat(900 + 1024 - fits.length) });
    expect(exact.length).toBe(1024);
    c.ws.send(exact);
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    c.ws.send(sipMessage("too-big", { body: "x".repeat(2000) }));
    expect((await c.closed).code).toBe(1009);
    expect(t.stats.ws_message_too_big).toBe(1);
    expect(sink.received).toHaveLength(1);
    await vi.waitFor(() => expect(sink.closedConns).toHaveLength(1));
    expect(t.connectionCount).toBe(0);
  });
});

describe("WebSocket sends", () => {
  it("a send by connection id reaches that client only: text for UTF-8, binary otherwise (RFC 7118 §5.1)", async () => {
    const { t, sink } = await transport();
    const a = await connect(url(t));
    const b = await connect(url(t));
    a.ws.send(sipMessage("from-a"));
    b.ws.send(sipMessage("from-b"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(2));
    const sourceOf = (callId: string) =>
      sink.received.find((r) => r.data.toString().includes(`Call-ID: ${callId}`))!.source;
    const bSource = sourceOf("from-b");
    const reply = Buffer.from("SIP/2.0 200 OK\r\nCall-ID: from-b\r\nContent-Length: 0\r\n\r\n");
    t.send(reply, {
      protocol: "WS",
      address: bSource.address,
      port: bSource.port,
      connectionId: bSource.connectionId,
    });
    const bytes = Buffer.from([0x53, 0x49, 0x50, 0xff, 0xfe]); // not UTF-8
    t.send(bytes, {
      protocol: "WS",
      address: bSource.address,
      port: bSource.port,
      connectionId: bSource.connectionId,
    });
    await vi.waitFor(() => expect(b.got).toHaveLength(2));
    expect(b.got[0]!.data.equals(reply)).toBe(true);
    expect(b.got[0]!.binary).toBe(false);
    expect(b.got[1]!.data.equals(bytes)).toBe(true);
    expect(b.got[1]!.binary).toBe(true);
    // Without a connection id: the connection open to the peer's address:port.
    const aSource = sourceOf("from-a");
    t.send(reply, { protocol: "WS", address: aSource.address, port: aSource.port });
    await vi.waitFor(() => expect(a.got).toHaveLength(1));
    expect(b.got).toHaveLength(2);
  });

  it("a peer that stops reading: a send beyond the write queue fails with ENOBUFS and the connection goes", async () => {
    const { t, sink } = await transport();
    const c = await connect(url(t));
    c.ws.send(sipMessage("then-stops-reading"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    const source = sink.received[0]!.source;
    c.ws.pause(); // reads nothing more
    const errors: TransportSendError[] = [];
    const target = { transportError: (e: Error) => errors.push(e as TransportSendError) };
    const chunk = Buffer.alloc(60_000, 0x61);
    let sent = 0;
    while (t.hasConnection(source.connectionId!) && sent < 2000) {
      t.send(chunk, { ...source, protocol: "WS" }, target);
      sent++;
    }
    expect(t.hasConnection(source.connectionId!)).toBe(false);
    expect(sent).toBeLessThan(2000);
    await vi.waitFor(() => expect(errors.length).toBeGreaterThan(0));
    expect(errors[0]!.code).toBe("ENOBUFS");
    await vi.waitFor(() => expect(sink.closedConns).toHaveLength(1));
    expect(t.connectionCount).toBe(0);
  });

  it("a send to no open connection fails asynchronously with ENOTCONN (a WS server never dials)", async () => {
    const { t } = await transport();
    const errors: Error[] = [];
    const target = { transportError: (e: Error) => errors.push(e) };
    t.send(Buffer.from("x"), { protocol: "WS", address: HOST, port: 5060, connectionId: 999 }, target);
    t.send(Buffer.from("x"), { protocol: "WS", address: HOST, port: 5060 }, target);
    t.send(Buffer.from("x"), { protocol: "WS", address: HOST, port: 5060 }); // nobody to tell: no throw
    expect(errors).toHaveLength(0);
    await Promise.resolve();
    expect(errors).toHaveLength(2);
    expect((errors[0] as TransportSendError).code).toBe("ENOTCONN");
    expect(errors[0]!.message).toContain(`WS ${HOST}:5060`);
    // A closed connection's id is no longer usable.
    const c = await connect(url(t));
    await vi.waitFor(() => expect(t.connectionCount).toBe(1));
    c.ws.close();
    await c.closed;
    await vi.waitFor(() => expect(t.connectionCount).toBe(0));
    expect(t.hasConnection(1)).toBe(false);
    t.send(Buffer.from("x"), { protocol: "WS", address: HOST, port: c.port, connectionId: 1 }, target);
    await vi.waitFor(() => expect(errors).toHaveLength(3));
    expect((errors[2] as TransportSendError).code).toBe("ENOTCONN");
  });
});

describe("WebSocket liveness (RFC 6455 §5.5.2) and limits", () => {
  it("a peer that does not answer pings is terminated within pingInterval + pongTimeout; a live one stays", async () => {
    const { t, sink, clock } = await transport({
      pingIntervalMs: 3000,
      pongTimeoutMs: 2000,
      idleTimeoutMs: 0,
    });
    const dead = await connect(url(t), { autoPong: false });
    const live = await connect(url(t));
    await vi.waitFor(() => expect(t.connectionCount).toBe(2));
    clock.advance(2000);
    await new Promise((r) => setTimeout(r, 20));
    expect(dead.pings + live.pings).toBe(0);
    clock.advance(1000); // 3000: both quiet for pingInterval: pinged
    await vi.waitFor(() => expect(dead.pings).toBe(1));
    await vi.waitFor(() => expect(live.pings).toBe(1));
    // The live client's pong went out before this message (`ws` pongs before emitting "ping").
    live.ws.send(sipMessage("alive"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    clock.advance(1000); // 4000: the pong is not overdue yet
    await new Promise((r) => setTimeout(r, 20));
    expect(t.connectionCount).toBe(2);
    clock.advance(1000); // 5000 = pingInterval + pongTimeout
    expect((await dead.closed).code).toBe(1006); // terminated: no closing handshake
    expect(t.stats.ws_dead_closed).toBe(1);
    await vi.waitFor(() => expect(t.connectionCount).toBe(1));
    expect(live.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("an idle connection (pings off) is closed after idleTimeoutMs", async () => {
    const { t, clock } = await transport({ pingIntervalMs: 0, idleTimeoutMs: 5000 });
    const c = await connect(url(t));
    clock.advance(4000);
    await new Promise((r) => setTimeout(r, 20));
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    clock.advance(1000);
    expect((await c.closed).code).toBe(1000);
    expect(t.stats.ws_dead_closed).toBe(0);
  });

  it("a TCP connection that never finishes its handshake is closed at handshakeTimeoutMs, counted", async () => {
    const { t, clock } = await transport({ handshakeTimeoutMs: 5000 });
    const silent = await raw(t.localPort);
    const partial = await raw(t.localPort);
    partial.socket.write("GET / HTTP/1.1\r\nHost: x\r\n");
    await vi.waitFor(() => expect(t.handshakeCount).toBe(2));
    clock.advance(4000);
    await new Promise((r) => setTimeout(r, 20));
    expect(silent.isClosed() || partial.isClosed()).toBe(false);
    clock.advance(1000);
    await silent.closed;
    await partial.closed;
    expect(t.stats.ws_handshake_timeout).toBe(2);
    expect(t.handshakeCount).toBe(0);
    // An upgraded connection is not subject to it.
    const c = await connect(url(t));
    clock.advance(10_000);
    await new Promise((r) => setTimeout(r, 20));
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("connections per IP are capped (the socket's address, not X-Forwarded-For): 503, counted", async () => {
    const { t } = await transport({ maxConnectionsPerIp: 2, trustedProxies: ["127.0.0.0/8"] });
    await connect(url(t), { headers: { "X-Forwarded-For": "198.51.100.1" } });
    await connect(url(t), { headers: { "X-Forwarded-For": "198.51.100.2" } });
    const third = await refused(url(t), { headers: { "X-Forwarded-For": "198.51.100.3" } });
    expect(third.status).toBe(503);
    expect(t.stats.ws_handshake_rejected).toBe(1);
    // Another source address has its own share.
    await connect(url(t), { localAddress: "127.0.0.2" });
    expect(t.connectionCount).toBe(3);
  });

  it("sockets still in their handshake are capped too (per IP and in total): closed at once, counted", async () => {
    const { t } = await transport({ maxConnectionsPerIp: 2, maxConnections: 3 });
    const a = await raw(t.localPort);
    const b = await raw(t.localPort);
    await vi.waitFor(() => expect(t.handshakeCount).toBe(2));
    const c = await raw(t.localPort);
    await c.closed;
    expect(c.read()).toBe("");
    expect(t.stats.ws_handshake_rejected).toBe(1);
    expect(a.isClosed() || b.isClosed()).toBe(false);
    const other = net.connect({ host: HOST, port: t.localPort, localAddress: "127.0.0.2" });
    sockets.push(other);
    other.on("error", () => {});
    await vi.waitFor(() => expect(t.handshakeCount).toBe(3));
    const d = net.connect({ host: HOST, port: t.localPort, localAddress: "127.0.0.3" });
    sockets.push(d);
    d.on("error", () => {});
    await new Promise((r) => d.once("close", r));
    expect(t.stats.ws_handshake_rejected).toBe(2);
    // Once one goes, its slot is free for the next.
    a.socket.destroy();
    await vi.waitFor(() => expect(t.handshakeCount).toBe(2));
    await connect(url(t), { localAddress: "127.0.0.3" });
  });

  it("the total number of connections is capped: 503, counted; a closed one frees its slot", async () => {
    const { t, sink } = await transport({ maxConnections: 2, maxConnectionsPerIp: 0 });
    const a = await connect(url(t));
    await connect(url(t));
    expect((await refused(url(t))).status).toBe(503);
    expect(t.stats.ws_handshake_rejected).toBe(1);
    a.ws.close();
    await vi.waitFor(() => expect(sink.closedConns).toHaveLength(1));
    await connect(url(t));
    expect(t.connectionCount).toBe(2);
  });

  it("X-Forwarded-For: the rightmost untrusted hop, only from a trusted proxy (IPv4 and IPv6 CIDRs)", async () => {
    const { t, sink } = await transport({ trustedProxies: ["127.0.0.0/8", "2001:db8::/32"] });
    const from = async (xff: string | undefined) => {
      const c = await connect(url(t), xff === undefined ? {} : { headers: { "X-Forwarded-For": xff } });
      const n = sink.received.length;
      c.ws.send(sipMessage(`xff-${n}`));
      await vi.waitFor(() => expect(sink.received).toHaveLength(n + 1));
      return { source: sink.received[n]!.source, port: c.port };
    };
    const one = await from("203.0.113.7");
    expect(one.source.address).toBe("203.0.113.7");
    expect(one.source.port).toBe(one.port);
    expect((await from("203.0.113.8, 2001:db8::5, 127.0.0.9")).source.address).toBe("203.0.113.8");
    expect((await from("192.0.2.1, 203.0.113.9, 127.0.0.9")).source.address).toBe("203.0.113.9");
    expect((await from("2001:DB8:0:0::1")).source.address).toBe("2001:db8::1");
    expect((await from("127.0.0.3, 127.0.0.4")).source.address).toBe("127.0.0.3");
    expect((await from("not-an-ip, 127.0.0.4")).source.address).toBe("127.0.0.4");
    expect((await from(undefined)).source.address).toBe(HOST);

    const untrusted = await transport({ trustedProxies: ["10.0.0.0/8"] });
    const c = await connect(url(untrusted.t), { headers: { "X-Forwarded-For": "203.0.113.7" } });
    c.ws.send(sipMessage("xff-untrusted"));
    await vi.waitFor(() => expect(untrusted.sink.received).toHaveLength(1));
    expect(untrusted.sink.received[0]!.source.address).toBe(HOST);
    const none = await transport();
    const d = await connect(url(none.t), { headers: { "X-Forwarded-For": "203.0.113.7" } });
    d.ws.send(sipMessage("xff-none"));
    await vi.waitFor(() => expect(none.sink.received).toHaveLength(1));
    expect(none.sink.received[0]!.source.address).toBe(HOST);
  });

  it("IPv6: a transport on ::1 gives IPv6 Sources; X-Forwarded-For from a trusted IPv6 proxy", async () => {
    const { t, sink } = await transport({ address: "::1", trustedProxies: ["::1/128"] });
    const c = await connect(`ws://[::1]:${t.localPort}/`, { headers: { "X-Forwarded-For": "2001:db8::7" } });
    c.ws.send(sipMessage("over-v6"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    expect(sink.received[0]!.source).toMatchObject({
      protocol: "WS",
      address: "2001:db8::7",
      port: c.port,
      localAddress: "::1",
      localPort: t.localPort,
    });
  });

  it("a trusted proxy that is not an address or CIDR is a TypeError before anything is bound", async () => {
    for (const bad of ["10.0.0.0/33", "example.com", "10.0.0.0/x", "::1/129"])
      await expect(
        createWsTransport({ address: HOST, port: 0, sink: collector(), trustedProxies: [bad] }),
      ).rejects.toBeInstanceOf(TypeError);
  });
});

describe("WebSocket connection lifetime", () => {
  it("onConnectionClosed fires once per accepted connection, whoever closes it", async () => {
    const { t, sink, clock } = await transport({ pingIntervalMs: 1000, pongTimeoutMs: 1000 });
    const byClient = await connect(url(t));
    const byServer = await connect(url(t));
    const dead = await connect(url(t), { autoPong: false });
    const tooBig = await connect(url(t), { maxPayload: 0 });
    const atClose = await connect(url(t));
    expect((await refused(url(t), { protocols: [] })).status).toBe(400); // never accepted: no event
    await vi.waitFor(() => expect(t.connectionCount).toBe(5));
    const ids = new Map<Client, number>();
    for (const c of [byClient, byServer, dead, tooBig, atClose]) {
      c.ws.send(sipMessage(`life-${c.port}`));
    }
    await vi.waitFor(() => expect(sink.received).toHaveLength(5));
    for (const c of [byClient, byServer, dead, tooBig, atClose])
      ids.set(c, sink.received.find((r) => r.source.port === c.port)!.source.connectionId!);

    byClient.ws.close(1000);
    expect(t.closeConnection(ids.get(byServer)!)).toBe(true);
    expect(t.closeConnection(ids.get(byServer)!)).toBe(false);
    expect(t.hasConnection(ids.get(byServer)!)).toBe(false);
    tooBig.ws.send("x".repeat(70_000));
    expect((await byServer.closed).code).toBe(1000);
    expect((await tooBig.closed).code).toBe(1009);
    // Only the dead one is still quiet after the others' traffic: keep the live one talking.
    await vi.waitFor(() => expect(sink.closedConns).toHaveLength(3));
    clock.advance(1000);
    await vi.waitFor(() => expect(dead.pings).toBe(1));
    await vi.waitFor(() => expect(atClose.pings).toBe(1));
    atClose.ws.send("\r\n\r\n");
    await vi.waitFor(() => expect(atClose.got).toHaveLength(1));
    clock.advance(1000);
    await dead.closed;
    await vi.waitFor(() => expect(sink.closedConns).toHaveLength(4));
    await t.close();
    expect((await atClose.closed).code).toBe(1001);
    expect(sink.closedConns).toHaveLength(5);
    const closedIds = sink.closedConns.map((s) => s.connectionId).sort();
    expect(closedIds).toEqual([...ids.values()].sort());
    expect(sink.closedConns.every((s) => s.protocol === "WS" && s.address === HOST)).toBe(true);
  });

  it("close() closes every connection (1001) and handshake, stops listening, and leaves nothing open", async () => {
    const { t, sink } = await transport();
    const a = await connect(url(t));
    const b = await connect(url(t));
    const half = await raw(t.localPort);
    half.socket.write("GET / HTTP/1.1\r\n");
    await vi.waitFor(() => expect(t.handshakeCount).toBe(1));
    await t.close();
    expect((await a.closed).code).toBe(1001);
    expect((await b.closed).code).toBe(1001);
    await half.closed;
    expect(t.connectionCount).toBe(0);
    expect(t.handshakeCount).toBe(0);
    expect(t.stats.ws_connections).toBe(0);
    expect(sink.closedConns).toHaveLength(2);
    // Nothing listens any more.
    const err = await new Promise<Error>((resolve) =>
      net.connect({ host: HOST, port: t.localPort }).on("error", resolve),
    );
    expect((err as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
    // Sends after close fail with ECLOSED; close again is the same promise.
    const errors: Error[] = [];
    t.send(
      Buffer.from("x"),
      { protocol: "WS", address: HOST, port: 1, connectionId: 1 },
      { transportError: (e) => errors.push(e) },
    );
    await Promise.resolve();
    expect((errors[0] as TransportSendError).code).toBe("ECLOSED");
    await t.close();
  });
});

describe("WSS (WebSocket over TLS)", () => {
  // Two self-signed test certificates (packages/core/test/fixtures/tls, make.sh), each its own anchor.
  const fixture = (name: string) => ({
    cert: readFileSync(new URL(`../fixtures/tls/${name}.pem`, import.meta.url), "utf8"),
    key: readFileSync(new URL(`../fixtures/tls/${name}.key`, import.meta.url), "utf8"),
  });
  const cert1 = fixture("selfsigned");
  const cert2 = fixture("selfsigned2");

  const wssUrl = (t: WsTransport) => `wss://${HOST}:${t.localPort}/`;

  it("end to end over TLS with a self-signed certificate: protocol WSS, messages both ways", async () => {
    const { t, sink } = await transport({ tls: cert1 });
    expect(t.protocol).toBe("WSS");
    const c = await connect(wssUrl(t), { ca: cert1.cert });
    expect(c.peerCertificate?.fingerprint256).toBe(fingerprintOf(cert1.cert));
    c.ws.send(sipMessage("over-wss"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    const source = sink.received[0]!.source;
    expect(source.protocol).toBe("WSS");
    expect(source.port).toBe(c.port);
    t.send(Buffer.from("SIP/2.0 200 OK\r\n\r\n"), {
      protocol: "WSS",
      address: HOST,
      port: c.port,
      connectionId: source.connectionId,
    });
    await vi.waitFor(() => expect(c.got).toHaveLength(1));
    expect(c.got[0]!.data.toString()).toBe("SIP/2.0 200 OK\r\n\r\n");
    c.ws.send("\r\n\r\n");
    await vi.waitFor(() => expect(c.got).toHaveLength(2));
    expect(c.got[1]!.data.toString()).toBe("\r\n");
    await t.close();
    expect((await c.closed).code).toBe(1001);
    expect(sink.closedConns).toHaveLength(1);
  });

  it("reloadCertificates: new handshakes present the new certificate; an open connection keeps working", async () => {
    const { t, sink } = await transport({ tls: cert1 });
    const old = await connect(wssUrl(t), { ca: cert1.cert });
    t.reloadCertificates(cert2);
    const fresh = await connect(wssUrl(t), { ca: cert2.cert });
    expect(fresh.peerCertificate?.fingerprint256).toBe(fingerprintOf(cert2.cert));
    expect(old.peerCertificate?.fingerprint256).toBe(fingerprintOf(cert1.cert));
    old.ws.send(sipMessage("old-conn"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    const s = sink.received[0]!.source;
    t.send(Buffer.from("SIP/2.0 200 OK\r\n\r\n"), {
      protocol: "WSS",
      address: s.address,
      port: s.port,
      connectionId: s.connectionId,
    });
    await vi.waitFor(() => expect(old.got).toHaveLength(1));
    // A client that trusts only the old certificate now fails its TLS handshake.
    await expect(connect(wssUrl(t), { ca: cert1.cert })).rejects.toThrow();
    // Bad material is refused and the current certificate kept.
    expect(() => t.reloadCertificates({ cert: "garbage", key: "garbage" })).toThrow();
    await connect(wssUrl(t), { ca: cert2.cert });
    // Plain WS has nothing to reload.
    const ws = await transport();
    expect(() => ws.t.reloadCertificates(cert2)).toThrow(TypeError);
  });

  it("garbage and plain HTTP on a WSS port: a failed TLS handshake, counted; the server keeps serving", async () => {
    const { t, sink } = await transport({ tls: cert1 });
    const g = await raw(t.localPort);
    g.socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await g.closed;
    await vi.waitFor(() => expect(t.stats.tls_handshake_failed).toBe(1));
    expect(t.handshakeCount).toBe(0);
    const c = await connect(wssUrl(t), { ca: cert1.cert });
    c.ws.send(sipMessage("after-tls-garbage"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
  });

  it("clientCert required: a client without a certificate, or with one not from the CA, fails its TLS handshake (counted)", async () => {
    const { t, sink } = await transport({ tls: { ...cert1, ca: cert2.cert, clientCert: "required" } });
    await expect(connect(wssUrl(t), { ca: cert1.cert })).rejects.toThrow();
    await vi.waitFor(() => expect(t.stats.tls_handshake_failed).toBe(1));
    // A certificate of its own, not signed by the CA the server asks for.
    await expect(connect(wssUrl(t), { ca: cert1.cert, cert: cert1.cert, key: cert1.key })).rejects.toThrow();
    await vi.waitFor(() => expect(t.stats.tls_handshake_failed).toBe(2));
    expect(t.connectionCount).toBe(0);
    await vi.waitFor(() => expect(t.handshakeCount).toBe(0));
    const c = await connect(wssUrl(t), { ca: cert1.cert, cert: cert2.cert, key: cert2.key });
    c.ws.send(sipMessage("client-cert"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
  });

  it("the handshake timeout covers the TLS handshake", async () => {
    const { t, clock } = await transport({ tls: cert1, handshakeTimeoutMs: 3000 });
    const silent = await raw(t.localPort);
    await vi.waitFor(() => expect(t.handshakeCount).toBe(1));
    clock.advance(3000);
    await silent.closed;
    expect(t.stats.ws_handshake_timeout).toBe(1);
    await vi.waitFor(() => expect(t.handshakeCount).toBe(0));
    await new Promise((r) => setTimeout(r, 20));
    expect(t.stats.tls_handshake_failed).toBe(0); // counted once, as a timeout
  });
});
