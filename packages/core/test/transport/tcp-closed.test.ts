// The TCP transport tells its sink when a connection that was up closes (the sink's
// onConnectionClosed: the engine's onFlowClosed, RFC 5626 flows), once, with the Source its
// messages carried; a connect that never came up was no flow and is not told.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { Source } from "../../src/transport/types.js";
import { closeAll, collector, HOST, rawClient, sipMessage, transport } from "./tcp-helpers.js";

afterEach(closeAll);

const until = async (what: string, probe: () => boolean) => {
  const deadline = Date.now() + 5000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("TCP transport: connection closed", () => {
  it("an inbound connection reset by its peer is told once, with the Source of its messages", async () => {
    const sink = collector();
    const closed: Source[] = [];
    const t = await transport({ sink: { ...sink, onConnectionClosed: (s) => closed.push(s) } });
    const c = await rawClient(t.localPort);
    c.socket.write(sipMessage("closed-1"));
    await until("the message", () => sink.received.length === 1);
    c.socket.resetAndDestroy();
    await until("the close", () => closed.length === 1);
    expect(closed[0]).toEqual(sink.received[0]!.source);
    expect(closed[0]!.connectionId).toBeDefined();
    await t.close();
    expect(closed).toHaveLength(1);
  });

  it("an outbound connection that never came up is not told; one that did is, when it closes", async () => {
    const closed: Source[] = [];
    const t = await transport({ sink: { ...collector(), onConnectionClosed: (s) => closed.push(s) } });
    // A port nobody listens on: refused.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, HOST, r));
    const dead = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const errors: Error[] = [];
    t.send(
      sipMessage("closed-2"),
      { protocol: "TCP", address: HOST, port: dead },
      {
        transportError: (e) => errors.push(e),
      },
    );
    await until("the refusal", () => errors.length === 1);
    expect(closed).toEqual([]);

    const accepted: net.Socket[] = [];
    const server = net.createServer((s) => accepted.push(s));
    await new Promise<void>((r) => server.listen(0, HOST, r));
    const port = (server.address() as net.AddressInfo).port;
    t.send(sipMessage("closed-3"), { protocol: "TCP", address: HOST, port });
    await until("the connection", () => accepted.length === 1);
    accepted[0]!.resetAndDestroy();
    await until("the close", () => closed.length === 1);
    expect(closed[0]).toMatchObject({ protocol: "TCP", address: HOST, port });
    await new Promise((r) => server.close(r));
  });
});
