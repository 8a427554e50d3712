// Loss of each message of each transaction kind, between two engines on the
// in-memory network: the RFC 3261 §17 retransmission rules must recover every
// one, and nothing may leak (the leak check runs after every test).
import { describe, expect, it } from "vitest";
import { Testbed } from "../../src/testing.js";
import type { ClientEvents, ServerTransactionHandle } from "../../src/transaction/handles.js";

/** Drop the first `count` messages whose text starts with `prefix` (e.g. "ACK ", "SIP/2.0 486"). */
function dropFirst(bed: Testbed, prefix: string, count = 1): { dropped: () => number } {
  let dropped = 0;
  bed.network.addFilter((data) => {
    if (dropped < count && data.toString("latin1", 0, prefix.length) === prefix) {
      dropped++;
      return "drop";
    }
    return "pass";
  });
  return { dropped: () => dropped };
}

function pair(uasHandler: (tx: ServerTransactionHandle) => void) {
  const bed = new Testbed();
  const uas = bed.engine({ address: "127.0.0.2", onRequest: uasHandler });
  const uac = bed.engine({ address: "127.0.0.1" });
  const send = (method: string, events: ClientEvents = {}) =>
    uac.request({
      ...events,
      method,
      uri: "sip:b@127.0.0.2",
      from: "<sip:a@127.0.0.1>",
      to: "<sip:b@127.0.0.2>",
    });
  return { bed, uas, uac, send };
}

describe("loss of each message is recovered (RFC 3261 §17)", () => {
  it("INVITE lost: Timer A retransmits it", () => {
    const { bed, send, uas } = pair((tx) => tx.reply(486));
    const d = dropFirst(bed, "INVITE ", 2);
    const h = send("INVITE");
    bed.advance(2000);
    expect(d.dropped()).toBe(2);
    expect(h.outcome?.status).toBe(486);
    expect(uas.stats.created).toBe(1);
  });

  it("180 lost: the call still completes; the 486 is ACKed", () => {
    const { bed, send } = pair((tx) => {
      tx.reply(180);
      tx.reply(486);
    });
    const d = dropFirst(bed, "SIP/2.0 180");
    const statuses: number[] = [];
    const h = send("INVITE", { onResponse: (r) => statuses.push(r.status) });
    bed.advance(100);
    expect(d.dropped()).toBe(1);
    expect(statuses).toEqual([486]);
    expect(h.outcome?.status).toBe(486);
  });

  it("non-2xx final lost: Timer G resends it, then it is ACKed", () => {
    const { bed, send, uas } = pair((tx) => tx.reply(486));
    dropFirst(bed, "SIP/2.0 486");
    const h = send("INVITE");
    bed.advance(400);
    expect(h.outcome).toBeUndefined();
    bed.advance(200);
    expect(h.outcome?.status).toBe(486);
    bed.flush();
    expect(uas.audit()[0]?.state).toBe("confirmed");
  });

  it("ACK lost: the retransmitted final gets the ACK again and the server is Confirmed", () => {
    const { bed, send, uas } = pair((tx) => tx.reply(603));
    const d = dropFirst(bed, "ACK ");
    send("INVITE");
    bed.flush();
    expect(uas.audit()[0]?.state).toBe("completed");
    bed.advance(600);
    expect(d.dropped()).toBe(1);
    expect(uas.audit()[0]?.state).toBe("confirmed");
  });

  it("2xx lost: the server resends the 2xx until the ACK (§13.3.1.4)", () => {
    const acks: number[] = [];
    const { bed, send, uac } = pair((tx) => {
      tx.events.onAck = () => acks.push(1);
      tx.reply(200, undefined, { headers: [["Contact", "<sip:b@127.0.0.2>"]] });
    });
    dropFirst(bed, "SIP/2.0 200", 2);
    const h = send("INVITE", {
      onResponse: (r) => {
        if (r.status === 200) uac.ack2xx(h, r);
      },
    });
    bed.advance(1000);
    expect(h.outcome).toBeUndefined();
    bed.advance(600);
    expect(h.outcome?.status).toBe(200);
    bed.flush();
    expect(acks).toEqual([1]);
  });

  it("ACK of the 2xx lost: the next 2xx retransmission is ACKed by the user again", () => {
    const acks: number[] = [];
    const { bed, send, uac } = pair((tx) => {
      tx.events.onAck = () => acks.push(1);
      tx.reply(200, undefined, { headers: [["Contact", "<sip:b@127.0.0.2>"]] });
    });
    const d = dropFirst(bed, "ACK ");
    const answers: number[] = [];
    const h = send("INVITE", {
      onResponse: (r) => {
        if (r.status === 200) {
          answers.push(1);
          uac.ack2xx(h, r);
        }
      },
    });
    bed.advance(2000);
    expect(d.dropped()).toBe(1);
    expect(answers).toHaveLength(2);
    expect(acks).toEqual([1]);
  });

  it("non-INVITE request lost: Timer E retransmits it", () => {
    const { bed, send } = pair((tx) => tx.reply(200));
    dropFirst(bed, "OPTIONS ", 3);
    const h = send("OPTIONS");
    bed.advance(3400);
    expect(h.outcome).toBeUndefined();
    bed.advance(200);
    expect(h.outcome?.status).toBe(200);
  });

  it("non-INVITE final lost: the retransmitted request gets it again", () => {
    const { bed, send, uas } = pair((tx) => tx.reply(202));
    dropFirst(bed, "SIP/2.0 202");
    const h = send("MESSAGE");
    bed.advance(500);
    expect(h.outcome?.status).toBe(202);
    expect(uas.stats.retransmissions).toBe(1);
  });

  it("CANCEL lost: its own transaction retransmits it; the 487 is ACKed", () => {
    const { bed, send } = pair((tx) => tx.reply(180));
    dropFirst(bed, "CANCEL ");
    const h = send("INVITE", { onProvisional: () => h.cancel() });
    bed.advance(400);
    expect(h.outcome).toBeUndefined();
    bed.advance(200);
    expect(h.outcome?.status).toBe(487);
  });

  it("487 lost: Timer G resends it", () => {
    const { bed, send } = pair((tx) => tx.reply(180));
    dropFirst(bed, "SIP/2.0 487");
    const h = send("INVITE", { onProvisional: () => h.cancel() });
    bed.advance(400);
    expect(h.outcome).toBeUndefined();
    bed.advance(200);
    expect(h.outcome?.status).toBe(487);
  });
});

describe("engine limits and overrides", () => {
  it("a full table answers new requests 503 with Retry-After, and request() throws table-full", () => {
    const bed = new Testbed();
    const uas = bed.engine({ address: "127.0.0.2", maxTransactions: 2, retryAfter: 7, onRequest: () => {} });
    const uac = bed.engine({ address: "127.0.0.1" });
    const hs = [1, 2, 3].map(() =>
      uac.request({ method: "OPTIONS", uri: "sip:b@127.0.0.2", from: "<sip:a@x>", to: "<sip:b@y>" }),
    );
    bed.flush();
    expect(hs[2]!.outcome?.status).toBe(503);
    expect(hs[2]!.outcome?.response?.header("retry-after")).toBe("7");
    expect(uas.stats.table_full).toBe(1);
    expect(() =>
      uas.request({ method: "OPTIONS", uri: "sip:x@127.0.0.1", from: "<sip:a@x>", to: "<sip:b@y>" }),
    ).toThrow(/full/);
    // Back-pressure lifts when the load falls (here: the unanswered ones hit their lifetime cap).
    bed.advance(50_000);
    expect(uas.stats.lifetime_expired).toBe(2);
    const later = uac.request({
      method: "OPTIONS",
      uri: "sip:b@127.0.0.2",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
    });
    bed.flush();
    expect(later.outcome).toBeUndefined();
    expect(uas.table.size).toBe(1);
  });

  it("per-transaction timer overrides (t_set_fr): Timer B of one request only", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    bed.peer("127.0.0.9");
    const short = uac.request({
      method: "INVITE",
      uri: "sip:b@127.0.0.9",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      timers: { timerB: 2000 },
    });
    const normal = uac.request({
      method: "INVITE",
      uri: "sip:b@127.0.0.9",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
    });
    bed.advance(2000);
    expect(short.outcome?.status).toBe(408);
    expect(normal.outcome).toBeUndefined();
  });

  it("requestFrom: a request written in full goes out as written under our Via", () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    const peer = bed.peer("127.0.0.9");
    const text =
      "MESSAGE sip:b@127.0.0.9 SIP/2.0\r\nFrom: <sip:a@x>;tag=abc\r\nTo: <sip:b@y>\r\nCall-ID: full-1\r\n" +
      "CSeq: 5 MESSAGE\r\nX-Custom: kept as is\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi";
    const h = uac.requestFrom(text);
    bed.flush();
    const got = peer.requests("MESSAGE")[0]!;
    expect(got.callId).toBe("full-1");
    expect(got.cseq.seq).toBe(5);
    expect(got.header("x-custom")).toBe("kept as is");
    expect(got.body.toString()).toBe("hi");
    expect(got.maxForwards).toBe(70);
    expect(got.via.branch).toBe(h.branch);
    expect(() =>
      uac.requestFrom(
        "ACK sip:b@127.0.0.9 SIP/2.0\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: q\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
      ),
    ).toThrow(/ACK/);
  });
});

describe("draining", () => {
  it("drain(): new requests get 503 + Retry-After, transactions in flight finish", () => {
    const bed = new Testbed();
    const pending: Array<{ reply: (s: number) => void }> = [];
    const uas = bed.engine({ address: "127.0.0.2", onRequest: (tx) => pending.push(tx) });
    const uac = bed.engine({ address: "127.0.0.1" });
    const send = () =>
      uac.request({ method: "INVITE", uri: "sip:b@127.0.0.2", from: "<sip:a@x>", to: "<sip:b@y>" });
    const first = send();
    bed.flush();
    uas.drain(3);
    expect(uas.isDraining).toBe(true);
    const second = send();
    bed.flush();
    expect(second.outcome?.status).toBe(503);
    expect(second.outcome?.response?.header("retry-after")).toBe("3");
    first.cancel();
    bed.advance(300); // the 100 Trying arrives, then the CANCEL goes out and is still honoured
    expect(first.outcome?.status).toBe(487);
    expect(pending).toHaveLength(1);
  });

  it("isLocal knows aliases and the advertised host", () => {
    const bed = new Testbed();
    const e = bed.engine({
      address: "127.0.0.2",
      aliases: ["proxy.example"],
      advertisedHost: "198.51.100.7",
    });
    expect(e.isLocal("127.0.0.2", 5060)).toBe(true);
    expect(e.isLocal("PROXY.example", undefined)).toBe(true);
    expect(e.isLocal("198.51.100.7", 5060)).toBe(true);
    expect(e.isLocal("proxy.example", 5070)).toBe(false);
    expect(e.isLocal("other.example", 5060)).toBe(false);
  });
});
