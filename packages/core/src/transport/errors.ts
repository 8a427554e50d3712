import type { Destination, TransportProtocol } from "./types.js";

/** A transport could not bind its local socket (EADDRINUSE, EADDRNOTAVAIL, EACCES…). */
export class TransportBindError extends Error {
  override readonly name = "TransportBindError";
  /** The system error code ("EADDRINUSE"…), or undefined when there is none. */
  readonly code: string | undefined;
  readonly protocol: TransportProtocol;
  readonly address: string;
  readonly port: number;

  constructor(protocol: TransportProtocol, address: string, port: number, cause: unknown) {
    const code = errorCode(cause);
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`cannot bind ${protocol} ${hostPort(address, port)}: ${code ?? "error"} (${why})`, { cause });
    this.code = code;
    this.protocol = protocol;
    this.address = address;
    this.port = port;
  }
}

/**
 * A send failed (connection refused, connect timeout, connection lost with the
 * message queued, transport closed…): what `SendErrorTarget.transportError` gets.
 * The message starts with the code, e.g. "ECONNREFUSED TCP 127.0.0.1:5060".
 */
export class TransportSendError extends Error {
  override readonly name = "TransportSendError";
  /** "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "ECLOSED" (transport closed), "ENOBUFS" (write queue full)… */
  readonly code: string;
  readonly destination: Destination;

  constructor(code: string, destination: Destination, detail?: string, cause?: unknown) {
    const where = `${destination.protocol} ${hostPort(destination.address, destination.port)}`;
    super(`${code} ${where}${detail ? `: ${detail}` : ""}`, cause === undefined ? undefined : { cause });
    this.code = code;
    this.destination = destination;
  }
}

/** "127.0.0.1:5060", "[::1]:5060". */
export function hostPort(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

export function errorCode(err: unknown): string | undefined {
  if (err && typeof err === "object" && "code" in err && typeof err.code === "string") return err.code;
  return undefined;
}
