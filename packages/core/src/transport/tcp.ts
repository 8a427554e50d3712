import { readFileSync } from "node:fs";
import * as net from "node:net";
import * as tls from "node:tls";
import { type Clock, RealClock } from "../clock.js";
import { StreamFramer } from "../message/stream.js";
import type { ParseLimits } from "../message/types.js";
import { normalizeAddress, unbracket } from "./address.js";
import { checkBindTarget, listenOrThrow } from "./bind.js";
import { nextConnectionId } from "./connection-id.js";
import { TransportSendError } from "./errors.js";
import { liveStreamTransports } from "./live.js";
import { fail, keyOf } from "./shared.js";
import {
  checkSipServerIdentity,
  DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
  normalizeFingerprint,
  type TlsCredentials,
  type TlsOptions,
  tlsContextOptions,
  tlsServerOptions,
} from "./tls.js";
import {
  type Destination,
  newTransportStats,
  type SendErrorTarget,
  type Source,
  type Transport,
  type TransportSink,
  type TransportStats,
} from "./types.js";

const CRLF = Buffer.from("\r\n", "latin1");
// Same shape as ws.ts's defaults on purpose: each transport's own limits, by name, in its own module.
const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_WRITE_QUEUE = 8 * 1024 * 1024;
/** `maxConnections` when the descriptor limit allows it. */
export const DEFAULT_TCP_MAX_CONNECTIONS = 4096;
/** Descriptors `maxConnections` leaves by default for everything else (UDP and control sockets, files, logs). */
export const TCP_FD_RESERVE = 256;
export const DEFAULT_TCP_MAX_PER_IP = 64;
/**
 * A message begun must be complete within this (Kamailio's tcp_msg_read_timeout
 * has the same default): a 64 KiB message takes milliseconds on any link that
 * can carry SIP, so 20 s only ever hits a peer that dribbles bytes on purpose.
 */
export const DEFAULT_TCP_MSG_TIMEOUT_MS = 20_000;
/**
 * RFC 5626 §4.4.1 clients ping every 95–120 s on TCP (aggressive NAT keep-alive
 * settings every few seconds): 20 in 10 s is a generous burst no client needs.
 */
export const DEFAULT_TCP_MAX_PINGS = 20;
export const DEFAULT_TCP_PING_WINDOW_MS = 10_000;
const DEFAULT_SWEEP_INTERVAL_MS = 1_000;

/** The limits of a TCP transport that a server passes through (flags of `siptm serve`). */
export interface TcpLimitOptions {
  /** Most connections, inbound and outbound together; beyond it inbound ones are closed at once (counted) and sends refused with EMFILE. Default `defaultTcpMaxConnections()`. */
  maxConnections?: number;
  /** Most inbound connections from one IP address; more are closed at once (counted `tcp_conn_rejected_ip`). 0 = no cap. Default 64. */
  maxConnectionsPerIp?: number;
  /** A connection holding part of a message whose first byte came this long ago is closed (counted `tcp_msg_timeout_closed`). 0 = off. Default 20000. */
  msgTimeoutMs?: number;
  /** Keep-alive pings one connection may send per `pingWindowMs`; one more closes it (counted `tcp_ping_flood_closed`). 0 = no cap. Default 20. */
  maxPingsPerWindow?: number;
  /** Default 10000. */
  pingWindowMs?: number;
  /** A connection with no traffic either way for this long is closed. Default 120000. */
  idleTimeoutMs?: number;
  /** Most bytes waiting to be written on one connection (queued while connecting, or not yet taken by the kernel); a send beyond it fails with ENOBUFS and closes an open connection (the peer does not read). Default 8 MiB. */
  maxWriteQueueBytes?: number;
}

let defaultMax: number | undefined;

/**
 * `maxConnections` when none is given: 4096, but never more than the process's
 * open-file limit (Linux: the soft "Max open files" of /proc/self/limits) minus
 * a reserve of 256 descriptors, so that a flood of connections cannot take the
 * descriptors the control interface needs.
 */
export function defaultTcpMaxConnections(): number {
  if (defaultMax === undefined) defaultMax = maxConnectionsFor(openFilesLimit());
  return defaultMax;
}

/** The default cap for an open-file limit (undefined: unknown or unlimited). */
export function maxConnectionsFor(nofile: number | undefined): number {
  if (nofile === undefined) return DEFAULT_TCP_MAX_CONNECTIONS;
  const room = nofile > 2 * TCP_FD_RESERVE ? nofile - TCP_FD_RESERVE : Math.floor(nofile / 2);
  return Math.max(1, Math.min(DEFAULT_TCP_MAX_CONNECTIONS, room));
}

/** The soft open-file limit from a /proc/PID/limits text (read from this process when not given). */
export function openFilesLimit(text?: string): number | undefined {
  let t = text;
  if (t === undefined) {
    try {
      t = readFileSync("/proc/self/limits", "latin1");
    } catch {
      return undefined;
    }
  }
  const at = t.indexOf("Max open files");
  if (at < 0) return undefined;
  const n = Number.parseInt(t.slice(at + 14).trimStart(), 10);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

export interface TcpTransportOptions extends TcpLimitOptions {
  /** IP literal to listen on (no brackets). Outgoing connections leave from it too (unless it is a wildcard). */
  address: string;
  /** 0 = ephemeral; `localPort` reports the real one. */
  port: number;
  sink: TransportSink;
  /** An outgoing connection not up after this long fails its queued sends with ETIMEDOUT. Default 10000. */
  connectTimeoutMs?: number;
  /** Framing limits (largest message…), passed to `StreamFramer`. */
  limits?: Partial<ParseLimits>;
  /** Hears socket errors nobody asked about (a reset on an idle connection…). Default: ignored. */
  onSocketError?: (err: Error) => void;
  /** Time of the sweep that ends overdue messages and ping windows (tests: a VirtualClock). Default: real time. */
  clock?: Clock;
  /** How often that sweep runs. Default 1000. */
  sweepIntervalMs?: number;
  /**
   * SIP over TLS (RFC 3261 §26.3.1, RFC 5630): the same framing and limits
   * over TLS connections, inbound and outbound; the transport's protocol is
   * "TLS" (Via `SIP/2.0/TLS`).
   */
  tls?: TlsOptions;
}

interface Pending {
  readonly data: Buffer;
  readonly onError: SendErrorTarget | undefined;
}

/** A send made after the peer's FIN, whose loss would show only as a reset after the write completed. */
interface LateSend {
  readonly onError: SendErrorTarget;
  readonly dest: Destination;
  /** Clock ms of the write. */
  readonly at: number;
}

const EMPTY = Buffer.alloc(0);
/** Sends kept waiting for an outbound TLS peer's first byte (see `Connection.unconfirmed`). */
const MAX_UNCONFIRMED = 256;

/** "connecting": an outbound TCP connect, or a TLS handshake (either way) not done yet. */
type ConnState = "connecting" | "open" | "closing" | "closed";

interface Connection {
  readonly id: number;
  readonly socket: net.Socket;
  readonly outbound: boolean;
  state: ConnState;
  /** Key under which it is in `byKey` (undefined when another connection holds the key). */
  key: string | undefined;
  /** TLS: the sent-by host:port keys the peer aliased it to (RFC 5923), also in `byKey`. */
  aliases: string[] | undefined;
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
  /** Inbound: the peer's address as counted in `perIp`. */
  ip: string | undefined;
  /** The peer sent its FIN: nothing more is read, but responses still go out on it (RFC 3261 §18.2.2). */
  peerEnded: boolean;
  /** Ended to make room under a cap (counted in `evicting` until it is closed). */
  evicted: boolean;
  /** A message came in on it (a connection that closes without one owes nobody a response). */
  gotMessage: boolean;
  /** A pong was written and its write has not completed. */
  pongPending: boolean;
  /** Pings in the window that started at `pingWindowAt` (the transport's sweep time). */
  pings: number;
  pingWindowAt: number;
  /** When the first byte of the message still incomplete arrived (clock ms); -1: none pending. */
  partialSince: number;
  /** Sends with a target made since the peer's FIN, kept until a probe shows the connection still up. */
  late: LateSend[] | undefined;
  /**
   * Outbound TLS: sends with a target made before the peer's first byte. In
   * TLS 1.3 the server judges our certificate after our handshake is done, so
   * a refusal (an alert, then the close) comes after these writes "succeeded":
   * they fail at that close instead of waiting for Timer B/F.
   */
  unconfirmed: LateSend[] | undefined;
  /** Write callback of a send nobody listens to: counts its failure (one per connection, not per send). */
  readonly countFailure: (err?: Error | null) => void;
  readonly pongDone: () => void;
  /** It was open once (a flow existed: its close is told to the sink). */
  opened: boolean;
  /** The sink heard that it closed (at the close, or, inbound, at the peer's FIN). */
  told: boolean;
}

/**
 * SIP over TCP: one listening server plus outgoing connections, messages framed
 * by Content-Length (`StreamFramer`). Connections are reused both ways: a send
 * to an address:port that has a live connection (inbound or outbound) uses it.
 */
export class TcpTransport implements Transport {
  readonly protocol: "TCP" | "TLS";
  readonly reliable = true;
  readonly localAddress: string;
  readonly localPort: number;

  private readonly sink: TransportSink;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly limits: Partial<ParseLimits> | undefined;
  private readonly maxConnections: number;
  private readonly maxPerIp: number;
  private readonly msgTimeoutMs: number;
  private readonly maxPings: number;
  private readonly pingWindowMs: number;
  private readonly maxWriteQueueBytes: number;
  private readonly onSocketError: ((err: Error) => void) | undefined;
  private readonly wildcard: boolean;
  private readonly family: number;
  private readonly clock: Clock;
  private readonly sweepIntervalMs: number;
  private readonly tlsOpts: TlsOptions | undefined;
  /** TLS: the context new connections use (a reload replaces it; live ones keep theirs). */
  private secureContext: tls.SecureContext | undefined;
  private readonly handshakeTimeoutMs: number;
  /** TLS: the pins as fingerprints (`normalizeFingerprint`). */
  private readonly pins: ReadonlySet<string>;

  private readonly byId = new Map<number, Connection>();
  private readonly byKey = new Map<string, Connection>();
  /** Inbound connections per peer IP (for `maxConnectionsPerIp`). */
  private readonly perIp = new Map<string, number>();
  /** Connections whose peer sent its FIN, oldest first: the first to go when a cap is reached. */
  private readonly halfClosed = new Set<Connection>();
  /** Half-closed connections with sends not yet known to have arrived (the sweep probes them). */
  private readonly lateConns = new Set<Connection>();
  /** Connections holding part of a message (the sweep checks their deadline). */
  private readonly partial = new Set<Connection>();
  /** Time of the last sweep: the coarse clock of the ping windows (no clock read per ping). */
  private sweepAt: number;
  private sweepTimer: unknown;
  /** Half-closed connections ended to make room and not closed yet (they no longer count against the cap). */
  private evicting = 0;
  /** TLS: inbound sockets whose handshake is not done, by peer address|port. */
  private readonly handshaking = new Map<string, { readonly raw: net.Socket; readonly ip: string }>();
  /** TLS: handshakes in progress per peer IP (with `perIp`, under `maxConnectionsPerIp`). */
  private readonly handshakesPerIp = new Map<string, number>();
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly counters: TransportStats = newTransportStats();

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
    this.maxConnections = opts.maxConnections ?? defaultTcpMaxConnections();
    this.maxPerIp = opts.maxConnectionsPerIp ?? DEFAULT_TCP_MAX_PER_IP;
    this.msgTimeoutMs = opts.msgTimeoutMs ?? DEFAULT_TCP_MSG_TIMEOUT_MS;
    this.maxPings = opts.maxPingsPerWindow ?? DEFAULT_TCP_MAX_PINGS;
    this.pingWindowMs = opts.pingWindowMs ?? DEFAULT_TCP_PING_WINDOW_MS;
    this.maxWriteQueueBytes = opts.maxWriteQueueBytes ?? DEFAULT_MAX_WRITE_QUEUE;
    this.onSocketError = opts.onSocketError;
    this.family = net.isIP(opts.address);
    this.wildcard = opts.address === "0.0.0.0" || opts.address === "::";
    this.clock = opts.clock ?? new RealClock();
    this.sweepIntervalMs = opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.sweepAt = this.clock.now();
    this.tlsOpts = opts.tls;
    this.protocol = opts.tls ? "TLS" : "TCP";
    this.handshakeTimeoutMs = opts.tls?.handshakeTimeoutMs ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS;
    this.pins = new Set((opts.tls?.pins ?? []).map(normalizeFingerprint));
    if (opts.tls) {
      this.secureContext = tls.createSecureContext(tlsContextOptions(opts.tls));
      // The caps apply before the handshake costs anything (prepended: before tls.Server wraps it).
      server.prependListener("connection", (raw: net.Socket) => this.onRawTls(raw));
      server.on("secureConnection", (socket: tls.TLSSocket) => this.onInbound(socket));
      server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => this.onHandshakeError(err, socket));
    } else server.on("connection", (socket) => this.onInbound(socket));
    server.on("error", (err) => this.onSocketError?.(err));
    liveStreamTransports().add(this);
    this.armSweep();
  }

  /** Connections open, opening or closing (inbound and outbound). */
  get connectionCount(): number {
    return this.byId.size;
  }

  /** The limit counters (a copy; `tcp_connections` or `tls_connections` is the count now). */
  get stats(): TransportStats {
    return this.tlsOpts
      ? { ...this.counters, tls_connections: this.byId.size }
      : { ...this.counters, tcp_connections: this.byId.size };
  }

  /**
   * TLS: new connections, both ways, present `creds` from now on (SIGHUP);
   * connections up now keep the certificate they shook hands with.
   * Throws (and keeps the old context) when the material does not load.
   */
  reloadCertificates(creds: TlsCredentials): void {
    if (!this.tlsOpts) throw new TypeError("reloadCertificates: not a TLS transport");
    const material = tlsContextOptions({ ...this.tlsOpts, ...creds });
    const context = tls.createSecureContext(material);
    (this.server as tls.Server).setSecureContext(material);
    this.secureContext = context;
  }

  /** Bytes waiting to go out on all connections (queued while connecting, or not yet taken by the kernel). */
  get pendingBytes(): number {
    let n = 0;
    for (const conn of this.byId.values()) n += conn.queuedBytes + conn.socket.writableLength;
    return n;
  }

  /**
   * End messages overdue and move the ping windows on. Runs every
   * `sweepIntervalMs` on the transport's clock: one timer for all connections,
   * none per message.
   */
  sweep(): void {
    const now = this.clock.now();
    this.sweepAt = now;
    if (this.msgTimeoutMs > 0)
      for (const conn of this.partial) {
        if (now - conn.partialSince < this.msgTimeoutMs) continue;
        this.partial.delete(conn);
        conn.partialSince = -1;
        if (conn.state !== "open") continue;
        this.counters.tcp_msg_timeout_closed++;
        this.drop(conn);
      }
    for (const conn of this.lateConns) this.probe(conn, now);
  }

  /**
   * A peer that closed fully (not half) answers what we write after its FIN with a
   * reset, which the socket learns only on its next write: a zero-length write makes
   * that error show, and the sends made since the FIN then fail (onClose), as RFC 3261
   * §18.2.2 wants a failed response reported. A probe that passes forgets the sends
   * older than two sweeps (a reset comes back within a round trip).
   */
  private probe(conn: Connection, now: number): void {
    if (conn.state !== "open" || !conn.late) {
      this.lateConns.delete(conn);
      return;
    }
    conn.socket.write(EMPTY, (err) => {
      if (err || !conn.late) return; // the error closes the socket; onClose fails the late sends
      const keep = conn.late.filter((l) => now - l.at < 2 * this.sweepIntervalMs);
      conn.late = keep.length > 0 ? keep : undefined;
      if (!conn.late) this.lateConns.delete(conn);
    });
  }

  private armSweep(): void {
    this.sweepTimer = this.clock.setTimer(this.clock.now() + this.sweepIntervalMs, () => {
      this.sweepTimer = undefined;
      if (this.closed) return;
      this.sweep();
      this.armSweep();
    });
  }

  /** True when `connectionId` names a connection that is up (or coming up) and usable for sends. */
  hasConnection(connectionId: number): boolean {
    const conn = this.byId.get(connectionId);
    return conn !== undefined && usable(conn);
  }

  /** True when the peer of `connectionId` has sent its FIN and the connection is still kept for responses. */
  isHalfClosed(connectionId: number): boolean {
    const conn = this.byId.get(connectionId);
    return conn?.peerEnded === true && usable(conn);
  }

  /** Connections holding part of a message now (those the message deadline watches). */
  get partialMessages(): number {
    return this.partial.size;
  }

  /** TLS handshakes in progress (inbound): they count against `maxConnections`. */
  get handshakes(): number {
    return this.handshaking.size;
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
      // RFC 3261 §18.2.2: a response goes on the connection its request came on while that
      // connection can be written to, even after the peer's FIN (a half-close).
      conn = this.byId.get(dest.connectionId);
      if (conn && !usable(conn)) conn = undefined;
    }
    if (!conn) {
      // §18.2.2: that connection is gone: a new one to the address (its failure is a transport error).
      conn = this.byKey.get(keyOf(dest.address, dest.port));
      if (conn && !usable(conn)) conn = undefined;
    }
    if (!conn && dest.serverName !== undefined) {
      // §18.1.1, RFC 5923: a connection the peer aliased to this domain (a carrier's own, inbound).
      conn = this.byKey.get(keyOf(dest.serverName.toLowerCase(), dest.port));
      if (conn && !usable(conn)) conn = undefined;
    }
    if (!conn) {
      const made = this.connect(dest);
      if (made instanceof TransportSendError) {
        this.failSend(onError, made);
        return;
      }
      conn = made;
    }

    if (conn.state === "connecting") {
      if (conn.queuedBytes + data.length > this.maxWriteQueueBytes) {
        this.failSend(onError, new TransportSendError("ENOBUFS", dest, "connect queue full"));
        return;
      }
      // The caller may reuse its buffer once send returns: keep our own copy.
      conn.queue.push({ data: Buffer.from(data), onError });
      conn.queuedBytes += data.length;
      return;
    }
    if (conn.socket.writableLength + data.length > this.maxWriteQueueBytes) {
      this.failSend(onError, new TransportSendError("ENOBUFS", dest, "write queue full"));
      // The peer has stopped reading: stop reading it too, and close it.
      this.counters.tcp_backlog_closed++;
      this.drop(conn);
      return;
    }
    this.write(conn, data, onError, dest);
  }

  /** A send failed before it reached a socket: counted, and told to whoever asked. */
  private failSend(onError: SendErrorTarget | undefined, err: TransportSendError): void {
    this.counters.tcp_send_errors++;
    if (onError) fail(onError, err);
  }

  /** Stop reading a connection and close it now (what it had queued is lost). */
  private drop(conn: Connection): void {
    conn.state = "closing";
    this.unregisterKey(conn);
    conn.socket.pause();
    if (!conn.failure) conn.failure = new TransportSendError("ECONNRESET", conn.dest, "connection closed");
    conn.socket.destroy();
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      const serverClosed = new Promise<void>((resolve) => {
        this.server.close(() => resolve());
      });
      for (const { raw } of this.handshaking.values()) raw.destroy();
      this.handshaking.clear();
      this.handshakesPerIp.clear();
      const conns = [...this.byId.values()];
      for (const conn of conns) {
        if (!conn.failure) conn.failure = new TransportSendError("ECLOSED", conn.dest, "transport closed");
        conn.socket.destroy();
      }
      this.clock.clearTimer(this.sweepTimer);
      this.sweepTimer = undefined;
      this.closing = Promise.all([serverClosed, ...conns.map((c) => c.closed)]).then(() => {
        liveStreamTransports().delete(this);
      });
    }
    return this.closing;
  }

  // --- connections ---

  /** TLS: a TCP connection came in; its handshake starts unless a cap says no. */
  private onRawTls(raw: net.Socket): void {
    const address = raw.remoteAddress;
    const port = raw.remotePort;
    if (this.closed || !address || !port) {
      raw.destroy();
      return;
    }
    if (this.byId.size + this.handshaking.size - this.evicting >= this.maxConnections) {
      this.counters.tcp_conn_rejected++;
      raw.destroy();
      return;
    }
    const ip = normalizeAddress(address);
    const fromIp = (this.perIp.get(ip) ?? 0) + (this.handshakesPerIp.get(ip) ?? 0);
    if (this.maxPerIp > 0 && fromIp >= this.maxPerIp) {
      this.counters.tcp_conn_rejected_ip++;
      raw.destroy();
      return;
    }
    const key = keyOf(address, port);
    const entry = { raw, ip };
    this.handshaking.set(key, entry);
    this.handshakesPerIp.set(ip, (this.handshakesPerIp.get(ip) ?? 0) + 1);
    raw.once("close", () => {
      if (this.handshaking.get(key) === entry) this.forgetHandshake(key);
    });
  }

  /** A TLS handshake ended (done, failed, or its socket closed). */
  private forgetHandshake(key: string): void {
    const entry = this.handshaking.get(key);
    if (!entry) return;
    this.handshaking.delete(key);
    const n = (this.handshakesPerIp.get(entry.ip) ?? 1) - 1;
    if (n > 0) this.handshakesPerIp.set(entry.ip, n);
    else this.handshakesPerIp.delete(entry.ip);
  }

  /** TLS: an inbound handshake failed (bad certificate, not TLS at all, too slow): counted; the server keeps serving. */
  private onHandshakeError(err: Error, socket: tls.TLSSocket): void {
    const { remoteAddress, remotePort } = socket;
    if (remoteAddress && remotePort) this.forgetHandshake(keyOf(remoteAddress, remotePort));
    // With a listener for tlsClientError, node leaves the socket open: close it here.
    socket.destroy();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ERR_TLS_HANDSHAKE_TIMEOUT") this.counters.tls_handshake_timeout++;
    else this.counters.tls_handshake_failed++;
    this.onSocketError?.(err);
  }

  private onInbound(socket: net.Socket): void {
    const remoteAddress = socket.remoteAddress;
    const remotePort = socket.remotePort;
    if (this.tlsOpts && remoteAddress && remotePort) this.forgetHandshake(keyOf(remoteAddress, remotePort));
    if (this.closed || !remoteAddress || !remotePort) {
      socket.destroy();
      return;
    }
    // Caps on descriptors: over either, the connection is closed before anything is read from it
    // (unless a half-closed one can make room).
    if (this.byId.size - this.evicting >= this.maxConnections && !this.evictHalfClosed(undefined)) {
      this.counters.tcp_conn_rejected++;
      socket.destroy();
      return;
    }
    const address = normalizeAddress(remoteAddress);
    if (
      this.maxPerIp > 0 &&
      (this.perIp.get(address) ?? 0) >= this.maxPerIp &&
      !this.evictHalfClosed(address)
    ) {
      this.counters.tcp_conn_rejected_ip++;
      socket.destroy();
      return;
    }
    this.perIp.set(address, (this.perIp.get(address) ?? 0) + 1);
    const conn = this.track(socket, false, { protocol: this.protocol, address, port: remotePort }, "open");
    conn.ip = address;
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
    const target: Destination = {
      protocol: this.protocol,
      address: normalizeAddress(dest.address),
      port: dest.port,
      serverName: dest.serverName,
    };
    const localAddress = !this.wildcard && family === this.family ? this.localAddress : undefined;
    let socket: net.Socket;
    if (this.tlsOpts) {
      // RFC 3261 §26.3.1: the client checks the server's certificate. rejectUnauthorized is off
      // so that the check is ours (chain, then the SIP domain of RFC 5922 §7, or a pin) and
      // counted; nothing is written before it passes (the queue waits for onConnected).
      const options: tls.ConnectionOptions = {
        host: dest.address,
        port: dest.port,
        secureContext: this.secureContext,
        rejectUnauthorized: false,
        ...(dest.serverName ? { servername: dest.serverName } : {}),
        ...(localAddress ? { localAddress } : {}),
      };
      socket = tls.connect(options);
    } else socket = new net.Socket({ allowHalfOpen: true });
    const conn = this.track(socket, true, target, "connecting");
    socket.setNoDelay(true);
    // While connecting, the socket timeout is the connect timeout (TLS: connect and handshake);
    // on connect it becomes the idle timeout.
    socket.setTimeout(this.connectTimeoutMs);
    if (this.tlsOpts) socket.once("secureConnect", () => this.onSecureConnect(conn));
    else {
      socket.once("connect", () => this.onConnected(conn));
      socket.connect({ host: dest.address, port: dest.port, ...(localAddress ? { localAddress } : {}) });
    }
    return conn;
  }

  /** TLS outbound: the handshake is done; the peer's certificate decides whether the connection is used. */
  private onSecureConnect(conn: Connection): void {
    if (conn.state !== "connecting") return;
    const socket = conn.socket as tls.TLSSocket;
    const why = this.refusal(socket, conn.dest);
    if (why) {
      this.counters.tls_verify_failed++;
      conn.failure = new TransportSendError("ECERT", conn.dest, why);
      socket.destroy();
      return;
    }
    conn.unconfirmed = [];
    this.onConnected(conn);
  }

  /** Why the peer's certificate is not accepted (undefined: accepted). */
  private refusal(socket: tls.TLSSocket, dest: Destination): string | undefined {
    if (this.tlsOpts?.verify === "insecure") return undefined;
    const cert = socket.getPeerCertificate();
    if (this.pins.size > 0 && cert.fingerprint256 && this.pins.has(cert.fingerprint256)) return undefined;
    if (!socket.authorized) return `certificate not trusted: ${String(socket.authorizationError)}`;
    const err = checkSipServerIdentity(dest.serverName ?? dest.address, cert);
    return err ? err.message : undefined;
  }

  private onConnected(conn: Connection): void {
    if (conn.state !== "connecting") return;
    conn.state = "open";
    conn.opened = true;
    this.setSource(conn);
    conn.socket.setTimeout(this.idleTimeoutMs);
    const queue = conn.queue;
    conn.queue = [];
    conn.queuedBytes = 0;
    for (const p of queue) this.write(conn, p.data, p.onError, conn.dest);
  }

  private track(socket: net.Socket, outbound: boolean, dest: Destination, state: ConnState): Connection {
    const id = nextConnectionId();
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
      aliases: undefined,
      dest: { ...dest, connectionId: id },
      source: {
        protocol: this.protocol,
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
      ip: undefined,
      peerEnded: false,
      gotMessage: false,
      evicted: false,
      pongPending: false,
      pings: 0,
      pingWindowAt: this.sweepAt,
      partialSince: -1,
      late: undefined,
      unconfirmed: undefined,
      countFailure: (err) => {
        if (err) this.counters.tcp_send_errors++;
      },
      pongDone: () => {
        conn.pongPending = false;
      },
      opened: state === "open",
      told: false,
    };
    this.byId.set(id, conn);
    const key = keyOf(dest.address, dest.port);
    const holder = this.byKey.get(key);
    if (!holder || !usable(holder)) {
      this.byKey.set(key, conn);
      conn.key = key;
    }

    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk));
    socket.on("end", () => this.onEnd(conn));
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
      protocol: this.protocol,
      address,
      port,
      localAddress,
      localPort: this.localPort,
      connectionId: conn.id,
    };
  }

  private onData(conn: Connection, chunk: Buffer): void {
    conn.unconfirmed = undefined; // the peer speaks: it took our handshake
    if (conn.state !== "open") return; // closing after a framing error: discard
    const messages: Buffer[] = [];
    let fault: unknown;
    try {
      conn.framer.push(
        chunk,
        (message) => messages.push(message),
        (kind) => {
          if (kind === "ping") this.onPing(conn);
        },
      );
    } catch (err) {
      fault = err;
    }
    if (messages.length > 0) conn.gotMessage = true;
    this.trackPartial(conn, messages.length > 0);
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

  /** RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong — within limits. */
  private onPing(conn: Connection): void {
    if (conn.state !== "open") return;
    this.counters.tcp_pings++;
    if (this.maxPings > 0) {
      if (this.sweepAt - conn.pingWindowAt >= this.pingWindowMs) {
        conn.pingWindowAt = this.sweepAt;
        conn.pings = 0;
      }
      // §4.4.1 expects a ping every tens of seconds: a flow that pings far more often is a flood.
      if (++conn.pings > this.maxPings) {
        this.counters.tcp_ping_flood_closed++;
        this.drop(conn);
        return;
      }
    }
    // One pong answers any number of pings: none while one is pending or the socket has a
    // backlog (a peer that does not read would otherwise grow our memory by a write per ping).
    if (conn.pongPending || conn.socket.writableLength > 0) {
      this.counters.tcp_pongs_suppressed++;
      return;
    }
    conn.pongPending = true;
    conn.socket.write(CRLF, conn.pongDone);
  }

  /** Keep `partial` and the message deadline in step with what the framer holds. */
  private trackPartial(conn: Connection, framed: boolean): void {
    if (conn.framer.buffered === 0 || conn.state !== "open" || conn.peerEnded) {
      if (conn.partialSince >= 0) {
        conn.partialSince = -1;
        this.partial.delete(conn);
      }
      return;
    }
    // A message completed in this chunk: what is held now is a new message, begun now.
    if (conn.partialSince < 0 || framed) {
      if (conn.partialSince < 0) this.partial.add(conn);
      conn.partialSince = this.clock.now();
    }
  }

  /**
   * The peer's FIN (the server and outgoing sockets allow half-open connections).
   * Nothing more will be read, so a partial message is dropped, and the connection
   * is no longer picked for new requests to the address; but responses still go out
   * on it (RFC 3261 §18.2.2) until it is idle, when our side ends too.
   */
  private onEnd(conn: Connection): void {
    conn.peerEnded = true;
    this.unregisterKey(conn);
    // A client's FIN ends its flow (RFC 5626 §5.3): it can send nothing more, no answer to
    // what we sent it either. The connection stays for the responses it is owed (§18.2.2).
    if (!conn.outbound) this.tellClosed(conn);
    if (conn.partialSince >= 0) {
      conn.partialSince = -1;
      this.partial.delete(conn);
    }
    if (conn.state !== "open") return;
    if (!conn.gotMessage) {
      // Nothing was asked on it: nothing is owed. End our side now.
      this.endOurSide(conn);
      return;
    }
    this.halfClosed.add(conn);
  }

  /** Close a connection gracefully from our side (what is queued still goes out). */
  private endOurSide(conn: Connection): void {
    conn.state = "closing";
    this.unregisterKey(conn);
    this.halfClosed.delete(conn);
    conn.socket.end(() => conn.socket.destroy());
  }

  /**
   * A cap is reached: let the oldest half-closed connection (of `ip`, or any) go
   * to make room, since its peer sends nothing more. Returns false when there is none.
   */
  private evictHalfClosed(ip: string | undefined): boolean {
    for (const conn of this.halfClosed) {
      if (ip !== undefined && conn.ip !== ip) continue;
      this.halfClosed.delete(conn);
      if (conn.state !== "open") continue;
      // Free its per-IP slot now; the descriptor goes with the close.
      this.releaseIp(conn);
      conn.evicted = true;
      this.evicting++;
      this.endOurSide(conn);
      return true;
    }
    return false;
  }

  private releaseIp(conn: Connection): void {
    if (conn.ip === undefined) return;
    const n = (this.perIp.get(conn.ip) ?? 1) - 1;
    if (n > 0) this.perIp.set(conn.ip, n);
    else this.perIp.delete(conn.ip);
    conn.ip = undefined;
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
    if (conn.peerEnded && conn.state === "open" && conn.socket.writableLength === 0) {
      // Half-closed and idle: nothing more is expected on it; end our side too.
      this.endOurSide(conn);
      return;
    }
    // Connecting too long, idle too long, or a closing socket whose peer stopped reading.
    conn.socket.destroy();
  }

  private onError(conn: Connection, err: Error): void {
    const tlsCode = (err as NodeJS.ErrnoException).code;
    // An outbound TLS handshake refused (an alert, a protocol error), counted as the inbound ones are.
    if (conn.outbound && conn.state === "connecting" && this.tlsOpts && /^ERR_(SSL|TLS)_/.test(tlsCode ?? ""))
      this.counters.tls_handshake_failed++;
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
    if (conn.partialSince >= 0) {
      conn.partialSince = -1;
      this.partial.delete(conn);
    }
    const late = conn.late;
    if (late) {
      conn.late = undefined;
      this.lateConns.delete(conn);
      // Closed by an error (a reset after the peer's FIN): the sends made since did not arrive.
      if (conn.failure) {
        this.counters.tcp_send_errors += late.length;
        for (const l of late)
          l.onError.transportError(
            new TransportSendError(conn.failure.code, l.dest, "connection reset after the peer closed"),
          );
      }
    }
    const unconfirmed = conn.unconfirmed;
    if (unconfirmed) {
      conn.unconfirmed = undefined;
      if (unconfirmed.length > 0) {
        // Closed (TLS 1.3: our certificate refused) before the peer said anything: what we sent
        // on it can have no answer on it.
        this.counters.tls_handshake_failed++;
        this.counters.tcp_send_errors += unconfirmed.length;
        const code = conn.failure?.code ?? "ECONNRESET";
        const why = conn.failure ? `: ${conn.failure.message}` : "";
        for (const u of unconfirmed)
          u.onError.transportError(
            new TransportSendError(code, u.dest, `the TLS peer closed the connection before answering${why}`),
          );
      }
    }
    this.halfClosed.delete(conn);
    this.releaseIp(conn);
    if (conn.evicted) {
      conn.evicted = false;
      this.evicting--;
    }
    this.tellClosed(conn);
    const queue = conn.queue;
    conn.queue = [];
    conn.queuedBytes = 0;
    if (queue.length > 0) {
      const err =
        conn.failure ?? new TransportSendError("ECONNRESET", conn.dest, "connection closed before it was up");
      this.counters.tcp_send_errors += queue.length;
      for (const p of queue) p.onError?.transportError(err);
    }
  }

  /** Tell the sink once that a connection that was up is gone (or, inbound, half-closed by its peer). */
  private tellClosed(conn: Connection): void {
    if (!conn.opened || conn.told) return;
    conn.told = true;
    this.sink.onConnectionClosed?.(conn.source, !conn.outbound);
  }

  private unregisterKey(conn: Connection): void {
    if (conn.key !== undefined && this.byKey.get(conn.key) === conn) this.byKey.delete(conn.key);
    conn.key = undefined;
    if (conn.aliases) for (const k of conn.aliases) if (this.byKey.get(k) === conn) this.byKey.delete(k);
    conn.aliases = undefined;
  }

  /**
   * RFC 5923 connection reuse: the peer of inbound TLS connection
   * `connectionId` asked (Via `alias`) that requests to its sent-by
   * `host`:`port` reuse this connection. Granted only when it proved that
   * name (§5: mutual TLS; its certificate chains to our CAs and names `host`
   * per RFC 5922) — never on plain TCP, where anyone could claim any address.
   * Returns whether the alias now holds.
   */
  alias(connectionId: number, host: string, port: number): boolean {
    if (!this.tlsOpts) return false;
    const conn = this.byId.get(connectionId);
    if (!conn || conn.outbound || conn.state !== "open" || conn.peerEnded) return false;
    const socket = conn.socket as tls.TLSSocket;
    if (!socket.authorized) return false;
    const name = unbracket(host).toLowerCase();
    if (checkSipServerIdentity(name, socket.getPeerCertificate()) !== undefined) return false;
    const key = keyOf(name, port);
    const holder = this.byKey.get(key);
    if (holder === conn) return true;
    if (holder && usable(holder)) return false;
    this.byKey.set(key, conn);
    if (conn.aliases) conn.aliases.push(key);
    else conn.aliases = [key];
    return true;
  }

  private write(
    conn: Connection,
    data: Buffer,
    onError: SendErrorTarget | undefined,
    dest: Destination,
  ): void {
    if (onError) {
      if (conn.unconfirmed) {
        // A peer that says nothing for this long has taken the handshake: stop keeping them.
        if (conn.unconfirmed.length >= MAX_UNCONFIRMED) conn.unconfirmed = undefined;
        else conn.unconfirmed.push({ onError, dest, at: 0 });
      }
      const late: LateSend | undefined = conn.peerEnded ? { onError, dest, at: this.clock.now() } : undefined;
      if (late) {
        if (!conn.late) conn.late = [];
        conn.late.push(late);
        this.lateConns.add(conn);
      }
      conn.socket.write(data, (err) => {
        if (err) {
          if (late && conn.late) {
            // Reported here: not again at the close.
            const i = conn.late.indexOf(late);
            if (i >= 0) conn.late.splice(i, 1);
          }
          this.counters.tcp_send_errors++;
          const code = (err as NodeJS.ErrnoException).code;
          onError.transportError(
            new TransportSendError(typeof code === "string" ? code : "EIO", dest, err.message, err),
          );
        }
      });
    } else {
      conn.socket.write(data, conn.countFailure);
    }
  }
}

/** Listen on `address:port`. Rejects with `TransportBindError` when the listen fails. */
export async function createTcpTransport(opts: TcpTransportOptions): Promise<TcpTransport> {
  const protocol = opts.tls ? "TLS" : "TCP";
  const family = checkBindTarget(protocol, opts.address, opts.port);
  // Half-open: after a client's FIN its responses still go out on the connection (RFC 3261 §18.2.2).
  const server = opts.tls
    ? tls.createServer({ ...tlsServerOptions(opts.tls), allowHalfOpen: true })
    : net.createServer({ allowHalfOpen: true });
  await listenOrThrow(server, protocol, opts.address, opts.port, family);
  const bound = server.address() as net.AddressInfo;
  return new TcpTransport(server, opts, bound.port);
}

function usable(conn: Connection): boolean {
  return conn.state === "open" || conn.state === "connecting";
}
