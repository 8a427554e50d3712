/**
 * SIP digest authentication, the server side (RFC 3261 §22, RFC 7616,
 * RFC 8760): challenges, stateless nonces, and the verification of an
 * Authorization / Proxy-Authorization header against a pluggable credential
 * lookup that gives the stored HA1 (no passwords).
 *
 * A nonce carries its own proof (RFC 7616 §3.3 leaves its form to the server):
 *
 *     base64url( issued-at (8 bytes, ms, big-endian) | offered algorithms (1 byte)
 *                | random (7 bytes) | HMAC-SHA-256(key, those 16 bytes | realm) truncated to 16 bytes )
 *
 * so verifying it is recomputing the MAC: no table of issued nonces. The key
 * is given (cluster nodes derive it from a shared secret, so any node accepts
 * any node's nonce) or made at random. A nonce lives `nonceLifetimeMs`; an
 * expired nonce with a right digest is `stale` (answer a new challenge with
 * stale=true, RFC 7616 §3.3 / §3.4). Replays within its life are caught by the
 * nonce counts (`nc`, see nonce-counts.ts).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { uriEquals } from "../message/uri.js";
import { MemoryNonceCounts, type NonceCounts } from "./nonce-counts.js";
import { isHex, parseCredentials, quote } from "./params.js";

/** The algorithms offered and accepted (RFC 8760 §2: SHA-256, and MD5 for the phones that know only it). */
export type DigestAlgorithm = "SHA-256" | "MD5";

/**
 * The stored HA1 = H(user:realm:password) for the algorithm, lowercase or
 * uppercase hex (32 digits for MD5, 64 for SHA-256), or undefined when there
 * is no such user (or no HA1 for that algorithm). An error it throws is the
 * caller's: `verify` rejects with it.
 */
export type CredentialLookup = (
  user: string,
  realm: string,
  algorithm: DigestAlgorithm,
) => Promise<string | undefined> | string | undefined;

export interface DigestAuthOptions {
  /** The realm when a call names none (RFC 3261 §22.1: e.g. the domain's host name). */
  realm: string;
  /** The HMAC key of the nonces (≥ 16 bytes). Default: 32 random bytes made now. */
  key?: Uint8Array | string;
  /** How long a nonce is accepted, ms. Default 300 000 (5 min). */
  nonceLifetimeMs?: number;
  /** Algorithms offered, in preference order. Default ["SHA-256", "MD5"] (RFC 8760 §2). */
  algorithms?: readonly DigestAlgorithm[];
  /** An opaque value sent in every challenge; when set, credentials must return it unchanged (RFC 7616 §3.3). */
  opaque?: string;
  /**
   * Wall-clock milliseconds (nonces are compared across restarts and cluster
   * nodes, so not a monotonic clock). Default Date.now.
   */
  now?: () => number;
  /** Where the nonce counts are kept. Default a `MemoryNonceCounts`. */
  nonceCounts?: NonceCounts;
  /**
   * Accept the RFC 2069 form (no qop, no nc, no cnonce: response =
   * H(HA1:nonce:HA2)). Off by default: without nc there is no replay check
   * within a nonce's life.
   */
  allowRfc2069?: boolean;
  /** How far in the future a nonce's time may be (clock skew between nodes), ms. Default 30 000. */
  maxClockSkewMs?: number;
}

export interface ChallengeOptions {
  /** Default: the instance's realm. */
  realm?: string;
  /** 401 (a UAS / registrar: WWW-Authenticate) or 407 (a proxy: Proxy-Authenticate), RFC 3261 §22.1 / §22.3. */
  status: 401 | 407;
  /** The previous nonce expired but the digest was right (RFC 7616 §3.3). */
  stale?: boolean;
  /** A subset of the instance's algorithms, in preference order. Default all of them. */
  algorithms?: readonly DigestAlgorithm[];
}

export interface DigestChallenge {
  readonly status: 401 | 407;
  readonly header: "WWW-Authenticate" | "Proxy-Authenticate";
  /** One challenge per algorithm, in preference order (RFC 8760 §2). */
  readonly values: readonly string[];
  /** The same as header lines, ready for a reply's `headers`. */
  readonly headers: ReadonlyArray<[string, string]>;
  readonly nonce: string;
}

export interface DigestRequest {
  readonly method: string;
  /** The Request-URI as sent (RFC 3261 §22.4: the credentials' uri must be it). */
  readonly uri: string;
  /** The header's values, one per header line (RFC 3261 §7.3.1: never comma-combined). */
  readonly authorization: string | readonly string[] | undefined;
  /** Default: the instance's realm. */
  readonly realm?: string;
  /** Which header the values came from: Authorization answers a 401, Proxy-Authorization a 407. */
  readonly header: "authorization" | "proxy-authorization";
}

export type DigestFailure =
  /** No Digest credentials at all: send a challenge. */
  | "missing"
  /** Credentials that do not parse, or lack a required parameter. */
  | "malformed"
  /** Digest credentials, none for our realm. */
  | "unknown-realm"
  /** An algorithm not offered (by the instance or in the nonce's challenge). */
  | "bad-algorithm"
  /** qop missing (we offered qop=auth) or not "auth". */
  | "bad-qop"
  /** The credentials' uri is not the Request-URI. */
  | "uri-mismatch"
  /** Not a nonce of ours (or for another realm), or the opaque differs. */
  | "bad-nonce"
  /** Our nonce, expired (or forgotten by the count store), and a right digest: challenge with stale=true. */
  | "stale"
  /** A nonce count used before. */
  | "replay"
  /** Wrong password or unknown user (the same answer for both: no user enumeration). */
  | "wrong";

export type DigestResult =
  | {
      readonly ok: true;
      readonly user: string;
      readonly realm: string;
      readonly algorithm: DigestAlgorithm;
      readonly header: "authorization" | "proxy-authorization";
      /** Which of the given values was used (a proxy removes it before relaying, RFC 3261 §22.3). */
      readonly index: number;
    }
  | { readonly ok: false; readonly reason: DigestFailure; readonly detail?: string };

const ALG_BIT: Record<DigestAlgorithm, number> = { "SHA-256": 1, MD5: 2 };
const HEX_LEN: Record<DigestAlgorithm, number> = { "SHA-256": 64, MD5: 32 };
const HASH: Record<DigestAlgorithm, string> = { "SHA-256": "sha256", MD5: "md5" };
const NONCE_BYTES = 32;
const NONCE_CHARS = 43; // base64url of 32 bytes, unpadded

/** H(data) as lowercase hex (RFC 7616 §3.4.1). */
export function digestHash(algorithm: DigestAlgorithm, data: string): string {
  return createHash(HASH[algorithm]).update(data, "utf8").digest("hex");
}

/** HA1 = H(user:realm:password) (RFC 7616 §3.4.2), as htdigest stores it. */
export function digestHa1(algorithm: DigestAlgorithm, user: string, realm: string, password: string): string {
  return digestHash(algorithm, `${user}:${realm}:${password}`);
}

/**
 * The request-digest (RFC 7616 §3.4.1, RFC 3261 §22.4): with qop=auth,
 * H(HA1:nonce:nc:cnonce:qop:HA2); without qop (RFC 2069), H(HA1:nonce:HA2);
 * HA2 = H(method:uri).
 */
export function digestResponse(
  algorithm: DigestAlgorithm,
  ha1: string,
  a: {
    method: string;
    uri: string;
    nonce: string;
    nc?: string | undefined;
    cnonce?: string | undefined;
    qop?: "auth" | undefined;
  },
): string {
  const ha2 = digestHash(algorithm, `${a.method}:${a.uri}`);
  return a.qop === undefined
    ? digestHash(algorithm, `${ha1}:${a.nonce}:${ha2}`)
    : digestHash(algorithm, `${ha1}:${a.nonce}:${a.nc}:${a.cnonce}:${a.qop}:${ha2}`);
}

function isBase64Url(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 95)) {
      return false;
    }
  }
  return true;
}

function algorithmOf(token: string): DigestAlgorithm | undefined {
  const t = token.toUpperCase();
  return t === "SHA-256" ? "SHA-256" : t === "MD5" ? "MD5" : undefined;
}

function checkText(what: string, s: string): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) throw new TypeError(`${what} has a control character`);
  }
}

/**
 * The digest authenticator: holds the nonce key, the default realm, the
 * nonce lifetime and the nonce-count store. `challenge()` makes the
 * WWW-Authenticate / Proxy-Authenticate values, `verify()` checks an
 * Authorization / Proxy-Authorization.
 */
export class DigestAuth {
  readonly realm: string;
  readonly algorithms: readonly DigestAlgorithm[];
  readonly nonceLifetimeMs: number;
  readonly nonceCounts: NonceCounts;
  private readonly key: Buffer;
  private readonly opaque: string | undefined;
  private readonly now: () => number;
  private readonly allowRfc2069: boolean;
  private readonly skew: number;
  /** An HA1 for users that do not exist, so a miss costs the same hashing as a hit. */
  private readonly dummy: Record<DigestAlgorithm, string>;

  constructor(opts: DigestAuthOptions) {
    checkText("realm", opts.realm);
    this.realm = opts.realm;
    const algs = opts.algorithms ?? ["SHA-256", "MD5"];
    if (
      algs.length === 0 ||
      algs.some((a) => ALG_BIT[a] === undefined) ||
      new Set(algs).size !== algs.length
    ) {
      throw new RangeError('algorithms: a non-empty list of distinct "SHA-256" / "MD5"');
    }
    this.algorithms = [...algs];
    this.nonceLifetimeMs = opts.nonceLifetimeMs ?? 300_000;
    if (!(this.nonceLifetimeMs > 0)) throw new RangeError("nonceLifetimeMs must be positive");
    this.skew = opts.maxClockSkewMs ?? 30_000;
    const key = opts.key === undefined ? randomBytes(32) : Buffer.from(opts.key);
    if (key.length < 16) throw new RangeError("the nonce key must be at least 16 bytes");
    this.key = key;
    if (opts.opaque !== undefined) checkText("opaque", opts.opaque);
    this.opaque = opts.opaque;
    this.now = opts.now ?? Date.now;
    this.nonceCounts = opts.nonceCounts ?? new MemoryNonceCounts();
    this.allowRfc2069 = opts.allowRfc2069 ?? false;
    const junk = randomBytes(16).toString("hex");
    this.dummy = { "SHA-256": digestHash("SHA-256", junk), MD5: digestHash("MD5", junk) };
  }

  /** A fresh nonce for the realm, remembering which algorithms its challenge offers. */
  makeNonce(realm: string = this.realm, algorithms: readonly DigestAlgorithm[] = this.algorithms): string {
    const buf = Buffer.allocUnsafe(NONCE_BYTES);
    buf.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(this.now()))), 0);
    let bits = 0;
    for (const a of algorithms) bits |= ALG_BIT[a];
    buf[8] = bits;
    randomBytes(7).copy(buf, 9);
    this.mac(buf, realm).copy(buf, 16, 0, 16);
    return buf.toString("base64url");
  }

  /** The challenge for a 401 (WWW-Authenticate) or a 407 (Proxy-Authenticate), RFC 3261 §22.1 / §22.3. */
  challenge(opts: ChallengeOptions): DigestChallenge {
    const realm = opts.realm ?? this.realm;
    if (realm !== this.realm) checkText("realm", realm);
    const algorithms = opts.algorithms ?? this.algorithms;
    if (algorithms.length === 0 || algorithms.some((a) => !this.algorithms.includes(a))) {
      throw new RangeError("challenge algorithms must be a non-empty subset of the instance's");
    }
    const header = opts.status === 407 ? "Proxy-Authenticate" : "WWW-Authenticate";
    const nonce = this.makeNonce(realm, algorithms);
    const opaque = this.opaque === undefined ? "" : `, opaque=${quote(this.opaque)}`;
    const stale = opts.stale ? ", stale=true" : "";
    // One challenge per algorithm, the preferred first (RFC 8760 §2); qop="auth"
    // (RFC 3261 §22.4 / RFC 7616 §3.3: algorithm and qop-options as written here).
    const values = algorithms.map(
      (a) => `Digest realm=${quote(realm)}, nonce="${nonce}"${opaque}, algorithm=${a}, qop="auth"${stale}`,
    );
    return {
      status: opts.status,
      header,
      values,
      headers: values.map((v): [string, string] => [header, v]),
      nonce,
    };
  }

  /**
   * Checks the credentials of a request. Never throws for bad input (a typed
   * failure instead); rejects only with an error of `lookup` or of the
   * nonce-count store.
   */
  async verify(req: DigestRequest, lookup: CredentialLookup): Promise<DigestResult> {
    const realm = req.realm ?? this.realm;
    const values =
      req.authorization === undefined
        ? []
        : typeof req.authorization === "string"
          ? [req.authorization]
          : req.authorization;
    // RFC 3261 §22.4: the credentials for our realm, among those for others.
    let params: ReadonlyMap<string, string> | undefined;
    let index = -1;
    let malformed: string | undefined;
    let otherRealm = false;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== "string") continue;
      const p = parseCredentials(v);
      if (p.scheme === undefined || p.scheme.toLowerCase() !== "digest") {
        if (p.scheme === undefined) malformed ??= p.ok ? "no scheme" : p.error;
        continue; // another scheme is not ours to judge
      }
      if (!p.ok) {
        malformed ??= p.error;
        continue;
      }
      const r = p.params.get("realm");
      if (r === undefined) {
        malformed ??= "no realm";
        continue;
      }
      if (r !== realm) {
        otherRealm = true;
        continue;
      }
      params = p.params;
      index = i;
      break;
    }
    if (params === undefined) {
      if (malformed !== undefined) return fail("malformed", malformed);
      if (otherRealm) return fail("unknown-realm");
      return fail("missing");
    }

    // Required parameters (RFC 7616 §3.4, RFC 3261 §25.1 digest-response).
    const user = params.get("username");
    const nonce = params.get("nonce");
    const uri = params.get("uri");
    const response = params.get("response");
    if (user === undefined || nonce === undefined || uri === undefined || response === undefined) {
      return fail("malformed", "username, nonce, uri and response are required");
    }
    if (params.has("username*") || (params.get("userhash") ?? "false").toLowerCase() !== "false") {
      return fail("malformed", "userhash and username* are not offered");
    }
    // algorithm absent = MD5 (RFC 7616 §3.3).
    const algorithm = algorithmOf(params.get("algorithm") ?? "MD5");
    if (algorithm === undefined || !this.algorithms.includes(algorithm)) return fail("bad-algorithm");
    if (!isHex(response, HEX_LEN[algorithm])) return fail("malformed", "response is not a digest");

    const qopRaw = params.get("qop");
    const cnonce = params.get("cnonce");
    const ncRaw = params.get("nc");
    let qop: "auth" | undefined;
    let nc = 0;
    if (qopRaw !== undefined) {
      if (qopRaw.toLowerCase() !== "auth") return fail("bad-qop", "only qop=auth is offered");
      qop = "auth";
      // cnonce and nc MUST be sent with a qop (RFC 7616 §3.4).
      if (cnonce === undefined || cnonce === "" || ncRaw === undefined) {
        return fail("malformed", "cnonce and nc are required with qop");
      }
      if (!isHex(ncRaw, 8)) return fail("malformed", "nc is not 8 hex digits");
      nc = Number.parseInt(ncRaw, 16);
      if (nc === 0) return fail("malformed", "nc is zero");
    } else {
      // We offered qop=auth; the RFC 2069 form only when allowed (RFC 7616 §3.4 vs RFC 2617 §3.2.2).
      if (!this.allowRfc2069) return fail("bad-qop", "qop is required");
      if (cnonce !== undefined || ncRaw !== undefined) return fail("malformed", "cnonce or nc without qop");
    }

    // RFC 3261 §22.4 / RFC 7616 §3.4.6: the digest-uri must be the Request-URI.
    if (uri !== req.uri && !uriEquals(uri, req.uri)) return fail("uri-mismatch");

    if (this.opaque !== undefined && params.get("opaque") !== this.opaque) return fail("bad-nonce", "opaque");
    const n = this.openNonce(nonce, realm);
    if (n === undefined) return fail("bad-nonce");
    if ((n.algorithms & ALG_BIT[algorithm]) === 0)
      return fail("bad-algorithm", "not offered with this nonce");
    const now = this.now();
    if (n.issuedAt > now + this.skew) return fail("bad-nonce", "from the future");
    const expiresAt = n.issuedAt + this.nonceLifetimeMs;

    // The digest (RFC 7616 §3.4.1): response = KD(HA1, nonce:nc:cnonce:qop:HA2), HA2 = H(method:uri).
    // An unknown user is hashed with a dummy HA1, to the same "wrong" answer.
    const stored = await lookup(user, realm, algorithm);
    const known = typeof stored === "string" && isHex(stored, HEX_LEN[algorithm]);
    const ha1 = known ? stored.toLowerCase() : this.dummy[algorithm];
    const expected = digestResponse(algorithm, ha1, {
      method: req.method,
      uri,
      nonce,
      nc: ncRaw,
      cnonce,
      qop,
    });
    const match = timingSafeEqual(
      Buffer.from(expected, "latin1"),
      Buffer.from(response.toLowerCase(), "latin1"),
    );
    if (!match || !known) return fail("wrong");

    // Only a right digest learns that the nonce is stale (RFC 7616 §3.3 "stale").
    if (now > expiresAt) return fail("stale", "nonce expired");
    if (qop !== undefined) {
      const use = await this.nonceCounts.use(nonce, nc, n.issuedAt, expiresAt, now);
      if (use === "replay") return fail("replay");
      if (use === "unknown") return fail("stale", "nonce count no longer tracked");
    }
    return { ok: true, user, realm, algorithm, header: req.header, index };
  }

  private mac(buf: Buffer, realm: string): Buffer {
    return createHmac("sha256", this.key).update(buf.subarray(0, 16)).update(realm, "utf8").digest();
  }

  /** The nonce's time and offered algorithms when its MAC is ours for the realm. */
  private openNonce(nonce: string, realm: string): { issuedAt: number; algorithms: number } | undefined {
    if (nonce.length !== NONCE_CHARS || !isBase64Url(nonce)) return undefined;
    const buf = Buffer.from(nonce, "base64url");
    if (buf.length !== NONCE_BYTES) return undefined;
    // The last character holds 2 bits of padding; a re-encoding that differs is not ours.
    if (buf.toString("base64url") !== nonce) return undefined;
    const want = this.mac(buf, realm).subarray(0, 16);
    if (!timingSafeEqual(want, buf.subarray(16, 32))) return undefined;
    const t = buf.readBigUInt64BE(0);
    if (t > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    return { issuedAt: Number(t), algorithms: buf[8]! };
  }
}

function fail(reason: DigestFailure, detail?: string): DigestResult {
  return detail === undefined ? { ok: false, reason } : { ok: false, reason, detail };
}
