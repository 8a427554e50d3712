/**
 * TLS settings shared by the TLS transport and WSS: the certificate we
 * present, what we ask of inbound peers, and how an outbound peer's
 * certificate is checked (RFC 3261 §26.3.1, RFC 5922 §7 for SIP domains).
 */
import { createHash, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import * as tls from "node:tls";

/** PEM text or bytes. */
export type Pem = string | Buffer;

export interface TlsOptions {
  /** Our certificate chain (PEM). */
  cert: Pem;
  /** Its private key (PEM). */
  key: Pem;
  /** CAs that peer certificates must chain to. Default: Node's bundled roots. */
  ca?: Pem | readonly Pem[];
  /** Ask inbound peers for a certificate: "required" (no certificate → handshake fails), "optional", "off". Default "off". */
  clientCert?: "required" | "optional" | "off";
  /**
   * Outbound: "verify" (default) checks the chain against `ca` and the name
   * against the SIP domain (RFC 5922 §7); "insecure" checks nothing — lab
   * use only, never a default.
   */
  verify?: "verify" | "insecure";
  /**
   * SHA-256 fingerprints (hex, colons optional) of peer certificates accepted
   * whatever their chain and name (pinning a lab peer's self-signed certificate).
   */
  pins?: readonly string[];
  /** A handshake not done after this long is abandoned (counted). Default 10000. */
  handshakeTimeoutMs?: number;
}

export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** The certificate material of `TlsOptions` (what a reload replaces). */
export type TlsCredentials = Pick<TlsOptions, "cert" | "key" | "ca">;

function caList(ca: TlsOptions["ca"]): Pem[] | undefined {
  if (ca === undefined) return undefined;
  return Array.isArray(ca) ? [...(ca as readonly Pem[])] : [ca as Pem];
}

/** `tls.createServer` options for `opts` (the handshake timeout is the caller's). */
export function tlsServerOptions(opts: TlsOptions): tls.TlsOptions {
  const ask = opts.clientCert ?? "off";
  const ca = caList(opts.ca);
  return {
    cert: opts.cert,
    key: opts.key,
    ...(ca ? { ca } : {}),
    requestCert: ask !== "off",
    rejectUnauthorized: ask === "required",
    handshakeTimeout: opts.handshakeTimeoutMs ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
    minVersion: "TLSv1.2",
  };
}

/** A secure context for a reload (`server.setSecureContext`, new outbound connections). */
export function tlsContextOptions(creds: TlsCredentials): tls.SecureContextOptions {
  const ca = caList(creds.ca);
  return { cert: creds.cert, key: creds.key, ...(ca ? { ca } : {}), minVersion: "TLSv1.2" };
}

/** Normalised SHA-256 fingerprint: upper-case hex pairs joined by colons (Node's `fingerprint256` form). */
export function normalizeFingerprint(fp: string): string {
  const hex = fp.replace(/[^0-9a-fA-F]/g, "").toUpperCase();
  return hex.match(/.{2}/g)?.join(":") ?? "";
}

/** The SHA-256 fingerprint of a PEM certificate (the first in the text), in `normalizeFingerprint` form. */
export function fingerprintOf(pem: Pem): string {
  const cert = new X509Certificate(pem);
  return normalizeFingerprint(createHash("sha256").update(cert.raw).digest("hex"));
}

/**
 * The SIP identities of a certificate, RFC 5922 §7.1: the host parts of its
 * `sip:`/`sips:` subjectAltName URIs; if it has none, its DNS names; if it has
 * no subjectAltName at all, its Common Name. Lower case.
 */
export function sipIdentities(cert: {
  subjectaltname?: string;
  subject?: { CN?: string | string[] };
}): string[] {
  const san = cert.subjectaltname;
  if (san === undefined || san === "") {
    const cn = cert.subject?.CN;
    return cn === undefined ? [] : ([] as string[]).concat(cn).map((c) => c.toLowerCase());
  }
  const uris: string[] = [];
  const dns: string[] = [];
  for (const raw of san.split(",")) {
    const entry = raw.trim();
    const colon = entry.indexOf(":");
    if (colon < 0) continue;
    const kind = entry.slice(0, colon);
    const value = entry.slice(colon + 1).replace(/^"|"$/g, "");
    if (kind === "URI") {
      const lower = value.toLowerCase();
      const rest = lower.startsWith("sip:")
        ? lower.slice(4)
        : lower.startsWith("sips:")
          ? lower.slice(5)
          : undefined;
      if (rest === undefined) continue;
      // §7.1: the identity is the hostpart; a URI with a user part is not a domain identity.
      if (rest.includes("@")) continue;
      uris.push(rest.split(/[;:?]/, 1)[0]!);
    } else if (kind === "DNS") dns.push(value.toLowerCase());
  }
  return uris.length > 0 ? uris : dns;
}

/**
 * `checkServerIdentity` for SIP (RFC 5922 §7.2): the domain we meant to reach
 * must equal one of the certificate's SIP identities, compared case-blind and
 * without wildcards. An IP-literal target is checked as Node checks any
 * (its iPAddress subjectAltName). Returns an Error on mismatch.
 */
export function checkSipServerIdentity(host: string, cert: tls.PeerCertificate): Error | undefined {
  if (isIP(host) !== 0) return tls.checkServerIdentity(host, cert);
  const want = host.toLowerCase().replace(/\.$/, "");
  const ids = sipIdentities(cert);
  if (ids.includes(want)) return undefined;
  const err = new Error(
    `certificate names ${ids.length > 0 ? ids.join(", ") : "no SIP domain"}, not ${want} (RFC 5922 §7.2)`,
  ) as Error & { code: string };
  err.code = "ERR_TLS_CERT_ALTNAME_INVALID";
  return err;
}
