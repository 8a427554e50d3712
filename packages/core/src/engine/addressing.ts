/**
 * Where things go and who we are on the wire: the engine's sockets, the next
 * hop of a request, the Via and Record-Route URIs we write, whether an address
 * is ours (RFC 3261 §16.4 route processing, §16.3 loop detection), and where
 * responses to a request go (§18.2.2, RFC 3581).
 */
import { networkInterfaces } from "node:os";
import type { SipRequest } from "../message/types.js";
import { parseUri } from "../message/uri.js";
import type { Resolver } from "../proxy/resolver.js";
import { TransactionError } from "../transaction/errors.js";
import { unbracket } from "../transport/address.js";
import type { Destination, Source, Transport, TransportProtocol } from "../transport/types.js";

export class Addressing {
  /** The engine's transports, in the order they were added. */
  readonly transports: Transport[] = [];
  private readonly aliases: Set<string>;

  constructor(
    /** The host written in our Via, Contact and Record-Route instead of the socket's address. */
    private readonly advertisedHost: string | undefined,
    aliases: readonly string[],
    /** RFC 3263 resolution of host names; a route may set it once the engine exists. */
    public resolver: Resolver | undefined,
  ) {
    this.aliases = new Set(aliases.map((a) => unbracket(a).toLowerCase()));
    if (advertisedHost) this.aliases.add(unbracket(advertisedHost).toLowerCase());
  }

  /**
   * The transport to send on: the one of `protocol` that holds `connectionId`
   * when one does (ids are unique in the process), else the first of `protocol`.
   */
  transportFor(protocol: TransportProtocol, connectionId?: number): Transport | undefined {
    let first: Transport | undefined;
    for (const t of this.transports) {
      if (t.protocol !== protocol) continue;
      if (connectionId === undefined || t.hasConnection?.(connectionId) === true) return t;
      first ??= t;
    }
    return first;
  }

  /** §17: a reliable transport has no retransmission timers and zero D/I/J/K. */
  isReliable(protocol: TransportProtocol): boolean {
    const t = this.transportFor(protocol);
    return t ? t.reliable : protocol !== "UDP";
  }

  /**
   * True when host:port is one of our listening addresses, an alias, or — for
   * a socket bound to a wildcard address — any address of this host.
   */
  isLocal(host: string, port: number | undefined): boolean {
    const h = unbracket(host).toLowerCase();
    for (const t of this.transports) {
      const p = port ?? defaultPort(t.protocol);
      if (p !== t.localPort) continue;
      const local = t.localAddress.toLowerCase();
      if (h === local || this.aliases.has(h)) return true;
      if ((local === "0.0.0.0" || local === "::") && hostAddresses().has(h)) return true;
    }
    return false;
  }

  /** Where a request goes: an explicit next hop, or the host of a SIP URI (IP literals; names need a resolver). */
  resolveNextHop(hop: Destination | string): Destination {
    if (typeof hop !== "string") return hop;
    const m = /^(udp|tcp|tls|ws|wss):(.+):(\d{1,5})$/i.exec(hop);
    if (m)
      return {
        protocol: m[1]!.toUpperCase() as TransportProtocol,
        address: unbracket(m[2]!),
        port: Number(m[3]),
      };
    let uri: ReturnType<typeof parseUri>;
    try {
      uri = parseUri(hop);
    } catch {
      throw new TransactionError("bad-request", `cannot route to ${hop}`);
    }
    const u = uri as {
      scheme?: string;
      host?: string;
      port?: number;
      params?: ReadonlyArray<readonly [string, string | null]>;
    };
    if (!u.host) throw new TransactionError("bad-request", `no host in ${hop}`);
    const secure = u.scheme === "sips";
    const address = unbracket(u.host);
    if (!isIpLiteral(address)) {
      const cached = this.resolver?.resolveCached(hop);
      if (cached?.[0]) return cached[0];
      throw new TransactionError(
        "no-transport",
        `${u.host} needs DNS resolution (RFC 3263): use a resolver or a nextHop`,
      );
    }
    let param: string | undefined;
    for (const [name, value] of u.params ?? [])
      if (name === "transport" && value) param = value.toLowerCase();
    const protocol = transportOf(param, secure);
    if (protocol === undefined)
      throw new TransactionError(
        "no-transport",
        secure ? `a sips URI goes over TLS only (RFC 3261 §26.2): ${hop}` : `unknown transport in ${hop}`,
      );
    return { protocol, address, port: u.port ?? defaultPort(protocol) };
  }

  /**
   * Every destination for a URI in RFC 3263 order: an IP literal at once, a
   * host name through the resolver (NAPTR, SRV, A/AAAA, cached).
   */
  async resolveAll(uri: string): Promise<Destination[]> {
    try {
      return [this.resolveNextHop(uri)];
    } catch (err) {
      if (!this.resolver) throw err;
      return this.resolver.resolve(uri);
    }
  }

  /**
   * A SIP URI that reaches us over `protocol` (Contact, Record-Route: RFC 3261 §16.6 item 4):
   * the socket `local` names (the one a request came in on), else our first socket of that protocol.
   */
  ownUri(protocol: TransportProtocol, local?: { readonly address: string; readonly port: number }): string {
    const t = local ? undefined : (this.transportFor(protocol) ?? this.transports[0]);
    const host = this.advertisedHost ?? local?.address ?? t?.localAddress ?? "127.0.0.1";
    const port = local?.port ?? t?.localPort ?? 5060;
    return `sip:${bracket(host)}:${port}${protocol === "UDP" ? "" : `;transport=${protocol.toLowerCase()}`}`;
  }

  /** A Via value for a request we send to `dest` (§18.1.1; rport asked for, RFC 3581). */
  viaFor(dest: Destination, branch: string): string {
    const transport = this.transportFor(dest.protocol);
    const host = this.advertisedHost ?? transport?.localAddress ?? "127.0.0.1";
    return `SIP/2.0/${dest.protocol} ${bracket(host)}:${transport?.localPort ?? 5060};branch=${branch};rport`;
  }
}

/**
 * The transport a URI's `transport` parameter names (RFC 3261 §19.1.1; RFC 7118
 * §7 for ws). A sips URI goes over TLS, or WSS for transport=ws (§26.2: never in
 * the clear): sips with udp is undefined (refused).
 */
function transportOf(param: string | undefined, secure: boolean): TransportProtocol | undefined {
  switch (param) {
    case undefined:
      return secure ? "TLS" : "UDP";
    case "udp":
      return secure ? undefined : "UDP";
    case "tcp":
    case "tls":
      return secure || param === "tls" ? "TLS" : "TCP";
    case "ws":
      return secure ? "WSS" : "WS";
    case "wss":
      return "WSS";
    default:
      return undefined;
  }
}

/** RFC 3261 §19.1.2: 5060, 5061 for TLS; RFC 7118 §7 leaves WS to its URI (80/443 for ws/wss). */
export function defaultPort(protocol: TransportProtocol): number {
  switch (protocol) {
    case "TLS":
      return 5061;
    case "WS":
      return 80;
    case "WSS":
      return 443;
    default:
      return 5060;
  }
}

let localAddresses: Set<string> | undefined;
/** Every address of this host's interfaces (lower case), read once. */
function hostAddresses(): Set<string> {
  if (!localAddresses) {
    localAddresses = new Set(["127.0.0.1", "::1", "localhost"]);
    for (const list of Object.values(networkInterfaces()))
      for (const a of list ?? []) localAddresses.add(a.address.toLowerCase());
  }
  return localAddresses;
}

function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

function isIpLiteral(host: string): boolean {
  if (host.includes(":")) return true;
  const parts = host.split(".");
  return (
    parts.length === 4 &&
    parts.every((p) => p.length > 0 && p.length <= 3 && /^\d+$/.test(p) && Number(p) <= 255)
  );
}

/** A transport that can alias a connection to its peer's sent-by (the TLS transport: RFC 5923). */
interface Aliasing {
  alias(connectionId: number, host: string, port: number): boolean;
}

/**
 * RFC 5923: a request over TLS whose top Via carries `alias` asks that
 * requests to its sent-by reuse the connection it came on. Hands that to the
 * transport holding the connection, which grants it only to a peer whose
 * certificate names the sent-by host. The default port is TLS's (5061).
 */
export function offerAlias(req: SipRequest, source: Source, transport: Transport | undefined): boolean {
  if (source.protocol !== "TLS" || source.connectionId === undefined || !transport) return false;
  const via = req.via;
  if (!via.params.some(([name]) => name === "alias")) return false;
  const t = transport as Partial<Aliasing>;
  return typeof t.alias === "function" && t.alias(source.connectionId, via.host, via.port ?? 5061);
}

/**
 * §18.2.1 / RFC 3581: stamp `received` when the sent-by host is not the
 * source address, and fill an empty `rport` with the source port. Only the
 * top Via line changes.
 */
export function stampVia(req: SipRequest, source: Source): void {
  const via = req.via;
  const needReceived = unbracket(via.host) !== source.address;
  const needRport = via.rport === null;
  if (!needReceived && !needRport) return;
  const parts = via.raw.split(";");
  let out = parts[0]!;
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    const name = p.trim().toLowerCase();
    if (needRport && name === "rport") out += `;rport=${source.port}`;
    else if (name.startsWith("received=") || name === "received") continue;
    else out += `;${p}`;
  }
  out += `;received=${source.address}`;
  req.popVia();
  req.pushVia(out);
}

/**
 * Where responses to a request go (§18.2.2, RFC 3581): back on the connection
 * for reliable transports; for UDP, to the source address, at the source port
 * when rport was asked for (or `rport` is unknown: no request parsed), else at
 * the sent-by port (default 5060).
 */
export function replyDestination(
  source: Source,
  via?: { readonly rport: number | null | undefined; readonly port: number | undefined },
): Destination {
  if (source.protocol !== "UDP" || !via) {
    return {
      protocol: source.protocol,
      address: source.address,
      port: source.port,
      connectionId: source.connectionId,
    };
  }
  const port = via.rport !== undefined ? source.port : (via.port ?? 5060);
  return { protocol: "UDP", address: source.address, port };
}
