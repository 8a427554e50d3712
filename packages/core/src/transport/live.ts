/**
 * The stream transports (TCP, TLS, WS, WSS) of the process that are not
 * closed, so that the test suite's automatic check can show that no test
 * leaves a connection open. Kept on `globalThis` under a registered symbol:
 * the source and the built copy of this module, loaded side by side by the
 * tests, share one set.
 */
export interface LiveStreamTransport {
  readonly protocol: string;
  readonly localAddress: string;
  readonly localPort: number;
  /** Connections open, opening or closing. */
  readonly connectionCount: number;
  /** Handshakes (TLS, WebSocket) in progress. */
  readonly handshakes?: number;
}

const KEY = Symbol.for("siptm.liveStreamTransports");

export function liveStreamTransports(): Set<LiveStreamTransport> {
  const g = globalThis as { [KEY]?: Set<LiveStreamTransport> };
  g[KEY] ??= new Set();
  return g[KEY];
}
