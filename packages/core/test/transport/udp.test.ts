// The UDP transport on real sockets (127.0.0.1): what the engine relies on.
import { afterEach, describe, expect, it } from "vitest";
import { createUdpTransport, type UdpTransport } from "../../src/transport/udp.js";

const open: UdpTransport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

async function pair() {
  const got: string[] = [];
  const a = await createUdpTransport({
    address: "127.0.0.1",
    port: 0,
    sink: { onMessage: (d) => got.push(d.toString()) },
  });
  const b = await createUdpTransport({ address: "127.0.0.1", port: 0, sink: { onMessage() {} } });
  open.push(a, b);
  return { a, b, got };
}

function arrived(got: string[], n: number): Promise<void> {
  return new Promise((resolve) => {
    const poll = () => (got.length >= n ? resolve() : setTimeout(poll, 5));
    poll();
  });
}

describe("UDP transport", () => {
  it("sends to an IP literal, and to a name through the DNS (the literal needs no lookup)", async () => {
    const { a, b, got } = await pair();
    const errors: Error[] = [];
    const target = { transportError: (e: Error) => errors.push(e) };
    b.send(Buffer.from("literal"), { protocol: "UDP", address: "127.0.0.1", port: a.localPort }, target);
    b.send(Buffer.from("name"), { protocol: "UDP", address: "localhost", port: a.localPort }, target);
    await arrived(got, 2);
    expect(got.sort()).toEqual(["literal", "name"]);
    expect(errors).toEqual([]);
  });

  it("a name that does not resolve is a transport error for the sender, later, never a throw", async () => {
    const { a, b } = await pair();
    const errors: Error[] = [];
    let inside = true;
    b.send(
      Buffer.from("x"),
      { protocol: "UDP", address: "no-such-host.invalid", port: a.localPort },
      {
        transportError: (e) => errors.push(Object.assign(e, { inside })),
      },
    );
    inside = false;
    await new Promise<void>((resolve) => {
      const poll = () => (errors.length > 0 ? resolve() : setTimeout(poll, 5));
      poll();
    });
    expect(errors[0]).toMatchObject({ code: "ENOTFOUND", inside: false });
  });
});
