/** Where we are: Kamailio's "myself" check and the Contact for our answers (main thread and shards). */
import { networkInterfaces } from "node:os";
import { parseUri, type Source, type TransportProtocol } from "@siptm/core";
import { normalizeAddress, unbracket } from "@siptm/core/internal";
import { hostPort } from "./config.js";

/** A bound SIP socket. */
export interface BoundSocket {
  readonly protocol: TransportProtocol;
  readonly address: string;
  readonly port: number;
}

/** Kamailio's "myself": a URI whose host is one of our addresses (port one of ours when given). */
export function makeIsLocal(
  sockets: readonly BoundSocket[],
  advertise: string | undefined,
  aliases: readonly string[] = [],
): (uri: string) => boolean {
  const hosts = new Set<string>();
  const ports = new Set<number>(sockets.map((s) => s.port));
  for (const s of sockets) {
    if (s.address === "0.0.0.0" || s.address === "::") {
      for (const list of Object.values(networkInterfaces()))
        for (const ni of list ?? []) hosts.add(normalizeAddress(ni.address.toLowerCase()));
    } else hosts.add(normalizeAddress(s.address.toLowerCase()));
  }
  if (advertise) hosts.add(normalizeAddress(unbracket(advertise).toLowerCase()));
  for (const a of aliases) hosts.add(normalizeAddress(unbracket(a).toLowerCase()));
  return (uri: string): boolean => {
    try {
      const u = parseUri(uri);
      if (u.type !== "sip") return false;
      if (!hosts.has(normalizeAddress(unbracket(u.host).toLowerCase()))) return false;
      return u.port === undefined || ports.has(u.port);
    } catch {
      return false;
    }
  };
}

export function contactFor(source: Source, advertise: string | undefined): string {
  const host = advertise ?? source.localAddress;
  const hp = hostPort(unbracket(host), source.localPort);
  return `<sip:siptm@${hp}${source.protocol === "UDP" ? "" : `;transport=${source.protocol.toLowerCase()}`}>`;
}
