/**
 * RFC 3263 next-hop resolution: from a SIP or SIPS URI to the ordered list of
 * (transport, address, port) destinations to try.
 *
 * Locating the server (RFC 3263 §4):
 *  - the host is the `maddr` parameter when present, else the URI host;
 *  - transport (§4.1): an explicit `transport=` wins; else an IP literal or an
 *    explicit port means UDP for sip, TLS for sips; else NAPTR on the host,
 *    filtered to the services we support (SIP+D2U, SIP+D2T, SIPS+D2T; only
 *    SIPS+D2T for a sips URI), ordered by order then preference, each leading
 *    to SRV on its replacement; no usable NAPTR → SRV on `_sip._udp`,
 *    `_sip._tcp`, `_sips._tcp` (those we support, in `transports` order; only
 *    `_sips._tcp` for sips); no SRV record at all → A/AAAA of the host with
 *    UDP (TLS for sips) on the default port;
 *  - port (§4.2): an IP literal or an explicit port needs no SRV: A/AAAA
 *    only (none for a literal); a transport given but no port → SRV for that
 *    transport only, then A/AAAA on the default port (5060, 5061 for TLS);
 *  - SRV ordering (RFC 2782): priority ascending, weighted random within a
 *    priority (re-drawn on every `resolve`, even from the cache, so weights
 *    spread load); each target's addresses follow in `families` order (IPv4
 *    then IPv6 by default, not interleaved).
 *
 * Every stage that yields no destination falls through to the next one
 * (a NAPTR lookup that fails is treated as "no NAPTR": it is the record type
 * most often mishandled by middleboxes; if nothing is found in the end the
 * error is EDNS, not ENOTFOUND). A/AAAA of the domain itself is only
 * used when the domain has no SRV record at all and no SRV query failed: SRV
 * records that exist but lead nowhere end the search, and so does an SRV
 * target of "." (RFC 2782: service decidedly not available).
 *
 * DNS answers are cached per (record type, name) on the injected clock:
 * positive answers for `cacheTtlMs` or the smallest record TTL when the
 * lookup exposes one, empty answers for `negativeTtlMs`, failed lookups for
 * `failureTtlMs`. Concurrent lookups of the same record share one query.
 * `markFailed` puts a destination last (not removed: when everything failed
 * something is still worth a try) until its mark expires (RFC 3263 §4.3).
 *
 * Failures surface as `ResolveError` only (never an untyped throw), and an
 * empty result is a failure.
 */

import { Resolver as NodeDnsResolver } from "node:dns/promises";
import { type Clock, RealClock } from "../clock.js";
import { isIPv4, isIPv6, parseUri, type SipUri, uriParam } from "../message/uri.js";
import { unbracket } from "../transport/address.js";
import type { Destination } from "../transport/types.js";

/** The transports the resolver can pick. */
export type ResolverTransport = "UDP" | "TCP" | "TLS";

export interface NaptrRecord {
  flags: string;
  service: string;
  regexp: string;
  replacement: string;
  order: number;
  preference: number;
  /** Seconds, when the lookup knows it. */
  ttl?: number;
}

export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
  /** Seconds, when the lookup knows it. */
  ttl?: number;
}

/** An address as text, or with its TTL in seconds (Node's `resolve4(name, { ttl: true })`). */
export type AddressRecord = string | { address: string; ttl?: number };

/**
 * What the resolver needs from DNS. Resolve to `[]` when the name does not
 * exist or has no record of that type; reject only when the lookup failed
 * (timeout, SERVFAIL, refused…). A rejection whose `code` is "ENOTFOUND" or
 * "ENODATA" (Node's names for NXDOMAIN and NODATA) also counts as `[]`.
 */
export interface DnsLookup {
  naptr(name: string): Promise<NaptrRecord[]>;
  srv(name: string): Promise<SrvRecord[]>;
  /** IPv4 addresses. */
  a(name: string): Promise<AddressRecord[]>;
  /** IPv6 addresses. */
  aaaa(name: string): Promise<AddressRecord[]>;
}

export interface ResolverOptions {
  /** Default: `nodeDns()`, created on first use (IP literals never need it). */
  dns?: DnsLookup;
  /** Default: the real clock. */
  clock?: Clock;
  /** Upper bound on how long a positive answer is cached (a shorter record TTL wins). Default 60 s. */
  cacheTtlMs?: number;
  /** How long an empty answer (NXDOMAIN / no record) is cached. Default 30 s. */
  negativeTtlMs?: number;
  /** How long a failed lookup (rejection) is remembered, to spare a failing server. Default 5 s; 0 = never. */
  failureTtlMs?: number;
  /** Default period of `markFailed`. Default 60 s. */
  blacklistMs?: number;
  /** The transports we can send on, in order of preference. Default UDP, TCP. */
  transports?: ReadonlyArray<ResolverTransport>;
  /** Address families to look up, in order. Default [4, 6]: IPv4 before IPv6. */
  families?: ReadonlyArray<4 | 6>;
  /** Uniform in [0, 1), for SRV weight selection. Default Math.random. */
  random?: () => number;
  /** Cached answers kept at most (the oldest go first). Default 10 000. */
  maxCacheEntries?: number;
}

export type ResolveErrorCode =
  /** Not a SIP/SIPS URI, or malformed (including a bad `maddr`). */
  | "EBADURI"
  /** The URI asks for a transport we do not support (`transport=sctp`, sips over UDP, TLS not enabled…). */
  | "ENOTRANSPORT"
  /** DNS answered, but with no usable destination (no such name, no records, SRV target "."). */
  | "ENOTFOUND"
  /** A lookup failed (rejected: timeout, SERVFAIL…) and nothing usable came out: temporary. */
  | "EDNS";

export class ResolveError extends Error {
  override readonly name = "ResolveError";
  readonly code: ResolveErrorCode;
  /** The URI being resolved, as given. */
  readonly uri: string;
  /** The host that was looked up (the maddr when present), when known. */
  readonly host: string | undefined;
  /** True for failures a retry may cure (EDNS). */
  readonly temporary: boolean;

  constructor(
    code: ResolveErrorCode,
    uri: string,
    host: string | undefined,
    detail: string,
    cause?: unknown,
  ) {
    super(`${code} ${uri}: ${detail}`, cause === undefined ? undefined : { cause });
    this.code = code;
    this.uri = uri;
    this.host = host;
    this.temporary = code === "EDNS";
  }
}

// ---------------------------------------------------------------- internals

type QueryType = "naptr" | "srv" | "a" | "aaaa";

interface Query {
  readonly type: QueryType;
  readonly name: string;
}

/** A lookup's outcome, records normalised. */
type Answer =
  | { readonly ok: true; readonly records: ReadonlyArray<unknown>; readonly ttlMs: number | undefined }
  | { readonly ok: false; readonly error: unknown };

/** A resolution plan: yields batches of queries (run in parallel), gets their answers, returns destinations. */
type Plan<T> = Generator<Query[], T, Answer[]>;

interface Target {
  readonly raw: string;
  readonly secure: boolean;
  /** Lower-cased, brackets and trailing dot removed. */
  readonly host: string;
  readonly ip: boolean;
  readonly port: number | undefined;
  readonly transport: ResolverTransport | undefined;
}

interface Ctx {
  readonly transports: ReadonlyArray<ResolverTransport>;
  readonly families: ReadonlyArray<4 | 6>;
  readonly random: () => number;
}

interface CacheEntry {
  readonly expires: number;
  readonly answer: Answer;
}

const NO_RECORDS = ["ENOTFOUND", "ENODATA"];

function errCode(err: unknown): string | undefined {
  if (err && typeof err === "object" && "code" in err && typeof err.code === "string") return err.code;
  return undefined;
}

function normName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith(".") ? n.slice(0, -1) : n;
}

function isIp(s: string): boolean {
  return isIPv4(s) || isIPv6(s);
}

/** A DNS name as it may appear in maddr: labels of letters, digits, '-' and '_'. */
function isDnsName(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  for (const label of s.split(".")) {
    if (label.length === 0 || label.length > 63) return false;
    for (let i = 0; i < label.length; i++) {
      const c = label.charCodeAt(i);
      const ok = (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 95;
      if (!ok) return false;
    }
  }
  return true;
}

function defaultPort(protocol: ResolverTransport): number {
  return protocol === "TLS" ? 5061 : 5060;
}

function destKey(d: Destination): string {
  return `${d.protocol} ${d.address} ${d.port}`;
}

function finite(n: unknown): n is number {
  return typeof n === "number" && Number.isFinite(n);
}

function ttlOf(rec: object): number | undefined {
  const ttl = (rec as { ttl?: unknown }).ttl;
  return finite(ttl) && ttl >= 0 ? ttl : undefined;
}

/** Normalise one lookup's records (malformed ones dropped); undefined when the answer is not an array. */
function normalise(
  type: QueryType,
  raw: unknown,
): { records: unknown[]; ttl: number | undefined } | undefined {
  if (!Array.isArray(raw)) return undefined;
  const records: unknown[] = [];
  let ttl: number | undefined;
  const seeTtl = (t: number | undefined) => {
    if (t !== undefined && (ttl === undefined || t < ttl)) ttl = t;
  };
  for (const r of raw as unknown[]) {
    if (type === "a" || type === "aaaa") {
      const address =
        typeof r === "string"
          ? r
          : r && typeof r === "object"
            ? (r as { address?: unknown }).address
            : undefined;
      if (typeof address !== "string") continue;
      if (type === "a" ? !isIPv4(address) : !isIPv6(address)) continue;
      if (typeof r === "object") seeTtl(ttlOf(r as object));
      records.push(address.toLowerCase());
    } else if (type === "srv") {
      if (!r || typeof r !== "object") continue;
      const s = r as Partial<Record<keyof SrvRecord, unknown>>;
      if (typeof s.name !== "string" || !finite(s.port) || !finite(s.priority) || !finite(s.weight)) continue;
      seeTtl(ttlOf(s));
      records.push({
        name: normName(s.name),
        port: s.port,
        priority: s.priority,
        weight: Math.max(0, s.weight),
      });
    } else {
      if (!r || typeof r !== "object") continue;
      const n = r as Partial<Record<keyof NaptrRecord, unknown>>;
      if (
        typeof n.flags !== "string" ||
        typeof n.service !== "string" ||
        typeof n.replacement !== "string" ||
        !finite(n.order) ||
        !finite(n.preference)
      )
        continue;
      seeTtl(ttlOf(n));
      records.push({
        flags: n.flags.toLowerCase(),
        service: n.service.toLowerCase(),
        regexp: typeof n.regexp === "string" ? n.regexp : "",
        replacement: normName(n.replacement),
        order: n.order,
        preference: n.preference,
      });
    }
  }
  return { records, ttl };
}

/**
 * RFC 2782 ordering: priority ascending; within a priority, repeatedly pick a
 * record at random with probability proportional to its weight (zero-weight
 * records first in the running sum, so they get a small chance too).
 */
export function orderSrv<T extends { priority: number; weight: number }>(
  records: ReadonlyArray<T>,
  random: () => number = Math.random,
): T[] {
  const byPriority = new Map<number, T[]>();
  for (const r of records) {
    const list = byPriority.get(r.priority);
    if (list) list.push(r);
    else byPriority.set(r.priority, [r]);
  }
  const out: T[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const group = byPriority.get(priority)!;
    const pool = [...group.filter((r) => r.weight === 0), ...group.filter((r) => r.weight > 0)];
    while (pool.length > 0) {
      let sum = 0;
      for (const r of pool) sum += r.weight;
      const pick = Math.min(sum, Math.floor(random() * (sum + 1)));
      let running = 0;
      let index = pool.length - 1;
      for (let i = 0; i < pool.length; i++) {
        running += pool[i]!.weight;
        if (running >= pick) {
          index = i;
          break;
        }
      }
      out.push(pool[index]!);
      pool.splice(index, 1);
    }
  }
  return out;
}

const NAPTR_SERVICES: Record<string, ResolverTransport> = {
  "sip+d2u": "UDP",
  "sip+d2t": "TCP",
  "sips+d2t": "TLS",
};

function srvName(secure: boolean, protocol: ResolverTransport, host: string): string {
  if (protocol === "TLS" || secure) return `_sips._tcp.${host}`;
  return protocol === "TCP" ? `_sip._tcp.${host}` : `_sip._udp.${host}`;
}

/** Addresses of several names, each in `families` order. Failures go to `failures` when a name got nothing else. */
function* addressesOf(
  names: ReadonlyArray<string>,
  ctx: Ctx,
  failures: unknown[],
): Plan<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const queries: Query[] = [];
  const lookedUp: string[] = [];
  for (const name of names) {
    if (out.has(name) || lookedUp.includes(name)) continue;
    if (isIp(name)) {
      out.set(name, [name]);
      continue;
    }
    lookedUp.push(name);
    for (const f of ctx.families) queries.push({ type: f === 4 ? "a" : "aaaa", name });
  }
  if (queries.length === 0) return out;
  const answers = yield queries;
  const perName = ctx.families.length;
  lookedUp.forEach((name, i) => {
    const addrs: string[] = [];
    let failure: unknown;
    let failed = false;
    for (let k = 0; k < perName; k++) {
      const ans = answers[i * perName + k]!;
      if (ans.ok) for (const a of ans.records as string[]) addrs.push(a);
      else if (!failed) {
        failed = true;
        failure = ans.error;
      }
    }
    if (addrs.length === 0 && failed) failures.push(failure);
    out.set(name, addrs);
  });
  return out;
}

interface SrvStep {
  dests: Destination[];
  /** Some SRV query returned records (usable or "."). */
  found: boolean;
}

/** SRV queries (in parallel), RFC 2782 order within each, then the targets' addresses. */
function* viaSrv(
  lookups: ReadonlyArray<{ protocol: ResolverTransport; name: string }>,
  ctx: Ctx,
  failures: unknown[],
): Plan<SrvStep> {
  const answers = yield lookups.map((l) => ({ type: "srv" as const, name: l.name }));
  let found = false;
  const ordered: Array<{ protocol: ResolverTransport; srv: SrvRecord[] }> = [];
  lookups.forEach((l, i) => {
    const ans = answers[i]!;
    if (!ans.ok) {
      failures.push(ans.error);
      return;
    }
    const records = ans.records as SrvRecord[];
    if (records.length > 0) found = true;
    const usable = records.filter((r) => r.name !== "" && r.port > 0 && r.port <= 65535);
    ordered.push({ protocol: l.protocol, srv: orderSrv(usable, ctx.random) });
  });
  const targets: string[] = [];
  for (const o of ordered) for (const r of o.srv) targets.push(r.name);
  const addrs = yield* addressesOf(targets, ctx, failures);
  const dests: Destination[] = [];
  for (const o of ordered)
    for (const r of o.srv)
      for (const address of addrs.get(r.name) ?? [])
        dests.push({ protocol: o.protocol, address, port: r.port });
  return { dests, found };
}

function* plan(t: Target, ctx: Ctx): Plan<Destination[]> {
  const failures: unknown[] = [];
  const done = (dests: Destination[]): Destination[] => {
    if (dests.length > 0) return dests;
    if (failures.length > 0) throw new ResolveError("EDNS", t.raw, t.host, "DNS lookup failed", failures[0]);
    throw new ResolveError("ENOTFOUND", t.raw, t.host, "no usable DNS records");
  };
  const defaultTransport = (): ResolverTransport => {
    if (t.secure) return "TLS"; // checked supported in target()
    if (ctx.transports.includes("UDP")) return "UDP";
    if (ctx.transports.includes("TCP")) return "TCP";
    throw new ResolveError("ENOTRANSPORT", t.raw, t.host, "neither UDP nor TCP is enabled");
  };
  const onAddresses = function* (protocol: ResolverTransport, port: number): Plan<Destination[]> {
    const addrs = yield* addressesOf([t.host], ctx, failures);
    return (addrs.get(t.host) ?? []).map((address) => ({ protocol, address, port }));
  };

  if (t.ip) {
    const protocol = t.transport ?? defaultTransport();
    return [{ protocol, address: t.host, port: t.port ?? defaultPort(protocol) }];
  }
  if (t.port !== undefined) return done(yield* onAddresses(t.transport ?? defaultTransport(), t.port));

  if (t.transport !== undefined) {
    const step = yield* viaSrv(
      [{ protocol: t.transport, name: srvName(t.secure, t.transport, t.host) }],
      ctx,
      failures,
    );
    if (step.dests.length > 0 || step.found || failures.length > 0) return done(step.dests);
    return done(yield* onAddresses(t.transport, defaultPort(t.transport)));
  }

  // NAPTR (§4.1); a failed NAPTR lookup counts as "no NAPTR" (but makes a final failure EDNS)
  let found = false;
  const [naptrAnswer] = yield [{ type: "naptr", name: t.host }];
  if (naptrAnswer && !naptrAnswer.ok) failures.push(naptrAnswer.error);
  const srvBase = failures.length;
  if (naptrAnswer?.ok) {
    const usable = (naptrAnswer.records as NaptrRecord[])
      .filter((r) => {
        const protocol = NAPTR_SERVICES[r.service];
        if (!protocol || !ctx.transports.includes(protocol)) return false;
        if (t.secure && protocol !== "TLS") return false;
        return r.flags === "s" && r.regexp === "" && r.replacement !== "";
      })
      .sort((a, b) => a.order - b.order || a.preference - b.preference);
    if (usable.length > 0) {
      const step = yield* viaSrv(
        usable.map((r) => ({ protocol: NAPTR_SERVICES[r.service]!, name: r.replacement })),
        ctx,
        failures,
      );
      if (step.dests.length > 0) return step.dests;
      found = step.found;
    }
  }

  // SRV per supported transport
  const transports: ResolverTransport[] = t.secure ? ["TLS"] : [...ctx.transports];
  const step = yield* viaSrv(
    transports.map((protocol) => ({ protocol, name: srvName(t.secure, protocol, t.host) })),
    ctx,
    failures,
  );
  if (step.dests.length > 0) return step.dests;
  if (step.found || found || failures.length > srvBase) return done([]);

  // no SRV at all: A/AAAA of the domain, default transport and port
  const protocol = defaultTransport();
  return done(yield* onAddresses(protocol, defaultPort(protocol)));
}

// ---------------------------------------------------------------- Resolver

export class Resolver {
  private dnsLookup: DnsLookup | undefined;
  private readonly clock: Clock;
  private readonly cacheTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly failureTtlMs: number;
  private readonly blacklistMs: number;
  private readonly maxCacheEntries: number;
  private readonly ctx: Ctx;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly pending = new Map<string, Promise<Answer>>();
  private readonly failed = new Map<string, number>();

  constructor(opts: ResolverOptions = {}) {
    this.dnsLookup = opts.dns;
    this.clock = opts.clock ?? new RealClock();
    this.cacheTtlMs = Math.max(0, opts.cacheTtlMs ?? 60_000);
    this.negativeTtlMs = Math.max(0, opts.negativeTtlMs ?? 30_000);
    this.failureTtlMs = Math.max(0, opts.failureTtlMs ?? 5_000);
    this.blacklistMs = Math.max(0, opts.blacklistMs ?? 60_000);
    this.maxCacheEntries = Math.max(1, opts.maxCacheEntries ?? 10_000);
    const transports = [...new Set<ResolverTransport>(opts.transports ?? ["UDP", "TCP"])];
    const families = [...new Set<4 | 6>(opts.families ?? [4, 6])];
    if (families.length === 0) throw new TypeError("Resolver: families must not be empty");
    this.ctx = { transports, families, random: opts.random ?? Math.random };
  }

  /** All destinations for a SIP/SIPS URI, in the order RFC 3263 §4 says to try them (failed ones last). */
  async resolve(uri: string | SipUri): Promise<Destination[]> {
    const raw = typeof uri === "string" ? uri : uri.raw;
    try {
      const target = this.target(uri);
      const p = plan(target, this.ctx);
      let step = p.next();
      while (!step.done) {
        const answers = await Promise.all(step.value.map((q) => this.query(q)));
        step = p.next(answers);
      }
      return this.arrange(step.value, target);
    } catch (err) {
      if (err instanceof ResolveError) throw err;
      throw new ResolveError("EDNS", raw, undefined, "resolution failed", err);
    }
  }

  /**
   * Cached-only and synchronous: the destinations when they are known without
   * asking DNS (an IP literal, or every answer needed is fresh in the cache),
   * else undefined. Never throws: a bad URI or a cached failure is undefined
   * too (`resolve` gives the error).
   */
  resolveCached(uri: string | SipUri): Destination[] | undefined {
    try {
      const target = this.target(uri);
      const p = plan(target, this.ctx);
      let step = p.next();
      while (!step.done) {
        const answers: Answer[] = [];
        for (const q of step.value) {
          const hit = this.fresh(this.key(q));
          if (!hit) {
            p.return([]);
            return undefined;
          }
          answers.push(hit);
        }
        step = p.next(answers);
      }
      return this.arrange(step.value, target);
    } catch {
      return undefined;
    }
  }

  /**
   * Mark a destination failed (transport error, 503, timeout): it goes last
   * in results for `forMs` (default `blacklistMs`; a 503's Retry-After is a
   * good value). `forMs <= 0` clears the mark. The key is protocol, address
   * and port.
   */
  markFailed(dest: Destination, forMs: number = this.blacklistMs): void {
    const key = destKey(dest);
    if (forMs <= 0) this.failed.delete(key);
    else this.failed.set(key, this.clock.now() + forMs);
  }

  /** True while a `markFailed` mark on this destination lasts. */
  isFailed(dest: Destination): boolean {
    const key = destKey(dest);
    const until = this.failed.get(key);
    if (until === undefined) return false;
    if (until > this.clock.now()) return true;
    this.failed.delete(key);
    return false;
  }

  /** Forget every cached DNS answer (not the failure marks). */
  clearCache(): void {
    this.cache.clear();
  }

  // -------------------------------------------------------------- private

  private get dns(): DnsLookup {
    this.dnsLookup ??= nodeDns();
    return this.dnsLookup;
  }

  private target(uri: string | SipUri): Target {
    const raw = typeof uri === "string" ? uri : uri.raw;
    let u: ReturnType<typeof parseUri>;
    try {
      u = typeof uri === "string" ? parseUri(uri) : uri;
    } catch (err) {
      throw new ResolveError("EBADURI", raw, undefined, "malformed URI", err);
    }
    if (u.type !== "sip") throw new ResolveError("EBADURI", raw, undefined, "not a SIP or SIPS URI");
    const secure = u.scheme === "sips";
    let host = normName(unbracket(u.host));
    const maddr = uriParam(u, "maddr");
    if (typeof maddr === "string") {
      const m = normName(unbracket(maddr));
      if (!isIp(m) && !isDnsName(m)) throw new ResolveError("EBADURI", raw, m, "bad maddr");
      host = m;
    }
    const ip = isIp(host);
    let transport: ResolverTransport | undefined;
    const tp = uriParam(u, "transport");
    if (typeof tp === "string") {
      const name = tp.toLowerCase();
      if (name === "udp") {
        if (secure) throw new ResolveError("ENOTRANSPORT", raw, host, "a sips URI cannot use UDP");
        transport = "UDP";
      } else if (name === "tcp") transport = secure ? "TLS" : "TCP";
      else if (name === "tls") transport = "TLS";
      else throw new ResolveError("ENOTRANSPORT", raw, host, `transport=${tp} is not supported`);
    }
    const needed = transport ?? (secure ? "TLS" : undefined);
    if (needed && !this.ctx.transports.includes(needed))
      throw new ResolveError("ENOTRANSPORT", raw, host, `${needed} is not enabled`);
    return { raw, secure, host, ip, port: u.port, transport };
  }

  /**
   * Stable: destinations not marked failed first, duplicates removed. A TLS
   * destination for a host name carries that name (RFC 5922 §4: the domain of the URI, not the SRV target, is what
   * the peer's certificate must show; it is also the SNI).
   */
  private arrange(found: Destination[], target: Target): Destination[] {
    const seen = new Set<string>();
    const good: Destination[] = [];
    const bad: Destination[] = [];
    const named = !target.ip;
    for (const f of found) {
      const d = named && f.protocol === "TLS" ? { ...f, serverName: target.host } : f;
      const key = destKey(d);
      if (seen.has(key)) continue;
      seen.add(key);
      (this.isFailed(d) ? bad : good).push(d);
    }
    return good.concat(bad);
  }

  private key(q: Query): string {
    return `${q.type} ${q.name}`;
  }

  private fresh(key: string): Answer | undefined {
    const hit = this.cache.get(key);
    if (!hit) return undefined;
    if (hit.expires > this.clock.now()) return hit.answer;
    this.cache.delete(key);
    return undefined;
  }

  /** One answer, from the cache, a query in flight, or DNS. Never rejects. */
  private query(q: Query): Promise<Answer> {
    const key = this.key(q);
    const hit = this.fresh(key);
    if (hit) return Promise.resolve(hit);
    const inFlight = this.pending.get(key);
    if (inFlight) return inFlight;
    const p = this.lookup(q).then((answer) => {
      this.pending.delete(key);
      this.store(key, answer);
      return answer;
    });
    this.pending.set(key, p);
    return p;
  }

  private async lookup(q: Query): Promise<Answer> {
    try {
      const raw: unknown = await this.dns[q.type](q.name);
      const n = normalise(q.type, raw);
      if (!n) return { ok: false, error: new TypeError(`DNS ${q.type} ${q.name}: the answer is not a list`) };
      return { ok: true, records: n.records, ttlMs: n.ttl === undefined ? undefined : n.ttl * 1000 };
    } catch (error) {
      if (NO_RECORDS.includes(errCode(error) ?? "")) return { ok: true, records: [], ttlMs: undefined };
      return { ok: false, error };
    }
  }

  private store(key: string, answer: Answer): void {
    let ttl: number;
    if (!answer.ok) ttl = this.failureTtlMs;
    else if (answer.records.length === 0) ttl = this.negativeTtlMs;
    else ttl = Math.min(this.cacheTtlMs, answer.ttlMs ?? Number.POSITIVE_INFINITY);
    this.cache.delete(key);
    if (ttl <= 0) return;
    this.cache.set(key, { expires: this.clock.now() + ttl, answer });
    if (this.cache.size > this.maxCacheEntries) {
      const now = this.clock.now();
      for (const [k, e] of this.cache) if (e.expires <= now) this.cache.delete(k);
      while (this.cache.size > this.maxCacheEntries) this.cache.delete(this.cache.keys().next().value!);
    }
  }
}

// ---------------------------------------------------------------- Node adapter

/** The part of `dns.promises.Resolver` that `nodeDns` uses (a test may pass a fake). */
export interface NodeDnsResolverLike {
  resolveNaptr(hostname: string): Promise<NaptrRecord[]>;
  resolveSrv(hostname: string): Promise<SrvRecord[]>;
  resolve4(
    hostname: string,
    options: { ttl: true },
  ): Promise<Array<string | { address: string; ttl: number }>>;
  resolve6(
    hostname: string,
    options: { ttl: true },
  ): Promise<Array<string | { address: string; ttl: number }>>;
}

/**
 * A `DnsLookup` over Node's c-ares resolver. NXDOMAIN and NODATA
 * ("ENOTFOUND", "ENODATA") become `[]`; other errors reject. Addresses carry
 * their TTL. Without an argument a resolver with a 2 s timeout and 2 tries
 * is made (Node's default, 4 tries, would outlast much of Timer B).
 */
export function nodeDns(resolver?: NodeDnsResolverLike): DnsLookup {
  const r: NodeDnsResolverLike = resolver ?? new NodeDnsResolver({ timeout: 2_000, tries: 2 });
  const empty = (err: unknown): never[] => {
    if (NO_RECORDS.includes(errCode(err) ?? "")) return [];
    throw err;
  };
  return {
    naptr: (name) => r.resolveNaptr(name).catch(empty),
    srv: (name) => r.resolveSrv(name).catch(empty),
    a: (name) => r.resolve4(name, { ttl: true }).catch(empty),
    aaaa: (name) => r.resolve6(name, { ttl: true }).catch(empty),
  };
}
