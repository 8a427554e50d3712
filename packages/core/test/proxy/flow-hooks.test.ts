// What a route needs of the proxy for RFC 5626 flows: `recordRouteUri` writes its own URI (a flow
// token) into each side of the Record-Route (RFC 5658: both sides when they differ), and
// forwardRequestStateless's `nextHop` sends the ACK of a 2xx over a given flow.
import { describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.js";
import type { SipRequest } from "../../src/message/types.js";
import { type RelayOptions, relay } from "../../src/proxy/relay.js";
import { forwardRequestStateless } from "../../src/proxy/stateless.js";
import { Testbed } from "../../src/testing.js";
import type { Destination } from "../../src/transport/types.js";

/** A UAC, a proxy at 127.0.0.5 relaying to sip:b@127.0.0.10 over `to`, and that UAS. */
function bed(opts: RelayOptions, to: "UDP" | "TCP" = "UDP") {
  const b = new Testbed();
  const uac = b.engine({ address: "127.0.0.1" });
  const rr: string[][] = [];
  const acks: SipRequest[] = [];
  b.engine({
    address: "127.0.0.10",
    onRequest: (tx) => {
      rr.push(tx.request.headerValues("record-route"));
      tx.events.onAck = (ack) => acks.push(ack);
      tx.reply(200, { headers: [["Contact", "<sip:b@127.0.0.10>"]] });
    },
  });
  const proxy: Engine = b.engine({
    address: "127.0.0.5",
    proxy: true,
    onRequest: (tx) => {
      const uri = to === "TCP" ? "sip:b@127.0.0.10;transport=tcp" : "sip:b@127.0.0.10";
      void relay(proxy, tx, { targets: [{ uri }], recordRoute: true, ...opts });
    },
  });
  const invite = () =>
    uac.request({
      method: "INVITE",
      uri: "sip:b@127.0.0.5",
      from: "<sip:a@127.0.0.1>",
      to: "<sip:b@127.0.0.5>",
      nextHop: { protocol: "UDP", address: "127.0.0.5", port: 5060 },
    });
  return { b, uac, proxy, rr, acks, invite };
}

describe("recordRouteUri (RFC 5626 §5.3 flow tokens in Record-Route)", () => {
  it("absent, or returning ours: one Record-Route on one socket, as before", () => {
    for (const opts of [{}, { recordRouteUri: (uri: string) => uri }]) {
      const { b, rr, invite } = bed(opts);
      invite();
      b.flush();
      expect(rr).toEqual([["<sip:127.0.0.5:5060;lr>"]]);
      b.advance(64_000);
    }
  });

  it("an inbound URI of its own makes both sides written (the outbound one on top), even on one socket", () => {
    const calls: Array<[string, string, string | undefined, string]> = [];
    const { b, rr, invite } = bed({
      recordRouteUri: (uri, side, dest, target) => {
        calls.push([uri, side, dest?.protocol, target.uri]);
        return side === "inbound" ? uri.replace("sip:", "sip:TOKEN@") : uri;
      },
    });
    invite();
    b.flush();
    expect(rr).toEqual([["<sip:127.0.0.5:5060;lr>", "<sip:TOKEN@127.0.0.5:5060;lr>"]]);
    expect(calls).toEqual([
      ["sip:127.0.0.5:5060", "inbound", undefined, "sip:b@127.0.0.10"],
      ["sip:127.0.0.5:5060", "outbound", "UDP", "sip:b@127.0.0.10"],
    ]);
    b.advance(64_000);
  });

  it("the outbound side gets its own URI with the branch's destination (another transport: RFC 5658 pair)", () => {
    const dests: Destination[] = [];
    const { b, rr, invite } = bed(
      {
        recordRouteUri: (uri, side, dest) => {
          if (side === "outbound" && dest) {
            dests.push(dest);
            return uri.replace("sip:", "sip:FLOW@");
          }
          return uri;
        },
      },
      "TCP",
    );
    invite();
    b.flush();
    expect(rr).toEqual([["<sip:FLOW@127.0.0.5:5060;transport=tcp;lr>", "<sip:127.0.0.5:5060;lr>"]]);
    expect(dests.map((d) => `${d.protocol} ${d.address}:${d.port}`)).toEqual(["TCP 127.0.0.10:5060"]);
    b.advance(64_000);
  });
});

describe("forwardRequestStateless nextHop", () => {
  it("the ACK of a 2xx on our route goes to the next hop given, not where its Request-URI points", () => {
    const { b, uac, proxy, acks, invite } = bed({});
    const elsewhere = b.peer("127.0.0.20");
    let forwarded: boolean | undefined;
    proxy.onStrayAck = (ack, source) => {
      // The Request-URI (b's Contact) says 127.0.0.10; the route sends it to the "flow" at .20.
      forwarded = forwardRequestStateless(proxy, ack, source, { nextHop: elsewhere.hop });
    };
    const h = invite();
    b.flush();
    uac.ack2xx(h, h.outcome!.response!);
    b.flush();
    expect(forwarded).toBe(true);
    expect(acks).toEqual([]);
    const got = elsewhere.requests("ACK");
    expect(got).toHaveLength(1);
    expect(got[0]!.uri).toBe("sip:b@127.0.0.10");
    expect(got[0]!.headerValues("route")).toEqual([]);
    b.advance(64_000);
  });

  it("still only on our route: an ACK that is not is dropped whatever the next hop", () => {
    const b = new Testbed();
    const proxy = b.engine({ address: "127.0.0.5", proxy: true });
    const elsewhere = b.peer("127.0.0.20");
    const peer = b.peer("127.0.0.1");
    let forwarded: boolean | undefined;
    proxy.onStrayAck = (ack, source) => {
      forwarded = forwardRequestStateless(proxy, ack, source, { nextHop: elsewhere.hop });
    };
    peer.send(
      [
        "ACK sip:b@127.0.0.10 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKstray",
        "Max-Forwards: 70",
        "From: <sip:a@127.0.0.1>;tag=1",
        "To: <sip:b@127.0.0.10>;tag=2",
        "Call-ID: stray-ack",
        "CSeq: 1 ACK",
        "Content-Length: 0",
        "",
        "",
      ].join("\r\n"),
      Testbed.hop(proxy),
    );
    b.flush();
    expect(forwarded).toBe(false);
    expect(elsewhere.requests()).toEqual([]);
  });
});
