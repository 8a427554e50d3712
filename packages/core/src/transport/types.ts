/**
 * Transport contract. A transport moves bytes; it knows nothing of
 * transactions. The engine gives it whole messages to send and receives whole
 * messages (a datagram, or a message framed out of a TCP stream).
 */

/** "UDP" | "TCP" | "TLS" | "WS" | "WSS" (upper case, as in Via). */
export type TransportProtocol = "UDP" | "TCP" | "TLS" | "WS" | "WSS";

/** Where to send. `connectionId` pins a stream transport to an existing connection (responses, RFC 3261 §18.2.2). */
export interface Destination {
  readonly protocol: TransportProtocol;
  readonly address: string; // IP literal without brackets
  readonly port: number;
  readonly connectionId?: number | undefined;
  /**
   * TLS (and WSS) outbound: the SIP domain the request targets (the host of its
   * URI), sent as SNI and checked against the peer's certificate (RFC 5922 §7).
   * Absent for an IP literal target: the certificate must name that address.
   */
  readonly serverName?: string | undefined;
}

/** Where a message came from, and on which local socket. */
export interface Source {
  readonly protocol: TransportProtocol;
  readonly address: string; // IP literal without brackets
  readonly port: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** Stream transports: the connection it arrived on. */
  readonly connectionId?: number | undefined;
}

/** Anything that wants to hear that a send it asked for failed (a transaction: RFC 3261 §17.1.4, §8.1.3.1). */
export interface SendErrorTarget {
  transportError(err: Error): void;
}

/** What a transport calls when something arrives. */
export interface TransportSink {
  /** One whole SIP message (UDP: the datagram; TCP: framed by Content-Length). */
  onMessage(data: Buffer, source: Source): void;
  /** A stream could not be framed (bad or missing Content-Length, oversize): the connection is closed after this. */
  onFramingError?(err: Error, source: Source): void;
  /**
   * A connection (TCP, TLS, WS) closed, for whatever reason: `source` is what its
   * messages carried; `inbound` when the peer had opened it (a client on its own
   * flow, which nobody can reach once it is gone). The engine ends what lives on
   * it (RFC 5626 flows, bindings, requests sent on it).
   */
  onConnectionClosed?(source: Source, inbound: boolean): void;
}

/**
 * Counters of a stream transport's limits (the TCP transport keeps them; zero
 * elsewhere). They reach `Engine.snapshot()`, `tm.stats` and `/metrics`.
 */
export interface TransportStats {
  /** Connections open now, inbound and outbound (a gauge). */
  tcp_connections: number;
  /** Inbound connections closed at once: the total cap (`maxConnections`) was reached. */
  tcp_conn_rejected: number;
  /** Inbound connections closed at once: their source IP had `maxConnectionsPerIp` already. */
  tcp_conn_rejected_ip: number;
  /** RFC 5626 keep-alive pings (CRLFCRLF) received. */
  tcp_pings: number;
  /** Pings not answered: a pong was already pending, or the connection had unsent bytes. */
  tcp_pongs_suppressed: number;
  /** Connections closed for sending more pings than `maxPingsPerWindow` in a window. */
  tcp_ping_flood_closed: number;
  /** Connections closed because the peer did not read: a send found the write queue full. */
  tcp_backlog_closed: number;
  /** Connections closed because a message begun was not complete within `msgTimeoutMs`. */
  tcp_msg_timeout_closed: number;
  /** Sends that failed (refused, reset, queue full, connection gone…), whoever asked for them. */
  tcp_send_errors: number;
  /** TLS connections open now, inbound and outbound (not in tcp_connections). A gauge. */
  tls_connections: number;
  /** TLS handshakes that failed (bad certificate, protocol error, garbage on the port), inbound or outbound. */
  tls_handshake_failed: number;
  /** TLS handshakes not complete within the handshake timeout. */
  tls_handshake_timeout: number;
  /** Outbound TLS connections refused because the peer's certificate did not verify (chain, RFC 5922 name, pin). */
  tls_verify_failed: number;
  /** WebSocket connections open now (WS and WSS). A gauge. */
  ws_connections: number;
  /** Upgrade requests refused: no `sip` subprotocol (RFC 7118 §4), not a WebSocket handshake, over a cap. */
  ws_handshake_rejected: number;
  /** Connections whose WebSocket handshake was not complete within the handshake timeout. */
  ws_handshake_timeout: number;
  /** WebSocket messages larger than the largest SIP message: the connection is closed with 1009. */
  ws_message_too_big: number;
  /** WebSocket peers that did not answer a ping in time (dead): closed. */
  ws_dead_closed: number;
}

export function newTransportStats(): TransportStats {
  return {
    tcp_connections: 0,
    tcp_conn_rejected: 0,
    tcp_conn_rejected_ip: 0,
    tcp_pings: 0,
    tcp_pongs_suppressed: 0,
    tcp_ping_flood_closed: 0,
    tcp_backlog_closed: 0,
    tcp_msg_timeout_closed: 0,
    tcp_send_errors: 0,
    tls_connections: 0,
    tls_handshake_failed: 0,
    tls_handshake_timeout: 0,
    tls_verify_failed: 0,
    ws_connections: 0,
    ws_handshake_rejected: 0,
    ws_handshake_timeout: 0,
    ws_message_too_big: 0,
    ws_dead_closed: 0,
  };
}

/** Add `from`'s counters into `into` (totals over transports, or over shards). */
export function addTransportStats(into: TransportStats, from: Readonly<TransportStats>): void {
  for (const k of Object.keys(into) as Array<keyof TransportStats>) into[k] += from[k] ?? 0;
}

export interface Transport {
  readonly protocol: TransportProtocol;
  /** RFC 3261 §17: reliable transports need no retransmission timers. */
  readonly reliable: boolean;
  readonly localAddress: string;
  readonly localPort: number;
  /** Send one message. Never throws for network errors: they go to `onError.transportError`, asynchronously or not. */
  send(data: Buffer, dest: Destination, onError?: SendErrorTarget): void;
  close(): Promise<void>;
  /** Stream transports: true when `connectionId` (unique in the process) is one of this transport's, usable. */
  hasConnection?(connectionId: number): boolean;
  /** The transport's limit counters, when it keeps any (TCP). */
  readonly stats?: Readonly<TransportStats>;
}
