// Server transactions: INVITE (RFC 3261 §17.2.1 + RFC 6026) and non-INVITE
// (§17.2.2 + RFC 4320), driven by a scripted peer sending raw requests.
import { describe, expect, it } from "vitest";
import { Testbed } from "../../src/testing.js";
import { TransactionError } from "../../src/transaction/errors.js";
import type { ServerTransactionHandle } from "../../src/transaction/handles.js";

const UAS = { protocol: "UDP" as const, address: "127.0.0.1", port: 5060 };

function invite(branch = "z9hG4bKabc123", extra = ""): string {
  return (
    "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n" +
    `Via: SIP/2.0/UDP 127.0.0.9:5060;branch=${branch}\r\n` +
    "Max-Forwards: 70\r\n" +
    "From: <sip:alice@127.0.0.9>;tag=fa\r\n" +
    "To: <sip:bob@127.0.0.1>\r\n" +
    "Call-ID: call-1@127.0.0.9\r\n" +
    "CSeq: 1 INVITE\r\n" +
    "Contact: <sip:alice@127.0.0.9>\r\n" +
    extra +
    "Content-Length: 0\r\n\r\n"
  );
}

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

function options(branch = "z9hG4bKopt1"): string {
  return (
    "OPTIONS sip:127.0.0.1 SIP/2.0\r\n" +
    `Via: SIP/2.0/UDP 127.0.0.9:5060;branch=${branch}\r\n` +
    "Max-Forwards: 70\r\n" +
    "From: <sip:alice@127.0.0.9>;tag=fo\r\n" +
    "To: <sip:127.0.0.1>\r\n" +
    "Call-ID: opt-1@127.0.0.9\r\n" +
    "CSeq: 7 OPTIONS\r\n" +
    "Content-Length: 0\r\n\r\n"
  );
}

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
  it("sends 100 Trying when the user has not answered within 200 ms, and the 100 again for a retransmitted INVITE", () => {
    const { bed, peer, statuses, txs } = setup();
    peer.send(invite(), UAS);
    bed.flush();
    expect(txs).toHaveLength(1);
    bed.advance(199);
    expect(statuses()).toEqual([]);
    bed.advance(1);
    expect(statuses()).toEqual([100]);
    const trying = peer.messages((m) => !m.isRequest)[0]!;
    expect(trying.toTag).toBeUndefined();
    peer.send(invite(), UAS);
    bed.flush();
    expect(statuses()).toEqual([100, 100]);
    txs[0]!.reply(486);
    bed.flush();
  });

  it("no automatic 100 when the user answers first", () => {
    const { bed, statuses, peer } = setup((tx) => tx.reply(180));
    peer.send(invite(), UAS);
    bed.advance(1000);
    expect(statuses()).toEqual([180]);
    bed.engines[0]!.audit().length; // still alive in Proceeding
  });

  it("non-2xx final: Timer G retransmits (T1 doubling to T2), ACK → Confirmed, Timer I = T4 ends it", () => {
    const { bed, peer, statuses, txs, uas } = setup((tx) => tx.reply(486, "Busy Here"));
    peer.send(invite(), UAS);
    bed.flush();
    expect(statuses()).toEqual([486]);
    const res = peer.messages((m) => !m.isRequest)[0]!;
    expect(res.toTag).toBeDefined();
    bed.advance(500);
    bed.advance(1000);
    expect(statuses()).toEqual([486, 486, 486]);
    peer.send(ack("z9hG4bKabc123", res.toTag), UAS);
    bed.flush();
    expect(uas.audit()[0]?.state).toBe("confirmed");
    expect(uas.audit()[0]?.holders.sort()).toEqual(["table", "timer:I"]);
    bed.advance(10_000);
    expect(statuses()).toHaveLength(3);
    expect(uas.table.size).toBe(0);
    expect(txs[0]!.finalStatus).toBe(486);
  });

  it("Timer H: no ACK within 64·T1 ends the transaction with an ack-timeout", () => {
    const causes: string[] = [];
    const { bed, peer, uas } = setup((tx) => {
      tx.events.onTerminated = (c) => causes.push(c);
      tx.reply(404);
    });
    peer.send(invite(), UAS);
    bed.advance(31_999);
    expect(uas.table.size).toBe(1);
    bed.advance(1);
    expect(uas.table.size).toBe(0);
    expect(causes).toEqual(["ack-timeout"]);
  });

  it("2xx → Accepted: the 2xx is resent until its ACK (§13.3.1.4), retransmitted INVITEs are absorbed, Timer L ends it", () => {
    const acks: string[] = [];
    const { bed, peer, statuses, uas } = setup((tx) => {
      tx.events.onAck = (a) => acks.push(a.method);
      tx.reply(200);
    });
    peer.send(invite(), UAS);
    bed.flush();
    bed.advance(500);
    bed.advance(1000);
    expect(statuses()).toEqual([200, 200, 200]);
    peer.send(invite(), UAS); // absorbed
    bed.flush();
    expect(statuses()).toHaveLength(3);
    const toTag = peer.messages((m) => !m.isRequest)[0]!.toTag!;
    peer.send(ack("z9hG4bKother", toTag), UAS); // the 2xx ACK has its own branch
    bed.flush();
    expect(acks).toEqual(["ACK"]);
    bed.advance(10_000);
    expect(statuses()).toHaveLength(3);
    expect(uas.audit()[0]?.state).toBe("accepted");
    bed.advance(22_000);
    expect(uas.table.size).toBe(0);
  });

  it("a second final from the user is refused with a TransactionError, not sent", () => {
    const { bed, peer, txs, statuses } = setup((tx) => tx.reply(603));
    peer.send(invite(), UAS);
    bed.flush();
    expect(() => txs[0]!.reply(200)).toThrow(TransactionError);
    bed.flush();
    expect(statuses()).toEqual([603]);
  });

  it("an ACK matching nothing goes to onStrayAck", () => {
    const { bed, peer, uas } = setup();
    const stray: string[] = [];
    uas.onStrayAck = (a) => stray.push(a.callId);
    peer.send(ack("z9hG4bKnothing", "zz", 5), UAS);
    bed.flush();
    expect(stray).toEqual(["call-1@127.0.0.9"]);
    expect(uas.stats.created).toBe(0);
  });

  it("merged request (§8.2.2.2): same From tag, Call-ID and CSeq on another branch gets 482", () => {
    const { bed, peer, statuses, uas } = setup();
    peer.send(invite("z9hG4bKfirst"), UAS);
    peer.send(invite("z9hG4bKsecond"), UAS);
    bed.flush();
    expect(statuses()).toEqual([482]);
    expect(uas.stats.merged_requests).toBe(1);
    expect(uas.table.size).toBe(1);
  });

  it("RFC 2543 fallback: a request without the magic cookie matches its retransmission and its ACK", () => {
    const { bed, peer, statuses, uas } = setup((tx) => tx.reply(480));
    peer.send(invite("old2543"), UAS);
    peer.send(invite("old2543"), UAS);
    bed.flush();
    expect(uas.stats.created).toBe(1);
    expect(statuses()).toEqual([480, 480]);
    const toTag = peer.messages((m) => !m.isRequest)[0]!.toTag!;
    peer.send(ack("old2543", toTag), UAS);
    bed.flush();
    expect(uas.audit()[0]?.state).toBe("confirmed");
  });

  it("responses go to the source port when rport is asked for, and the Via gets received/rport (RFC 3581)", () => {
    const bed = new Testbed();
    const uas = bed.engine({ address: "127.0.0.1", onRequest: (tx) => tx.reply(200) });
    const peer = bed.peer("127.0.0.9", 6000);
    peer.send(options().replace("127.0.0.9:5060;branch", "10.1.1.1:5060;rport;branch"), UAS);
    bed.flush();
    const res = peer.messages((m) => !m.isRequest)[0]!;
    expect(res.via.received).toBe("127.0.0.9");
    expect(res.via.rport).toBe(6000);
    expect(uas.stats.created).toBe(1);
  });
});

describe("non-INVITE server transaction (RFC 3261 §17.2.2, RFC 4320)", () => {
  it("Trying absorbs retransmissions; the final is resent for each retransmission; Timer J = 64·T1", () => {
    let tx: ServerTransactionHandle | undefined;
    const { bed, peer, statuses, uas } = setup((t) => {
      tx = t;
    });
    peer.send(options(), UAS);
    peer.send(options(), UAS);
    bed.flush();
    expect(statuses()).toEqual([]);
    tx!.reply(200);
    bed.flush();
    peer.send(options(), UAS);
    bed.flush();
    expect(statuses()).toEqual([200, 200]);
    expect(uas.audit()[0]?.holders.sort()).toEqual(["table", "timer:J"]);
    bed.advance(31_999);
    expect(uas.table.size).toBe(1);
    bed.advance(1);
    expect(uas.table.size).toBe(0);
  });

  it("RFC 4320: refuses a non-100 provisional and a 408; defers a 100 until T2 has passed", () => {
    let tx: ServerTransactionHandle | undefined;
    const { bed, peer, statuses } = setup((t) => {
      tx = t;
    });
    peer.send(options(), UAS);
    bed.flush();
    expect(() => tx!.reply(180)).toThrow(TransactionError);
    expect(() => tx!.reply(408)).toThrow(/4320/);
    tx!.reply(100);
    bed.advance(3999);
    expect(statuses()).toEqual([]);
    bed.advance(1);
    expect(statuses()).toEqual([100]);
    peer.send(options(), UAS);
    bed.flush();
    expect(statuses()).toEqual([100, 100]);
    tx!.reply(200);
    bed.flush();
    expect(statuses()).toEqual([100, 100, 200]);
  });

  it("a deferred 100 is dropped when the final goes first", () => {
    let tx: ServerTransactionHandle | undefined;
    const { bed, peer, statuses } = setup((t) => {
      tx = t;
    });
    peer.send(options(), UAS);
    bed.flush();
    tx!.reply(100);
    tx!.reply(200);
    bed.advance(10_000);
    expect(statuses()).toEqual([200]);
  });

  it("without a handler, requests are answered 501", () => {
    const bed = new Testbed();
    bed.engine({ address: "127.0.0.1" });
    const peer = bed.peer("127.0.0.9");
    peer.send(options(), UAS);
    bed.flush();
    expect(peer.messages().map((m) => (m.isRequest ? 0 : m.status))).toEqual([501]);
  });
});

describe("dialog-creating messages carry a Contact (RFC 3261 §8.1.1.8, §12.1.1)", () => {
  it("our INVITE has a Contact; our 180 and 200 to an INVITE have one, and copy Record-Route", () => {
    const bed = new Testbed();
    const uas = bed.engine({
      address: "127.0.0.2",
      onRequest: (tx) => {
        tx.reply(180);
        tx.reply(200);
      },
    });
    const uac = bed.engine({ address: "127.0.0.1" });
    const got: Array<[number, string | undefined, string[]]> = [];
    uac.request({
      method: "INVITE",
      uri: "sip:b@127.0.0.2",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      headers: [["Record-Route", "<sip:p1.example;lr>"]],
      onResponse: (r) => got.push([r.status, r.header("contact"), r.headerValues("record-route")]),
    });
    let invite: string | undefined;
    uas.observers.requestIn = (_tx, req) => {
      invite = req.header("contact");
    };
    bed.flush();
    expect(invite).toBe("<sip:127.0.0.1:5060>");
    expect(got).toEqual([
      [180, "<sip:127.0.0.2:5060>", ["<sip:p1.example;lr>"]],
      [200, "<sip:127.0.0.2:5060>", ["<sip:p1.example;lr>"]],
    ]);
  });
});
