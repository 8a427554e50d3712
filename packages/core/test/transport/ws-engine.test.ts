// The WebSocket transport under a real core Engine: a browser-like client's
// request answered over its own connection with its Via untouched but for
// received/rport (RFC 7118 §5, RFC 3261 §18.2.2), and a request from the
// engine to the client over that connection.
import { afterEach, describe, expect, it, vi } from "vitest";
import { WebSocket } from "ws";
import type { Engine } from "../../src/engine.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";
import type { Source } from "../../src/transport/types.js";
import { createWsTransport, type WsTransport } from "../../src/transport/ws.js";
import { answering200 } from "./tcp-helpers.js";

const HOST = "127.0.0.1";
const engines: Engine[] = [];
const clients: WebSocket[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

async function uas(): Promise<{ engine: Engine; ws: WsTransport; requests: ServerTransactionHandle[] }> {
  const { engine, transport, requests } = await answering200(engines, (sink) =>
    createWsTransport({ address: HOST, port: 0, sink }),
  );
  return { engine, ws: transport, requests };
}

async function client(
  port: number,
): Promise<{ ws: WebSocket; got: string[]; binary: boolean[]; port: number }> {
  const ws = new WebSocket(`ws://${HOST}:${port}/`, ["sip"]);
  clients.push(ws);
  const got: string[] = [];
  const binary: boolean[] = [];
  let localPort = 0;
  ws.on("upgrade", (res) => {
    localPort = res.socket.localPort ?? 0;
  });
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    got.push(data.toString("utf8"));
    binary.push(isBinary);
  });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return { ws, got, binary, port: localPort };
}

const VIA = "SIP/2.0/WS abc.invalid;branch=z9hG4bK-ws-e2e;rport";

/** A MESSAGE from the engine to the WebSocket client whose request came from `source`, over its connection. */
function messageTo(engine: Engine, source: Source, body?: string) {
  return engine.request({
    method: "MESSAGE",
    uri: "sip:alice@abc.invalid;transport=ws",
    from: `<sip:server@${HOST}>`,
    to: "<sip:alice@example.invalid>",
    ...(body === undefined ? {} : { body, contentType: "text/plain" }),
    nextHop: {
      protocol: "WS",
      address: source.address,
      port: source.port,
      connectionId: source.connectionId,
    },
  });
}

function options(): string {
  return (
    `OPTIONS sip:${HOST} SIP/2.0\r\n` +
    `Via: ${VIA}\r\n` +
    "Max-Forwards: 70\r\n" +
    "From: <sip:alice@example.invalid>;tag=wsa\r\n" +
    `To: <sip:${HOST}>\r\n` +
    "Call-ID: ws-e2e@abc.invalid\r\n" +
    "CSeq: 7 OPTIONS\r\n" +
    "Contact: <sip:alice@abc.invalid;transport=ws>\r\n" +
    "Content-Length: 0\r\n\r\n"
  );
}

/** A UAS engine with a client on its WebSocket that has sent an OPTIONS: the engine, the client, and the request's source. */
async function connectedClient() {
  const { engine, ws, requests } = await uas();
  const c = await client(ws.localPort);
  c.ws.send(options());
  await vi.waitFor(() => expect(requests).toHaveLength(1));
  return { engine, c, source: requests[0]!.source };
}

describe("WebSocket transport under the core Engine", () => {
  it("takes a request without Content-Length (RFC 7118 §5: one message per WebSocket message), and its body", async () => {
    const { ws, requests } = await uas();
    const c = await client(ws.localPort);
    const noLength = options().replace("Content-Length: 0\r\n", "").replace("OPTIONS sip", "MESSAGE sip");
    const message = `${noLength.replace("CSeq: 7 OPTIONS", "CSeq: 7 MESSAGE").replace("z9hG4bK-ws-e2e", "z9hG4bK-ws-nolen")}hello`;
    expect(message).not.toMatch(/Content-Length/i);
    c.ws.send(message);
    await vi.waitFor(() => expect(c.got).toHaveLength(1));
    expect(c.got[0]).toMatch(/^SIP\/2\.0 200 /);
    expect(requests[0]!.request.body.toString("utf8")).toBe("hello");
  });

  it("an OPTIONS over WS gets its 200 on the same WebSocket, Via changed only by received/rport", async () => {
    const { engine, ws, requests } = await uas();
    const c = await client(ws.localPort);
    c.ws.send(options());
    await vi.waitFor(() => expect(c.got).toHaveLength(1));
    const res = c.got[0]!;
    expect(res.startsWith("SIP/2.0 200 ")).toBe(true);
    expect(c.binary[0]).toBe(false); // UTF-8: a text frame
    const vias = res.split("\r\n").filter((l) => /^(via|v):/i.test(l));
    expect(vias).toEqual([`Via: ${VIA}=${c.port};received=${HOST}`]);
    expect(res).toContain("Call-ID: ws-e2e@abc.invalid\r\n");
    expect(res).toContain("CSeq: 7 OPTIONS\r\n");
    const source: Source = requests[0]!.source;
    expect(source.protocol).toBe("WS");
    expect(source.port).toBe(c.port);
    expect(source.connectionId).toBeGreaterThan(0);
    expect(engine.snapshot().ws_connections).toBe(1);
    expect(engine.snapshot().transport_errors).toBe(0);
  });

  it("a request from the engine to the client goes over the client's connection and completes", async () => {
    const { engine, c, source } = await connectedClient();
    // The client answers what it is sent (as a SIP.js UA would a MESSAGE).
    c.ws.on("message", (data: Buffer) => {
      const text = data.toString("utf8");
      if (!text.startsWith("MESSAGE ")) return;
      const head = text.split("\r\n");
      const keep = head.filter((l) => /^(via|from|to|call-id|cseq):/i.test(l));
      c.ws.send(
        `SIP/2.0 200 OK\r\n${keep.map((l) => (/^to:/i.test(l) ? `${l};tag=ws-ua` : l)).join("\r\n")}\r\nContent-Length: 0\r\n\r\n`,
      );
    });
    const h = messageTo(engine, source, "hello over the WebSocket");
    expect((await h.final).status).toBe(200);
    const sent = c.got.find((m) => m.startsWith("MESSAGE "))!;
    expect(sent).toMatch(/\r\nVia: SIP\/2\.0\/WS [^\r]+;branch=z9hG4bK/);
    expect(sent.endsWith("hello over the WebSocket")).toBe(true);
  });

  it("a client transaction to a WebSocket client ends as a transport error (503) when its connection closes, not at Timer F", async () => {
    const { engine, c, source } = await connectedClient();
    const h = messageTo(engine, source);
    await vi.waitFor(() => expect(c.got.some((m) => m.startsWith("MESSAGE "))).toBe(true));
    // The browser tab goes away without answering.
    c.ws.terminate();
    const final = await h.final;
    expect(final.status).toBe(503);
    expect(final.cause).toBe("transport-error");
    expect(engine.snapshot().transport_errors).toBe(1);
  });

  it("answers on the right one of two WebSocket listeners (connection ids are unique across transports)", async () => {
    const { engine, ws } = await uas();
    const second = await createWsTransport({ address: HOST, port: 0, sink: engine });
    engine.addTransport(second);
    const a = await client(ws.localPort);
    const b = await client(second.localPort);
    b.ws.send(options().replaceAll("z9hG4bK-ws-e2e", "z9hG4bK-ws-second"));
    await vi.waitFor(() => expect(b.got.some((m) => m.startsWith("SIP/2.0 200"))).toBe(true));
    a.ws.send(options());
    await vi.waitFor(() => expect(a.got.some((m) => m.startsWith("SIP/2.0 200"))).toBe(true));
    expect(engine.snapshot().transport_errors).toBe(0);
  });
});
