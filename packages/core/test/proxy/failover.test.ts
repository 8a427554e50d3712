// RFC 3263 next hops in the proxy: a host name resolved through a resolver we
// control (no real DNS), and failover to the next destination on a 503 or a
// transport error (§4.3).
import { describe, expect, it } from "vitest";
import { relay } from "../../src/proxy/relay.js";
import { type DnsLookup, Resolver } from "../../src/proxy/resolver.js";
import { Testbed } from "../../src/testing.js";

function fakeDns(records: Record<string, string[]>): DnsLookup & { calls: number } {
  const dns = {
    calls: 0,
    async naptr() {
      dns.calls++;
      return [];
    },
    async srv() {
      dns.calls++;
      return [];
    },
    async a(name: string) {
      dns.calls++;
      return records[name] ?? [];
    },
    async aaaa() {
      dns.calls++;
      return [];
    },
  };
  return dns;
}

async function settle(bed: Testbed, rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await Promise.resolve();
    bed.flush();
  }
}

describe("proxy next hops by RFC 3263", () => {
  it("resolves a host name and relays to it", async () => {
    const bed = new Testbed();
    bed.engine({ address: "127.0.0.10", onRequest: (tx) => tx.reply(200) });
    const uac = bed.engine({ address: "127.0.0.1" });
    const resolver = new Resolver({ dns: fakeDns({ "uas.example": ["127.0.0.10"] }), clock: bed.clock });
    const proxy = bed.engine({ address: "127.0.0.5", resolver, onRequest: (tx) => relay(proxy, tx) });
    const h = uac.request({
      method: "OPTIONS",
      uri: "sip:bob@uas.example",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      nextHop: "udp:127.0.0.5:5060",
    });
    await settle(bed);
    expect(h.outcome?.status).toBe(200);
  });

  it("fails over to the next address on a 503", async () => {
    const bed = new Testbed();
    const hits: string[] = [];
    bed.engine({
      address: "127.0.0.10",
      onRequest: (tx) => {
        hits.push("a");
        tx.reply(503);
      },
    });
    bed.engine({
      address: "127.0.0.11",
      onRequest: (tx) => {
        hits.push("b");
        tx.reply(180);
        tx.reply(200);
      },
    });
    const uac = bed.engine({ address: "127.0.0.1" });
    const resolver = new Resolver({
      dns: fakeDns({ "pool.example": ["127.0.0.10", "127.0.0.11"] }),
      clock: bed.clock,
    });
    const proxy = bed.engine({ address: "127.0.0.5", resolver, onRequest: (tx) => relay(proxy, tx) });
    const h = uac.request({
      method: "INVITE",
      uri: "sip:bob@pool.example",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      nextHop: "udp:127.0.0.5:5060",
    });
    await settle(bed);
    expect(hits).toEqual(["a", "b"]);
    expect(h.outcome?.status).toBe(200);
    expect(resolver.isFailed({ protocol: "UDP", address: "127.0.0.10", port: 5060 })).toBe(true);
  });

  it("fails over on a transport error (TCP, nobody listening at the first address)", async () => {
    const bed = new Testbed();
    bed.engine({ address: "127.0.0.11", onRequest: (tx) => tx.reply(200) });
    const uac = bed.engine({ address: "127.0.0.1" });
    const resolver = new Resolver({
      dns: fakeDns({ "pool.example": ["127.0.0.99", "127.0.0.11"] }),
      clock: bed.clock,
    });
    const proxy = bed.engine({ address: "127.0.0.5", resolver, onRequest: (tx) => relay(proxy, tx) });
    const h = uac.request({
      method: "OPTIONS",
      uri: "sip:bob@pool.example;transport=tcp",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      nextHop: "udp:127.0.0.5:5060",
    });
    await settle(bed);
    bed.advance(10);
    await settle(bed);
    expect(h.outcome?.status).toBe(200);
  });

  it("an unresolvable name fails the branch like a 503 — sent upstream as 500 (§16.7 item 6) — and nothing leaks", async () => {
    const bed = new Testbed();
    const uac = bed.engine({ address: "127.0.0.1" });
    const resolver = new Resolver({ dns: fakeDns({}), clock: bed.clock });
    const proxy = bed.engine({ address: "127.0.0.5", resolver, onRequest: (tx) => relay(proxy, tx) });
    const h = uac.request({
      method: "OPTIONS",
      uri: "sip:bob@nowhere.example",
      from: "<sip:a@x>",
      to: "<sip:b@y>",
      nextHop: "udp:127.0.0.5:5060",
    });
    await settle(bed);
    expect(h.outcome?.status).toBe(500);
  });
});
