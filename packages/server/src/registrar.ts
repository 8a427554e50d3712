/**
 * An in-memory registrar (RFC 3261 §10.3): address-of-record → contacts with
 * an expiry. Expired bindings are dropped lazily when an AOR is read, and by
 * one periodic sweep for AORs nobody reads — never one timer per binding.
 */
import { parseNameAddr, parseUri, type SipRequest, type Source, type Uri } from "@siptm/core";

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
}

/**
 * One AOR's live bindings as plain data for another thread (structured-clonable). Expiries are
 * relative: each thread has its own monotonic clock.
 */
export interface AorCopy {
  readonly aor: string;
  readonly bindings: ReadonlyArray<Omit<Binding, "expiresAt"> & { readonly expiresInMs: number }>;
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
}

export class Registrar {
  private readonly aors = new Map<string, Map<string, Binding>>();
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
   * domain check (steps 1–4) are the route's business.
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
      return { status: 200, headers: [], aor };
    }

    // Step 7: validate every contact before touching anything.
    const planned: Planned[] = [];
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
      for (const [name, v] of na.params) {
        if (name === "expires") {
          // §10.2.1.1: a value not understood is taken as the default.
          expires = v !== null && CONTACT_EXPIRES_RE.test(v) ? Number(v) : this.defaultExpires;
        } else if (name === "q") {
          const n = v === null ? Number.NaN : Number(v);
          if (!(n >= 0 && n <= 1)) return { status: 400, reason: "Bad q Value", headers: [], aor };
          q = n;
        } else params += v === null ? `;${name}` : `;${name}=${v}`;
      }
      if (expires > 0 && expires < this.minExpires)
        return { status: 423, headers: [["Min-Expires", String(this.minExpires)]], aor };
      if (expires > this.maxExpires) expires = this.maxExpires;
      planned.push({ key: contactKey(na.uri), uri: na.uri.raw, params, q, expires });
    }
    for (const p of planned) {
      const old = current?.get(p.key);
      if (old && old.callId === callId && cseq <= old.cseq)
        return { status: 500, reason: "Out Of Order Request", headers: [], aor };
    }
    if (planned.length > 0) {
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
          });
      }
      if (next.size > this.maxContacts) return { status: 503, reason: "Too Many Contacts", headers: [], aor };
      if (next.size === 0) this.aors.delete(aor);
      else this.aors.set(aor, next);
    }
    // Step 8: 200 with every current binding.
    return { status: 200, headers: this.contactHeaders(aor, now), aor };
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
    return {
      aor,
      bindings: [...(live?.values() ?? [])].map(({ expiresAt, ...b }) => ({
        ...b,
        expiresInMs: expiresAt - now,
      })),
    };
  }

  /**
   * Make the AOR's bindings those of `copy` (made by `copyOf` in another thread): what a read-only
   * replica does with each update. Replaces every binding of the AOR; none removes it.
   */
  replace(copy: AorCopy): void {
    const now = this.now();
    const next = new Map<string, Binding>();
    for (const { expiresInMs, ...b } of copy.bindings)
      if (expiresInMs > 0) next.set(b.uri, { ...b, expiresAt: now + expiresInMs });
    if (next.size === 0) this.aors.delete(copy.aor);
    else this.aors.set(copy.aor, next);
  }

  /** Seconds left of a binding, rounded up. */
  expiresIn(b: Binding): number {
    return Math.max(0, Math.ceil((b.expiresAt - this.now()) / 1000));
  }

  /** Drop every expired binding. Returns how many were dropped. */
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
    return dropped;
  }

  private live(aor: string, now: number): Map<string, Binding> | undefined {
    const bindings = this.aors.get(aor);
    if (!bindings) return undefined;
    for (const [key, b] of bindings) if (b.expiresAt <= now) bindings.delete(key);
    if (bindings.size === 0) {
      this.aors.delete(aor);
      return undefined;
    }
    return bindings;
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
