/**
 * Connection ids, unique across every stream transport of the process (TCP,
 * TLS, WS, WSS, every listener): a `Destination.connectionId` then names one
 * connection whichever transport of its protocol holds it, and an engine with
 * two WebSocket listeners cannot send on the wrong one.
 */
let last = 0;

export function nextConnectionId(): number {
  last = last >= Number.MAX_SAFE_INTEGER ? 1 : last + 1;
  return last;
}
