/**
 * RFC 3263 next hops for host names (proxy branches, tm.t_uac_*), on the
 * transports and address families the server listens on. One thread and each
 * shard make theirs here (a Resolver holds caches and DNS handles: it is not
 * cloned into a shard).
 */
import { Resolver, type ResolverTransport } from "@siptm/core";
import type { ServerConfig } from "./config.js";

export function makeResolver(config: ServerConfig): Resolver {
  const protocols = new Set<string>(config.listen.map((l) => l.protocol));
  // DNS finds UDP, TCP and TLS peers (RFC 3263); WebSocket peers are reached over their own connection.
  const transports = (["UDP", "TCP", "TLS"] as const).filter((p): p is ResolverTransport => protocols.has(p));
  const families = [...new Set(config.listen.map((l): 4 | 6 => (l.address.includes(":") ? 6 : 4)))].sort();
  return new Resolver({ transports: transports.length > 0 ? transports : ["UDP"], families });
}
