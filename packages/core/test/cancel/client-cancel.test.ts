// CANCEL of a local INVITE (RFC 3261 §9.1), two-phase, with the reference
// holders asserted at each step. The seed scenario of the project:
// INVITE → 180 → cancel → 200 (CANCEL) → 487 → ACK on the INVITE's branch.
// The suite runs on both engines in test/engines/client-cancel.test.ts; only
// the test of ackAndBye (an API of the core Engine alone) stays here.
import { describe, expect, it } from "vitest";
import { buildResponse } from "../../src/message/build.js";
import type { SipRequest } from "../../src/message/types.js";
import { Testbed } from "../../src/testing.js";
import type { CancelProgress } from "../../src/transaction/client.js";

const UAC = { protocol: "UDP" as const, address: "127.0.0.1", port: 5060 };

function setup(opts: { timers?: Record<string, number> } = {}) {
  const bed = new Testbed();
  const uac = bed.engine({ address: "127.0.0.1", timers: opts.timers });
  const peer = bed.peer("127.0.0.9");
  const progress: CancelProgress[] = [];
  const h = uac.request({
    method: "INVITE",
    uri: "sip:bob@127.0.0.9",
    from: "<sip:alice@127.0.0.1>",
    to: "<sip:bob@127.0.0.9>",
    headers: [["Route", "<sip:127.0.0.9;lr>"]],
    nextHop: peer.hop,
    onCancel: (p) => progress.push(p),
  });
  bed.flush();
  const invite = () => peer.requests("INVITE")[0]!;
  const respond = (req: SipRequest, status: number) =>
    peer.send(buildResponse(req, status, { toTag: status === 100 ? undefined : "uas-tag" }), UAC);
  const holders = () =>
    uac
      .audit()
      .find((a) => a.id === h.id)
      ?.holders.slice()
      .sort();
  return { bed, uac, peer, h, invite, respond, holders, progress };
}

describe("client CANCEL (RFC 3261 §9.1)", () => {
  it("a 2xx racing the CANCEL is delivered as an answered call; ackAndBye ACKs it and sends BYE", () => {
    const { bed, peer, h, invite, respond, uac } = setup();
    respond(invite(), 180);
    bed.flush();
    expect(h.cancel()).toBe("sent");
    bed.flush();
    const ok = buildResponse(invite(), 200, {
      toTag: "uas-tag",
      headers: [
        ["Contact", "<sip:bob@127.0.0.9:5060>"],
        ["Record-Route", "<sip:p2.example;lr>, <sip:p1.example;lr>"],
      ],
    });
    peer.send(ok, UAC);
    respond(peer.requests("CANCEL")[0]!, 200);
    bed.flush();
    expect(h.outcome).toMatchObject({ status: 200 });
    expect(h.answers).toHaveLength(1);
    const bye = uac.ackAndBye(h, h.answers[0]!);
    bed.flush();
    const ack = peer.requests("ACK")[0]!;
    expect(ack.uri).toBe("sip:bob@127.0.0.9:5060");
    expect(ack.via.branch).not.toBe(invite().via.branch);
    expect(ack.cseq).toEqual({ seq: invite().cseq.seq, method: "ACK" });
    expect(ack.headerValues("route")).toEqual(["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
    const byeReq = peer.requests("BYE")[0]!;
    expect(byeReq.cseq).toEqual({ seq: invite().cseq.seq + 1, method: "BYE" });
    expect(byeReq.toTag).toBe("uas-tag");
    respond(byeReq, 200);
    bed.flush();
    expect(bye.outcome?.status).toBe(200);
  });
});
