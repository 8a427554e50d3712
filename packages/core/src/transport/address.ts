import { isIPv4, SocketAddress } from "node:net";

const cache = new Map<string, string>();

/**
 * One spelling per address, so "address|port" keys match however the address
 * was written: IPv6 in RFC 5952 form ("0:0:0:0:0:0:0:1" → "::1"), IPv4-mapped
 * IPv6 shown as IPv4 ("::ffff:10.0.0.1" → "10.0.0.1"). IPv4 and anything that
 * is not an IP literal come back unchanged (a zone id "%eth0" is kept as written).
 */
export function normalizeAddress(address: string): string {
  if (!address.includes(":")) return address;
  const hit = cache.get(address);
  if (hit !== undefined) return hit;
  let out = address.toLowerCase();
  if (!out.includes("%")) {
    try {
      out = new SocketAddress({ address: out, family: "ipv6" }).address;
    } catch {
      // not an IPv6 literal: keep it lower-cased
    }
  }
  if (out.startsWith("::ffff:") && isIPv4(out.slice(7))) out = out.slice(7);
  if (cache.size >= 1024) cache.clear();
  cache.set(address, out);
  return out;
}

/** A host without the brackets of an IPv6 reference ("[::1]" → "::1"); anything else as it is. */
export function unbracket(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}
