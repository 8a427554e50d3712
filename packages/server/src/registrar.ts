/**
 * An in-memory registrar (RFC 3261 §10.3): address-of-record → contacts with
 * an expiry. Expired bindings are dropped lazily when an AOR is read, and by
 * one periodic sweep for AORs nobody reads — never one timer per binding.
 *
 * Flows (RFC 5626): a binding made over a stream transport (TCP, TLS, WS, WSS)
 * keeps the connection its REGISTER came over (`flow`), and requests to it go
 * over that connection. A REGISTER that asks for outbound (§6: a Contact with
 * `reg-id` and `+sip.instance`, `Supported: outbound`, and we are its first
 * hop) makes a binding keyed by (AOR, instance, reg-id) — a new flow of the
 * same instance and reg-id replaces the old — and is answered `Require:
 * outbound`. When a connection closes (`flowClosed`) the bindings that need it
 * go: every outbound one on it, and an ordinary one whose Contact host is not
 * an IP literal (`*.invalid`, any host name: nothing else reaches it); an
 * ordinary one with an IP-literal Contact stays and is reached at its Contact
 * from then on (as Kamailio keeps it). What went is remembered until it would
 * have expired (`lost`), so that a request to that AOR is answered 430 Flow
 * Failed (outbound) or 480 Temporarily Unavailable rather than 404.
 */
import { parseNameAddr, parseUri, type SipRequest, type Source, type Uri } from "@siptm/core";
import { type Flow, flowKey, flowOf } from "./flow.js";

export interface Binding {
  /** Canonical address-of-record ("sip:alice@example.com"). */
  readonly aor: string;
  /** The Contact URI as written by the UA (the relay target). */
  readonly uri: string;
  /** Contact header parameters other than expires and q, as written (";+sip.instance=..."). */
  readonly params: string;
  /** q-value 0..1 (default 1). */
  readonly q: number;
  /** Absolute expiry on the registrar's clock, ms. */
  readonly expiresAt: number;
  readonly callId: string;
  readonly cseq: number;
  /** Where the REGISTER came from (to reach a UA whose Contact host is not an IP literal). */
  readonly source: Source | undefined;
  /**
   * The connection the REGISTER came over (stream transports): requests to the binding go over
   * it, whatever the Contact's host. Undefined over UDP, and once the connection closed for a
   * binding that stays (an IP-literal Contact).
   */
  readonly flow?: Flow | undefined;
  /** RFC 5626 outbound (§6): the Contact's +sip.instance (as written, quotes included) and reg-id. */
  readonly instance?: string | undefined;
  readonly regId?: number | undefined;
  /** The binding's key among its AOR's: the Contact URI compared (RFC 3261 §10.3), or instance and reg-id (RFC 5626 §6). */
  readonly key: string;
}

/** A binding dropped because its flow closed, remembered until it would have expired (see `Registrar.lost`). */
export interface LostBinding {
  /** It was an outbound binding (RFC 5626): its flow failed. */
  readonly outbound: boolean;
  readonly key: string;
  readonly expiresAt: number;
}

/** Why an AOR with no binding has none: a flow that failed (outbound, 430) or closed (480). */
export type LostKind = "outbound" | "flow";

/**
 * One AOR's live bindings as plain data for another thread (structured-clonable). Expiries are
 * relative: each thread has its own monotonic clock.
 */
export interface AorCopy {
  readonly aor: string;
  readonly bindings: ReadonlyArray<Omit<Binding, "expiresAt"> & { readonly expiresInMs: number }>;
  /** Bindings lost with their flows (absent: none). */
  readonly lost?: ReadonlyArray<Omit<LostBinding, "expiresAt"> & { readonly expiresInMs: number }>;
}

export interface RegistrarOptions {
  /** Milliseconds, monotonic. Default Date.now. */
  now?: () => number;
  /** Expiry when neither the Contact nor the request says (RFC 3261 §10.2.1.1: 3600 s). */
  defaultExpires?: number;
  /** Shorter non-zero expiries get 423 Interval Too Brief with Min-Expires. Default 60 s; 0 = no minimum. */
  minExpires?: number;
  /** Longer expiries are cut down to this. Default 86400 s. */
  maxExpires?: number;
  /** Most contacts per AOR; beyond it 503. Default 32. */
  maxContacts?: number;
  /** Period of the sweep of expired bindings. Default 30 s. */
  sweepIntervalMs?: number;
}

export interface RegisterOutcome {
  readonly status: number;
  readonly reason?: string;
  /** Response header fields: the Contact of every current binding with its expires (200), Min-Expires (423). */
  readonly headers: Array<[string, string]>;
  /** The AOR the request was for (when its To parsed). */
  readonly aor?: string;
}

const CONTACT_EXPIRES_RE = /^\d{1,10}$/;
/** RFC 5626 §4.2: reg-id is 1 to 2^31 - 1. */
const REG_ID_RE = /^[1-9]\d{0,9}$/;
const MAX_REG_ID = 2 ** 31 - 1;
const IP_HOST = /^(\[[0-9a-fA-F:.]+\]|\d{1,3}(\.\d{1,3}){3})$/;

/** The Contact host of a binding is an IP literal: something other than its flow can reach it. */
export function hasIpContact(uri: string): boolean {
  try {
    const u = parseUri(uri);
    return u.type === "sip" && IP_HOST.test(u.host);
  } catch {
    return false;
  }
}

/** An option tag in the request's Supported header fields (RFC 3261 §20.37; compact form k). */
function supports(req: SipRequest, tag: string): boolean {
  for (const v of req.headerValues("supported"))
    for (const t of v.split(",")) if (t.trim().toLowerCase() === tag) return true;
  return false;
}

/** RFC 3261 §10.3 step 5: the canonical AOR of a To URI / Request-URI: scheme:user@host, no port or parameters. */
export function canonicalAor(uri: Uri | string): string {
  const u = typeof uri === "string" ? parseUri(uri) : uri;
  if (u.type === "sip") return `sip:${u.user !== undefined ? `${u.user}@` : ""}${u.host.toLowerCase()}`;
  if (u.type === "tel") return `tel:${u.number.replace(/[-.()]/g, "")}`;
  return u.raw;
}

/** A comparison key for Contact URIs (RFC 3261 §19.1.4, simplified): case-insensitive scheme, host and parameter names. */
function contactKey(u: Uri): string {
  if (u.type !== "sip") return u.raw.toLowerCase();
  const params = u.params
    .map(([n, v]) => (v === null ? n : `${n}=${v.toLowerCase()}`))
    .sort()
    .join(";");
  return `${u.scheme}:${u.rawUser !== undefined ? `${u.rawUser}@` : ""}${u.host.toLowerCase()}:${u.port ?? ""};${params}`;
}

interface Planned {
  readonly key: string;
  readonly uri: string;
  readonly params: string;
  readonly q: number;
  /** Seconds. */
  readonly expires: number;
  readonly instance: string | undefined;
  readonly regId: number | undefined;
}

export class Registrar {
  private readonly aors = new Map<string, Map<string, Binding>>();
  /** AORs with bindings lost to a closed flow, not expired yet (`lost`). */
  private readonly lostByAor = new Map<string, Map<string, LostBinding>>();
  /**
   * Flow key → the AORs that have (or had: cleaned at the flow's close) a binding on it, so that
   * a close touches only those.
   */
  private readonly byFlow = new Map<string, Set<string>>();
  private readonly flowWatchers = new Set<(flow: Flow) => void>();
  private readonly now: () => number;
  readonly defaultExpires: number;
  readonly minExpires: number;
  readonly maxExpires: number;
  readonly maxContacts: number;
  private readonly sweepIntervalMs: number;
  private sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(opts: RegistrarOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.defaultExpires = opts.defaultExpires ?? 3600;
    this.minExpires = opts.minExpires ?? 60;
    this.maxExpires = opts.maxExpires ?? 86_400;
    this.maxContacts = opts.maxContacts ?? 32;
    this.sweepIntervalMs = opts.sweepIntervalMs ?? 30_000;
  }

  /** Start the periodic sweep (one interval for the whole registrar; it does not keep the process alive). */
  start(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => this.sweep(), this.sweepIntervalMs);
    this.sweeper.unref();
  }
  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Number of AORs with at least one binding (expired ones may still count until read or swept). */
  get size(): number {
    return this.aors.size;
  }

  /**
   * Process a REGISTER (RFC 3261 §10.3 steps 5–8): add, refresh or remove
   * bindings, all or nothing, and say what to answer. Authentication and the
   * domain check (steps 1–4) are the route's business. `source`: where the
   * REGISTER came from (a stream transport's connection becomes the bindings' flow).
   */
  register(req: SipRequest, source?: Source): RegisterOutcome {
    let aor: string;
    try {
      aor = canonicalAor(parseNameAddr(req.header("to") ?? "").uri);
    } catch {
      return { status: 400, reason: "Bad To Header", headers: [] };
    }
    const contacts = req.headerValues("contact");
    const expiresHeader = req.header("expires");
    let requestExpires: number | undefined;
    if (expiresHeader !== undefined) {
      if (!CONTACT_EXPIRES_RE.test(expiresHeader.trim()))
        return { status: 400, reason: "Bad Expires Header", headers: [], aor };
      requestExpires = Number(expiresHeader.trim());
    }
    const callId = req.callId;
    const cseq = req.cseq.seq;
    const now = this.now();
    const current = this.live(aor, now);

    // Step 6: "Contact: *" removes every binding; only with Expires: 0 and alone.
    if (contacts.some((c) => c.trim() === "*")) {
      if (contacts.length !== 1 || requestExpires !== 0)
        return { status: 400, reason: "Invalid Wildcard Contact", headers: [], aor };
      if (current) {
        for (const b of current.values())
          if (b.callId === callId && cseq <= b.cseq)
            return { status: 500, reason: "Out Of Order Request", headers: [], aor };
        this.aors.delete(aor);
      }
      // The UA left: a call to it is a 404 again, not a failed flow.
      this.lostByAor.delete(aor);
      return { status: 200, headers: [], aor };
    }

    // RFC 5626 §6: outbound applies to a Contact with reg-id and +sip.instance in a REGISTER that
    // supports outbound, when we are its first hop (one Via: we have no Path support, RFC 3327,
    // so a REGISTER through another proxy cannot use it). Without Supported: outbound the reg-id
    // is ignored and the binding is an ordinary one.
    const askedOutbound = supports(req, "outbound");
    const firstHop = req.headerValues("via").length === 1;

    // Step 7: validate every contact before touching anything.
    const planned: Planned[] = [];
    let outbound = false;
    for (const value of contacts) {
      let na: ReturnType<typeof parseNameAddr>;
      try {
        na = parseNameAddr(value);
      } catch {
        return { status: 400, reason: "Bad Contact Header", headers: [], aor };
      }
      // A binding is a target the proxy sends SIP requests to (§10.3 step 7, §16.5): an http: or
      // mailto: Contact cannot be one. 416 names the Request-URI (§21.4.14), so this is a 400.
      if (na.uri.type !== "sip")
        return { status: 400, reason: "Unsupported Contact URI Scheme", headers: [], aor };
      let expires = requestExpires ?? this.defaultExpires;
      let q = 1;
      let params = "";
      let instance: string | undefined;
      let regIdText: string | null | undefined;
      for (const [name, v] of na.params) {
        if (name === "expires") {
          // §10.2.1.1: a value not understood is taken as the default.
          expires = v !== null && CONTACT_EXPIRES_RE.test(v) ? Number(v) : this.defaultExpires;
        } else if (name === "q") {
          const n = v === null ? Number.NaN : Number(v);
          if (!(n >= 0 && n <= 1)) return { status: 400, reason: "Bad q Value", headers: [], aor };
          q = n;
        } else {
          if (name === "+sip.instance" && v !== null) instance = v;
          else if (name === "reg-id") regIdText = v;
          params += v === null ? `;${name}` : `;${name}=${v}`;
        }
      }
      let regId: number | undefined;
      if (askedOutbound && regIdText !== undefined && instance !== undefined) {
        // RFC 5626 §4.2: reg-id is a positive integer below 2^31.
        if (regIdText === null || !REG_ID_RE.test(regIdText) || Number(regIdText) > MAX_REG_ID)
          return { status: 400, reason: "Bad reg-id", headers: [], aor };
        // §6: no Path to carry the flow from the first hop (see above).
        if (!firstHop) return { status: 439, headers: [], aor };
        regId = Number(regIdText);
        outbound = true;
      }
      if (expires > 0 && expires < this.minExpires)
        return { status: 423, headers: [["Min-Expires", String(this.minExpires)]], aor };
      if (expires > this.maxExpires) expires = this.maxExpires;
      planned.push({
        key: regId !== undefined ? `ob:${instance}:${regId}` : contactKey(na.uri),
        uri: na.uri.raw,
        params,
        q,
        expires,
        instance: regId !== undefined ? instance : undefined,
        regId,
      });
    }
    // RFC 5626 §4.2.1: a UA registers each flow by a REGISTER of its own, with one Contact.
    if (outbound && planned.length > 1)
      return { status: 400, reason: "Multiple Contacts With reg-id", headers: [], aor };
    for (const p of planned) {
      const old = current?.get(p.key);
      if (old && old.callId === callId && cseq <= old.cseq)
        return { status: 500, reason: "Out Of Order Request", headers: [], aor };
    }
    if (planned.length > 0) {
      const flow = flowOf(source);
      const next = new Map(current ?? []);
      for (const p of planned) {
        if (p.expires === 0) next.delete(p.key);
        else
          next.set(p.key, {
            aor,
            uri: p.uri,
            params: p.params,
            q: p.q,
            expiresAt: now + p.expires * 1000,
            callId,
            cseq,
            source,
            flow,
            instance: p.instance,
            regId: p.regId,
            key: p.key,
          });
      }
      if (next.size > this.maxContacts) return { status: 503, reason: "Too Many Contacts", headers: [], aor };
      if (next.size === 0) this.aors.delete(aor);
      else this.aors.set(aor, next);
      if (flow && planned.some((p) => p.expires > 0)) this.indexFlow(flow, aor);
      // A binding registered (or removed) again is not lost any more.
      const lost = this.lostByAor.get(aor);
      if (lost) {
        for (const p of planned) lost.delete(p.key);
        if (lost.size === 0) this.lostByAor.delete(aor);
      }
    }
    // Step 8: 200 with every current binding; RFC 5626 §6: Require: outbound when it was applied.
    const headers = this.contactHeaders(aor, now);
    if (outbound) headers.push(["Require", "outbound"]);
    return { status: 200, headers, aor };
  }

  /**
   * A connection closed: drop the bindings that lived on it (RFC 5626 §5.3, §6) — every outbound
   * one, and an ordinary one whose Contact host is not an IP literal (nothing but the flow
   * reaches it); an ordinary one with an IP-literal Contact stays, without its flow. Those dropped
   * are remembered (`lost`) until they would have expired. The watchers (`watchFlows`) are told.
   * Returns the AORs that changed.
   */
  flowClosed(closed: Source | Flow): string[] {
    const flow = flowOf(closed);
    if (!flow) return [];
    const key = flowKey(flow);
    const changed: string[] = [];
    const aors = this.byFlow.get(key);
    this.byFlow.delete(key);
    if (aors) {
      const now = this.now();
      for (const aor of aors) {
        const bindings = this.live(aor, now);
        if (!bindings) continue;
        let touched = false;
        for (const [k, b] of bindings) {
          if (!b.flow || flowKey(b.flow) !== key) continue;
          touched = true;
          if (b.regId === undefined && hasIpContact(b.uri)) {
            bindings.set(k, { ...b, flow: undefined });
            continue;
          }
          bindings.delete(k);
          let lost = this.lostByAor.get(aor);
          if (!lost) {
            lost = new Map();
            this.lostByAor.set(aor, lost);
          }
          lost.delete(k);
          lost.set(k, { outbound: b.regId !== undefined, key: k, expiresAt: b.expiresAt });
          // As many as an AOR may have bindings: the oldest goes first (a Map keeps insertion order).
          if (lost.size > this.maxContacts) lost.delete(lost.keys().next().value as string);
        }
        if (bindings.size === 0) this.aors.delete(aor);
        if (touched) changed.push(aor);
      }
    }
    for (const w of this.flowWatchers) w(flow);
    return changed;
  }

  /** Be told of every flow that closes (after its bindings went). Returns the function that stops it. */
  watchFlows(fn: (flow: Flow) => void): () => void {
    this.flowWatchers.add(fn);
    return () => this.flowWatchers.delete(fn);
  }

  /**
   * The AOR has no live binding but had one that went with its flow, not expired yet: "outbound"
   * when one of those was an outbound binding (RFC 5626: the flow failed, 430), else "flow";
   * undefined otherwise (nobody registered: 404).
   */
  lost(uriOrAor: string): LostKind | undefined {
    let aor: string;
    try {
      aor = canonicalAor(uriOrAor);
    } catch {
      return undefined;
    }
    const now = this.now();
    if (this.live(aor, now)) return undefined;
    const lost = this.liveLost(aor, now);
    if (!lost) return undefined;
    for (const l of lost.values()) if (l.outbound) return "outbound";
    return "flow";
  }

  /** The live bindings of the AOR of this URI (or canonical AOR), highest q first. */
  lookup(uriOrAor: string): Binding[] {
    let aor: string;
    try {
      aor = canonicalAor(uriOrAor);
    } catch {
      return [];
    }
    const live = this.live(aor, this.now());
    if (!live) return [];
    return [...live.values()].sort((a, b) => b.q - a.q);
  }

  /** Every AOR with its live bindings (for ul.dump). */
  dump(): Array<{ aor: string; bindings: Binding[] }> {
    const now = this.now();
    const out: Array<{ aor: string; bindings: Binding[] }> = [];
    for (const aor of [...this.aors.keys()]) {
      const live = this.live(aor, now);
      if (live) out.push({ aor, bindings: [...live.values()] });
    }
    return out;
  }

  /**
   * One page of `dump()`: at most `limit` AORs with live bindings that sort after `after` (none: from
   * the first), in AOR order, and `next`, the `after` of the page that follows (undefined: nothing
   * after). Nothing is kept between pages: a page is one scan of the AORs and the bindings of at
   * most `limit` of them.
   */
  dumpPage(
    after: string | undefined,
    limit: number,
  ): { aors: Array<{ aor: string; bindings: Binding[] }>; next: string | undefined } {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`page limit ${limit} is not a whole number ≥ 1`);
    const now = this.now();
    let picked: string[] = [];
    // Once `limit` are picked, AORs after the last of them cannot be on this page.
    let bound: string | undefined;
    let more = false;
    for (const aor of this.aors.keys()) {
      if (after !== undefined && aor <= after) continue;
      if (bound !== undefined && aor > bound) {
        more = true;
        continue;
      }
      if (!this.live(aor, now)) continue;
      picked.push(aor);
      if (picked.length >= 2 * limit) {
        picked.sort();
        picked = picked.slice(0, limit);
        bound = picked[limit - 1];
        more = true;
      }
    }
    picked.sort();
    if (picked.length > limit) {
      picked = picked.slice(0, limit);
      more = true;
    }
    const aors = picked.map((aor) => ({ aor, bindings: [...(this.aors.get(aor)?.values() ?? [])] }));
    return { aors, next: more && aors.length > 0 ? aors[aors.length - 1]!.aor : undefined };
  }

  /** The AOR's live bindings (none: it has none any more) as a copy for another thread's `replace`. */
  copyOf(aor: string): AorCopy {
    const now = this.now();
    const live = this.live(aor, now);
    const lost = this.liveLost(aor, now);
    return {
      aor,
      bindings: [...(live?.values() ?? [])].map(({ expiresAt, ...b }) => ({
        ...b,
        expiresInMs: expiresAt - now,
      })),
      ...(lost
        ? { lost: [...lost.values()].map(({ expiresAt, ...l }) => ({ ...l, expiresInMs: expiresAt - now })) }
        : {}),
    };
  }

  /** Every AOR with live or lost bindings as copies (a replica that starts gets them all). */
  copyAll(): AorCopy[] {
    const aors = new Set([...this.aors.keys(), ...this.lostByAor.keys()]);
    return [...aors].map((aor) => this.copyOf(aor)).filter((c) => c.bindings.length > 0 || c.lost);
  }

  /**
   * Make the AOR's bindings those of `copy` (made by `copyOf` in another thread): what a read-only
   * replica does with each update. Replaces every binding of the AOR; none removes it.
   */
  replace(copy: AorCopy): void {
    const now = this.now();
    const next = new Map<string, Binding>();
    for (const { expiresInMs, ...b } of copy.bindings)
      if (expiresInMs > 0) {
        next.set(b.key, { ...b, expiresAt: now + expiresInMs });
        if (b.flow) this.indexFlow(b.flow, copy.aor);
      }
    if (next.size === 0) this.aors.delete(copy.aor);
    else this.aors.set(copy.aor, next);
    const lost = new Map<string, LostBinding>();
    for (const { expiresInMs, ...l } of copy.lost ?? [])
      if (expiresInMs > 0) lost.set(l.key, { ...l, expiresAt: now + expiresInMs });
    if (lost.size === 0) this.lostByAor.delete(copy.aor);
    else this.lostByAor.set(copy.aor, lost);
  }

  /** Seconds left of a binding, rounded up. */
  expiresIn(b: Binding): number {
    return Math.max(0, Math.ceil((b.expiresAt - this.now()) / 1000));
  }

  /** Drop every expired binding (and lost binding). Returns how many bindings were dropped. */
  sweep(): number {
    const now = this.now();
    let dropped = 0;
    for (const [aor, bindings] of this.aors) {
      for (const [key, b] of bindings)
        if (b.expiresAt <= now) {
          bindings.delete(key);
          dropped++;
        }
      if (bindings.size === 0) this.aors.delete(aor);
    }
    for (const aor of [...this.lostByAor.keys()]) this.liveLost(aor, now);
    return dropped;
  }

  /** Flows with bindings on them (or that had, until the flow closes). */
  get flows(): number {
    return this.byFlow.size;
  }

  /** Remember that `aor` has a binding on `flow` (for `flowClosed`). */
  private indexFlow(flow: Flow, aor: string): void {
    const key = flowKey(flow);
    const set = this.byFlow.get(key);
    if (set) set.add(aor);
    else this.byFlow.set(key, new Set([aor]));
  }

  private liveLost(aor: string, now: number): Map<string, LostBinding> | undefined {
    return unexpired(this.lostByAor, aor, now);
  }

  private live(aor: string, now: number): Map<string, Binding> | undefined {
    return unexpired(this.aors, aor, now);
  }

  private contactHeaders(aor: string, now: number): Array<[string, string]> {
    const live = this.live(aor, now);
    if (!live) return [];
    return [...live.values()].map((b) => [
      "Contact",
      `<${b.uri}>${b.params}${b.q !== 1 ? `;q=${b.q}` : ""};expires=${Math.max(0, Math.ceil((b.expiresAt - now) / 1000))}`,
    ]);
  }
}

/** `aor`'s entries in `byAor` not expired at `now` (the expired ones removed, the AOR too when none is left). */
function unexpired<T extends { readonly expiresAt: number }>(
  byAor: Map<string, Map<string, T>>,
  aor: string,
  now: number,
): Map<string, T> | undefined {
  const entries = byAor.get(aor);
  if (!entries) return undefined;
  for (const [key, e] of entries) if (e.expiresAt <= now) entries.delete(key);
  if (entries.size === 0) {
    byAor.delete(aor);
    return undefined;
  }
  return entries;
}
