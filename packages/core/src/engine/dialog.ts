/**
 * The little of a dialog (RFC 3261 §12, §13.2.2.4) a transaction engine must
 * know to finish an INVITE it sent: the ACK of a 2xx — a new request outside
 * any transaction — and the BYE of a call answered after it was cancelled.
 */
import { buildRequest } from "../message/build.js";
import { uriOfNameAddr } from "../message/nameaddr.js";
import { parseMessage } from "../message/parser.js";
import type { SipRequest, SipResponse } from "../message/types.js";
import type { ClientTransactionHandle } from "../transaction/handles.js";
import type { InviteClientTransaction } from "../transaction/ict.js";
import type { Destination } from "../transport/types.js";
import type { EngineContext } from "./context.js";

/** The dialog a 2xx to our INVITE set up, as far as ACK and BYE need it. */
export interface AnsweredDialog {
  /** The remote target: the Contact of the 2xx (§12.1.2), else the INVITE's Request-URI. */
  target: string;
  /** The route set: the 2xx's Record-Route, reversed (§12.1.2), as Route lines. */
  routes: Array<[string, string]>;
  /** Where the bytes go: the INVITE's next hop while its transaction lives, else the target's. */
  dest: Destination;
  from: string;
  to: string;
}

export function answeredDialog(
  ctx: EngineContext,
  invite: ClientTransactionHandle,
  answer: SipResponse,
): AnsweredDialog {
  const sent = parseMessage(invite.request) as SipRequest;
  const contact = answer.header("contact");
  const target = contact ? uriOfNameAddr(contact) : sent.uri;
  const routes: Array<[string, string]> = answer
    .headerValues("record-route")
    .reverse()
    .map((r) => ["Route", r]);
  const tx = ctx.table.getById(invite.id) as InviteClientTransaction | undefined;
  const dest = tx?.dest ?? ctx.addressing.resolveNextHop(target);
  return { target, routes, dest, from: sent.header("from") ?? "", to: answer.header("to") ?? "" };
}

/**
 * The ACK of a 2xx (§13.2.2.4), sent statelessly to the dialog's next hop with
 * the INVITE's CSeq number and a branch of its own. Returns the bytes sent.
 */
export function sendAck2xx(ctx: EngineContext, invite: ClientTransactionHandle, d: AnsweredDialog): Buffer {
  const data = buildRequest({
    method: "ACK",
    uri: d.target,
    via: ctx.addressing.viaFor(d.dest, ctx.newBranch()),
    from: d.from,
    to: d.to,
    callId: invite.callId,
    cseq: invite.cseq,
    headers: d.routes,
  });
  ctx.sendStateless(data, d.dest);
  return data;
}
