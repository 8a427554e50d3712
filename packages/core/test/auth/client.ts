// A test-only digest client, as a UA builds its Authorization from a challenge
// (RFC 7616 §3.4, RFC 3261 §22.2). Written apart from the server code (its own
// challenge reading and hashing) so a round trip checks one against the other.
import { createHash } from "node:crypto";

export interface Challenge {
  realm: string;
  nonce: string;
  algorithm: string;
  qop?: string;
  opaque?: string;
  stale: boolean;
}

/** Reads one WWW-Authenticate / Proxy-Authenticate value (trusted test input). */
export function readChallenge(value: string): Challenge {
  if (!value.startsWith("Digest ")) throw new Error(`not a Digest challenge: ${value}`);
  const params = new Map<string, string>();
  for (const m of value.slice(7).matchAll(/([a-z]+)=(?:"([^"]*)"|([^,\s]+))/g)) {
    params.set(m[1]!, m[2] ?? m[3]!);
  }
  const realm = params.get("realm");
  const nonce = params.get("nonce");
  if (realm === undefined || nonce === undefined) throw new Error(`no realm or nonce: ${value}`);
  return {
    realm,
    nonce,
    algorithm: params.get("algorithm") ?? "MD5",
    qop: params.get("qop"),
    opaque: params.get("opaque"),
    stale: params.get("stale") === "true",
  };
}

function h(algorithm: string, data: string): string {
  return createHash(algorithm === "SHA-256" ? "sha256" : "md5")
    .update(data)
    .digest("hex");
}

export interface Answer {
  user: string;
  password: string;
  method: string;
  uri: string;
  nc?: number;
  cnonce?: string;
  /** Leave qop (and nc, cnonce) out: the RFC 2069 form. */
  noQop?: boolean;
  /** Override or drop (undefined) parameters after the response is computed. */
  override?: Record<string, string | undefined>;
}

export function responseFor(
  c: Challenge,
  a: {
    user: string;
    password: string;
    method: string;
    uri: string;
    nc: string;
    cnonce: string;
    qop?: string;
  },
): string {
  const ha1 = h(c.algorithm, `${a.user}:${c.realm}:${a.password}`);
  const ha2 = h(c.algorithm, `${a.method}:${a.uri}`);
  return a.qop === undefined
    ? h(c.algorithm, `${ha1}:${c.nonce}:${ha2}`)
    : h(c.algorithm, `${ha1}:${c.nonce}:${a.nc}:${a.cnonce}:${a.qop}:${ha2}`);
}

/** The Authorization value a UA sends in answer to the challenge. */
export function authorize(c: Challenge, a: Answer): string {
  const nc = (a.nc ?? 1).toString(16).padStart(8, "0");
  const cnonce = a.cnonce ?? "0a4f113b";
  const qop = a.noQop ? undefined : "auth";
  const response = responseFor(c, { ...a, nc, cnonce, qop });
  const p: Record<string, string | undefined> = {
    username: `"${a.user}"`,
    realm: `"${c.realm}"`,
    nonce: `"${c.nonce}"`,
    uri: `"${a.uri}"`,
    response: `"${response}"`,
    algorithm: c.algorithm,
    cnonce: qop ? `"${cnonce}"` : undefined,
    opaque: c.opaque === undefined ? undefined : `"${c.opaque}"`,
    qop,
    nc: qop ? nc : undefined,
  };
  for (const [k, v] of Object.entries(a.override ?? {})) p[k] = v;
  return `Digest ${Object.entries(p)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ")}`;
}
