// RFC 3263 next-hop resolution against a fake DNS (never the network).
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/clock.js";
import { parseUri, type SipUri } from "../../src/message/uri.js";
import {
  type DnsLookup,
  type NaptrRecord,
  nodeDns,
  orderSrv,
  ResolveError,
  Resolver,
  type ResolverOptions,
  type SrvRecord,
} from "../../src/proxy/resolver.js";
import { mulberry32 } from "../../src/transport/memory.js";
import type { Destination } from "../../src/transport/types.js";

type Rec = { naptr: NaptrRecord; srv: SrvRecord; a: string | { address: string; ttl: number }; aaaa: string };
type Kind = keyof Rec;

/** A zone in memory: records per (type, name); `broken` names reject; every call is counted. */
class FakeDns implements DnsLookup {
  readonly calls: string[] = [];
  private readonly zone = new Map<string, unknown[]>();
  private readonly broken = new Map<string, () => unknown>();

  add<K extends Kind>(type: K, name: string, ...records: Rec[K][]): this {
    this.zone.set(`${type} ${name}`, [...(this.zone.get(`${type} ${name}`) ?? []), ...records]);
    return this;
  }
  /** The lookup rejects with `err` (or misbehaves as `fn` says). */
  break(type: Kind, name: string, fn: () => unknown = () => Promise.reject(new Error("ETIMEOUT"))): this {
    this.broken.set(`${type} ${name}`, fn);
    return this;
  }
  count(type?: Kind, name?: string): number {
    return this.calls.filter(
      (c) =>
        (type === undefined || c.startsWith(`${type} `)) && (name === undefined || c === `${type} ${name}`),
    ).length;
  }
  private answer(type: Kind, name: string): Promise<never[]> {
    const key = `${type} ${name}`;
    this.calls.push(key);
    const broken = this.broken.get(key);
    if (broken) return broken() as Promise<never[]>;
    return Promise.resolve((this.zone.get(key) ?? []) as never[]);
  }
  naptr(name: string) {
    return this.answer("naptr", name);
  }
  srv(name: string) {
    return this.answer("srv", name);
  }
  a(name: string) {
    return this.answer("a", name);
  }
  aaaa(name: string) {
    return this.answer("aaaa", name);
  }
}

const naptr = (service: string, replacement: string, order = 10, preference = 10): NaptrRecord => ({
  flags: "S",
  service,
  regexp: "",
  replacement,
  order,
  preference,
});
const srv = (name: string, port: number, priority = 10, weight = 0): SrvRecord => ({
  name,
  port,
  priority,
  weight,
});
const udp = (address: string, port = 5060): Destination => ({ protocol: "UDP", address, port });
const tcp = (address: string, port = 5060): Destination => ({ protocol: "TCP", address, port });
/** A TLS destination; for a host name, the name its certificate must show (RFC 5922 §4). */
const tls = (address: string, port = 5061, serverName?: string): Destination =>
  serverName === undefined
    ? { protocol: "TLS", address, port }
    : { protocol: "TLS", address, port, serverName };

/** A deterministic sequence for `random`. */
function seq(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

function setup(dns: FakeDns, opts: Omit<ResolverOptions, "dns" | "clock"> = {}) {
  const clock = new VirtualClock(1_000);
  const resolver = new Resolver({ dns, clock, random: () => 0, ...opts });
  return { clock, resolver };
}

async function rejection(p: Promise<unknown>): Promise<ResolveError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ResolveError);
  return err as ResolveError;
}

describe("IP literals need no DNS", () => {
  const table: Array<[string, Destination]> = [
    ["sip:alice@192.0.2.1", udp("192.0.2.1")],
    ["sip:192.0.2.1:5070", udp("192.0.2.1", 5070)],
    ["sip:192.0.2.1;transport=tcp", tcp("192.0.2.1")],
    ["sip:192.0.2.1;transport=TLS", tls("192.0.2.1")],
    ["sips:192.0.2.1", tls("192.0.2.1")],
    ["sips:192.0.2.1;transport=tcp", tls("192.0.2.1")],
    ["sip:[2001:db8::1]:5070", udp("2001:db8::1", 5070)],
    ["sip:bob@[2001:DB8::2]", udp("2001:db8::2")],
    ["sip:bob@example.com;maddr=192.0.2.9", udp("192.0.2.9")],
    ["sip:bob@example.com:5080;maddr=[2001:db8::9];transport=tcp", tcp("2001:db8::9", 5080)],
  ];
  for (const [uri, dest] of table) {
    it(`${uri} → ${dest.protocol} ${dest.address}:${dest.port}`, async () => {
      const dns = new FakeDns();
      const { resolver } = setup(dns, { transports: ["UDP", "TCP", "TLS"] });
      expect(await resolver.resolve(uri)).toEqual([dest]);
      expect(resolver.resolveCached(uri)).toEqual([dest]);
      expect(dns.calls).toEqual([]);
    });
  }

  it("accepts a parsed SipUri", async () => {
    const { resolver } = setup(new FakeDns());
    const uri = parseUri("sip:192.0.2.1:5999") as SipUri;
    expect(await resolver.resolve(uri)).toEqual([udp("192.0.2.1", 5999)]);
  });

  it("without UDP a sip literal goes over TCP", async () => {
    const { resolver } = setup(new FakeDns(), { transports: ["TCP"] });
    expect(await resolver.resolve("sip:192.0.2.1")).toEqual([tcp("192.0.2.1")]);
  });
});

describe("NAPTR → SRV → A/AAAA (§4.1)", () => {
  function zone(): FakeDns {
    return new FakeDns()
      .add(
        "naptr",
        "example.com",
        naptr("SIP+D2U", "_sip._udp.example.com", 20),
        naptr("E2U+sip", "!^.*$!sip:info@example.com!", 5), // not a transport service
        naptr("SIP+D2S", "_sip._sctp.example.com", 5), // SCTP: not supported
        naptr("SIPS+D2T", "_sips._tcp.example.com", 5), // TLS: not enabled by default
        naptr("SIP+D2T", "_sip._tcp.example.com.", 10),
      )
      .add("srv", "_sip._tcp.example.com", srv("pbx1.example.com.", 5060))
      .add("srv", "_sip._udp.example.com", srv("pbx2.example.com", 5070))
      .add("srv", "_sips._tcp.example.com", srv("pbx1.example.com", 5061))
      .add("a", "pbx1.example.com", "192.0.2.1")
      .add("aaaa", "pbx1.example.com", "2001:db8::1")
      .add("a", "pbx2.example.com", "192.0.2.2");
  }

  it("follows supported services in order, SRV on each replacement, IPv4 before IPv6", async () => {
    const dns = zone();
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:alice@example.com")).toEqual([
      tcp("192.0.2.1"),
      tcp("2001:db8::1"),
      udp("192.0.2.2", 5070),
    ]);
    expect(dns.count("srv")).toBe(2); // the NAPTR answer made the plain SRV queries unnecessary
    expect(dns.count("srv", "_sips._tcp.example.com")).toBe(0);
    expect(dns.count("a", "example.com")).toBe(0);
  });

  it("uses SIPS+D2T for a sip URI when TLS is enabled", async () => {
    const { resolver } = setup(zone(), { transports: ["UDP", "TCP", "TLS"] });
    expect(await resolver.resolve("sip:example.com")).toEqual([
      tls("192.0.2.1", 5061, "example.com"),
      tls("2001:db8::1", 5061, "example.com"),
      tcp("192.0.2.1"),
      tcp("2001:db8::1"),
      udp("192.0.2.2", 5070),
    ]);
  });

  it("a sips URI considers SIPS+D2T only", async () => {
    const dns = zone();
    const { resolver } = setup(dns, { transports: ["UDP", "TCP", "TLS"] });
    expect(await resolver.resolve("sips:bob@example.com")).toEqual([
      tls("192.0.2.1", 5061, "example.com"),
      tls("2001:db8::1", 5061, "example.com"),
    ]);
    expect(dns.count("srv")).toBe(1);
  });

  it("preference breaks ties of order", async () => {
    const dns = new FakeDns()
      .add(
        "naptr",
        "ex.net",
        naptr("SIP+D2U", "_sip._udp.ex.net", 10, 50),
        naptr("SIP+D2T", "_sip._tcp.ex.net", 10, 20),
      )
      .add("srv", "_sip._udp.ex.net", srv("h.ex.net", 5060))
      .add("srv", "_sip._tcp.ex.net", srv("h.ex.net", 5060))
      .add("a", "h.ex.net", "192.0.2.7");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:ex.net")).toEqual([tcp("192.0.2.7"), udp("192.0.2.7")]);
  });

  it("ignores records with another flag or a regexp; none usable → plain SRV", async () => {
    const dns = new FakeDns()
      .add(
        "naptr",
        "ex.net",
        { ...naptr("SIP+D2U", "_sip._udp.other.net"), flags: "U" },
        { ...naptr("SIP+D2T", ""), regexp: "!^.*$!_sip._tcp.other.net!" },
      )
      .add("srv", "_sip._udp.ex.net", srv("h.ex.net", 5062))
      .add("a", "h.ex.net", "192.0.2.7");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:ex.net")).toEqual([udp("192.0.2.7", 5062)]);
    expect(dns.count("srv", "_sip._udp.other.net")).toBe(0);
  });
});

describe("SRV without NAPTR", () => {
  it("queries _sip._udp and _sip._tcp, in `transports` order", async () => {
    const dns = new FakeDns()
      .add("srv", "_sip._udp.example.org", srv("u.example.org", 5060))
      .add("srv", "_sip._tcp.example.org", srv("t.example.org", 5080))
      .add("a", "u.example.org", "192.0.2.10")
      .add("a", "t.example.org", "192.0.2.11");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:example.org")).toEqual([udp("192.0.2.10"), tcp("192.0.2.11", 5080)]);
    expect(dns.calls.filter((c) => c.startsWith("srv"))).toEqual([
      "srv _sip._udp.example.org",
      "srv _sip._tcp.example.org",
    ]);

    const dns2 = new FakeDns()
      .add("srv", "_sip._udp.example.org", srv("u.example.org", 5060))
      .add("srv", "_sip._tcp.example.org", srv("t.example.org", 5080))
      .add("a", "u.example.org", "192.0.2.10")
      .add("a", "t.example.org", "192.0.2.11");
    const r2 = setup(dns2, { transports: ["TCP", "UDP", "TLS"] }).resolver;
    expect(await r2.resolve("sip:example.org")).toEqual([tcp("192.0.2.11", 5080), udp("192.0.2.10")]);
    expect(dns2.count("srv", "_sips._tcp.example.org")).toBe(1);
  });

  it("a sips URI queries _sips._tcp only", async () => {
    const dns = new FakeDns()
      .add("srv", "_sips._tcp.example.org", srv("s.example.org", 5071))
      .add("aaaa", "s.example.org", "2001:db8::5");
    const { resolver } = setup(dns, { transports: ["UDP", "TCP", "TLS"] });
    expect(await resolver.resolve("sips:example.org")).toEqual([tls("2001:db8::5", 5071, "example.org")]);
    expect(dns.count("srv")).toBe(1);
  });

  it("an SRV target of '.' means no service: no A fallback", async () => {
    const dns = new FakeDns()
      .add("srv", "_sip._udp.example.org", srv(".", 0))
      .add("a", "example.org", "192.0.2.1");
    const { resolver } = setup(dns);
    const err = await rejection(resolver.resolve("sip:example.org"));
    expect(err.code).toBe("ENOTFOUND");
    expect(dns.count("a", "example.org")).toBe(0);
  });

  it("SRV records whose targets have no address end the search (no A fallback on the domain)", async () => {
    const dns = new FakeDns()
      .add("srv", "_sip._udp.example.org", srv("gone.example.org", 5060))
      .add("a", "example.org", "192.0.2.1");
    const { resolver } = setup(dns);
    expect((await rejection(resolver.resolve("sip:example.org"))).code).toBe("ENOTFOUND");
  });
});

describe("A/AAAA only", () => {
  it("no NAPTR, no SRV → A/AAAA, UDP 5060", async () => {
    const dns = new FakeDns()
      .add("a", "host.example", "192.0.2.20")
      .add("aaaa", "host.example", "2001:db8::20");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:carol@host.example")).toEqual([
      udp("192.0.2.20"),
      udp("2001:db8::20"),
    ]);
  });

  it("sips → TLS 5061", async () => {
    const dns = new FakeDns().add("a", "host.example", "192.0.2.20");
    const { resolver } = setup(dns, { transports: ["UDP", "TCP", "TLS"] });
    expect(await resolver.resolve("sips:host.example")).toEqual([tls("192.0.2.20", 5061, "host.example")]);
  });

  it("`families` orders (or restricts) address families", async () => {
    const dns = new FakeDns()
      .add("a", "host.example", "192.0.2.20")
      .add("aaaa", "host.example", "2001:db8::20");
    expect(await setup(dns, { families: [6, 4] }).resolver.resolve("sip:host.example")).toEqual([
      udp("2001:db8::20"),
      udp("192.0.2.20"),
    ]);
    const dns4 = new FakeDns()
      .add("a", "host.example", "192.0.2.20")
      .add("aaaa", "host.example", "2001:db8::20");
    expect(await setup(dns4, { families: [4] }).resolver.resolve("sip:host.example")).toEqual([
      udp("192.0.2.20"),
    ]);
    expect(dns4.count("aaaa")).toBe(0);
  });

  // Each RFC 3263 case builds its own FakeDns records, alike in form on purpose: the records are the test.
  it("an explicit port skips NAPTR and SRV (§4.2)", async () => {
    const dns = new FakeDns()
      .add("naptr", "host.example", naptr("SIP+D2T", "_sip._tcp.host.example"))
      .add("srv", "_sip._tcp.host.example", srv("other.example", 5060))
      .add("a", "host.example", "192.0.2.21");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:host.example:5080")).toEqual([udp("192.0.2.21", 5080)]);
    expect(dns.calls.sort()).toEqual(["a host.example", "aaaa host.example"]);
  });

  it("a hostname maddr is what gets resolved", async () => {
    const dns = new FakeDns().add("a", "edge.example", "192.0.2.30");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:bob@example.com:5090;maddr=edge.example")).toEqual([
      udp("192.0.2.30", 5090),
    ]);
    expect(dns.calls.every((c) => c.endsWith(" edge.example"))).toBe(true);
  });
});

describe("explicit transport= (§4.1, §4.2)", () => {
  it("transport=tcp: SRV for TCP only, no NAPTR", async () => {
    const dns = new FakeDns()
      .add("naptr", "example.org", naptr("SIP+D2U", "_sip._udp.example.org"))
      .add("srv", "_sip._tcp.example.org", srv("t.example.org", 5082))
      .add("a", "t.example.org", "192.0.2.40");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:example.org;transport=tcp")).toEqual([tcp("192.0.2.40", 5082)]);
    expect(dns.count("naptr")).toBe(0);
    expect(dns.count("srv")).toBe(1);
  });

  it("transport=tcp without SRV → A/AAAA on 5060", async () => {
    const dns = new FakeDns().add("a", "example.org", "192.0.2.41");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:example.org;transport=TCP")).toEqual([tcp("192.0.2.41")]);
  });

  it("sips;transport=tcp → _sips._tcp, TLS", async () => {
    const dns = new FakeDns()
      .add("srv", "_sips._tcp.example.org", srv("s.example.org", 5061))
      .add("a", "s.example.org", "192.0.2.42");
    const { resolver } = setup(dns, { transports: ["TCP", "TLS"] });
    expect(await resolver.resolve("sips:example.org;transport=tcp")).toEqual([
      tls("192.0.2.42", 5061, "example.org"),
    ]);
  });

  const refused: Array<[string, ResolverOptions["transports"]]> = [
    ["sips:example.org;transport=udp", ["UDP", "TCP", "TLS"]],
    ["sip:example.org;transport=sctp", ["UDP", "TCP", "TLS"]],
    ["sip:example.org;transport=tls", ["UDP", "TCP"]],
    ["sips:example.org", ["UDP", "TCP"]],
    ["sip:example.org;transport=udp", ["TCP"]],
  ];
  for (const [uri, transports] of refused) {
    it(`${uri} with ${transports!.join("/")} → ENOTRANSPORT`, async () => {
      const dns = new FakeDns();
      const { resolver } = setup(dns, { transports });
      expect((await rejection(resolver.resolve(uri))).code).toBe("ENOTRANSPORT");
      expect(dns.calls).toEqual([]);
    });
  }
});

describe("SRV ordering (RFC 2782)", () => {
  const records = [
    srv("b.ex", 5060, 10, 40),
    srv("z.ex", 5060, 20, 0),
    srv("a.ex", 5060, 10, 60),
    srv("c.ex", 5060, 10, 0),
    srv("y.ex", 5060, 5, 0),
  ];

  it("priority ascending, weighted random within a priority, zero weights first in the sum", () => {
    // priority 10 pool: [c(0), b(40), a(60)], sum 100
    // random 0.995 → 99 → a; then [c, b] sum 40, 0.0 → 0 → c; then b
    expect(orderSrv(records, seq(0.5, 0.995, 0, 0, 0)).map((r) => r.name)).toEqual([
      "y.ex",
      "a.ex",
      "c.ex",
      "b.ex",
      "z.ex",
    ]);
    // 0.3 → 30 → b (running 0, 40); then [c, a] sum 60, 0.5 → 30 → a; then c
    expect(orderSrv(records, seq(0.5, 0.3, 0.5, 0.5, 0.5)).map((r) => r.name)).toEqual([
      "y.ex",
      "b.ex",
      "a.ex",
      "c.ex",
      "z.ex",
    ]);
  });

  it("first picks follow the weights (seeded PRNG)", () => {
    const random = mulberry32(42);
    const first: Record<string, number> = {};
    const group = [srv("a", 1, 1, 60), srv("b", 1, 1, 30), srv("c", 1, 1, 10)];
    for (let i = 0; i < 10_000; i++) {
      const name = orderSrv(group, random)[0]!.name;
      first[name] = (first[name] ?? 0) + 1;
    }
    expect(first.a! / 10_000).toBeCloseTo(0.6, 1);
    expect(first.b! / 10_000).toBeCloseTo(0.3, 1);
    expect(first.c! / 10_000).toBeCloseTo(0.1, 1);
  });

  it("resolve orders SRV targets, and re-draws weights on each call even from the cache", async () => {
    const dns = new FakeDns()
      .add(
        "srv",
        "_sip._udp.lb.example",
        srv("heavy.lb.example", 5060, 10, 90),
        srv("light.lb.example", 5060, 10, 10),
      )
      .add("srv", "_sip._udp.lb.example", srv("backup.lb.example", 5060, 20, 0))
      .add("a", "heavy.lb.example", "192.0.2.1")
      .add("a", "light.lb.example", "192.0.2.2")
      .add("a", "backup.lb.example", "192.0.2.3");
    const { resolver } = setup(dns, { random: seq(0, 0.99), families: [4] });
    // pool [heavy(90), light(10)] sum 100: 0 → heavy; then 0.99 → light
    expect(await resolver.resolve("sip:lb.example")).toEqual([
      udp("192.0.2.1"),
      udp("192.0.2.2"),
      udp("192.0.2.3"),
    ]);
    const calls = dns.calls.length;
    // the sequence goes on: 0 (backup), then 0.99 → 99 → light first
    const again = await resolver.resolve("sip:lb.example");
    expect(dns.calls.length).toBe(calls);
    expect(new Set(again)).toEqual(new Set([udp("192.0.2.1"), udp("192.0.2.2"), udp("192.0.2.3")]));
    expect(again.at(-1)).toEqual(udp("192.0.2.3"));
    const firsts = new Set<string>();
    for (let i = 0; i < 8; i++) firsts.add((await resolver.resolve("sip:lb.example"))[0]!.address);
    expect(firsts).toEqual(new Set(["192.0.2.1", "192.0.2.2"]));
    expect(dns.calls.length).toBe(calls);
  });
});

describe("caching on the injected clock", () => {
  function zone(): FakeDns {
    return new FakeDns()
      .add("srv", "_sip._udp.example.net", srv("h.example.net", 5060))
      .add("a", "h.example.net", "192.0.2.50");
  }

  it("a second resolve is served from the cache; after cacheTtlMs DNS is asked again", async () => {
    const dns = zone();
    const { resolver, clock } = setup(dns, { cacheTtlMs: 60_000, negativeTtlMs: 120_000 });
    const first = await resolver.resolve("sip:example.net");
    const calls = dns.calls.length;
    expect(calls).toBe(5); // naptr, srv udp, srv tcp, a, aaaa
    expect(await resolver.resolve("sip:example.net")).toEqual(first);
    expect(dns.calls.length).toBe(calls);
    clock.advance(59_999);
    await resolver.resolve("sip:example.net");
    expect(dns.calls.length).toBe(calls);
    clock.advance(1);
    await resolver.resolve("sip:example.net");
    // positive answers (srv udp, a) expired; the empty ones live on for negativeTtlMs
    expect(dns.calls.slice(calls).sort()).toEqual(["a h.example.net", "srv _sip._udp.example.net"]);
  });

  it("a shorter record TTL wins", async () => {
    const dns = new FakeDns().add("a", "short.example", { address: "192.0.2.51", ttl: 5 });
    const { resolver, clock } = setup(dns, { families: [4] });
    await resolver.resolve("sip:short.example:5060");
    clock.advance(4_999);
    await resolver.resolve("sip:short.example:5060");
    expect(dns.count("a")).toBe(1);
    clock.advance(1);
    await resolver.resolve("sip:short.example:5060");
    expect(dns.count("a")).toBe(2);
  });

  it("negative answers are cached for negativeTtlMs", async () => {
    const dns = new FakeDns();
    const { resolver, clock } = setup(dns, { negativeTtlMs: 10_000 });
    const err = await rejection(resolver.resolve("sip:nowhere.example"));
    expect(err.code).toBe("ENOTFOUND");
    expect(err.host).toBe("nowhere.example");
    expect(err.temporary).toBe(false);
    const calls = dns.calls.length;
    expect((await rejection(resolver.resolve("sip:nowhere.example"))).code).toBe("ENOTFOUND");
    expect(dns.calls.length).toBe(calls);
    clock.advance(10_000);
    await rejection(resolver.resolve("sip:nowhere.example"));
    expect(dns.calls.length).toBe(2 * calls);
  });

  it("a rejection with Node's ENOTFOUND/ENODATA code is an empty answer", async () => {
    const nx = () => Promise.reject(Object.assign(new Error("queryA ENOTFOUND"), { code: "ENOTFOUND" }));
    const nodata = () => Promise.reject(Object.assign(new Error("queryAaaa ENODATA"), { code: "ENODATA" }));
    const dns = new FakeDns().break("a", "x.example", nx).break("aaaa", "x.example", nodata);
    const { resolver } = setup(dns);
    expect((await rejection(resolver.resolve("sip:x.example:5060"))).code).toBe("ENOTFOUND");
  });

  it("concurrent resolves share the queries in flight", async () => {
    const dns = zone();
    const { resolver } = setup(dns);
    const [a, b] = await Promise.all([
      resolver.resolve("sip:example.net"),
      resolver.resolve("sip:u@example.net"),
    ]);
    expect(a).toEqual([udp("192.0.2.50")]);
    expect(b).toEqual(a);
    expect(dns.calls.length).toBe(5);
  });

  it("names are case-insensitive and a trailing dot does not matter", async () => {
    const dns = zone();
    const { resolver } = setup(dns);
    await resolver.resolve("sip:example.net");
    const calls = dns.calls.length;
    expect(await resolver.resolve("sip:EXAMPLE.Net.")).toEqual([udp("192.0.2.50")]);
    expect(dns.calls.length).toBe(calls);
  });

  it("resolveCached: undefined until resolved, then synchronous, undefined again once stale", async () => {
    const dns = zone();
    const { resolver, clock } = setup(dns);
    expect(resolver.resolveCached("sip:example.net")).toBeUndefined();
    expect(dns.calls).toEqual([]); // it never asks DNS
    await resolver.resolve("sip:example.net");
    expect(resolver.resolveCached("sip:example.net")).toEqual([udp("192.0.2.50")]);
    clock.advance(60_000);
    expect(resolver.resolveCached("sip:example.net")).toBeUndefined();
    expect(resolver.resolveCached("tel:+15551234")).toBeUndefined();
    expect(resolver.resolveCached("sip:nowhere.example")).toBeUndefined();
    await rejection(resolver.resolve("sip:nowhere.example"));
    expect(resolver.resolveCached("sip:nowhere.example")).toBeUndefined(); // a cached failure is not destinations
  });

  it("clearCache forgets every answer", async () => {
    const dns = zone();
    const { resolver } = setup(dns);
    await resolver.resolve("sip:example.net");
    resolver.clearCache();
    expect(resolver.resolveCached("sip:example.net")).toBeUndefined();
    await resolver.resolve("sip:example.net");
    expect(dns.calls.length).toBe(10);
  });

  it("maxCacheEntries bounds the cache (oldest out first)", async () => {
    const dns = new FakeDns().add("a", "one.example", "192.0.2.1").add("a", "two.example", "192.0.2.2");
    const { resolver } = setup(dns, { maxCacheEntries: 1, families: [4] });
    await resolver.resolve("sip:one.example:5060");
    await resolver.resolve("sip:two.example:5060");
    expect(resolver.resolveCached("sip:two.example:5060")).toEqual([udp("192.0.2.2")]);
    expect(resolver.resolveCached("sip:one.example:5060")).toBeUndefined();
  });
});

describe("markFailed (§4.3 failover)", () => {
  it("moves a destination to the end until the mark expires", async () => {
    const dns = new FakeDns()
      .add("srv", "_sip._udp.example.net", srv("p1.example.net", 5060, 10), srv("p2.example.net", 5060, 20))
      .add("a", "p1.example.net", "192.0.2.1")
      .add("a", "p2.example.net", "192.0.2.2");
    const { resolver, clock } = setup(dns, { blacklistMs: 30_000, cacheTtlMs: 3_600_000 });
    expect(await resolver.resolve("sip:example.net")).toEqual([udp("192.0.2.1"), udp("192.0.2.2")]);
    resolver.markFailed(udp("192.0.2.1"));
    expect(resolver.isFailed(udp("192.0.2.1"))).toBe(true);
    expect(resolver.isFailed(tcp("192.0.2.1"))).toBe(false); // per protocol, address and port
    expect(await resolver.resolve("sip:example.net")).toEqual([udp("192.0.2.2"), udp("192.0.2.1")]);
    expect(resolver.resolveCached("sip:example.net")).toEqual([udp("192.0.2.2"), udp("192.0.2.1")]);
    clock.advance(30_000);
    expect(await resolver.resolve("sip:example.net")).toEqual([udp("192.0.2.1"), udp("192.0.2.2")]);
  });

  it("takes its own period (a 503's Retry-After); 0 clears the mark", async () => {
    const { resolver, clock } = setup(new FakeDns());
    resolver.markFailed(udp("192.0.2.9"), 5_000);
    clock.advance(4_999);
    expect(resolver.isFailed(udp("192.0.2.9"))).toBe(true);
    clock.advance(1);
    expect(resolver.isFailed(udp("192.0.2.9"))).toBe(false);
    resolver.markFailed(udp("192.0.2.9"));
    resolver.markFailed(udp("192.0.2.9"), 0);
    expect(resolver.isFailed(udp("192.0.2.9"))).toBe(false);
  });

  it("a lone failed destination is still returned", async () => {
    const { resolver } = setup(new FakeDns());
    resolver.markFailed(udp("192.0.2.9"));
    expect(await resolver.resolve("sip:192.0.2.9")).toEqual([udp("192.0.2.9")]);
  });
});

describe("errors are ResolveErrors", () => {
  it("a rejecting DNS → EDNS, temporary, with the cause", async () => {
    const boom = new Error("ESERVFAIL");
    const dns = new FakeDns()
      .break("naptr", "bad.example", () => Promise.reject(boom))
      .break("srv", "_sip._udp.bad.example", () => Promise.reject(boom))
      .break("srv", "_sip._tcp.bad.example", () => Promise.reject(boom));
    const { resolver } = setup(dns);
    const err = await rejection(resolver.resolve("sip:bad.example"));
    expect(err.code).toBe("EDNS");
    expect(err.temporary).toBe(true);
    expect(err.cause).toBe(boom);
    expect(err.uri).toBe("sip:bad.example");
    expect(dns.count("a")).toBe(0); // an SRV query failed: no guessing with A records
  });

  it("a failed NAPTR lookup falls through to SRV", async () => {
    const dns = new FakeDns()
      .break("naptr", "example.net")
      .add("srv", "_sip._tcp.example.net", srv("h.example.net", 5060))
      .add("a", "h.example.net", "192.0.2.60");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:example.net")).toEqual([tcp("192.0.2.60")]);
  });

  it("a failed NAPTR lookup with nothing else found → EDNS rather than ENOTFOUND", async () => {
    const dns = new FakeDns().break("naptr", "example.net");
    const { resolver } = setup(dns);
    expect((await rejection(resolver.resolve("sip:example.net"))).code).toBe("EDNS");
  });

  it("one address family failing is fine when the other answers", async () => {
    const dns = new FakeDns().add("a", "h.example", "192.0.2.61").break("aaaa", "h.example");
    const { resolver } = setup(dns);
    expect(await resolver.resolve("sip:h.example:5060")).toEqual([udp("192.0.2.61")]);
  });

  it("failures are remembered for failureTtlMs, then retried", async () => {
    const dns = new FakeDns().break("a", "h.example");
    const { resolver, clock } = setup(dns, { families: [4], failureTtlMs: 2_000 });
    expect((await rejection(resolver.resolve("sip:h.example:5060"))).code).toBe("EDNS");
    expect((await rejection(resolver.resolve("sip:h.example:5060"))).code).toBe("EDNS");
    expect(dns.count("a")).toBe(1);
    clock.advance(2_000);
    await rejection(resolver.resolve("sip:h.example:5060"));
    expect(dns.count("a")).toBe(2);
  });

  it("a lookup that throws synchronously or answers garbage → EDNS", async () => {
    const dns = new FakeDns()
      .break("a", "throws.example", () => {
        throw new Error("sync");
      })
      .break("a", "garbage.example", () => Promise.resolve({ not: "a list" }));
    const { resolver } = setup(dns, { families: [4] });
    expect((await rejection(resolver.resolve("sip:throws.example:5060"))).code).toBe("EDNS");
    expect((await rejection(resolver.resolve("sip:garbage.example:5060"))).code).toBe("EDNS");
  });

  it("malformed records are dropped", async () => {
    const dns = new FakeDns()
      .break("a", "h.example", () => Promise.resolve(["not-an-ip", "2001:db8::1", 42, "192.0.2.62"]))
      .break("srv", "_sip._udp.s.example", () => Promise.resolve([{ name: "h.example" }, null]));
    const { resolver } = setup(dns, { families: [4] });
    expect(await resolver.resolve("sip:h.example:5060")).toEqual([udp("192.0.2.62")]);
    expect((await rejection(resolver.resolve("sip:s.example;transport=udp"))).code).toBe("ENOTFOUND");
  });

  const bad = [
    "tel:+15551234",
    "http://example.com/",
    "sip:",
    "not a uri",
    "sip:bob@example.com;maddr=bad!host",
  ];
  for (const uri of bad) {
    it(`${JSON.stringify(uri)} → EBADURI`, async () => {
      const { resolver } = setup(new FakeDns());
      expect((await rejection(resolver.resolve(uri))).code).toBe("EBADURI");
      expect(resolver.resolveCached(uri)).toBeUndefined();
    });
  }
});

describe("nodeDns adapter", () => {
  const nxdomain = (what: string) =>
    Promise.reject(Object.assign(new Error(`${what} ENOTFOUND`), { code: "ENOTFOUND" }));
  const fake = {
    options: [] as unknown[],
    resolveNaptr: (name: string) =>
      name === "ex.com" ? Promise.resolve([naptr("SIP+D2U", "_sip._udp.ex.com")]) : nxdomain("queryNaptr"),
    resolveSrv: (name: string) =>
      name === "_sip._udp.ex.com"
        ? Promise.resolve([srv("h.ex.com", 5060)])
        : Promise.reject(Object.assign(new Error("queryS ENODATA"), { code: "ENODATA" })),
    resolve4(name: string, options: { ttl: true }) {
      this.options.push(options);
      return name === "h.ex.com" ? Promise.resolve([{ address: "192.0.2.70", ttl: 30 }]) : nxdomain("queryA");
    },
    resolve6(_name: string, _options: { ttl: true }) {
      return Promise.reject(Object.assign(new Error("queryAaaa ETIMEOUT"), { code: "ETIMEOUT" }));
    },
  };

  it("maps Node's methods, NXDOMAIN/NODATA to [], passes other errors", async () => {
    const dns = nodeDns(fake);
    expect(await dns.naptr("ex.com")).toEqual([naptr("SIP+D2U", "_sip._udp.ex.com")]);
    expect(await dns.naptr("nope.com")).toEqual([]);
    expect(await dns.srv("_sip._tcp.ex.com")).toEqual([]);
    expect(await dns.a("h.ex.com")).toEqual([{ address: "192.0.2.70", ttl: 30 }]);
    expect(fake.options).toEqual([{ ttl: true }]);
    await expect(dns.aaaa("h.ex.com")).rejects.toMatchObject({ code: "ETIMEOUT" });
  });

  it("drives a Resolver end to end, honouring the address TTL", async () => {
    const clock = new VirtualClock();
    const resolver = new Resolver({ dns: nodeDns(fake), clock, families: [4] });
    expect(await resolver.resolve("sip:ex.com")).toEqual([udp("192.0.2.70")]);
    expect(resolver.resolveCached("sip:ex.com")).toEqual([udp("192.0.2.70")]);
    clock.advance(30_000);
    expect(resolver.resolveCached("sip:ex.com")).toBeUndefined();
  });

  it("without an argument it builds a Node resolver (no query is made)", () => {
    const dns = nodeDns();
    expect(typeof dns.naptr).toBe("function");
  });
});
