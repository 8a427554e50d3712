import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/clock.js";
import { TransportBindError, TransportSendError } from "../../src/transport/errors.js";
import { MemoryNetwork, type MemoryNetworkOptions } from "../../src/transport/memory.js";
import type { Destination, Source, TransportSink } from "../../src/transport/types.js";

interface Received {
  at: number;
  text: string;
  data: Buffer;
  source: Source;
}

function sink(clock: VirtualClock): TransportSink & { received: Received[] } {
  const received: Received[] = [];
  return {
    received,
    onMessage(data, source) {
      received.push({ at: clock.now(), text: data.toString("latin1"), data, source });
    },
  };
}

function udpTo(port: number, address = "127.0.0.1"): Destination {
  return { protocol: "UDP", address, port };
}
function tcpTo(port: number, address = "127.0.0.1", connectionId?: number): Destination {
  return { protocol: "TCP", address, port, connectionId };
}

function pair(opts: Omit<MemoryNetworkOptions, "clock"> = {}, protocol: "UDP" | "TCP" = "UDP") {
  const clock = new VirtualClock(1000);
  const net = new MemoryNetwork({ clock, ...opts });
  const aSink = sink(clock);
  const bSink = sink(clock);
  const a = net.createTransport({ address: "127.0.0.1", port: 5060, protocol, sink: aSink });
  const b = net.createTransport({ address: "127.0.0.1", port: 5070, protocol, sink: bSink });
  return { clock, net, a, b, aSink, bSink };
}

describe("MemoryNetwork", () => {
  it("never delivers inside send, even with no delay; the clock delivers it", () => {
    const { clock, a, bSink, net } = pair();
    a.send(Buffer.from("m1"), udpTo(5070));
    expect(bSink.received).toHaveLength(0);
    clock.runDue();
    expect(bSink.received.map((r) => r.text)).toEqual(["m1"]);
    expect(bSink.received[0]!.at).toBe(1000);
    expect(net.delivered).toBe(1);
  });

  it("does not deliver re-entrantly when a sink sends from inside onMessage", () => {
    const clock = new VirtualClock();
    const net = new MemoryNetwork({ clock });
    const order: string[] = [];
    let inside = false;
    const b = net.createTransport({
      address: "127.0.0.1",
      port: 2,
      sink: {
        onMessage(data, source) {
          inside = true;
          order.push(`b got ${data.toString()}`);
          b.send(Buffer.from("reply"), { protocol: "UDP", address: source.address, port: source.port });
          order.push("b sent");
          inside = false;
        },
      },
    });
    const a = net.createTransport({
      address: "127.0.0.1",
      port: 1,
      sink: {
        onMessage(data) {
          expect(inside).toBe(false);
          order.push(`a got ${data.toString()}`);
        },
      },
    });
    a.send(Buffer.from("req"), udpTo(2));
    clock.advance(0);
    expect(order).toEqual(["b got req", "b sent", "a got reply"]);
  });

  it("gives the sink a copy of the data and the right source", () => {
    const { clock, a, bSink } = pair();
    const buf = Buffer.from("hello");
    a.send(buf, udpTo(5070));
    buf.write("HELLO"); // the sender reuses its buffer
    clock.runDue();
    expect(bSink.received[0]!.text).toBe("hello");
    expect(bSink.received[0]!.source).toEqual({
      protocol: "UDP",
      address: "127.0.0.1",
      port: 5060,
      localAddress: "127.0.0.1",
      localPort: 5070,
    });
    expect(a.reliable).toBe(false);
  });

  it("delivers after the one-way delay, in sending order", () => {
    const { clock, a, bSink } = pair({ delayMs: 30 });
    a.send(Buffer.from("1"), udpTo(5070));
    clock.advance(10);
    a.send(Buffer.from("2"), udpTo(5070));
    a.send(Buffer.from("3"), udpTo(5070));
    clock.advance(19);
    expect(bSink.received).toHaveLength(0);
    clock.advance(1);
    expect(bSink.received.map((r) => [r.text, r.at])).toEqual([["1", 1030]]);
    clock.advance(10);
    expect(bSink.received.map((r) => [r.text, r.at])).toEqual([
      ["1", 1030],
      ["2", 1040],
      ["3", 1040],
    ]);
  });

  it("loss and duplication are reproducible with a seed", () => {
    const run = (seed: number) => {
      const { clock, a, bSink, net } = pair({ seed, loss: 0.3, duplicate: 0.2, reorder: 0.2, delayMs: 5 });
      for (let i = 0; i < 200; i++) {
        a.send(Buffer.from(String(i)), udpTo(5070));
        clock.advance(1);
      }
      clock.advance(100);
      return {
        texts: bSink.received.map((r) => `${r.text}@${r.at}`),
        delivered: net.delivered,
        dropped: net.dropped,
      };
    };
    const first = run(42);
    const again = run(42);
    const other = run(7);
    expect(again).toEqual(first);
    expect(other.texts).not.toEqual(first.texts);
    // Some lost, some duplicated, some reordered: roughly the asked proportions.
    expect(first.dropped).toBeGreaterThan(20);
    expect(first.dropped).toBeLessThan(100);
    const counts = new Map<string, number>();
    for (const t of first.texts) counts.set(t.split("@")[0]!, (counts.get(t.split("@")[0]!) ?? 0) + 1);
    expect([...counts.values()].some((n) => n === 2)).toBe(true);
    expect(first.delivered).toBe(first.texts.length);
    const order = first.texts.map((t) => Number(t.split("@")[0]));
    expect(order.some((n, i) => i > 0 && n < order[i - 1]!)).toBe(true);
  });

  it("setFaults changes the faults on the fly", () => {
    const { clock, a, bSink, net } = pair();
    net.setFaults({ loss: 1 });
    a.send(Buffer.from("lost"), udpTo(5070));
    clock.advance(0);
    net.setFaults({ loss: 0, delayMs: 7 });
    a.send(Buffer.from("kept"), udpTo(5070));
    clock.advance(7);
    expect(bSink.received.map((r) => [r.text, r.at])).toEqual([["kept", 1007]]);
    expect(net.dropped).toBe(1);
    expect(() => net.setFaults({ loss: 2 })).toThrow(RangeError);
  });

  it("filters drop what they are asked to, per direction, until removed", () => {
    const { clock, a, b, aSink, bSink, net } = pair({ log: true });
    // Lose everything b sends to a (e.g. every response), nothing the other way.
    const remove = net.addFilter((_data, from, to) =>
      from.port === 5070 && to.port === 5060 ? "drop" : "pass",
    );
    a.send(Buffer.from("req"), udpTo(5070));
    b.send(Buffer.from("resp"), udpTo(5060));
    clock.advance(0);
    expect(bSink.received.map((r) => r.text)).toEqual(["req"]);
    expect(aSink.received).toHaveLength(0);
    remove();
    b.send(Buffer.from("resp2"), udpTo(5060));
    clock.advance(0);
    expect(aSink.received.map((r) => r.text)).toEqual(["resp2"]);
    expect(net.log.map((e) => [e.from, e.to, e.data.toString(), e.fate])).toEqual([
      ["UDP 127.0.0.1:5070", "UDP 127.0.0.1:5060", "resp", "dropped"],
      ["UDP 127.0.0.1:5060", "UDP 127.0.0.1:5070", "req", "delivered"],
      ["UDP 127.0.0.1:5070", "UDP 127.0.0.1:5060", "resp2", "delivered"],
    ]);
  });

  it("keeps a bounded log", () => {
    const { clock, a, net } = pair({ log: 3 });
    for (let i = 0; i < 10; i++) a.send(Buffer.from(String(i)), udpTo(5070));
    clock.advance(0);
    expect(net.log.map((e) => e.data.toString())).toEqual(["7", "8", "9"]);
  });

  it("UDP to nobody is silently dropped", () => {
    const { clock, a, net } = pair();
    const errors: Error[] = [];
    a.send(Buffer.from("x"), udpTo(9999), { transportError: (e) => errors.push(e) });
    clock.advance(100);
    expect(errors).toHaveLength(0);
    expect(net.dropped).toBe(1);
  });

  it("TCP flavour: reliable, in order despite faults, with connection ids", () => {
    const { clock, a, b, aSink, bSink, net } = pair(
      { seed: 3, loss: 0.9, duplicate: 0.9, reorder: 0.9, delayMs: 10 },
      "TCP",
    );
    expect(a.reliable).toBe(true);
    for (let i = 0; i < 50; i++) {
      a.send(Buffer.from(String(i)), tcpTo(5070));
      if (i === 25) net.setFaults({ delayMs: 0 }); // a shorter delay must not let later ones overtake
    }
    clock.advance(20);
    expect(bSink.received.map((r) => Number(r.text))).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(net.dropped).toBe(0);
    const src = bSink.received[0]!.source;
    expect(src.protocol).toBe("TCP");
    expect(src.connectionId).toBeTypeOf("number");
    expect(a.connectionCount).toBe(1);
    expect(b.connectionCount).toBe(1);

    // b answers on the connection, whatever address it is given.
    b.send(Buffer.from("resp"), tcpTo(1, "127.0.0.9", src.connectionId));
    clock.advance(20);
    expect(aSink.received.map((r) => r.text)).toEqual(["resp"]);
    expect(aSink.received[0]!.source.connectionId).toBe(src.connectionId);
    // And a send back to a's address reuses the same connection.
    b.send(Buffer.from("req2"), tcpTo(5060));
    clock.advance(20);
    expect(aSink.received[1]!.source.connectionId).toBe(src.connectionId);
    expect(a.connectionCount).toBe(1);
  });

  it("TCP flavour: sending to nobody reports ECONNREFUSED asynchronously", () => {
    const { clock, a } = pair({}, "TCP");
    const errors: Error[] = [];
    a.send(Buffer.from("x"), tcpTo(9999), { transportError: (e) => errors.push(e) });
    expect(errors).toHaveLength(0);
    clock.advance(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TransportSendError);
    expect(errors[0]!.message).toMatch(/^ECONNREFUSED /);
  });

  it("TCP flavour: a closed peer drops its connections; a broken connection falls back to the address", async () => {
    const { clock, a, b, bSink, net } = pair({}, "TCP");
    a.send(Buffer.from("1"), tcpTo(5070));
    clock.advance(0);
    const id = bSink.received[0]!.source.connectionId!;
    expect(net.closeConnection(id)).toBe(true);
    expect(a.connectionCount).toBe(0);
    a.send(Buffer.from("2"), tcpTo(5070, "127.0.0.1", id));
    clock.advance(0);
    expect(bSink.received[1]!.source.connectionId).not.toBe(id);

    await b.close();
    expect(a.connectionCount).toBe(0);
    const errors: Error[] = [];
    a.send(Buffer.from("3"), tcpTo(5070), { transportError: (e) => errors.push(e) });
    clock.advance(0);
    expect(errors.map((e) => (e as TransportSendError).code)).toEqual(["ECONNREFUSED"]);
  });

  it("a message in flight to a transport that closes is dropped", async () => {
    const { clock, a, b, bSink, net } = pair({ delayMs: 10 });
    a.send(Buffer.from("late"), udpTo(5070));
    await b.close();
    clock.advance(10);
    expect(bSink.received).toHaveLength(0);
    expect(net.dropped).toBe(1);
  });

  it("UDP and TCP may share an address:port; the same protocol may not; port 0 picks a free one", () => {
    const clock = new VirtualClock();
    const net = new MemoryNetwork({ clock });
    const s = sink(clock);
    net.createTransport({ address: "127.0.0.1", port: 5060, protocol: "UDP", sink: s });
    net.createTransport({ address: "127.0.0.1", port: 5060, protocol: "TCP", sink: s });
    expect(() => net.createTransport({ address: "127.0.0.1", port: 5060, sink: s })).toThrow(
      TransportBindError,
    );
    const e1 = net.createTransport({ address: "127.0.0.1", port: 0, sink: s });
    const e2 = net.createTransport({ address: "127.0.0.1", port: 0, sink: s });
    expect(e1.localPort).toBeGreaterThan(0);
    expect(e2.localPort).not.toBe(e1.localPort);
  });
});
