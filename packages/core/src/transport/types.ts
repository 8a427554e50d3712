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
}
