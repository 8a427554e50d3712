// A request the engine sent on a connection, and that connection closing:
// when the peer had opened it (a phone on its own TCP flow, RFC 5626 §5.3),
// nobody can reach it again, so the transaction ends at once as a transport
// error (503); when we had opened it, the server may still answer on a new
// connection to our sent-by (RFC 3261 §18.2.2), so the transaction waits.
import * as net from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Engine } from "../../src/engine.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";
import { createTcpTransport } from "../../src/transport/tcp.js";
import { answering200, closeAll, HOST, rawClient, servers, tcpRequest } from "./tcp-helpers.js";

const engines: Engine[] = [];
afterEach(async () => {
  await closeAll();
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

async function engineOnTcp(): Promise<{ engine: Engine; port: number; requests: ServerTransactionHandle[] }> {
  const { engine, transport, requests } = await answering200(engines, (sink) =>
    createTcpTransport({ address: HOST, port: 0, sink }),
  );
  return { engine, port: transport.localPort, requests };
}

describe("a connection closing under a client transaction", () => {
  it("one the peer opened: the request sent on it ends at once as a transport error (not at Timer F)", async () => {
    const { engine, port, requests } = await engineOnTcp();
    const phone = await rawClient(port);
    phone.socket.write(tcpRequest("OPTIONS", "flow-close-1", 5099));
    await vi.waitFor(() => expect(requests).toHaveLength(1));
    const source = requests[0]!.source;
    const h = engine.request({
      method: "MESSAGE",
      uri: `sip:phone@${HOST}:5099;transport=tcp`,
      from: `<sip:siptm@${HOST}>`,
      to: `<sip:phone@${HOST}>`,
      nextHop: {
        protocol: "TCP",
        address: source.address,
        port: source.port,
        connectionId: source.connectionId,
      },
    });
    await vi.waitFor(() => expect(phone.read()).toContain("MESSAGE sip:phone@"));
    phone.socket.destroy();
    const final = await h.final;
    expect(final.status).toBe(503);
    expect(final.cause).toBe("transport-error");
  });

  it("one we opened: the transaction waits (the server may answer on a new connection)", async () => {
    const { engine } = await engineOnTcp();
    // A peer that takes the request and closes the connection without answering.
    let closedByPeer!: () => void;
    const peerClosed = new Promise<void>((r) => {
      closedByPeer = r;
    });
    const peer = net.createServer((s) => {
      s.once("data", () => {
        s.destroy();
        closedByPeer();
      });
    });
    servers.push(peer);
    await new Promise<void>((r) => peer.listen(0, HOST, () => r()));
    const peerPort = (peer.address() as net.AddressInfo).port;
    const h = engine.request({
      method: "OPTIONS",
      uri: `sip:peer@${HOST}:${peerPort};transport=tcp`,
      from: `<sip:siptm@${HOST}>`,
      to: `<sip:peer@${HOST}>`,
    });
    await peerClosed;
    await vi.waitFor(() => expect(engine.snapshot().tcp_connections).toBe(0));
    expect(h.outcome).toBeUndefined();
    expect(engine.snapshot().transport_errors).toBe(0);
  });
});
