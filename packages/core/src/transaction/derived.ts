/**
 * Requests a client transaction derives from the request it sent: the ACK of
 * a non-2xx final response (RFC 3261 §17.1.1.3) and the CANCEL (§9.1). Both
 * are built as one latin1 string and one Buffer; the header values are copied
 * as written in the request as sent.
 */
import type { SipRequest, SipResponse } from "../message/types.js";

function routeLines(req: SipRequest): string {
  let s = "";
  for (const r of req.headerLines("route")) s += `Route: ${r}\r\n`;
  return s;
}

/**
 * A request derived from the one sent: `method` with the same Request-URI,
 * one Via equal to its top Via (same branch), its Route set, From, Call-ID
 * and CSeq number, this To, then `extra` header lines; no body.
 */
function derive(method: string, invite: SipRequest, to: string, extra: string): Buffer {
  const s =
    `${method} ${invite.uri} SIP/2.0\r\n` +
    `Via: ${invite.via.raw}\r\n` +
    routeLines(invite) +
    "Max-Forwards: 70\r\n" +
    `From: ${invite.header("from") ?? ""}\r\n` +
    `To: ${to}\r\n` +
    `Call-ID: ${invite.callId}\r\n` +
    `CSeq: ${invite.cseq.seq} ${method}\r\n` +
    extra +
    "Content-Length: 0\r\n\r\n";
  return Buffer.from(s, "latin1");
}

/**
 * §17.1.1.3: same Request-URI, Call-ID, From, CSeq number and Route set as the
 * INVITE, only its top Via (same branch), and the To of the response (with the
 * response's tag). CSeq method ACK, no body.
 */
export function buildNon2xxAck(invite: SipRequest, response: SipResponse): Buffer {
  return derive("ACK", invite, response.header("to") ?? invite.header("to") ?? "", "");
}

/**
 * §9.1: same Request-URI, Call-ID, To, From, CSeq number and Route set as the
 * request being cancelled, one Via equal to its top Via (same branch), CSeq
 * method CANCEL. An optional RFC 3326 Reason header value.
 */
export function buildCancel(invite: SipRequest, reason?: string): Buffer {
  return derive("CANCEL", invite, invite.header("to") ?? "", reason ? `Reason: ${reason}\r\n` : "");
}
