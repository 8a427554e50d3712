/**
 * What the socket transports (UDP, TCP/TLS, WS/WSS) do alike: a send failure
 * told asynchronously, and the key of a peer's address:port.
 */
import { normalizeAddress } from "./address.js";
import type { SendErrorTarget } from "./types.js";

/** Report a send failure asynchronously, so a caller never sees its own error re-entrantly inside `send`. */
export function fail(target: SendErrorTarget, err: Error): void {
  queueMicrotask(() => target.transportError(err));
}

/** A peer's address:port as a map key (the address normalised: IPv4-mapped IPv6, case, brackets). */
export function keyOf(address: string, port: number): string {
  return `${normalizeAddress(address)}|${port}`;
}
