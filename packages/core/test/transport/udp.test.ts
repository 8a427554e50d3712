import * as dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { TransportBindError, TransportSendError } from "../../src/transport/errors.js";
import type { SendErrorTarget, Source, Transport, TransportSink } from "../../src/transport/types.js";
import { createUdpTransport } from "../../src/transport/udp.js";

interface Received {
  data: Buffer;
  source: Source;
}

/** A sink that records what arrives and lets a test await the n-th message. */
function collector(): TransportSink & { received: Received[]; next(): Promise<Received> } {
  const received: Received[] = [];
  const waiters: Array<(r: Received) => void> = [];
  let taken = 0;
  return {
    received,
    onMessage(data, source) {
      const r = { data, source };
      received.push(r);
      const w = waiters.shift();
      if (w) {
        taken++;
        w(r);
      }
    },
    next() {
      if (taken < received.length) return Promise.resolve(received[taken++]!);
      return new Promise((resolve) => waiters.push(resolve));
    },
  };
}

const open: Transport[] = [];
async function track<T extends Transport>(p: Promise<T>): Promise<T> {
  const t = await p;
  open.push(t);
  return t;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

async function canBind(address: string): Promise<boolean> {
  const s = dgram.createSocket("udp6");
  return new Promise((resolve) => {
    s.once("error", () => {
      s.close();
      resolve(false);
    });
    s.bind({ address, port: 0 }, () => s.close(() => resolve(true)));
  });
}

describe("UDP transport", () => {
  it("binds an ephemeral port and reports it", async () => {
    const t = await track(createUdpTransport({ address: "127.0.0.1", port: 0, sink: collector() }));
    expect(t.protocol).toBe("UDP");
    expect(t.reliable).toBe(false);
    expect(t.localAddress).toBe("127.0.0.1");
    expect(t.localPort).toBeGreaterThan(0);
  });

  it("echoes a datagram, with the right source address and port", async () => {
    const aSink = collector();
    const bSink = collector();
    const a = await track(createUdpTransport({ address: "127.0.0.1", port: 0, sink: aSink }));
    const b = await track(createUdpTransport({ address: "127.0.0.1", port: 0, sink: bSink }));

    const payload = Buffer.from("OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    a.send(payload, { protocol: "UDP", address: "127.0.0.1", port: b.localPort });
    const got = await bSink.next();
    expect(got.data.equals(payload)).toBe(true);
    expect(got.source).toEqual({
      protocol: "UDP",
      address: "127.0.0.1",
      port: a.localPort,
      localAddress: "127.0.0.1",
      localPort: b.localPort,
    });

    // Echo it back to where it came from.
    b.send(got.data, { protocol: "UDP", address: got.source.address, port: got.source.port });
    const echo = await aSink.next();
    expect(echo.data.equals(payload)).toBe(true);
    expect(echo.source.port).toBe(b.localPort);
  });

  it("works over IPv6 ::1 when the machine has it", async (ctx) => {
    if (!(await canBind("::1"))) ctx.skip();
    const aSink = collector();
    const bSink = collector();
    const a = await track(createUdpTransport({ address: "::1", port: 0, sink: aSink }));
    const b = await track(createUdpTransport({ address: "::1", port: 0, sink: bSink }));
    a.send(Buffer.from("ping6"), { protocol: "UDP", address: "::1", port: b.localPort });
    const got = await bSink.next();
    expect(got.data.toString()).toBe("ping6");
    expect(got.source.address).toBe("::1");
    expect(got.source.port).toBe(a.localPort);
    expect(got.source.localAddress).toBe("::1");
  });

  it("does not crash when sending to a closed port (ICMP port unreachable), and keeps working", async () => {
    // Find a port nobody listens on: bind one, note it, close it.
    const probe = await createUdpTransport({ address: "127.0.0.1", port: 0, sink: collector() });
    const deadPort = probe.localPort;
    await probe.close();

    const socketErrors: Error[] = [];
    const sink = collector();
    const a = await track(
      createUdpTransport({ address: "127.0.0.1", port: 0, sink, onSocketError: (e) => socketErrors.push(e) }),
    );
    const errors: Error[] = [];
    const target: SendErrorTarget = { transportError: (e) => errors.push(e) };
    for (let i = 0; i < 3; i++) {
      a.send(Buffer.from("nobody"), { protocol: "UDP", address: "127.0.0.1", port: deadPort }, target);
      a.send(Buffer.from("nobody"), { protocol: "UDP", address: "127.0.0.1", port: deadPort });
    }
    // Give any ICMP error time to come back, then prove the socket still works.
    await new Promise((r) => setTimeout(r, 20));
    a.send(Buffer.from("self"), { protocol: "UDP", address: "127.0.0.1", port: a.localPort });
    const got = await sink.next();
    expect(got.data.toString()).toBe("self");
    // Whatever errors were reported went to the target or the hook, typed.
    for (const e of errors) expect(e).toBeInstanceOf(TransportSendError);
  });

  it("rejects EADDRINUSE with a typed error and a clear message", async () => {
    const a = await track(createUdpTransport({ address: "127.0.0.1", port: 0, sink: collector() }));
    const err = await createUdpTransport({ address: "127.0.0.1", port: a.localPort, sink: collector() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransportBindError);
    const bindErr = err as TransportBindError;
    expect(bindErr.code).toBe("EADDRINUSE");
    expect(bindErr.protocol).toBe("UDP");
    expect(bindErr.port).toBe(a.localPort);
    expect(bindErr.message).toContain(`127.0.0.1:${a.localPort}`);
    expect(bindErr.message).toContain("EADDRINUSE");
  });

  it("rejects an address that is not an IP literal", async () => {
    await expect(createUdpTransport({ address: "localhost", port: 0, sink: collector() })).rejects.toThrow(
      TypeError,
    );
  });

  it("reports a send after close to the target, asynchronously", async () => {
    const a = await createUdpTransport({ address: "127.0.0.1", port: 0, sink: collector() });
    await a.close();
    await a.close(); // idempotent
    const errors: Error[] = [];
    a.send(
      Buffer.from("x"),
      { protocol: "UDP", address: "127.0.0.1", port: 9 },
      { transportError: (e) => errors.push(e) },
    );
    expect(errors).toHaveLength(0);
    await Promise.resolve();
    expect(errors).toHaveLength(1);
    expect((errors[0] as TransportSendError).code).toBe("ECLOSED");
  });

  it("reports a send error (bad destination family) to the target", async () => {
    const a = await track(createUdpTransport({ address: "127.0.0.1", port: 0, sink: collector() }));
    const err = await new Promise<Error>((resolve) => {
      a.send(Buffer.from("x"), { protocol: "UDP", address: "::1", port: 5060 }, { transportError: resolve });
    });
    expect(err).toBeInstanceOf(TransportSendError);
  });

  it("sends to an IP literal and to a name through the DNS (the literal needs no lookup)", async () => {
    const sink = collector();
    const a = await track(createUdpTransport({ address: "127.0.0.1", port: 0, sink }));
    const b = await track(createUdpTransport({ address: "127.0.0.1", port: 0, sink: collector() }));
    const errors: Error[] = [];
    const target = { transportError: (e: Error) => errors.push(e) };
    b.send(Buffer.from("literal"), { protocol: "UDP", address: "127.0.0.1", port: a.localPort }, target);
    b.send(Buffer.from("name"), { protocol: "UDP", address: "localhost", port: a.localPort }, target);
    const got = [(await sink.next()).data.toString(), (await sink.next()).data.toString()];
    expect(got.sort()).toEqual(["literal", "name"]);
    expect(errors).toEqual([]);
  });

  it("a name that does not resolve is a transport error for the sender, later, never a throw", async () => {
    const a = await track(createUdpTransport({ address: "127.0.0.1", port: 0, sink: collector() }));
    let inside = true;
    const err = new Promise<{ err: Error; inside: boolean }>((resolve) => {
      a.send(
        Buffer.from("x"),
        { protocol: "UDP", address: "no-such-host.invalid", port: 5060 },
        { transportError: (e) => resolve({ err: e, inside }) },
      );
    });
    inside = false;
    const got = await err;
    expect(got.inside).toBe(false);
    expect(got.err).toBeInstanceOf(TransportSendError);
    expect((got.err as TransportSendError).code).toBe("ENOTFOUND");
  });
});
