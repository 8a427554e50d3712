// The TCP transport's limits against hostile or broken peers: keep-alive floods,
// peers that do not read, connection floods, slow senders, and half-closed
// connections (RFC 3261 §18.2.2, RFC 5626 §4.4.1).
import * as net from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { VirtualClock } from "../../src/clock.js";
import type { TransportSendError } from "../../src/transport/errors.js";
import {
  DEFAULT_TCP_MAX_CONNECTIONS,
  maxConnectionsFor,
  openFilesLimit,
  TCP_FD_RESERVE,
  type TcpTransport,
} from "../../src/transport/tcp.js";
import type { Source } from "../../src/transport/types.js";
import {
  clientOfNewTransport,
  closeAll,
  collectErrors,
  collector,
  HOST,
  type RawClient,
  rawClient,
  sipMessage,
  sockets,
  transport,
} from "./tcp-helpers.js";

afterEach(closeAll);

const PING = Buffer.from("\r\n\r\n", "latin1");

describe("TCP keep-alive flood (RFC 5626 §4.4.1)", () => {
  it("a peer that pings without reading: at most one pong pending, the backlog stays bounded", async () => {
    const sink = collector();
    const t = await transport({ sink, maxPingsPerWindow: 0 });
    const c = await rawClient(t.localPort);
    c.socket.pause(); // never reads while it floods
    const chunk = Buffer.concat(Array.from({ length: 16384 }, () => PING)); // 64 KiB
    const rounds = 512; // 32 MiB, 8 Mi pings
    for (let i = 0; i < rounds; i++) c.socket.write(chunk);
    c.socket.write(sipMessage("after-the-flood"));
    // Once the message is in, every ping before it was read.
    await vi.waitFor(() => expect(sink.received).toHaveLength(1), { timeout: 15_000 });
    const pings = (rounds * chunk.length) / 4;
    const s = t.stats;
    // A ping cut by a read boundary right after its first CRLF counts as two pongs (stream.ts).
    expect(s.tcp_pings).toBeGreaterThan(pings - 2 * rounds);
    expect(s.tcp_pings).toBeLessThanOrEqual(pings);
    const pongs = s.tcp_pings - s.tcp_pongs_suppressed;
    // Without suppression this would be 16 MiB of pongs waiting on a peer that does not read.
    expect(t.pendingBytes).toBeLessThanOrEqual(2);
    expect(pongs).toBeGreaterThan(0);
    expect(pongs).toBeLessThanOrEqual(rounds * 4);
    expect(t.connectionCount).toBe(1);
    // Every pong written does arrive once the peer reads.
    c.socket.resume();
    await vi.waitFor(() => expect(c.read().length).toBe(2 * pongs));
    expect(c.read()).toBe("\r\n".repeat(pongs));
    expect(t.stats.tcp_pings - t.stats.tcp_pongs_suppressed).toBe(pongs);
  });

  it("a flood of pings with the default limit: the connection is closed and counted", async () => {
    const t = await transport({ sink: collector() });
    const c = await rawClient(t.localPort);
    const chunk = Buffer.concat(Array.from({ length: 16384 }, () => PING));
    for (let i = 0; i < 64; i++) c.socket.write(chunk);
    await c.closed;
    const s = t.stats;
    expect(s.tcp_ping_flood_closed).toBe(1);
    expect(s.tcp_pings).toBe(21); // the default allows 20 per window
    expect(t.pendingBytes).toBe(0);
    await vi.waitFor(() => expect(t.connectionCount).toBe(0));
  });

  it("the ping budget is per window: a client pinging within it stays open", async () => {
    const clock = new VirtualClock();
    const t = await transport({ sink: collector(), clock, maxPingsPerWindow: 3, pingWindowMs: 10_000 });
    const c = await rawClient(t.localPort);
    const send = async (n: number, total: number) => {
      for (let i = 0; i < n; i++) c.socket.write(PING);
      await vi.waitFor(() => expect(t.stats.tcp_pings).toBe(total));
    };
    await send(3, 3);
    clock.advance(10_000); // the sweeps move the window on
    await send(3, 6);
    clock.advance(10_000);
    await send(3, 9);
    expect(t.stats.tcp_ping_flood_closed).toBe(0);
    expect(c.isClosed()).toBe(false);
    await send(1, 10); // a fourth in the same window
    await c.closed;
    expect(t.stats.tcp_ping_flood_closed).toBe(1);
  });
});

describe("TCP write backlog", () => {
  it("a peer whose backlog passes maxWriteQueueBytes gets ENOBUFS and is closed", async () => {
    const sink = collector();
    const t = await transport({ sink, maxWriteQueueBytes: 64 * 1024 });
    const c = await rawClient(t.localPort);
    c.socket.pause();
    c.socket.write(sipMessage("hi"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    const source = sink.received[0]!.source;
    const dest = {
      protocol: "TCP" as const,
      address: HOST,
      port: source.port,
      connectionId: source.connectionId,
    };
    const big = Buffer.alloc(16 * 1024, 0x41);
    const { errors, target } = collectErrors();
    let sent = 0;
    // The kernel takes a few MiB first; then our queue fills.
    while (t.hasConnection(source.connectionId!) && sent < 8192) {
      t.send(big, dest, target);
      sent++;
    }
    expect(t.hasConnection(source.connectionId!)).toBe(false);
    await vi.waitFor(() => expect(errors.map((e) => (e as TransportSendError).code)).toContain("ENOBUFS"));
    expect(t.stats.tcp_backlog_closed).toBe(1);
    expect(t.stats.tcp_send_errors).toBeGreaterThanOrEqual(1);
    await vi.waitFor(() => expect(t.connectionCount).toBe(0));
    expect(t.pendingBytes).toBe(0);
  });
});

/** Opens `n` connections to `t` (all accepted), then one more, which is closed at once. */
async function fillThenOneMore(t: TcpTransport, n: number): Promise<RawClient[]> {
  const clients: RawClient[] = [];
  for (let i = 0; i < n; i++) clients.push(await rawClient(t.localPort));
  await vi.waitFor(() => expect(t.connectionCount).toBe(n));
  const extra = await rawClient(t.localPort);
  await extra.closed;
  return clients;
}

describe("TCP connection caps", () => {
  it("closes inbound connections over the per-IP cap at once, and counts them", async () => {
    const t = await transport({ sink: collector(), maxConnectionsPerIp: 2 });
    const [a] = await fillThenOneMore(t, 2);
    expect(t.stats.tcp_conn_rejected_ip).toBe(1);
    expect(t.stats.tcp_conn_rejected).toBe(0);
    expect(t.connectionCount).toBe(2);
    // A slot freed is a slot again.
    a!.socket.resetAndDestroy();
    await vi.waitFor(() => expect(t.connectionCount).toBe(1));
    const fourth = await rawClient(t.localPort);
    await vi.waitFor(() => expect(t.connectionCount).toBe(2));
    expect(fourth.isClosed()).toBe(false);
    expect(t.stats.tcp_conn_rejected_ip).toBe(1);
    expect(t.stats.tcp_connections).toBe(2);
  });

  it("counts inbound connections refused by the total cap", async () => {
    const t = await transport({ sink: collector(), maxConnections: 1, maxConnectionsPerIp: 0 });
    await fillThenOneMore(t, 1);
    expect(t.stats.tcp_conn_rejected).toBe(1);
    expect(t.stats.tcp_conn_rejected_ip).toBe(0);
  });

  it("the default total cap keeps descriptors in reserve below the open-file limit", () => {
    const limits =
      "Limit                     Soft Limit           Hard Limit           Units     \n" +
      "Max open files            1024                 524288               files     \n";
    expect(openFilesLimit(limits)).toBe(1024);
    expect(
      openFilesLimit("Max open files            unlimited            unlimited            files\n"),
    ).toBe(undefined);
    expect(openFilesLimit("nothing here")).toBe(undefined);
    expect(maxConnectionsFor(1024)).toBe(1024 - TCP_FD_RESERVE);
    expect(maxConnectionsFor(1_048_576)).toBe(DEFAULT_TCP_MAX_CONNECTIONS);
    expect(maxConnectionsFor(100)).toBe(50);
    expect(maxConnectionsFor(undefined)).toBe(DEFAULT_TCP_MAX_CONNECTIONS);
  });
});

describe("TCP message deadline (slow senders)", () => {
  it("closes a connection whose message is not complete msgTimeoutMs after its first byte", async () => {
    const clock = new VirtualClock();
    const sink = collector();
    const t = await transport({ sink, clock, msgTimeoutMs: 5000, sweepIntervalMs: 1000 });
    const c = await rawClient(t.localPort);
    const msg = sipMessage("slow", "x".repeat(2000));
    // One byte per second: every byte is traffic, so the idle timeout never fires.
    let at = 0;
    c.socket.write(msg.subarray(at, ++at));
    await vi.waitFor(() => expect(t.partialMessages).toBe(1));
    for (let s = 1; s < 5; s++) {
      clock.advance(1000);
      c.socket.write(msg.subarray(at, ++at));
      expect(t.stats.tcp_msg_timeout_closed).toBe(0);
    }
    expect(c.isClosed()).toBe(false);
    expect(t.stats.tcp_msg_timeout_closed).toBe(0);
    clock.advance(1000); // 5 s after the first byte
    await c.closed;
    expect(t.stats.tcp_msg_timeout_closed).toBe(1);
    expect(sink.received).toHaveLength(0);
    await vi.waitFor(() => expect(t.partialMessages).toBe(0));
  });

  it("the deadline is per message: a connection that keeps completing messages stays open", async () => {
    const clock = new VirtualClock();
    const sink = collector();
    const t = await transport({ sink, clock, msgTimeoutMs: 5000, sweepIntervalMs: 1000 });
    const c = await rawClient(t.localPort);
    const m1 = sipMessage("m1");
    const m2 = sipMessage("m2");
    const m3 = sipMessage("m3");
    c.socket.write(m1.subarray(0, 50));
    await vi.waitFor(() => expect(t.partialMessages).toBe(1));
    clock.advance(4000);
    // m1 completes and m2 begins in the same chunk: m2's deadline starts now.
    c.socket.write(Buffer.concat([m1.subarray(50), m2.subarray(0, 50)]));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    clock.advance(4000);
    c.socket.write(Buffer.concat([m2.subarray(50), m3]));
    await vi.waitFor(() => expect(sink.received).toHaveLength(3));
    expect(t.partialMessages).toBe(0);
    clock.advance(60_000);
    expect(c.isClosed()).toBe(false);
    expect(t.stats.tcp_msg_timeout_closed).toBe(0);
  });
});

/** A client that sent a request, then its FIN (it still reads): the transport's side is half-closed. */
async function halfClosedAfterRequest(): Promise<{ t: TcpTransport; c: RawClient; source: Source }> {
  const { sink, t, c } = await clientOfNewTransport();
  c.socket.end(sipMessage("half"));
  await vi.waitFor(() => expect(sink.received).toHaveLength(1));
  const source = sink.received[0]!.source;
  await vi.waitFor(() => expect(t.isHalfClosed(source.connectionId!)).toBe(true));
  return { t, c, source };
}

describe("TCP half-close (RFC 3261 §18.2.2)", () => {
  it("a response after the client's FIN still goes out on its connection", async () => {
    const { t, c, source } = await halfClosedAfterRequest();
    const { errors, target } = collectErrors();
    t.send(
      Buffer.from("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
      { protocol: "TCP", address: HOST, port: source.port, connectionId: source.connectionId },
      target,
    );
    await vi.waitFor(() => expect(c.read()).toContain("200 OK"));
    // The probe of a half-closed connection finds it up: nothing is reported.
    t.sweep();
    t.sweep();
    expect(errors).toEqual([]);
    expect(t.stats.tcp_send_errors).toBe(0);
  });

  it("a half-closed connection is not picked for new requests to the address", async () => {
    const { t, c, source } = await halfClosedAfterRequest();
    const { errors, target } = collectErrors();
    // No connection id: the client's port has no listener, so a new connection is refused.
    t.send(sipMessage("req"), { protocol: "TCP", address: HOST, port: source.port }, target);
    await vi.waitFor(() => expect(errors).toHaveLength(1));
    expect((errors[0] as TransportSendError).code).toBe("ECONNREFUSED");
    expect(c.read().length).toBe(0);
  });

  it("a response written after the peer closed fully is a transport error, not a send elsewhere", async () => {
    const sink = collector();
    const t = await transport({ sink });
    // A listener on the request's Via port: where a new connection would go.
    const decoy = net.createServer();
    const decoyGot: Buffer[] = [];
    decoy.on("connection", (s) => {
      sockets.push(s);
      s.on("data", (d: Buffer) => decoyGot.push(d));
    });
    await new Promise<void>((resolve) => decoy.listen({ host: HOST, port: 0 }, resolve));
    try {
      const c = await rawClient(t.localPort);
      c.socket.write(sipMessage("gone"));
      await vi.waitFor(() => expect(sink.received).toHaveLength(1));
      const source = sink.received[0]!.source;
      c.socket.destroy(); // FIN, and nobody reads any more: what we write now is answered by a reset
      await vi.waitFor(() => expect(t.isHalfClosed(source.connectionId!)).toBe(true));
      const { errors, target } = collectErrors();
      t.send(
        Buffer.from("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
        {
          protocol: "TCP",
          address: HOST,
          port: (decoy.address() as net.AddressInfo).port,
          connectionId: source.connectionId,
        },
        target,
      );
      await vi.waitFor(() => expect(t.pendingBytes).toBe(0));
      // The sweep's probe makes the reset show (the clock is real; no time needs to pass).
      await vi.waitFor(() => {
        t.sweep();
        expect(errors).toHaveLength(1);
      });
      expect(["EPIPE", "ECONNRESET"]).toContain((errors[0] as TransportSendError).code);
      expect(t.stats.tcp_send_errors).toBe(1);
      await vi.waitFor(() => expect(t.connectionCount).toBe(0));
      expect(decoyGot).toEqual([]);
    } finally {
      await new Promise((r) => decoy.close(r));
    }
  });

  it("a connection that closes before sending any message is closed at once from our side", async () => {
    const t = await transport({ sink: collector(), idleTimeoutMs: 3_600_000 });
    const c = await rawClient(t.localPort);
    await vi.waitFor(() => expect(t.connectionCount).toBe(1));
    c.socket.end();
    await c.closed;
    await vi.waitFor(() => expect(t.connectionCount).toBe(0));
  });

  it("a half-closed connection makes room when its IP is at the cap", async () => {
    const sink = collector();
    const t = await transport({ sink, maxConnectionsPerIp: 1, idleTimeoutMs: 3_600_000 });
    const a = await rawClient(t.localPort);
    a.socket.end(sipMessage("a"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(1));
    await vi.waitFor(() => expect(t.isHalfClosed(sink.received[0]!.source.connectionId!)).toBe(true));
    const b = await rawClient(t.localPort);
    b.socket.write(sipMessage("b"));
    await vi.waitFor(() => expect(sink.received).toHaveLength(2));
    await a.closed; // ended by us to make room
    expect(b.isClosed()).toBe(false);
    expect(t.stats.tcp_conn_rejected_ip).toBe(0);
    // b is not half-closed: a third is refused.
    const c = await rawClient(t.localPort);
    await c.closed;
    expect(t.stats.tcp_conn_rejected_ip).toBe(1);
  });

  it("an idle half-closed connection is ended from our side too", async () => {
    const { sink, t, c } = await clientOfNewTransport({ idleTimeoutMs: 50 });
    c.socket.end(sipMessage("bye"));
    await c.closed;
    await vi.waitFor(() => expect(t.connectionCount).toBe(0));
    expect(sink.received).toHaveLength(1);
  });
});
