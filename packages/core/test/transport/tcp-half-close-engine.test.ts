import { afterEach, describe, expect, it, vi } from "vitest";
import { internals } from "../../src/engine/context.js";
import { Engine } from "../../src/engine.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";
import { createTcpTransport, type TcpTransport } from "../../src/transport/tcp.js";
import { closeAll, HOST, listener, rawClient, tcpRequest } from "./tcp-helpers.js";

const FAST = { t1: 20, t2: 160, t4: 200, timerD: 200, autoInv100: 10 };

const engines: Engine[] = [];

afterEach(async () => {
  await closeAll();
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

// Not tcp-helpers.ts's answering200: this engine holds its requests for the test (FAST timers, 180 to an INVITE).
async function uas(): Promise<{ engine: Engine; tcp: TcpTransport; pending: ServerTransactionHandle[] }> {
  const pending: ServerTransactionHandle[] = [];
  const engine = new Engine({
    refFaults: "throw",
    timers: FAST,
    // INVITE: 180 at once, the final when the test says; anything else: held for the test.
    onRequest: (tx) => {
      if (tx.method === "INVITE") tx.reply(180);
      pending.push(tx);
    },
  });
  const tcp = await createTcpTransport({ address: HOST, port: 0, sink: engine });
  engine.addTransport(tcp);
  engines.push(engine);
  return { engine, tcp, pending };
}

/**
 * A request, then the client's FIN; once the request is in (an INVITE: its
 * 180 came back) and the connection half-closed, the 200: it arrives on the
 * connection, nothing goes to the Via address, no transport error.
 */
async function finalAfterFin(method: string, callId: string): Promise<Engine> {
  const { engine, tcp, pending } = await uas();
  // A listener on the request's Via port: where a response would go on a new connection.
  const elsewhere = await listener();
  const c = await rawClient(tcp.localPort);
  c.socket.end(tcpRequest(method, callId, elsewhere.port));
  if (method === "INVITE") await vi.waitFor(() => expect(c.read()).toContain("SIP/2.0 180 Ringing"));
  else await vi.waitFor(() => expect(pending).toHaveLength(1));
  const id = pending[0]!.source.connectionId!;
  await vi.waitFor(() => expect(tcp.isHalfClosed(id)).toBe(true));
  pending[0]!.reply(200);
  await vi.waitFor(() => expect(c.read()).toContain("SIP/2.0 200 OK"));
  expect(elsewhere.got()).toBe("");
  expect(engine.snapshot().transport_errors).toBe(0);
  return engine;
}

describe("TCP half-close and server transactions (RFC 3261 §18.2.2)", () => {
  it("OPTIONS, then the client's FIN: the 200 still arrives on the connection", async () => {
    const engine = await finalAfterFin("OPTIONS", "hc-options");
    expect(engine.snapshot().tcp_send_errors).toBe(0);
  });

  it("INVITE, then the client's FIN: the 180 and the later 200 both arrive", async () => {
    await finalAfterFin("INVITE", "hc-invite");
  });

  it("INVITE, then a full close: the 200 written later is a transport error of the transaction", async () => {
    const { engine, tcp, pending } = await uas();
    // A listener on the request's Via port: where a response would go on a new connection.
    const elsewhere = await listener();
    const c = await rawClient(tcp.localPort);
    c.socket.write(tcpRequest("INVITE", "fc-invite", elsewhere.port));
    await vi.waitFor(() => expect(c.read()).toContain("SIP/2.0 180 Ringing"));
    const id = pending[0]!.source.connectionId!;
    c.socket.destroy(); // FIN, and the socket is gone: what we write next is answered by a reset
    await vi.waitFor(() => expect(tcp.isHalfClosed(id)).toBe(true));
    pending[0]!.reply(200); // RFC 6026: Accepted, so the transaction is there to hear of the failure
    await vi.waitFor(() => expect(tcp.pendingBytes).toBe(0));
    await vi.waitFor(() => {
      tcp.sweep(); // what the periodic sweep does: probe the half-closed connection
      expect(engine.snapshot().transport_errors).toBe(1);
    });
    expect(engine.snapshot().tcp_send_errors).toBe(1);
    // Not "sent" on a new connection to the Via address either.
    expect(elsewhere.got()).toBe("");
    await vi.waitFor(() => expect(internals(engine).table.size).toBe(0));
    expect(engine.stats.created).toBe(engine.stats.freed);
  });
});
