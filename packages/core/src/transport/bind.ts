/**
 * What the UDP, TCP and WebSocket transports share to bind their socket: the check of
 * the address and port asked for, and the wait for "listening" that turns
 * the first "error" into a TransportBindError.
 */

import type { EventEmitter } from "node:events";
import { isIP, type Server } from "node:net";
import { TransportBindError } from "./errors.js";
import type { TransportProtocol } from "./types.js";

/** The IP family of `address` (4 or 6); throws on a host name or a port out of 0..65535. */
export function checkBindTarget(protocol: TransportProtocol, address: string, port: number): 4 | 6 {
  const family = isIP(address);
  if (family === 0)
    throw new TypeError(`${protocol} transport: address must be an IP literal, got "${address}"`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`${protocol} transport: bad port ${port}`);
  }
  return family as 4 | 6;
}

/**
 * Runs `start` (the bind or listen call) and resolves once `socket` is
 * listening. Its first "error" before that runs `abandon` (close what was
 * opened) and rejects with a TransportBindError.
 */
export function bindOrThrow(
  socket: EventEmitter,
  protocol: TransportProtocol,
  address: string,
  port: number,
  start: () => void,
  abandon: () => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      socket.off("listening", onListening);
      abandon();
      reject(new TransportBindError(protocol, address, port, err));
    };
    const onListening = () => {
      socket.off("error", onError);
      resolve();
    };
    socket.once("error", onError);
    socket.once("listening", onListening);
    start();
  });
}

/**
 * A stream listener (TCP, TLS, WS, WSS) on `address:port`, exclusive, IPv6-only
 * for an IPv6 address; resolves once it listens, else closes it and rejects
 * with a TransportBindError.
 */
export function listenOrThrow(
  server: Server,
  protocol: TransportProtocol,
  address: string,
  port: number,
  family: 4 | 6,
): Promise<void> {
  return bindOrThrow(
    server,
    protocol,
    address,
    port,
    () => server.listen({ host: address, port, exclusive: true, ipv6Only: family === 6 }),
    () => server.close(),
  );
}
