/**
 * The server's SIP sockets: one transport per --listen, and the TLS material
 * of the TLS (and WSS) listeners, read from the --tls-* files at start and
 * again on SIGHUP (`reloadTls`: new handshakes get the new certificate, live
 * connections keep theirs).
 */
import { readFileSync } from "node:fs";
import {
  createTcpTransport,
  createUdpTransport,
  type TlsCredentials,
  type TlsOptions,
  type Transport,
  type TransportSink,
} from "@siptm/core";
import { createWsTransport } from "@siptm/core/internal";
import type { WsLimitOptions } from "@siptm/workers";
import type { ListenSpec, ServerConfig, TlsConfig } from "./config.js";

/** A --tls-* file that cannot be read or used: one line, said at start or in the SIGHUP log. */
export class TlsMaterialError extends Error {
  override readonly name = "TlsMaterialError";
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TlsMaterialError(`${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** The certificate, key and CAs of `cfg`, read now. */
export function readTlsCredentials(cfg: TlsConfig): TlsCredentials {
  return {
    cert: readPem(cfg.certFile, "--tls-cert"),
    key: readPem(cfg.keyFile, "--tls-key"),
    ...(cfg.caFile ? { ca: readPem(cfg.caFile, "--tls-ca") } : {}),
  };
}

/** The TLS options of the server's listeners and outbound TLS, the files read now. */
export function loadTls(cfg: TlsConfig | undefined): TlsOptions | undefined {
  if (!cfg) return undefined;
  return {
    ...readTlsCredentials(cfg),
    clientCert: cfg.clientCert,
    verify: cfg.verify,
    pins: cfg.pins,
    ...(cfg.handshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: cfg.handshakeTimeoutMs } : {}),
  };
}

/** One --listen socket, its sink given (the gate of one thread, or the coordinator's). */
export async function openListener(
  spec: ListenSpec,
  sink: TransportSink,
  config: ServerConfig,
  tls: TlsOptions | undefined,
  onSocketError: (err: Error) => void,
): Promise<Transport> {
  const { address, port } = spec;
  switch (spec.protocol) {
    case "UDP":
      return createUdpTransport({ address, port, sink, onSocketError });
    case "TCP":
      return createTcpTransport({ address, port, sink, onSocketError, ...config.tcp });
    case "TLS":
      if (!tls) throw new TlsMaterialError("a TLS listener needs --tls-cert and --tls-key");
      return createTcpTransport({ address, port, sink, onSocketError, ...config.tcp, tls });
    case "WS":
      return createWsTransport({ address, port, sink, onSocketError, ...wsLimits(config) });
    case "WSS":
      if (!tls) throw new TlsMaterialError("a WSS listener needs --tls-cert and --tls-key");
      return createWsTransport({ address, port, sink, onSocketError, ...wsLimits(config), tls });
  }
}

/** The --ws-* flags and the connection caps of --tcp-* as the WebSocket transport's options. */
export function wsLimits(config: ServerConfig): WsLimitOptions {
  const w = config.ws;
  const out: { -readonly [K in keyof WsLimitOptions]: WsLimitOptions[K] } = {};
  if (w.trustedProxies.length > 0) out.trustedProxies = w.trustedProxies;
  if (w.maxMessageBytes !== undefined) out.maxMessageBytes = w.maxMessageBytes;
  if (w.pingIntervalMs !== undefined) out.pingIntervalMs = w.pingIntervalMs;
  if (w.pongTimeoutMs !== undefined) out.pongTimeoutMs = w.pongTimeoutMs;
  if (config.tcp.maxConnections !== undefined) out.maxConnections = config.tcp.maxConnections;
  if (config.tcp.maxConnectionsPerIp !== undefined) out.maxConnectionsPerIp = config.tcp.maxConnectionsPerIp;
  if (config.tcp.idleTimeoutMs !== undefined) out.idleTimeoutMs = config.tcp.idleTimeoutMs;
  return out;
}

/** Anything with TLS material that can be replaced while running (a transport, the sharded engine). */
export interface Reloadable {
  reloadCertificates(creds: TlsCredentials): void;
}

/**
 * SIGHUP: read the --tls-* files again and give them to every TLS/WSS
 * listener. When the files do not load, nothing changes and the error says why.
 */
export function reloadTls(cfg: TlsConfig | undefined, targets: readonly Reloadable[]): void {
  if (!cfg) return;
  const creds = readTlsCredentials(cfg);
  for (const t of targets) t.reloadCertificates(creds);
}
