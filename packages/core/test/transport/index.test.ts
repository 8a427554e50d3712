import { describe, expect, it } from "vitest";
import * as transport from "../../src/transport/index.js";

describe("transport index", () => {
  it("exports exactly the transport API, each name the defining module's own", async () => {
    expect(Object.keys(transport).sort()).toEqual([
      "DEFAULT_RATE_SOURCES",
      "DEFAULT_TCP_MAX_CONNECTIONS",
      "DEFAULT_TCP_MAX_PER_IP",
      "DEFAULT_TCP_MAX_PINGS",
      "DEFAULT_TCP_MSG_TIMEOUT_MS",
      "DEFAULT_TCP_PING_WINDOW_MS",
      "MemoryNetwork",
      "MemoryTransport",
      "SourceRateLimiter",
      "TCP_FD_RESERVE",
      "TcpTransport",
      "TransportBindError",
      "TransportSendError",
      "UdpTransport",
      "addTransportStats",
      "createTcpTransport",
      "createUdpTransport",
      "defaultTcpMaxConnections",
      "lossy",
      "maxConnectionsFor",
      "newTransportStats",
      "normalizeAddress",
      "openFilesLimit",
    ]);
    const [udp, tcp, memory] = await Promise.all([
      import("../../src/transport/udp.js"),
      import("../../src/transport/tcp.js"),
      import("../../src/transport/memory.js"),
    ]);
    expect(transport.createUdpTransport).toBe(udp.createUdpTransport);
    expect(transport.TcpTransport).toBe(tcp.TcpTransport);
    expect(transport.MemoryNetwork).toBe(memory.MemoryNetwork);
  });

  it("re-exports the public API", () => {
    expect(typeof transport.createUdpTransport).toBe("function");
    expect(typeof transport.createTcpTransport).toBe("function");
    expect(typeof transport.MemoryNetwork).toBe("function");
    expect(typeof transport.MemoryTransport).toBe("function");
    expect(typeof transport.UdpTransport).toBe("function");
    expect(typeof transport.TcpTransport).toBe("function");
    expect(
      new transport.TransportSendError("ECONNREFUSED", { protocol: "TCP", address: "::1", port: 5060 })
        .message,
    ).toBe("ECONNREFUSED TCP [::1]:5060");
    expect(transport.TransportBindError.prototype).toBeInstanceOf(Error);
  });
});

describe("normalizeAddress", () => {
  it("gives one spelling per address", () => {
    expect(transport.normalizeAddress("127.0.0.1")).toBe("127.0.0.1");
    expect(transport.normalizeAddress("0:0:0:0:0:0:0:1")).toBe("::1");
    expect(transport.normalizeAddress("2001:DB8:0:0:1:0:0:1")).toBe("2001:db8::1:0:0:1");
    expect(transport.normalizeAddress("::FFFF:127.0.0.1")).toBe("127.0.0.1");
    expect(transport.normalizeAddress("fe80::1%eth0")).toBe("fe80::1%eth0");
  });
});
