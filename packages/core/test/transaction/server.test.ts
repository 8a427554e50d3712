// Server transactions: INVITE (RFC 3261 §17.2.1 + RFC 6026) and non-INVITE
// (§17.2.2 + RFC 4320), driven by a scripted peer sending raw requests.
// The rest of this suite runs on both engines: test/engines/server.test.ts.
// What stays here needs the core Engine itself: onStrayAck exists only there.
import { describe, expect, it } from "vitest";
import { Testbed } from "../../src/testing.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";

const UAS = { protocol: "UDP" as const, address: "127.0.0.1", port: 5060 };

function ack(branch = "z9hG4bKabc123", toTag = "", cseq = 1): string {
  return (
    "ACK sip:bob@127.0.0.1 SIP/2.0\r\n" +
    `Via: SIP/2.0/UDP 127.0.0.9:5060;branch=${branch}\r\n` +
    "Max-Forwards: 70\r\n" +
    "From: <sip:alice@127.0.0.9>;tag=fa\r\n" +
    `To: <sip:bob@127.0.0.1>${toTag ? `;tag=${toTag}` : ""}\r\n` +
    "Call-ID: call-1@127.0.0.9\r\n" +
    `CSeq: ${cseq} ACK\r\n` +
    "Content-Length: 0\r\n\r\n"
  );
}

function request(method: "INVITE" | "OPTIONS", branch: string): string {
  return (
    `${method} sip:bob@127.0.0.1 SIP/2.0\r\n` +
    `Via: SIP/2.0/UDP 127.0.0.9:5060;branch=${branch}\r\n` +
    "Max-Forwards: 70\r\n" +
    "From: <sip:alice@127.0.0.9>;tag=fa\r\n" +
    "To: <sip:bob@127.0.0.1>\r\n" +
    `Call-ID: ${branch}@127.0.0.9\r\n` +
    `CSeq: 1 ${method}\r\n` +
    "Contact: <sip:alice@127.0.0.9>\r\n" +
    "X-Kept: still here\r\n" +
    "Content-Length: 0\r\n\r\n"
  );
}

/** The parsed request's internal state (message.ts). */
const compacted = (tx: ServerTransactionHandle) =>
  (tx.request as unknown as { compacted: boolean }).compacted;

function setup(handler?: (tx: ServerTransactionHandle) => void, opts: { autoInv100?: number } = {}) {
  const bed = new Testbed();
  const txs: ServerTransactionHandle[] = [];
  const uas = bed.engine({
    address: "127.0.0.1",
    timers: opts.autoInv100 === undefined ? undefined : { autoInv100: opts.autoInv100 },
    onRequest: (tx) => {
      txs.push(tx);
      handler?.(tx);
    },
  });
  const peer = bed.peer("127.0.0.9");
  const statuses = () => peer.messages((m) => !m.isRequest).map((m) => (m.isRequest ? 0 : m.status));
  return { bed, uas, peer, txs, statuses };
}

describe("INVITE server transaction (RFC 3261 §17.2.1, RFC 6026)", () => {
  it("an ACK matching nothing goes to onStrayAck", () => {
    const { bed, peer, uas } = setup();
    const stray: string[] = [];
    uas.onStrayAck = (a) => stray.push(a.callId);
    peer.send(ack("z9hG4bKnothing", "zz", 5), UAS);
    bed.flush();
    expect(stray).toEqual(["call-1@127.0.0.9"]);
    expect(uas.stats.created).toBe(0);
  });
});

describe("a waiting server transaction keeps a compact request", () => {
  for (const [method, status, state] of [
    ["OPTIONS", 200, "completed"],
    ["INVITE", 200, "accepted"],
    ["INVITE", 486, "completed"],
  ] as const) {
    it(`${method} answered ${status}: compacted in ${state}, read the same through the handle`, () => {
      const { bed, peer, txs, uas } = setup((tx) => {
        if (method === "INVITE") tx.reply(180);
      });
      peer.send(request(method, `z9hG4bK${method}${status}`), UAS);
      bed.flush();
      const tx = txs[0]!;
      const headers = tx.request.headers();
      // While the request can still be answered, its parsed head stays.
      expect(compacted(tx)).toBe(false);
      tx.reply(status);
      bed.flush();
      expect(uas.audit().find((a) => a.id === tx.id)?.state).toBe(state);
      expect(compacted(tx)).toBe(true);
      expect(tx.request.header("X-Kept")).toBe("still here");
      expect(tx.request.headers()).toEqual(headers);
      // A retransmission of the request is answered with the same final response.
      const finals = () => peer.messages((m) => !m.isRequest && m.status === status).length;
      expect(finals()).toBe(1);
      peer.send(request(method, `z9hG4bK${method}${status}`), UAS);
      bed.flush();
      expect(finals()).toBe(method === "INVITE" && status === 200 ? 1 : 2);
    });
  }
});
