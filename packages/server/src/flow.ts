/**
 * Flows (RFC 5626 §3): the connection a UA opened to us, by which alone it can
 * be reached when it sits behind a NAT or is a browser on a WebSocket (its
 * Contact and Via name an unresolvable `*.invalid` host). A flow is plain data
 * — what a stream transport's `Source` says of a connection — so that it can
 * cross threads (the shards' registrar replicas) and, later, nodes of a
 * cluster (`node`).
 *
 * Flow tokens (RFC 5626 §5.3, §7 edge proxy): a flow encoded into the user
 * part of the Record-Route we add for a UA on a flow, so that a request from
 * the far side of the dialog can be sent over that flow. The token carries a
 * keyed MAC (HMAC-SHA256, truncated): a token is never trusted without it.
 *
 * `LiveFlows`: the flows a route handed a token out for, told when they close
 * (the registrar's `watchFlows`), so that a request with the token of a closed
 * flow is answered 430 Flow Failed (§5.3) rather than sent to a connection
 * that is gone.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Destination, Source, TransportProtocol } from "@siptm/core";

/** A connection a UA opened to us (TCP, TLS, WS, WSS), as plain data. */
export interface Flow {
  readonly protocol: TransportProtocol;
  /** The peer's address and port, as the transport saw them. */
  readonly address: string;
  readonly port: number;
  /** The transport's id of the connection (`Source.connectionId`). */
  readonly connectionId: number;
  /** Our socket the connection came in on. */
  readonly localAddress: string;
  readonly localPort: number;
  /**
   * The id of the cluster node that owns the connection. Unused for now (one node): a later
   * cluster sends a request for a flow of another node to that node.
   */
  readonly node?: string | undefined;
}

/** The stream transports: a message from one of them came over a connection, a flow. */
export function isStream(protocol: TransportProtocol): boolean {
  return protocol !== "UDP";
}

/**
 * The flow a message came over, when it came over a connection (stream transports with a
 * connection id); a flow given is copied as plain data.
 */
export function flowOf(source: Source | Flow | undefined): Flow | undefined {
  if (!source || !isStream(source.protocol) || source.connectionId === undefined) return undefined;
  const node = (source as Flow).node;
  return {
    protocol: source.protocol,
    address: source.address,
    port: source.port,
    connectionId: source.connectionId,
    localAddress: source.localAddress,
    localPort: source.localPort,
    ...(node !== undefined ? { node } : {}),
  };
}

/** One string per flow (its identity: transport, both ends, connection id; the node when set). */
export function flowKey(f: Flow): string {
  return `${f.node ?? ""}|${f.protocol}|${f.localAddress}|${f.localPort}|${f.address}|${f.port}|${f.connectionId}`;
}

/** The same connection: what `flowKey` compares. */
export function sameFlow(a: Flow, b: Flow): boolean {
  return flowKey(a) === flowKey(b);
}

/** Where to send a request over the flow: its connection, by id. */
export function flowDestination(f: Flow): Destination {
  return { protocol: f.protocol, address: f.address, port: f.port, connectionId: f.connectionId };
}

// --- flow tokens ---------------------------------------------------------------------------------

const PROTOCOLS: readonly TransportProtocol[] = ["UDP", "TCP", "TLS", "WS", "WSS"];
const TOKEN_VERSION = 1;
/** Bytes of the MAC kept (96 bits: RFC 2104 §5 allows truncating to no less than half of 256). */
const MAC_BYTES = 12;
/** The longest token we read (a token is well under 120 characters; anything longer is not ours). */
const MAX_TOKEN_CHARS = 200;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Makes and checks flow tokens. The key is random per instance by default: a token is only read
 * by the route that made it (one thread, or the shard that owns the dialog's Call-ID, where every
 * request of the dialog arrives).
 * TODO(cluster): take a key shared by every node (derived from --secret) so that any node can
 * read a token another made.
 */
export class FlowTokens {
  private readonly key: Uint8Array;

  constructor(key?: Uint8Array) {
    this.key = key ?? new Uint8Array(randomBytes(32));
  }

  /** The token of `flow`: base64url of (version, flow, MAC); only URI-unreserved characters (RFC 3261 §25.1). */
  encode(flow: Flow): string {
    const addr = Buffer.from(flow.address, "latin1");
    const local = Buffer.from(flow.localAddress, "latin1");
    const node = Buffer.from(flow.node ?? "", "utf8");
    if (addr.length > 255 || local.length > 255 || node.length > 255)
      throw new RangeError("flow token: a field is longer than 255 bytes");
    const body = Buffer.alloc(1 + 1 + 6 + 2 + 2 + 3 + addr.length + local.length + node.length);
    let o = body.writeUInt8(TOKEN_VERSION, 0);
    o = body.writeUInt8(PROTOCOLS.indexOf(flow.protocol), o);
    o = body.writeUIntBE(flow.connectionId, o, 6);
    o = body.writeUInt16BE(flow.port, o);
    o = body.writeUInt16BE(flow.localPort, o);
    for (const b of [addr, local, node]) {
      o = body.writeUInt8(b.length, o);
      o += b.copy(body, o);
    }
    return Buffer.concat([body, this.mac(body)]).toString("base64url");
  }

  /**
   * The flow of a token; undefined when it is not one of ours: malformed, or its MAC does not
   * verify (made with another key, or tampered with). Linear in the token's length.
   */
  decode(token: string): Flow | undefined {
    if (token.length > MAX_TOKEN_CHARS || !BASE64URL.test(token)) return undefined;
    const raw = Buffer.from(token, "base64url");
    if (raw.length <= MAC_BYTES) return undefined;
    const body = raw.subarray(0, raw.length - MAC_BYTES);
    const mac = raw.subarray(raw.length - MAC_BYTES);
    if (!timingSafeEqual(mac, this.mac(body))) return undefined;
    // The MAC verified: the body is one we wrote; read it defensively all the same.
    if (body.length < 15 || body[0] !== TOKEN_VERSION) return undefined;
    const protocol = PROTOCOLS[body[1]!];
    if (protocol === undefined) return undefined;
    const connectionId = body.readUIntBE(2, 6);
    const port = body.readUInt16BE(8);
    const localPort = body.readUInt16BE(10);
    let o = 12;
    const strings: string[] = [];
    for (let i = 0; i < 3; i++) {
      const n = body[o];
      if (n === undefined || o + 1 + n > body.length) return undefined;
      strings.push(body.toString(i === 2 ? "utf8" : "latin1", o + 1, o + 1 + n));
      o += 1 + n;
    }
    if (o !== body.length) return undefined;
    const [address, localAddress, node] = strings as [string, string, string];
    return {
      protocol,
      address,
      port,
      connectionId,
      localAddress,
      localPort,
      ...(node ? { node } : {}),
    };
  }

  private mac(body: Buffer): Buffer {
    return createHmac("sha256", this.key).update(body).digest().subarray(0, MAC_BYTES);
  }
}

// --- live flows ----------------------------------------------------------------------------------

/** How many recently closed flows a `LiveFlows` remembers (see `add`). */
const RECENTLY_CLOSED = 1024;

/**
 * The flows a route gave a token out for, while their connections are open. Bounded by the open
 * connections: a flow leaves when its close is told (`closed`).
 */
export class LiveFlows {
  private readonly live = new Map<string, Flow>();
  /** Keys of flows closed lately, oldest first (a Set keeps insertion order). */
  private readonly gone = new Set<string>();

  /**
   * A flow a token is handed out for (the request came over it, or goes to it). A flow whose
   * close was told already is not added: with `--workers N` the close reaches a shard over
   * another channel than the messages, and may overtake the last of them.
   */
  add(flow: Flow): void {
    const key = flowKey(flow);
    if (!this.gone.has(key)) this.live.set(key, flow);
  }

  has(flow: Flow): boolean {
    return this.live.has(flowKey(flow));
  }

  /** The connection closed. */
  closed(flow: Flow): void {
    const key = flowKey(flow);
    this.live.delete(key);
    this.gone.add(key);
    if (this.gone.size > RECENTLY_CLOSED) this.gone.delete(this.gone.values().next().value as string);
  }

  get size(): number {
    return this.live.size;
  }
}
