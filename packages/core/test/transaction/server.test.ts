// Server transactions: INVITE (RFC 3261 §17.2.1 + RFC 6026) and non-INVITE
// (§17.2.2 + RFC 4320), driven by a scripted peer sending raw requests.
// The rest of this suite runs on both engines: test/engines/server.test.ts.
// What stays here needs the core Engine itself: onStrayAck exists only there.
import { describe, expect, it } from "vitest";
import { Testbed } from "../../src/testing.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";

const UAS = { protocol: "UDP" as const, address: "127.0.0.1", port: 5060 };

/** A request from the scripted peer: the same Request-URI, From and Max-Forwards in every one. */
function message(
  method: string,
  branch: string,
  { viaParams = "", toTag = "", callId = `${branch}@127.0.0.9`, cseq = 1, extra = "" } = {},
): string {
  const to = toTag ? `<sip:bob@127.0.0.1>;tag=${toTag}` : "<sip:bob@127.0.0.1>";
  return [
    `${method} sip:bob@127.0.0.1 SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.9:5060;branch=${branch}${viaParams}`,
    "Max-Forwards: 70",
    "From: <sip:alice@127.0.0.9>;tag=fa",
    `To: ${to}`,
    `Call-ID: ${callId}`,
    `CSeq: ${cseq} ${method}`,
    `${extra}Content-Length: 0\r\n\r\n`,
  ].join("\r\n");
}

function ack(branch = "z9hG4bKabc123", toTag = "", cseq = 1): string {
  return message("ACK", branch, { toTag, callId: "call-1@127.0.0.9", cseq });
}

/** `viaParams` ";rport" makes the engine stamp the Via (RFC 3581): an edited request. */
function request(method: "INVITE" | "OPTIONS" | "CANCEL", branch: string, viaParams = ""): string {
  return message(method, branch, {
    viaParams,
    extra: "Contact: <sip:alice@127.0.0.9>\r\nX-Kept: still here\r\n",
  });
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

  // RFC 3581 §4: with rport, received is added even when it equals the sent-by host.
  it("a request the engine stamped (RFC 3581 rport) is compacted too, and its responses keep the stamp", () => {
    const { bed, peer, txs } = setup();
    peer.send(request("OPTIONS", "z9hG4bKstamped", ";rport"), UAS);
    bed.flush();
    const tx = txs[0]!;
    expect(tx.request.via.rport).toBe(5060);
    tx.reply(200);
    bed.flush();
    expect(compacted(tx)).toBe(true);
    expect(tx.request.modified).toBe(true);
    expect(tx.request.header("Via")).toBe(
      "SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKstamped;rport=5060;received=127.0.0.9",
    );
    // The retransmitted final response is the one built before compaction, stamp included.
    peer.send(request("OPTIONS", "z9hG4bKstamped", ";rport"), UAS);
    bed.flush();
    const finals = peer.messages((m) => !m.isRequest && m.status === 200);
    expect(finals).toHaveLength(2);
    expect(finals[1]!.header("Via")).toBe(
      "SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKstamped;rport=5060;received=127.0.0.9",
    );
  });

  it("a ringing INVITE's request is compacted after the auto 100's wait; a CANCEL's 487 is built from it", () => {
    const { bed, peer, txs, statuses } = setup((tx) => tx.reply(180), { autoInv100: 200 });
    peer.send(request("INVITE", "z9hG4bKringing", ";rport"), UAS);
    bed.flush();
    const tx = txs[0]!;
    expect(compacted(tx)).toBe(false);
    bed.advance(199);
    expect(compacted(tx)).toBe(false);
    bed.advance(1);
    expect(compacted(tx)).toBe(true);
    expect(tx.request.header("X-Kept")).toBe("still here");
    expect(compacted(tx)).toBe(false); // the read parsed it again
    tx.request.compact();
    // §9.2: the CANCEL gets its 200 and the INVITE its 487, with the To tag of the 180.
    peer.send(request("CANCEL", "z9hG4bKringing", ";rport"), UAS);
    bed.flush();
    expect(statuses()).toEqual([180, 200, 487]);
    const [ringing, , terminated] = peer.messages((m) => !m.isRequest);
    expect(terminated!.toTag).toBe(ringing!.toTag);
    expect(terminated!.header("Via")).toBe(ringing!.header("Via"));
    expect(terminated!.header("X-Kept")).toBeUndefined();
    expect(terminated!.header("Call-ID")).toBe("z9hG4bKringing@127.0.0.9");
  });

  it("an INVITE answered at once is not compacted before its final response (no parse wasted)", () => {
    const seen: boolean[] = [];
    const { bed, peer, statuses } = setup((tx) => {
      tx.reply(180);
      seen.push(compacted(tx));
      tx.reply(200);
    });
    peer.send(request("INVITE", "z9hG4bKatonce"), UAS);
    bed.flush();
    expect(seen).toEqual([false]);
    expect(statuses()).toEqual([180, 200]);
  });

  it("an INVITE whose 180 follows the auto 100 is compacted a wait after the 180", () => {
    const { bed, peer, txs, statuses } = setup(undefined, { autoInv100: 200 });
    peer.send(request("INVITE", "z9hG4bKlate"), UAS);
    bed.flush();
    const tx = txs[0]!;
    bed.advance(200);
    expect(statuses()).toEqual([100]);
    expect(compacted(tx)).toBe(false); // only a 100: the user is still deciding
    bed.advance(300);
    tx.reply(180);
    bed.advance(199);
    expect(compacted(tx)).toBe(false);
    bed.advance(1);
    expect(compacted(tx)).toBe(true);
    tx.reply(486);
    bed.flush();
    expect(statuses()).toEqual([100, 180, 486]);
  });
});

describe("what holds a drain (Engine.unsettled, stats.settled)", () => {
  it("server side: a final with nothing of ours left to resend settles; one awaiting its ACK does not until the ACK", () => {
    const { bed, peer, txs, uas } = setup();
    peer.send(request("OPTIONS", "z9hG4bKdrainO"), UAS);
    peer.send(request("INVITE", "z9hG4bKdrain486"), UAS);
    peer.send(request("INVITE", "z9hG4bKdrain200"), UAS);
    bed.flush();
    expect([uas.stats.current, uas.unsettled]).toEqual([3, 3]);
    txs[0]!.reply(200); // NIST Completed: Timer J only
    txs[1]!.reply(486); // IST Completed: Timer G resends the 486 until the ACK
    txs[2]!.reply(200); // IST Accepted: the 2xx is resent until the ACK
    bed.flush();
    expect([uas.stats.current, uas.stats.settled, uas.unsettled]).toEqual([3, 1, 2]);
    peer.send(ack("z9hG4bKdrain486"), UAS); // → Confirmed, Timer I
    const toTag = peer.messages(
      (m) => !m.isRequest && m.status === 200 && m.callId.startsWith("z9hG4bKdrain200"),
    )[0]!.toTag!;
    const ack2xx = ack("z9hG4bKnew2xx", toTag).replace(/call-1@127\.0\.0\.9/, "z9hG4bKdrain200@127.0.0.9");
    peer.send(ack2xx, UAS);
    bed.flush();
    expect([uas.stats.current, uas.stats.settled, uas.unsettled]).toEqual([3, 3, 0]);
    bed.settle();
    expect([uas.stats.current, uas.stats.settled]).toEqual([0, 0]);
  });

  it("client side: a final settles the ICT (Timer D) and the NICT (Timer K)", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.2" });
    bed.engine({
      address: "127.0.0.1",
      onRequest: (tx) => tx.reply(tx.method === "INVITE" ? 486 : 200),
    });
    for (const method of ["INVITE", "OPTIONS"])
      uac.request({ method, uri: "sip:bob@127.0.0.1", from: "<sip:a@x>", to: "<sip:b@y>" });
    expect(uac.unsettled).toBe(2);
    bed.flush();
    expect([uac.stats.current, uac.stats.settled, uac.unsettled]).toEqual([2, 2, 0]);
  });
});
