/**
 * SIP over WebSocket (RFC 7118), WS and WSS, on the `ws` package.
 *
 * One listening TCP socket of our own; for WSS each accepted socket is wrapped
 * in a server TLSSocket here (so certificates reload for new handshakes and the
 * handshake timeout is ours, on the transport's clock). The HTTP/1.1 part of
 * the opening handshake is read by a node:http server that never listens (it is
 * handed each socket), and the upgrade is done by `ws` in noServer mode.
 *
 * A WebSocket server never dials: a send goes on the connection it names (or
 * the one open to the peer's address:port), else it fails with ENOTCONN.
 *
 * Liveness and limits without a timer per connection or per message: one sweep
 * on the injected Clock ends handshakes that take too long, pings connections
 * that went quiet, terminates those whose pong is overdue, and closes idle ones.
 * Per message only two fields are set, from the sweep's coarse time.
 */
import { isUtf8 } from "node:buffer";
import * as http from "node:http";
import * as net from "node:net";
import * as tls from "node:tls";
import { type ServerOptions, WebSocket, WebSocketServer } from "ws";
import { type Clock, RealClock } from "../clock.js";
import { normalizeAddress, unbracket } from "./address.js";
import { checkBindTarget, listenOrThrow } from "./bind.js";
import { nextConnectionId } from "./connection-id.js";
import { TransportSendError } from "./errors.js";
import { liveStreamTransports } from "./live.js";
import { fail, keyOf } from "./shared.js";
import { DEFAULT_TCP_MAX_PER_IP, defaultTcpMaxConnections } from "./tcp.js";
import { type TlsCredentials, type TlsOptions, tlsContextOptions, tlsServerOptions } from "./tls.js";
import {
  type Destination,
  newTransportStats,
  type SendErrorTarget,
  type Source,
  type Transport,
  type TransportSink,
  type TransportStats,
} from "./types.js";

// Same shape as tcp.ts's defaults on purpose: each transport's own limits, by name, in its own module
// (the values differ or may change apart; the limits both share are imported from tcp.ts below).
/** Largest WebSocket message (the parser's default largest SIP message). */
export const DEFAULT_WS_MAX_MESSAGE_BYTES = 65_535;
export const DEFAULT_WS_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_WS_IDLE_TIMEOUT_MS = 120_000;
export const DEFAULT_WS_PING_INTERVAL_MS = 30_000;
export const DEFAULT_WS_PONG_TIMEOUT_MS = 10_000;
const DEFAULT_SWEEP_INTERVAL_MS = 1_000;
/** A closing handshake we began that the peer does not finish is cut after this (`ws`'s own timer). */
const CLOSE_TIMEOUT_MS = 2_000;
/** Most bytes waiting to be written on one connection; a send beyond it fails with ENOBUFS and closes it. */
const MAX_WRITE_QUEUE_BYTES = 8 * 1024 * 1024;
/** Largest HTTP head of an opening handshake (node's default; a browser sends its cookies for the site too). */
const MAX_HANDSHAKE_HEADER_BYTES = 16 * 1024;

/** The WebSocket subprotocol of SIP (RFC 7118 §4, IANA registry). */
export const SIP_SUBPROTOCOL = "sip";

const CRLF = Buffer.from("\r\n", "latin1");

export interface WsTransportOptions {
  /** IP literal to listen on (no brackets). */
  address: string;
  /** 0 = ephemeral; `localPort` reports the real one. */
  port: number;
  sink: TransportSink;
  /** Present: WSS (TLS under the WebSocket), protocol "WSS". Absent: "WS". */
  tls?: TlsOptions;
  /** Most open WebSocket connections; an upgrade beyond it is answered 503 (counted `ws_handshake_rejected`). Default `defaultTcpMaxConnections()`. */
  maxConnections?: number;
  /** Most open connections from one IP (the socket's, not X-Forwarded-For's); beyond it 503. 0 = no cap. Default 64. */
  maxConnectionsPerIp?: number;
  /** Largest WebSocket message; a larger one closes the connection with 1009 (counted `ws_message_too_big`). Default 65535. */
  maxMessageBytes?: number;
  /** TCP accept to upgrade done (TLS handshake included for WSS); later: closed, counted `ws_handshake_timeout`. 0 = off. Default 10000 (for WSS: `tls.handshakeTimeoutMs` when only that is set). */
  handshakeTimeoutMs?: number;
  /** Nothing received and no SIP message sent for this long: closed. 0 = off. Default 120000. */
  idleTimeoutMs?: number;
  /** A connection nothing was received on for this long is sent a WebSocket ping. 0 = off. Default 30000. */
  pingIntervalMs?: number;
  /** Nothing received within this after a ping: terminated (counted `ws_dead_closed`). Default 10000. */
  pongTimeoutMs?: number;
  /** CIDRs (or addresses) of reverse proxies whose X-Forwarded-For is believed (the rightmost untrusted hop). Default none. */
  trustedProxies?: readonly string[];
  /** The only request path an upgrade is accepted on (the query is ignored). Default: any. */
  path?: string;
  /** Time of the sweep (tests: a VirtualClock). Default: real time. */
  clock?: Clock;
  /** How often the sweep runs. Default 1000. */
  sweepIntervalMs?: number;
  /** Hears errors nobody asked about (a reset, a protocol error of a peer, an exception of the sink…). Default: ignored. */
  onSocketError?: (err: Error) => void;
}

/** A TCP connection whose opening handshake (TLS, then HTTP upgrade) is not done. */
interface Handshake {
  /** Its key in `handshaking`: the TCP 4-tuple (the TLS socket over it has the same). */
  readonly key: string;
  readonly raw: net.Socket;
  /** The socket HTTP is read from: the TCP socket, or (WSS) the TLS socket over it once that is up. */
  socket: net.Socket;
  readonly ip: string;
  /** Sweep time of the accept. */
  readonly at: number;
  /** Ended by us (its timeout, the transport's close): not a failed TLS handshake. */
  killed: boolean;
}

type ConnState = "open" | "closing" | "closed";

interface Connection {
  readonly id: number;
  readonly ws: WebSocket;
  readonly socket: net.Socket;
  readonly source: Source;
  /** The socket's peer address (what `perIp` counts). */
  readonly ip: string;
  /** Key in `byKey` (undefined when another connection holds it). */
  key: string | undefined;
  state: ConnState;
  /** Sweep time of the last frame received. */
  lastRx: number;
  /** Sweep time of the last frame received or SIP message sent. */
  lastActivity: number;
  /** Sweep time of the ping that is unanswered; -1: none. */
  pingAt: number;
  /** A CRLF keep-alive pong is being written. */
  pongPending: boolean;
  readonly pongDone: () => void;
  readonly countless: (err?: Error | null) => void;
}

/**
 * SIP over WebSocket, server side: browsers and other WebSocket clients
 * connect; requests and responses to them go back over their connection.
 */
export class WsTransport implements Transport {
  readonly protocol: "WS" | "WSS";
  readonly reliable = true;
  readonly localAddress: string;
  readonly localPort: number;

  private readonly sink: TransportSink;
  private readonly maxConnections: number;
  private readonly maxPerIp: number;
  private readonly handshakeTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly pingIntervalMs: number;
  private readonly pongTimeoutMs: number;
  private readonly path: string | undefined;
  private readonly proxies: net.BlockList | undefined;
  private readonly onSocketError: ((err: Error) => void) | undefined;
  private readonly clock: Clock;
  private readonly sweepIntervalMs: number;
  private readonly wildcard: boolean;
  private readonly http: http.Server;
  private readonly wss: WebSocketServer;
  /** WSS: the TLS layer (never listens: handed each accepted socket; its policy is node's own). */
  private readonly tlsServer: tls.Server | undefined;

  /** Sockets in their opening handshake, in accept order (so the sweep stops at the first not due). */
  private readonly handshaking = new Map<string, Handshake>();
  /** Handshaking sockets per peer IP. */
  private readonly handshakingPerIp = new Map<string, number>();
  private readonly byId = new Map<number, Connection>();
  private readonly byKey = new Map<string, Connection>();
  /** Open connections per peer IP (the socket's address). */
  private readonly perIp = new Map<string, number>();
  /** The close of every accepted TCP socket and WebSocket still open. */
  private readonly closes = new Set<Promise<void>>();
  private readonly counters: TransportStats = newTransportStats();
  private sweepAt: number;
  private sweepTimer: unknown;
  private closed = false;
  private closing: Promise<void> | undefined;

  // The Transport members and the close state, declared as udp.ts and tcp.ts declare theirs: the same
  // interface, not shared code.
  /** @internal use `createWsTransport`. */
  constructor(
    private readonly server: net.Server,
    opts: WsTransportOptions,
    localPort: number,
  ) {
    this.protocol = opts.tls ? "WSS" : "WS";
    this.localAddress = opts.address;
    this.localPort = localPort;
    this.sink = opts.sink;
    this.maxConnections = opts.maxConnections ?? defaultTcpMaxConnections();
    this.maxPerIp = opts.maxConnectionsPerIp ?? DEFAULT_TCP_MAX_PER_IP;
    const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_WS_MAX_MESSAGE_BYTES;
    this.handshakeTimeoutMs =
      opts.handshakeTimeoutMs ?? opts.tls?.handshakeTimeoutMs ?? DEFAULT_WS_HANDSHAKE_TIMEOUT_MS;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_WS_IDLE_TIMEOUT_MS;
    this.pingIntervalMs = opts.pingIntervalMs ?? DEFAULT_WS_PING_INTERVAL_MS;
    this.pongTimeoutMs = opts.pongTimeoutMs ?? DEFAULT_WS_PONG_TIMEOUT_MS;
    this.path = opts.path;
    this.proxies = trustedProxyList(opts.trustedProxies);
    this.onSocketError = opts.onSocketError;
    this.clock = opts.clock ?? new RealClock();
    this.sweepIntervalMs = opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.wildcard = opts.address === "0.0.0.0" || opts.address === "::";
    this.sweepAt = this.clock.now();
    if (opts.tls) {
      // Node's own deadline is only a backstop (real time): the sweep ends a slow handshake first, counted.
      const backstop = this.handshakeTimeoutMs > 0 ? 2 * this.handshakeTimeoutMs : 120_000;
      const server = tls.createServer({ ...tlsServerOptions(opts.tls), handshakeTimeout: backstop });
      server.on("secureConnection", (socket: tls.TLSSocket) => this.onSecure(socket));
      // Counted when the TCP socket closes (`onAccept`): the error does not say which one it was.
      server.on("tlsClientError", (err: Error) => this.onSocketError?.(err));
      this.tlsServer = server;
    }

    // Never listens: each accepted socket is handed to it ("connection"), so it starts no timers.
    this.http = http.createServer({ maxHeaderSize: MAX_HANDSHAKE_HEADER_BYTES });
    this.http.on("request", (req: http.IncomingMessage, res: http.ServerResponse) =>
      this.onPlainRequest(req, res),
    );
    this.http.on("upgrade", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) =>
      this.onUpgrade(req, socket, head),
    );
    this.http.on("clientError", (err: Error & { code?: string }, socket: net.Socket) =>
      this.onClientError(err, socket),
    );
    const wsOptions: ServerOptions & { closeTimeout: number } = {
      noServer: true,
      clientTracking: false,
      // RFC 7118 §5: one SIP message per WebSocket message; no compression (memory and CPU per connection).
      perMessageDeflate: false,
      maxPayload: maxMessageBytes,
      closeTimeout: CLOSE_TIMEOUT_MS,
      handleProtocols: () => SIP_SUBPROTOCOL,
    };
    this.wss = new WebSocketServer(wsOptions);
    // What `ws` itself refuses in the handshake (checked after ours): counted like ours.
    this.wss.on("wsClientError", (err: Error, socket: net.Socket) => {
      this.reject(socket, 400, err.message);
    });
    server.on("connection", (socket: net.Socket) => this.onAccept(socket));
    server.on("error", (err: Error) => this.onSocketError?.(err));
    liveStreamTransports().add(this);
    this.armSweep();
  }

  /** Open WebSocket connections (handshakes in progress are not counted). */
  get connectionCount(): number {
    return this.byId.size;
  }

  /** The limit counters (a copy; `ws_connections` is the count now). */
  get stats(): TransportStats {
    return { ...this.counters, ws_connections: this.byId.size };
  }

  /** Sockets accepted whose opening handshake is not done. */
  /** Handshakes in progress (the name the live-transport check reads). */
  get handshakes(): number {
    return this.handshakeCount;
  }

  get handshakeCount(): number {
    return this.handshaking.size;
  }

  /** True when `connectionId` names an open connection. */
  hasConnection(connectionId: number): boolean {
    const conn = this.byId.get(connectionId);
    return conn !== undefined && usable(conn);
  }

  /** Close one connection (a Close frame 1000, RFC 6455 §7.1.2). False when there is no such open connection. */
  closeConnection(connectionId: number): boolean {
    const conn = this.byId.get(connectionId);
    if (conn?.state !== "open") return false;
    this.closeGracefully(conn, 1000, "closed by the server");
    return true;
  }

  /**
   * WSS: handshakes from now on present `creds`; connections already open
   * keep theirs. Throws (and keeps the old certificate) when `creds` is unusable.
   */
  reloadCertificates(creds: TlsCredentials): void {
    if (!this.tlsServer) throw new TypeError("WS transport: no TLS to reload (not WSS)");
    this.tlsServer.setSecureContext(tlsContextOptions(creds));
  }

  // The prologue has TcpTransport.send's shape on purpose: the same steps (closed, the named
  // connection, the one to the address) over this file's own Connection and `usable`, whose
  // states differ (no "connecting": a WebSocket server never dials).
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
    // RFC 7118 §5: a WebSocket client's Via and Contact hosts are not reachable
    // (".invalid"): only an open connection to the peer can carry it.
    if (!conn) conn = this.byKey.get(keyOf(dest.address, dest.port));
    if (!conn || !usable(conn)) {
      if (onError)
        fail(onError, new TransportSendError("ENOTCONN", dest, "no WebSocket connection to the peer"));
      return;
    }
    if (conn.ws.bufferedAmount + data.length > MAX_WRITE_QUEUE_BYTES) {
      // The peer has stopped reading: close it rather than grow our memory.
      if (onError) fail(onError, new TransportSendError("ENOBUFS", dest, "write queue full"));
      conn.state = "closing";
      conn.ws.terminate();
      return;
    }
    conn.lastActivity = this.sweepAt;
    // RFC 7118 §5.1: text frames for UTF-8, binary otherwise; one message per frame.
    const binary = !isUtf8(data);
    if (onError) {
      conn.ws.send(data, { binary }, (err) => {
        if (!err) return;
        const code = (err as NodeJS.ErrnoException).code;
        onError.transportError(
          new TransportSendError(typeof code === "string" ? code : "ECONNRESET", dest, err.message, err),
        );
      });
    } else conn.ws.send(data, { binary }, conn.countless);
  }

  /**
   * The periodic sweep (every `sweepIntervalMs` on the clock; public for tests):
   * handshakes past their deadline, pings to quiet connections, terminates for
   * overdue pongs, closes for idleness.
   */
  sweep(): void {
    const now = this.clock.now();
    this.sweepAt = now;
    if (this.handshakeTimeoutMs > 0)
      for (const h of this.handshaking.values()) {
        if (now - h.at < this.handshakeTimeoutMs) break; // accept order: the rest are younger
        this.counters.ws_handshake_timeout++;
        this.forgetHandshake(h);
        this.destroyHandshake(h);
      }
    for (const conn of this.byId.values()) {
      if (conn.state !== "open") continue;
      if (conn.pingAt >= 0) {
        // RFC 6455 §5.5.2/§5.5.3: a live peer answers a ping with a pong (any frame will do here).
        if (now - conn.pingAt >= this.pongTimeoutMs) {
          this.counters.ws_dead_closed++;
          conn.state = "closing";
          conn.ws.terminate();
        }
        continue;
      }
      if (this.idleTimeoutMs > 0 && now - conn.lastActivity >= this.idleTimeoutMs) {
        this.closeGracefully(conn, 1000, "idle");
        continue;
      }
      if (this.pingIntervalMs > 0 && now - conn.lastRx >= this.pingIntervalMs) {
        conn.pingAt = now;
        conn.ws.ping();
      }
    }
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.clock.clearTimer(this.sweepTimer);
      this.sweepTimer = undefined;
      // Resolves once every accepted TCP socket is closed too.
      const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const h of [...this.handshaking.values()]) {
        this.forgetHandshake(h);
        this.destroyHandshake(h);
      }
      // RFC 6455 §7.4.1: 1001, the server is going away.
      for (const conn of this.byId.values())
        if (conn.state === "open") this.closeGracefully(conn, 1001, "server shutting down");
      this.wss.close();
      this.closing = Promise.all([serverClosed, ...this.closes]).then(() => {
        liveStreamTransports().delete(this);
      });
    }
    return this.closing;
  }

  // --- the opening handshake ---

  private onAccept(raw: net.Socket): void {
    const remote = raw.remoteAddress;
    if (this.closed || !remote || !raw.remotePort) {
      raw.destroy();
      return;
    }
    const ip = normalizeAddress(remote);
    // Sockets not yet upgraded are bounded too (else a flood of silent connects holds descriptors
    // until their handshake timeout): at most as many as the caps allow open connections.
    if (
      this.handshaking.size >= this.maxConnections ||
      (this.maxPerIp > 0 && (this.handshakingPerIp.get(ip) ?? 0) >= this.maxPerIp)
    ) {
      this.counters.ws_handshake_rejected++;
      raw.destroy();
      return;
    }
    // Errors reach whoever reads the socket (node:tls, node:http's parser, then `ws`); this one only
    // keeps an error no one else hears from being thrown.
    raw.on("error", noop);
    raw.setNoDelay(true);
    const h: Handshake = { key: tupleOf(raw), raw, socket: raw, ip, at: this.sweepAt, killed: false };
    this.handshaking.set(h.key, h);
    this.handshakingPerIp.set(ip, (this.handshakingPerIp.get(ip) ?? 0) + 1);
    const closed = new Promise<void>((resolve) => {
      raw.once("close", () => {
        // WSS: closed before its TLS handshake was done, and not by us: a failed handshake (garbage, a
        // protocol error, a client certificate refused — RFC 3261 §26.3.2.2 — or a peer that hung up).
        if (this.tlsServer && h.socket === raw && !h.killed) this.counters.tls_handshake_failed++;
        this.forgetHandshake(h);
        this.closes.delete(closed);
        resolve();
      });
    });
    this.closes.add(closed);
    if (this.tlsServer) this.tlsServer.emit("connection", raw);
    else this.http.emit("connection", raw);
  }

  /** WSS: the TLS handshake is done; the HTTP upgrade comes next, over it. */
  private onSecure(socket: tls.TLSSocket): void {
    const h = this.handshaking.get(tupleOf(socket));
    if (!h || this.closed) {
      socket.destroy();
      return;
    }
    h.socket = socket;
    this.http.emit("connection", socket);
  }

  private forgetHandshake(h: Handshake): void {
    if (this.handshaking.get(h.key) !== h) return;
    this.handshaking.delete(h.key);
    const n = (this.handshakingPerIp.get(h.ip) ?? 1) - 1;
    if (n > 0) this.handshakingPerIp.set(h.ip, n);
    else this.handshakingPerIp.delete(h.ip);
  }

  private destroyHandshake(h: Handshake): void {
    h.killed = true;
    h.socket.destroy();
    h.raw.destroy();
  }

  /** A request without an upgrade: RFC 7118 needs a WebSocket (RFC 7231 §6.5.15: 426). */
  private onPlainRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.counters.ws_handshake_rejected++;
    const body = "SIP over WebSocket only: upgrade with subprotocol sip (RFC 7118)\n";
    res.shouldKeepAlive = false;
    res.writeHead(426, {
      Upgrade: "websocket",
      Connection: "Upgrade, close",
      "Sec-WebSocket-Protocol": SIP_SUBPROTOCOL,
      "Sec-WebSocket-Version": "13",
      "Content-Type": "text/plain",
      "Content-Length": Buffer.byteLength(body),
    });
    res.end(body, () => req.socket.destroy());
  }

  /** Not HTTP at all (or too big a head): 400 and closed (node's parser found it). */
  private onClientError(err: Error & { code?: string }, socket: net.Socket): void {
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    if (err.code === "HPE_HEADER_OVERFLOW") this.reject(socket, 431, "handshake headers too large");
    else this.reject(socket, 400, "not an HTTP request");
  }

  private onUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const h = this.handshaking.get(tupleOf(socket));
    if (this.closed || h?.socket !== socket) {
      socket.destroy();
      return;
    }
    const refusal = this.checkHandshake(req, h.ip);
    if (refusal) {
      this.reject(socket, refusal[0], refusal[1], refusal[2]);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onOpen(ws, req, socket, h));
  }

  /** RFC 6455 §4.2.1 and RFC 7118 §4: what a SIP WebSocket handshake must be; [status, reason, headers] when it is not. */
  private checkHandshake(
    req: http.IncomingMessage,
    ip: string,
  ): [number, string, Record<string, string>?] | undefined {
    if (req.method !== "GET") return [405, "a WebSocket handshake is a GET (RFC 6455 §4.2.1)"];
    const upgrade = req.headers.upgrade;
    if (upgrade === undefined || upgrade.toLowerCase() !== "websocket")
      return [400, "not a WebSocket handshake (Upgrade: websocket)"];
    const key = req.headers["sec-websocket-key"];
    if (typeof key !== "string" || !isWebSocketKey(key))
      return [400, "missing or invalid Sec-WebSocket-Key (RFC 6455 §4.2.1)"];
    const version = req.headers["sec-websocket-version"];
    if (version !== "13" && version !== "8")
      return [426, "WebSocket version 13 required (RFC 6455 §4.4)", { "Sec-WebSocket-Version": "13" }];
    if (!offersSip(req.headers["sec-websocket-protocol"]))
      return [400, "WebSocket subprotocol sip required (RFC 7118 §4)"];
    if (this.path !== undefined) {
      const url = req.url ?? "";
      const q = url.indexOf("?");
      if ((q < 0 ? url : url.slice(0, q)) !== this.path) return [404, "no SIP WebSocket on this path"];
    }
    if (this.byId.size >= this.maxConnections) return [503, "too many connections"];
    if (this.maxPerIp > 0 && (this.perIp.get(ip) ?? 0) >= this.maxPerIp)
      return [503, "too many connections from this address"];
    return undefined;
  }

  /** Refuse a handshake with an HTTP error (RFC 6455 §4.2.2: a status other than 101), counted; the socket then goes. */
  private reject(socket: net.Socket, status: number, reason: string, headers?: Record<string, string>): void {
    this.counters.ws_handshake_rejected++;
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const body = `${reason}\n`;
    let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Error"}\r\nConnection: close\r\n`;
    for (const [name, value] of Object.entries(headers ?? {})) head += `${name}: ${value}\r\n`;
    head += `Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
    socket.end(head + body, () => socket.destroy());
  }

  // --- open connections ---

  private onOpen(ws: WebSocket, req: http.IncomingMessage, socket: net.Socket, h: Handshake): void {
    this.forgetHandshake(h);
    if (this.closed) {
      ws.terminate();
      return;
    }
    const id = nextConnectionId();
    const port = socket.remotePort ?? 0;
    const address = this.clientAddress(h.ip, req.headers["x-forwarded-for"]);
    const localAddress =
      this.wildcard && socket.localAddress ? normalizeAddress(socket.localAddress) : this.localAddress;
    const source: Source = {
      protocol: this.protocol,
      address,
      port,
      localAddress,
      localPort: this.localPort,
      connectionId: id,
    };
    const conn: Connection = {
      id,
      ws,
      socket,
      source,
      ip: h.ip,
      key: undefined,
      state: "open",
      lastRx: this.sweepAt,
      lastActivity: this.sweepAt,
      pingAt: -1,
      pongPending: false,
      pongDone: () => {
        conn.pongPending = false;
      },
      countless: () => {},
    };
    this.byId.set(id, conn);
    this.perIp.set(h.ip, (this.perIp.get(h.ip) ?? 0) + 1);
    const key = keyOf(address, port);
    const holder = this.byKey.get(key);
    if (holder?.state !== "open") {
      this.byKey.set(key, conn);
      conn.key = key;
    }
    ws.on("message", (data: Buffer) => this.onFrame(conn, data));
    ws.on("pong", () => this.heard(conn));
    ws.on("ping", () => this.heard(conn));
    ws.on("error", (err: Error & { code?: string }) => {
      // RFC 6455 §7.4.1: 1009, a message too big to process (`ws` sends the close).
      if (err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") this.counters.ws_message_too_big++;
      else this.onSocketError?.(err);
    });
    // close() waits for this too: the sink hears of every connection closed before it resolves.
    const closed = new Promise<void>((resolve) => {
      ws.once("close", () => {
        this.onClosed(conn);
        this.closes.delete(closed);
        resolve();
      });
    });
    this.closes.add(closed);
  }

  /** Any frame from the peer: it is alive. */
  private heard(conn: Connection): void {
    conn.lastRx = this.sweepAt;
    conn.lastActivity = this.sweepAt;
    conn.pingAt = -1;
  }

  private onFrame(conn: Connection, data: Buffer): void {
    if (conn.state !== "open") return;
    this.heard(conn);
    // RFC 7118 §5: each message is one SIP message, text or binary frames alike.
    if (data.length === 4 && data[0] === 13 && data[1] === 10 && data[2] === 13 && data[3] === 10) {
      this.onKeepAlive(conn);
      return;
    }
    if (isBlank(data)) return; // empty, or a CRLF pong: nothing to give the engine
    try {
      this.sink.onMessage(data, conn.source);
    } catch (err) {
      this.onSocketError?.(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** RFC 5626 §3.5.1: a CRLFCRLF ping is answered by a CRLF pong — one at a time, never queued behind a backlog. */
  private onKeepAlive(conn: Connection): void {
    if (conn.pongPending || conn.ws.bufferedAmount > 0) return;
    conn.pongPending = true;
    conn.ws.send(CRLF, { binary: false }, conn.pongDone);
  }

  private closeGracefully(conn: Connection, code: number, reason: string): void {
    conn.state = "closing";
    if (conn.key !== undefined && this.byKey.get(conn.key) === conn) this.byKey.delete(conn.key);
    conn.key = undefined;
    conn.ws.close(code, reason);
  }

  private onClosed(conn: Connection): void {
    if (conn.state === "closed") return;
    conn.state = "closed";
    this.byId.delete(conn.id);
    if (conn.key !== undefined && this.byKey.get(conn.key) === conn) this.byKey.delete(conn.key);
    conn.key = undefined;
    const n = (this.perIp.get(conn.ip) ?? 1) - 1;
    if (n > 0) this.perIp.set(conn.ip, n);
    else this.perIp.delete(conn.ip);
    try {
      this.sink.onConnectionClosed?.(conn.source, true);
    } catch (err) {
      this.onSocketError?.(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** The client's address: X-Forwarded-For's rightmost hop not a trusted proxy, when the peer is one (else the peer). */
  private clientAddress(peer: string, xff: string | string[] | undefined): string {
    const proxies = this.proxies;
    if (!proxies || xff === undefined || !isTrusted(proxies, peer)) return peer;
    const hops = (Array.isArray(xff) ? xff.join(",") : xff).split(",");
    let client = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = unbracket(hops[i]!.trim());
      // Not an address (a port, "unknown", garbage): believe no further than the last good hop.
      if (net.isIP(hop) === 0) break;
      client = normalizeAddress(hop);
      if (!isTrusted(proxies, client)) break;
    }
    return client;
  }

  private armSweep(): void {
    this.sweepTimer = this.clock.setTimer(this.clock.now() + this.sweepIntervalMs, () => {
      this.sweepTimer = undefined;
      if (this.closed) return;
      this.sweep();
      this.armSweep();
    });
  }
}

/** Listen on `address:port` for WebSocket (WSS when `opts.tls`). Rejects with `TransportBindError` when the listen fails. */
export async function createWsTransport(opts: WsTransportOptions): Promise<WsTransport> {
  const protocol = opts.tls ? "WSS" : "WS";
  const family = checkBindTarget(protocol, opts.address, opts.port);
  trustedProxyList(opts.trustedProxies); // a bad CIDR is an error now, before anything is bound
  if (opts.tls) tls.createSecureContext(tlsContextOptions(opts.tls)); // likewise a bad certificate
  const server = net.createServer();
  await listenOrThrow(server, protocol, opts.address, opts.port, family);
  const bound = server.address() as net.AddressInfo;
  try {
    return new WsTransport(server, opts, bound.port);
  } catch (err) {
    server.close();
    throw err;
  }
}

/** `trustedProxies` as a BlockList; throws TypeError on an entry that is not an address or CIDR. */
export function trustedProxyList(cidrs: readonly string[] | undefined): net.BlockList | undefined {
  if (!cidrs || cidrs.length === 0) return undefined;
  const list = new net.BlockList();
  for (const entry of cidrs) {
    const slash = entry.indexOf("/");
    const addr = normalizeAddress(unbracket(slash < 0 ? entry.trim() : entry.slice(0, slash).trim()));
    const family = net.isIP(addr);
    const max = family === 4 ? 32 : 128;
    const prefix = slash < 0 ? max : Number(entry.slice(slash + 1).trim());
    if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > max)
      throw new TypeError(`WS transport: trusted proxy "${entry}" is not an IP address or CIDR`);
    list.addSubnet(addr, prefix, family === 4 ? "ipv4" : "ipv6");
  }
  return list;
}

function isTrusted(list: net.BlockList, address: string): boolean {
  const family = net.isIP(address);
  return family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6");
}

/** RFC 7118 §4: the client's Sec-WebSocket-Protocol list names "sip". */
function offersSip(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  for (const part of (Array.isArray(header) ? header.join(",") : header).split(","))
    if (part.trim() === SIP_SUBPROTOCOL) return true;
  return false;
}

/** RFC 6455 §4.2.1 item 5: the base64 of 16 bytes (24 characters, "==" at the end). */
function isWebSocketKey(key: string): boolean {
  if (key.length !== 24 || !key.endsWith("==")) return false;
  for (let i = 0; i < 22; i++) {
    const c = key.charCodeAt(i);
    const ok = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47;
    if (!ok) return false;
  }
  return true;
}

/** Only spaces, tabs, CR and LF (or nothing). */
function isBlank(data: Buffer): boolean {
  for (let i = 0; i < data.length; i++) {
    const c = data[i]!;
    if (c !== 13 && c !== 10 && c !== 32 && c !== 9) return false;
  }
  return true;
}

/** Open on our side and the peer's (a peer's Close frame makes `ws` CLOSING: nothing more can be sent). */
function usable(conn: Connection): boolean {
  return conn.state === "open" && conn.ws.readyState === WebSocket.OPEN;
}

/** A TCP connection's 4-tuple, as a key. */
function tupleOf(socket: net.Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}|${socket.localAddress}|${socket.localPort}`;
}

function noop(): void {}
