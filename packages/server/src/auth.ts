/**
 * Who may register and relay through route `default`: the server's glue of
 * @siptm/core's digest authentication (RFC 3261 §22, RFC 7616, RFC 8760).
 *
 * - REGISTER for us: with --users, the AOR (To) and From must be in our
 *   domain (403), and the request must carry credentials (401 challenge,
 *   §22.2 / §10.3 step 2) of the AOR's own user (403 otherwise).
 * - A request we relay elsewhere (not to a user registered here): from a
 *   stranger (From not in our domain) 403 — no open relay; from one of our
 *   users, with --users, only after Proxy-Authorization (407 challenge, §22.3)
 *   of the From user (403 otherwise); the value we consumed is removed before
 *   relaying (§22.3).
 * - --trusted sources and --open skip all of it.
 *
 * One `ServerAuth` per thread that decides (the one thread; each shard for
 * what it relays; the main thread for the REGISTERs of a sharded server):
 * each loads the users file itself, and all derive the nonce key from the one
 * secret, so a nonce made by one is accepted by another.
 */
import { readFileSync } from "node:fs";
import { BlockList, isIP } from "node:net";
import {
  type DigestAlgorithm,
  DigestAuth,
  type DigestResult,
  parseUri,
  parseUsers,
  type SipRequest,
  type Source,
  UsersFileError,
  type UsersTable,
  uriOfNameAddr,
} from "@siptm/core";
import { type AuthConfig, UsageError } from "./config.js";

/** What to do with a request: go on (removing the Proxy-Authorization line `consumed`), or answer. */
export type AuthVerdict =
  | { readonly ok: true; readonly user?: string; readonly consumed?: number }
  | {
      readonly ok: false;
      readonly status: number;
      readonly reason: string;
      readonly headers?: Array<[string, string]>;
    };

/** The route's counters of authentication (route_auth_* in tm.stats-like reports). */
export interface AuthCounters {
  /** Challenges sent (401, 407). */
  challenged: number;
  /** Credentials that did not verify (wrong password, unknown user, replay, bad nonce…). */
  failed: number;
  /** Requests authenticated. */
  ok: number;
  /** Refused with 403: not our domain, no relay for strangers, credentials of another user. */
  forbidden: number;
}

/** The users file, parsed; a bad one is a UsageError naming its bad lines. */
export function loadUsersFile(path: string): UsersTable {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(
      `cannot read --users ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
  try {
    return parseUsers(text);
  } catch (err) {
    if (err instanceof UsersFileError) {
      const lines = err.problems
        .slice(0, 5)
        .map((p) => `line ${p.line}: ${p.message}`)
        .join("; ");
      const more = err.problems.length > 5 ? ` (and ${err.problems.length - 5} more)` : "";
      throw new UsageError(`--users ${path}: ${lines}${more}`);
    }
    throw err;
  }
}

const FORBIDDEN = "Forbidden";

/** The shard route's function that reloads its users file (`ShardedEngine.routeCall`, SIGHUP). */
export const AUTH_RELOAD = "auth.reload";

export interface ServerAuthOptions {
  readonly config: AuthConfig;
  /** The HMAC key of the nonces (RouteKeys.digestNonce). */
  readonly key: Uint8Array;
  /** Kamailio's "myself" (RouteContext.isLocal): a URI of ours, port included when given. */
  readonly isLocal: (uri: string) => boolean;
  /** Wall clock, ms (nonces outlive a process). Default Date.now. */
  readonly now?: () => number;
}

/** The user part and "is it ours" of a From / To header value (undefined: no SIP URI). */
interface Party {
  readonly user: string | undefined;
  readonly ours: boolean;
}

export class ServerAuth {
  readonly config: AuthConfig;
  readonly counters: AuthCounters = { challenged: 0, failed: 0, ok: 0, forbidden: 0 };
  private users: UsersTable | undefined;
  private readonly digest: DigestAuth | undefined;
  private readonly trusted: BlockList | undefined;
  private readonly isLocal: (uri: string) => boolean;

  constructor(opts: ServerAuthOptions) {
    this.config = opts.config;
    this.isLocal = opts.isLocal;
    const c = opts.config;
    if (c.usersFile !== undefined && !c.open) {
      this.users = loadUsersFile(c.usersFile);
      this.digest = new DigestAuth({
        realm: c.realm,
        key: opts.key,
        ...(opts.now ? { now: opts.now } : {}),
      });
    }
    if (c.trusted.length > 0) {
      const list = new BlockList();
      for (const cidr of c.trusted) {
        const [addr, bits] = cidr.split("/") as [string, string | undefined];
        const family = isIP(addr) === 6 ? "ipv6" : "ipv4";
        if (bits === undefined) list.addAddress(addr, family);
        else list.addSubnet(addr, Number(bits), family);
      }
      this.trusted = list;
    }
  }

  /** Digest authentication is on (--users). */
  get authenticating(): boolean {
    return this.digest !== undefined;
  }

  /** Users loaded now. */
  get userCount(): number {
    return this.users?.size ?? 0;
  }

  /**
   * SIGHUP: read the users file again. A broken file throws (a UsageError naming its lines) and the
   * users loaded before stay. Returns how many users are loaded.
   */
  reload(): number {
    if (!this.digest || this.config.usersFile === undefined) return 0;
    this.users = loadUsersFile(this.config.usersFile);
    return this.users.size;
  }

  /** A --trusted peer. */
  isTrusted(source: Source): boolean {
    if (!this.trusted) return false;
    const a = source.address.startsWith("::ffff:") ? source.address.slice(7) : source.address;
    const family = isIP(a);
    if (family === 0) return false;
    return this.trusted.check(a, family === 6 ? "ipv6" : "ipv4");
  }

  /** The URI's host is ours (our addresses, --alias, --domain), whatever its port. */
  ourDomain(uri: string): boolean {
    try {
      const u = parseUri(uri);
      return u.type === "sip" && this.isLocal(`sip:${u.host}`);
    } catch {
      return false;
    }
  }

  private party(value: string | undefined): Party {
    if (value === undefined) return { user: undefined, ours: false };
    try {
      const u = parseUri(uriOfNameAddr(value));
      if (u.type !== "sip") return { user: undefined, ours: false };
      return { user: u.user, ours: this.isLocal(`sip:${u.host}`) };
    } catch {
      return { user: undefined, ours: false };
    }
  }

  /** A request that policy lets through untouched: --open, a --trusted peer. */
  private exempt(source: Source): boolean {
    return this.config.open || this.isTrusted(source);
  }

  /** The challenge for a failure (or none yet): a fresh nonce; stale=true when only the nonce expired. */
  private challenge(status: 401 | 407, stale: boolean): AuthVerdict {
    this.counters.challenged++;
    const algorithms: readonly DigestAlgorithm[] = this.users?.algorithms ?? ["MD5"];
    const ch = this.digest!.challenge({ status, stale, algorithms });
    return {
      ok: false,
      status,
      reason: status === 401 ? "Unauthorized" : "Proxy Authentication Required",
      headers: [...ch.headers],
    };
  }

  private forbidden(reason = FORBIDDEN): AuthVerdict {
    this.counters.forbidden++;
    return { ok: false, status: 403, reason };
  }

  /** Verify the request's credentials in `header`, for `user` (the AOR's or the From's). */
  private async verify(
    req: SipRequest,
    header: "authorization" | "proxy-authorization",
    user: string | undefined,
  ): Promise<AuthVerdict> {
    const status = header === "authorization" ? 401 : 407;
    const users = this.users!;
    const res: DigestResult = await this.digest!.verify(
      { method: req.method, uri: req.uri, authorization: req.headerLines(header), header },
      users.lookup,
    );
    if (!res.ok) {
      // No credentials (or none for our realm): the first challenge. Anything else failed; the
      // same answer whatever the reason (no user enumeration: a wrong password and an unknown
      // user both end here as "wrong"), stale=true when only the nonce expired (RFC 7616 §3.3).
      if (res.reason !== "missing" && res.reason !== "unknown-realm") this.counters.failed++;
      return this.challenge(status, res.reason === "stale");
    }
    // The credentials are of the user whose request this is (the AOR's user, §10.3 step 3; the
    // From user for a relay) — valid credentials of someone else do not let one act as them.
    if (user === undefined || res.user !== user) return this.forbidden("Forbidden (not your identity)");
    this.counters.ok++;
    return { ok: true, user: res.user, consumed: header === "proxy-authorization" ? res.index : undefined };
  }

  /**
   * A REGISTER for us (its Request-URI is ours), RFC 3261 §10.3 steps 2–3: with --users, To and
   * From in our domain and credentials of the AOR's user.
   */
  async register(req: SipRequest, source: Source): Promise<AuthVerdict> {
    if (this.exempt(source) || !this.digest) return { ok: true };
    const to = this.party(req.header("to"));
    const from = this.party(req.header("from"));
    if (!to.ours || !from.ours) return this.forbidden("Forbidden (not our domain)");
    return this.verify(req, "authorization", to.user);
  }

  /**
   * A REGISTER for another domain: not relayed with --users (the registrar does not relay
   * registrations for strangers or for our users); without, only our users' (no open relay).
   */
  registerElsewhere(req: SipRequest, source: Source): AuthVerdict {
    if (this.exempt(source)) return { ok: true };
    if (this.digest) return this.forbidden("Forbidden (not our domain)");
    return this.party(req.header("from")).ours ? { ok: true } : this.forbidden("Forbidden (no relay)");
  }

  /**
   * A request we would relay elsewhere (not to a user registered here). Strangers: 403 (no open
   * relay). Our users: with --users, Proxy-Authorization of the From user (407, §22.3).
   */
  async relay(req: SipRequest, source: Source): Promise<AuthVerdict> {
    if (this.exempt(source)) return { ok: true };
    const from = this.party(req.header("from"));
    if (!from.ours) return this.forbidden("Forbidden (no relay)");
    if (!this.digest) return { ok: true };
    return this.verify(req, "proxy-authorization", from.user);
  }
}

/**
 * Remove the `index`-th Proxy-Authorization line of a request about to be relayed: the
 * credentials this proxy consumed (RFC 3261 §22.3); those for other realms stay.
 */
export function removeConsumed(req: SipRequest, index: number): void {
  const lines = req.headerLines("proxy-authorization");
  if (index < 0 || index >= lines.length) return;
  req.removeHeader("Proxy-Authorization");
  for (let i = 0; i < lines.length; i++) if (i !== index) req.appendHeader("Proxy-Authorization", lines[i]!);
}
