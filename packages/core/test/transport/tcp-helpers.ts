// What the TCP transport tests share: a SIP message to frame, a sink that
// collects, transports and raw client sockets closed after every test.
import * as net from "node:net";
import { Engine } from "../../src/engine.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";
import { createTcpTransport, type TcpTransport, type TcpTransportOptions } from "../../src/transport/tcp.js";
import type { SendErrorTarget, Source, Transport, TransportSink } from "../../src/transport/types.js";

export const HOST = "127.0.0.1";

/** An OPTIONS over TCP with `body`, its Via sent-by on `viaPort`. */
export function sipMessage(callId: string, body = "hello", viaPort = 5060): Buffer {
  return Buffer.from(
    `OPTIONS sip:bob@${HOST} SIP/2.0\r\n` +
      `Via: SIP/2.0/TCP ${HOST}:${viaPort};branch=z9hG4bK-${callId}\r\n` +
      "From: <sip:alice@127.0.0.1>;tag=1\r\n" +
      "To: <sip:bob@127.0.0.1>\r\n" +
      `Call-ID: ${callId}\r\n` +
      "CSeq: 1 OPTIONS\r\n" +
      "Max-Forwards: 70\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      "\r\n" +
      body,
    "latin1",
  );
}

export interface Received {
  data: Buffer;
  source: Source;
}

/** A sink that keeps every message and framing error it is given. */
export function collector(): TransportSink & { received: Received[]; framingErrors: Array<[Error, Source]> } {
  const received: Received[] = [];
  const framingErrors: Array<[Error, Source]> = [];
  return {
    received,
    framingErrors,
    onMessage(data, source) {
      received.push({ data, source });
    },
    onFramingError(err, source) {
      framingErrors.push([err, source]);
    },
  };
}

const transports: TcpTransport[] = [];
/** Sockets and servers a test opened: destroyed and closed by closeAll. */
export const sockets: net.Socket[] = [];
export const servers: net.Server[] = [];

/** A TCP transport on an ephemeral port of HOST, closed by closeAll. */
export async function transport(
  opts: Partial<TcpTransportOptions> & { sink: TransportSink },
): Promise<TcpTransport> {
  const t = await createTcpTransport({ address: HOST, port: 0, ...opts });
  transports.push(t);
  return t;
}

export interface RawClient {
  socket: net.Socket;
  /** Everything read so far, as latin1 text (one character a byte). */
  read: () => string;
  closed: Promise<void>;
  isClosed: () => boolean;
}

/**
 * A raw TCP socket to `port` on HOST, connected (destroyed by closeAll): `onData` hears every
 * chunk it reads; errors are ignored (resets are expected in some tests). The one raw-socket
 * builder of the transport, WebSocket and server tests.
 */
export async function rawSocket(
  port: number,
  onData: (chunk: Buffer) => void,
): Promise<{ socket: net.Socket; closed: Promise<void>; isClosed: () => boolean }> {
  const socket = net.connect({ host: HOST, port });
  sockets.push(socket);
  socket.setNoDelay(true);
  socket.on("data", onData);
  socket.on("error", () => {});
  let isClosed = false;
  const closed = new Promise<void>((resolve) =>
    socket.once("close", () => {
      isClosed = true;
      resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, closed, isClosed: () => isClosed };
}

/** A raw client socket to a transport, with everything it reads collected. */
export async function rawClient(port: number): Promise<RawClient> {
  const chunks: Buffer[] = [];
  const { socket, closed, isClosed } = await rawSocket(port, (c) => chunks.push(c));
  return { socket, read: () => Buffer.concat(chunks).toString("latin1"), closed, isClosed };
}

/** A new transport (with `opts`) with a collecting sink, and a raw client connected to it. */
export async function clientOfNewTransport(opts: { idleTimeoutMs?: number } = {}): Promise<{
  sink: ReturnType<typeof collector>;
  t: TcpTransport;
  c: RawClient;
}> {
  const sink = collector();
  const t = await transport({ sink, ...opts });
  const c = await rawClient(t.localPort);
  return { sink, t, c };
}

/** Where send errors go: a target for `send` that keeps them in `errors`. */
export function collectErrors(): { errors: Error[]; target: SendErrorTarget } {
  const errors: Error[] = [];
  return { errors, target: { transportError: (e) => errors.push(e) } };
}

/** A request over TCP from a client whose Via names `viaPort` (a response on a new connection would go there). */
export function tcpRequest(method: string, callId: string, viaPort: number): Buffer {
  return Buffer.from(
    `${method} sip:bob@${HOST} SIP/2.0\r\n` +
      `Via: SIP/2.0/TCP ${HOST}:${viaPort};branch=z9hG4bK-${callId}\r\n` +
      "Max-Forwards: 70\r\n" +
      `From: <sip:alice@${HOST}>;tag=a1\r\n` +
      `To: <sip:bob@${HOST}>\r\n` +
      `Call-ID: ${callId}\r\n` +
      `CSeq: 1 ${method}\r\n` +
      `Contact: <sip:alice@${HOST}:${viaPort};transport=tcp>\r\n` +
      "Content-Length: 0\r\n\r\n",
    "latin1",
  );
}

/** A plain TCP listener that keeps what it reads (closed by closeAll). */
export async function listener(): Promise<{ port: number; got: () => string }> {
  const server = net.createServer();
  servers.push(server);
  const chunks: Buffer[] = [];
  server.on("connection", (s) => {
    sockets.push(s);
    s.on("data", (d: Buffer) => chunks.push(d));
  });
  await new Promise<void>((resolve) => server.listen({ host: HOST, port: 0 }, resolve));
  return { port: (server.address() as net.AddressInfo).port, got: () => Buffer.concat(chunks).toString() };
}

/**
 * An engine that answers every request 200 and keeps its server transactions, on the transport
 * `listen` makes for it (added to the engine); pushed to `engines` (the test closes them).
 */
export async function answering200<T extends Transport>(
  engines: Engine[],
  listen: (sink: TransportSink) => Promise<T>,
): Promise<{ engine: Engine; transport: T; requests: ServerTransactionHandle[] }> {
  const requests: ServerTransactionHandle[] = [];
  const engine = new Engine({
    refFaults: "throw",
    onRequest: (tx) => {
      requests.push(tx);
      tx.reply(200);
    },
  });
  engines.push(engine);
  const transport = await listen(engine);
  engine.addTransport(transport);
  return { engine, transport, requests };
}

/** For afterEach: destroy the sockets, close the transports and the servers. */
export async function closeAll(): Promise<void> {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(transports.splice(0).map((t) => t.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
}
