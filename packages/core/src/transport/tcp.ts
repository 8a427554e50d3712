import * as net from "node:net";
import { StreamFramer } from "../message/stream.js";
import type { ParseLimits } from "../message/types.js";
import { normalizeAddress } from "./address.js";
import { TransportBindError, TransportSendError } from "./errors.js";
import type { Destination, SendErrorTarget, Source, Transport, TransportSink } from "./types.js";

const CRLF = Buffer.from("\r\n", "latin1");
const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_WRITE_QUEUE = 8 * 1024 * 1024;

export interface TcpTransportOptions {
  /** IP literal to listen on (no brackets). Outgoing connections leave from it too (unless it is a wildcard). */
  address: string;
  /** 0 = ephemeral; `localPort` reports the real one. */
  port: number;
  sink: TransportSink;
  /** A connection with no traffic either way for this long is closed. Default 120000. */
  idleTimeoutMs?: number;
  /** An outgoing connection not up after this long fails its queued sends with ETIMEDOUT. Default 10000. */
  connectTimeoutMs?: number;
  /** Framing limits (largest message…), passed to `StreamFramer`. */
  limits?: Partial<ParseLimits>;
  /** Most connections, inbound and outbound together; beyond it inbound ones are dropped and sends refused. */
  maxConnections?: number;
  /** Most bytes waiting to be written on one connection (queued while connecting, or not yet taken by the kernel); a send beyond it fails with ENOBUFS. Default 8 MiB. */
  maxWriteQueueBytes?: number;
  /** Hears socket errors nobody asked about (a reset on an idle connection…). Default: ignored. */
  onSocketError?: (err: Error) => void;
}

interface Pending {
  readonly data: Buffer;
  readonly onError: SendErrorTarget | undefined;
}

type ConnState = "connecting" | "open" | "closing" | "closed";

interface Connection {
  readonly id: number;
  readonly socket: net.Socket;
  readonly outbound: boolean;
  state: ConnState;
  /** Key under which it is in `byKey` (undefined when another connection holds the key). */
  key: string | undefined;
  /** Where we connected to (outbound) or the peer (inbound): used to describe send errors. */
  dest: Destination;
  source: Source;
  readonly framer: StreamFramer;
  /** Sends made before the connection was up. */
  queue: Pending[];
  queuedBytes: number;
  /** Why it failed, for the queued sends. */
  failure: TransportSendError | undefined;
  readonly closed: Promise<void>;
}

/**
 * SIP over TCP: one listening server plus outgoing connections, messages framed
 * by Content-Length (`StreamFramer`). Connections are reused both ways: a send
 * to an address:port that has a live connection (inbound or outbound) uses it.
 */
export class TcpTransport implements Transport {
  readonly protocol = "TCP" as const;
  readonly reliable = true;
  readonly localAddress: string;
  readonly localPort: number;

  private readonly sink: TransportSink;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly limits: Partial<ParseLimits> | undefined;
  private readonly maxConnections: number;
  private readonly maxWriteQueueBytes: number;
  private readonly onSocketError: ((err: Error) => void) | undefined;
  private readonly wildcard: boolean;
  private readonly family: number;

  private readonly byId = new Map<number, Connection>();
  private readonly byKey = new Map<string, Connection>();
  private nextId = 1;
  private closed = false;
  private closing: Promise<void> | undefined;

  /** @internal use `createTcpTransport`. */
  constructor(
    private readonly server: net.Server,
    opts: TcpTransportOptions,
    localPort: number,
  ) {
    this.localAddress = opts.address;
    this.localPort = localPort;
    this.sink = opts.sink;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.limits = opts.limits;
    this.maxConnections = opts.maxConnections ?? Number.POSITIVE_INFINITY;
    this.maxWriteQueueBytes = opts.maxWriteQueueBytes ?? DEFAULT_MAX_WRITE_QUEUE;
    this.onSocketError = opts.onSocketError;
    this.family = net.isIP(opts.address);
    this.wildcard = opts.address === "0.0.0.0" || opts.address === "::";
    server.on("connection", (socket) => this.onInbound(socket));
    server.on("error", (err) => this.onSocketError?.(err));
  }

  /** Connections open, opening or closing (inbound and outbound). */
  get connectionCount(): number {
    return this.byId.size;
  }

  /** True when `connectionId` names a connection that is up (or coming up) and usable for sends. */
  hasConnection(connectionId: number): boolean {
    const conn = this.byId.get(connectionId);
    return conn !== undefined && usable(conn);
  }

  /** Close one connection now (queued sends fail with ECONNRESET). Returns false when there is no such connection. */
  closeConnection(connectionId: number): boolean {
    const conn = this.byId.get(connectionId);
    if (!conn) return false;
    conn.socket.destroy();
    return true;
  }

  send(data: Buffer, dest: Destination, onError?: SendErrorTarget): void {
    if (this.closed) {
      if (onError) fail(onError, new TransportSendError("ECLOSED", dest, "transport closed"));
      return;
    }
    let conn: Connection | undefined;
    if (dest.connectionId !== undefined) {
      conn = this.byId.get(dest.connectionId);
      if (conn && !usable(conn)) conn = undefined;
    }
    if (!conn) {
      conn = this.byKey.get(keyOf(dest.address, dest.port));
      if (conn && !usable(conn)) conn = undefined;
    }
    if (!conn) {
      const made = this.connect(dest);
      if (made instanceof TransportSendError) {
        if (onError) fail(onError, made);
        return;
      }
      conn = made;
    }

    if (conn.state === "connecting") {
      if (conn.queuedBytes + data.length > this.maxWriteQueueBytes) {
        if (onError) fail(onError, new TransportSendError("ENOBUFS", dest, "connect queue full"));
        return;
      }
      // The caller may reuse its buffer once send returns: keep our own copy.
      conn.queue.push({ data: Buffer.from(data), onError });
      conn.queuedBytes += data.length;
      return;
    }
    if (conn.socket.writableLength + data.length > this.maxWriteQueueBytes) {
      if (onError) fail(onError, new TransportSendError("ENOBUFS", dest, "write queue full"));
      return;
    }
    this.write(conn, data, onError, dest);
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      const serverClosed = new Promise<void>((resolve) => {
        this.server.close(() => resolve());
      });
      const conns = [...this.byId.values()];
      for (const conn of conns) {
        if (!conn.failure) conn.failure = new TransportSendError("ECLOSED", conn.dest, "transport closed");
        conn.socket.destroy();
      }
      this.closing = Promise.all([serverClosed, ...conns.map((c) => c.closed)]).then(() => undefined);
    }
    return this.closing;
  }

  // --- connections ---

  private onInbound(socket: net.Socket): void {
    const remoteAddress = socket.remoteAddress;
    const remotePort = socket.remotePort;
    if (this.closed || this.byId.size >= this.maxConnections || !remoteAddress || !remotePort) {
      socket.destroy();
      return;
    }
    const address = normalizeAddress(remoteAddress);
    const conn = this.track(socket, false, { protocol: "TCP", address, port: remotePort }, "open");
    this.setSource(conn);
    socket.setNoDelay(true);
    socket.setTimeout(this.idleTimeoutMs);
  }

  private connect(dest: Destination): Connection | TransportSendError {
    const family = net.isIP(dest.address);
    if (family === 0) return new TransportSendError("EINVAL", dest, "not an IP address");
    if (!Number.isInteger(dest.port) || dest.port <= 0 || dest.port > 65535) {
      return new TransportSendError("EINVAL", dest, "bad port");
    }
    if (this.byId.size >= this.maxConnections) {
      return new TransportSendError("EMFILE", dest, "too many connections");
    }
    const socket = new net.Socket();
    const target: Destination = { protocol: "TCP", address: normalizeAddress(dest.address), port: dest.port };
    const conn = this.track(socket, true, target, "connecting");
    socket.setNoDelay(true);
    // While connecting, the socket timeout is the connect timeout; on connect it becomes the idle timeout.
    socket.setTimeout(this.connectTimeoutMs);
    socket.once("connect", () => this.onConnected(conn));
    const options: net.TcpSocketConnectOpts = { host: dest.address, port: dest.port };
    if (!this.wildcard && family === this.family) options.localAddress = this.localAddress;
    socket.connect(options);
    return conn;
  }

  private onConnected(conn: Connection): void {
    if (conn.state !== "connecting") return;
    conn.state = "open";
    this.setSource(conn);
    conn.socket.setTimeout(this.idleTimeoutMs);
    const queue = conn.queue;
    conn.queue = [];
    conn.queuedBytes = 0;
    for (const p of queue) this.write(conn, p.data, p.onError, conn.dest);
  }

  private track(socket: net.Socket, outbound: boolean, dest: Destination, state: ConnState): Connection {
    const id = this.nextId++;
    let resolveClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      resolveClosed = resolve;
    });
    const conn: Connection = {
      id,
      socket,
      outbound,
      state,
      key: undefined,
      dest: { ...dest, connectionId: id },
      source: {
        protocol: "TCP",
        address: dest.address,
        port: dest.port,
        localAddress: this.localAddress,
        localPort: this.localPort,
        connectionId: id,
      },
      framer: new StreamFramer(this.limits),
      queue: [],
      queuedBytes: 0,
      failure: undefined,
      closed,
    };
    this.byId.set(id, conn);
    const key = keyOf(dest.address, dest.port);
    const holder = this.byKey.get(key);
    if (!holder || !usable(holder)) {
      this.byKey.set(key, conn);
      conn.key = key;
    }

    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk));
    socket.on("timeout", () => this.onTimeout(conn));
    socket.on("error", (err) => this.onError(conn, err));
    socket.on("close", () => {
      this.onClose(conn);
      resolveClosed();
    });
    return conn;
  }

  private setSource(conn: Connection): void {
    const s = conn.socket;
    const address = s.remoteAddress ? normalizeAddress(s.remoteAddress) : conn.dest.address;
    const port = s.remotePort ?? conn.dest.port;
    const localAddress =
      this.wildcard && s.localAddress ? normalizeAddress(s.localAddress) : this.localAddress;
    conn.source = {
      protocol: "TCP",
      address,
      port,
      localAddress,
      localPort: this.localPort,
      connectionId: conn.id,
    };
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.state !== "open") return; // closing after a framing error: discard
    const messages: Buffer[] = [];
    let fault: unknown;
    try {
      conn.framer.push(
        chunk,
        (message) => messages.push(message),
        (kind) => {
          // RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong.
          if (kind === "ping") conn.socket.write(CRLF);
        },
      );
    } catch (err) {
      fault = err;
    }
    // Deliver outside the framer's try, so an exception from the sink is not taken for a framing fault.
    for (const message of messages) {
      if (conn.state !== "open") return;
      this.sink.onMessage(message, conn.source);
    }
    if (fault !== undefined && conn.state === "open") {
      const err = fault instanceof Error ? fault : new Error(String(fault));
      this.sink.onFramingError?.(err, conn.source);
      this.abandon(conn);
    }
  }

  /** After a framing fault: nothing more is read; what the sink sent in reply is flushed, then the socket goes. */
  private abandon(conn: Connection): void {
    if (conn.state === "closed") return;
    conn.state = "closing";
    this.unregisterKey(conn);
    conn.socket.end(() => conn.socket.destroy());
  }

  private onTimeout(conn: Connection): void {
    if (conn.state === "connecting") {
      conn.failure = new TransportSendError(
        "ETIMEDOUT",
        conn.dest,
        `no connection after ${this.connectTimeoutMs} ms`,
      );
    }
    // Connecting too long, idle too long, or a closing socket whose peer stopped reading.
    conn.socket.destroy();
  }

  private onError(conn: Connection, err: Error): void {
    if (!conn.failure) {
      const code = (err as NodeJS.ErrnoException).code;
      conn.failure = new TransportSendError(
        typeof code === "string" ? code : "EIO",
        conn.dest,
        err.message,
        err,
      );
    }
    this.onSocketError?.(err);
  }

  private onClose(conn: Connection): void {
    conn.state = "closed";
    this.byId.delete(conn.id);
    this.unregisterKey(conn);
    const queue = conn.queue;
    conn.queue = [];
    conn.queuedBytes = 0;
    if (queue.length > 0) {
      const err =
        conn.failure ?? new TransportSendError("ECONNRESET", conn.dest, "connection closed before it was up");
      for (const p of queue) p.onError?.transportError(err);
    }
  }

  private unregisterKey(conn: Connection): void {
    if (conn.key !== undefined && this.byKey.get(conn.key) === conn) this.byKey.delete(conn.key);
    conn.key = undefined;
  }

  private write(
    conn: Connection,
    data: Buffer,
    onError: SendErrorTarget | undefined,
    dest: Destination,
  ): void {
    if (onError) {
      conn.socket.write(data, (err) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          onError.transportError(
            new TransportSendError(typeof code === "string" ? code : "EIO", dest, err.message, err),
          );
        }
      });
    } else {
      conn.socket.write(data);
    }
  }
}

/** Listen on `address:port`. Rejects with `TransportBindError` when the listen fails. */
export async function createTcpTransport(opts: TcpTransportOptions): Promise<TcpTransport> {
  const family = net.isIP(opts.address);
  if (family === 0)
    throw new TypeError(`TCP transport: address must be an IP literal, got "${opts.address}"`);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new RangeError(`TCP transport: bad port ${opts.port}`);
  }
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      server.off("listening", onListening);
      server.close();
      reject(new TransportBindError("TCP", opts.address, opts.port, err));
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen({ host: opts.address, port: opts.port, exclusive: true, ipv6Only: family === 6 });
  });
  const bound = server.address() as net.AddressInfo;
  return new TcpTransport(server, opts, bound.port);
}

function usable(conn: Connection): boolean {
  return conn.state === "open" || conn.state === "connecting";
}

function keyOf(address: string, port: number): string {
  return `${normalizeAddress(address)}|${port}`;
}

function fail(target: SendErrorTarget, err: Error): void {
  queueMicrotask(() => target.transportError(err));
}
