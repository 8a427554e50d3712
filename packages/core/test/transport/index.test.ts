import { describe, expect, it } from "vitest";
import * as transport from "../../src/transport/index.js";

describe("transport index", () => {
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
