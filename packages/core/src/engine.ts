/**
 * The engine: the thin driver around the transaction actors. It wires
 * transports ↔ parser ↔ table ↔ actors ↔ the user's handlers. What the actors
 * and the proxy reach (table, timers, counters, sending) is its private
 * context (engine/context.ts); where things go is engine/addressing.ts. It
 * keeps no ambient "current transaction": every lookup names its holder and
 * releases it before returning.
 *
 * Path of one datagram: transport.onMessage → Engine.onMessage → parseMessage
 * → (response) table.get(clientKey) → actor.receiveResponse → effects via the
 * context (send, timers, user) ; (request) table.get(serverKey) → actor, or
 * a new server transaction → the user's onRequest handler → handle.reply →
 * actor.sendResponse → context.send → transport.send.
 */
import { type Clock, RealClock } from "./clock.js";
import { Addressing, offerAlias, replyDestination, stampVia } from "./engine/addressing.js";
import { type AuditEntry, AuditPager, auditEntry } from "./engine/audit.js";
import { EngineContext, type EngineLogger, registerContextReader } from "./engine/context.js";
import { answeredDialog, sendAck2xx } from "./engine/dialog.js";
import { buildReject, buildRequest, buildResponse } from "./message/build.js";
import { SipParseError } from "./message/errors.js";
import { newCallId, newTag } from "./message/ids.js";
import { parseMessage } from "./message/parser.js";
import { canonicalName } from "./message/text.js";
import type { ParseLimits, SipMessage, SipRequest, SipResponse } from "./message/types.js";
import { fullParse } from "./message/validate.js";
import type { Resolver } from "./proxy/resolver.js";
import { forwardRequestStateless, forwardResponseStateless } from "./proxy/stateless.js";
import type { Transaction, TxStats } from "./transaction/actor.js";
import type { CancelResult, ClientTu } from "./transaction/client.js";
import { longestLifetime, resolveTimers, type TimerConfig } from "./transaction/config.js";
import { TransactionError } from "./transaction/errors.js";
import {
  type ClientEvents,
  ClientTransactionHandle,
  ServerTransactionHandle,
} from "./transaction/handles.js";
import type { InviteClientTransaction } from "./transaction/ict.js";
import { InviteServerTransaction } from "./transaction/ist.js";
import type { NonInviteClientTransaction } from "./transaction/nict.js";
import { NonInviteServerTransaction } from "./transaction/nist.js";
import type { RefError } from "./transaction/refs.js";
import type { ReplyOptions, ServerTu } from "./transaction/server.js";
import { clientKey, serverKey } from "./transaction/table.js";
import { type RateLimitOptions, SourceRateLimiter } from "./transport/ratelimit.js";
import { createTcpTransport, type TcpTransportOptions } from "./transport/tcp.js";
import type { TlsOptions } from "./transport/tls.js";
import {
  addTransportStats,
  type Destination,
  newTransportStats,
  type Source,
  type Transport,
  type TransportProtocol,
  type TransportSink,
  type TransportStats,
} from "./transport/types.js";
import { createUdpTransport, type UdpTransportOptions } from "./transport/udp.js";
import { createWsTransport, type WsTransportOptions } from "./transport/ws.js";

export type { AuditEntry } from "./engine/audit.js";
export type { EngineLogger } from "./engine/context.js";

export interface EngineOptions {
  /** Time source; a VirtualClock in tests. Default: the real clock. */
  clock?: Clock;
  timers?: Partial<TimerConfig>;
  limits?: Partial<ParseLimits>;
  /** Cap on live transactions; past it new requests get 503 + Retry-After (back-pressure). Default 1,000,000. */
  maxTransactions?: number;
  /** Retry-After seconds on the 503 of a full table. Default 5. */
  retryAfter?: number;
  /**
   * Per-source token bucket for new requests (ACK and CANCEL, responses and retransmissions of
   * live transactions are not counted); over it a request is dropped without an answer and
   * counted in `stats.rate_limited`. Default: off.
   */
  rateLimit?: RateLimitOptions;
  /** "throw" in tests and debugging; "count" in production (counted in stats.ref_faults and logged). Default "count". */
  refFaults?: "throw" | "count";
  /** Check the whole grammar of each new request (RFC 3261 §25) and answer 400 to violations. Default true. */
  strict?: boolean;
  /** Answer 487 to a cancelled INVITE automatically (§9.2). Default true; false lets the user answer. */
  autoCancel487?: boolean;
  /** A CANCEL matching no transaction: 481 without state (default), 481 in a transaction, or dropped. */
  unmatchedCancel?: "stateless" | "stateful" | "drop";
  /** §8.2.2.2 merged-request detection (482). Default true, false for a `proxy`. */
  mergedRequests?: boolean;
  /**
   * This engine is a stateful proxy (RFC 3261 §16; its route calls `relay()`):
   * merged-request detection is off by default (§8.2.2.2 is a UAS rule: the same
   * request coming back changed is a spiral; §16.3 item 4 catches real loops), and
   * the ACK of a 2xx and a late 2xx are forwarded statelessly (§16.11), only
   * where proxy/stateless.ts allows, unless `onStrayAck` / `onStrayResponse` are
   * given. Default false.
   */
  proxy?: boolean;
  /** Extra text after the magic cookie "z9hG4bK" in our branches (e.g. a shard id), before the random part. */
  branchPrefix?: string;
  /**
   * Key of the tag in the branches of relayed INVITEs that lets a late 2xx be
   * forwarded statelessly (proxy/cookie.ts); at least 16 bytes. Every node of
   * a cluster should share it. Default: random for this engine.
   */
  cookieKey?: Uint8Array | string;
  /** Engine id used in transaction ids. Default: random. */
  id?: string;
  /** Host to put in Via sent-by instead of the transport's local address (e.g. when bound to 0.0.0.0). */
  advertisedHost?: string;
  /** Other names and addresses of this engine (DNS names, NAT addresses) recognised in Route and Request-URI (§16.4). */
  aliases?: string[];
  logger?: EngineLogger;
  /** RFC 3263 next-hop resolution for host names (proxy branches, requests); IP literals never need it. */
  resolver?: Resolver;
  /** Default handler for new server transactions. */
  onRequest?: (tx: ServerTransactionHandle) => void;
  /** The ACK of a 2xx that matched no transaction of ours. */
  onStrayAck?: (ack: SipRequest, source: Source) => void;
  /** A response that matched no client transaction. */
  onStrayResponse?: (res: SipResponse, source: Source) => void;
  /** A connection (TCP, TLS, WS) of one of the engine's transports closed: drop what lives on it (RFC 5626 flows). */
  onFlowClosed?: (source: Source) => void;
}

export interface RequestOptions extends ClientEvents {
  method: string;
  uri: string;
  /** From header value; a tag is added when it has none. */
  from: string;
  to: string;
  callId?: string;
  cseq?: number;
  maxForwards?: number;
  headers?: Array<[string, string]>;
  body?: Buffer | string;
  contentType?: string;
  /** Where to send: a Destination, "udp:HOST:PORT" / "tcp:HOST:PORT", or a SIP URI. Default: the Request-URI's host (IP literals). */
  nextHop?: Destination | string;
  /** Per-transaction timer overrides (Kamailio t_set_fr). */
  timers?: Partial<TimerConfig>;
}

/** A socket to listen on: its address (IP literal, no brackets) and port (0: ephemeral), and that transport's own options. */
export type UdpListen = Omit<UdpTransportOptions, "sink">;
export type TcpListen = Omit<TcpTransportOptions, "sink" | "tls">;
/** SIP over TLS (RFC 3261 §26.3.1): a TCP listener's options and the TLS material. */
export type TlsListen = TcpListen & { tls: TlsOptions };
/** SIP over WebSocket (RFC 7118); with `tls`, WSS. */
export type WsListen = Omit<WsTransportOptions, "sink">;

export interface ListenOptions {
  udp?: UdpListen | UdpListen[];
  tcp?: TcpListen | TcpListen[];
  tls?: TlsListen | TlsListen[];
  /** WS, or WSS for those with `tls`. */
  ws?: WsListen | WsListen[];
}

/** A socket the engine listens on, as bound (the real port of an ephemeral one). */
export interface BoundSocket {
  protocol: TransportProtocol;
  address: string;
  port: number;
}

/** The transaction counters, and the limit counters of the engine's transports (TCP), added up. */
export type StatsSnapshot = TxStats & TransportStats & { user_errors: number };

/** Methods whose requests can create a dialog (RFC 3261 §12, RFC 6665, RFC 3515). */
const DIALOG_CREATING: ReadonlySet<string> = new Set(["INVITE", "SUBSCRIBE", "REFER", "NOTIFY"]);

export class Engine implements TransportSink {
  readonly clock: Clock;
  readonly timerConfig: TimerConfig;
  readonly id: string;
  onRequest: ((tx: ServerTransactionHandle) => void) | undefined;
  /** The ACK of a 2xx that matched no transaction of ours (a proxy forwards it, §16.11). */
  onStrayAck: ((ack: SipRequest, source: Source) => void) | undefined;
  /** A response that matched no client transaction (a proxy forwards a late 2xx, §16.11). */
  onStrayResponse: ((res: SipResponse, source: Source) => void) | undefined;
  /** A connection of one of the engine's transports closed (RFC 5626 §5.3: a flow that fails ends its bindings). */
  onFlowClosed: ((source: Source) => void) | undefined;

  private readonly ctx: EngineContext;
  private readonly addr: Addressing;
  private readonly pager: AuditPager;
  private readonly limits: Partial<ParseLimits> | undefined;
  private readonly maxTransactions: number;
  private readonly retryAfter: number;
  private readonly limiter: SourceRateLimiter | undefined;
  private readonly strict: boolean;
  private readonly autoCancel487: boolean;
  private readonly unmatchedCancel: "stateless" | "stateful" | "drop";
  private readonly mergedRequests: boolean;
  private draining = false;
  private drainRetryAfter = 5;
  private closed = false;

  static {
    registerContextReader((engine) => engine.ctx);
  }

  constructor(opts: EngineOptions = {}) {
    this.clock = opts.clock ?? new RealClock();
    this.timerConfig = resolveTimers(opts.timers);
    this.id = opts.id ?? Math.floor(Math.random() * 0xffffff).toString(36);
    this.limits = opts.limits;
    this.maxTransactions = opts.maxTransactions ?? 1_000_000;
    this.retryAfter = opts.retryAfter ?? 5;
    this.strict = opts.strict ?? true;
    this.autoCancel487 = opts.autoCancel487 ?? true;
    this.unmatchedCancel = opts.unmatchedCancel ?? "stateless";
    this.mergedRequests = opts.mergedRequests ?? !opts.proxy;
    this.onRequest = opts.onRequest;
    this.onFlowClosed = opts.onFlowClosed;
    this.onStrayAck =
      opts.onStrayAck ??
      (opts.proxy ? (ack, source) => forwardRequestStateless(this, ack, source) : undefined);
    this.onStrayResponse =
      opts.onStrayResponse ?? (opts.proxy ? (res) => forwardResponseStateless(this, res) : undefined);
    this.addr = new Addressing(opts.advertisedHost, opts.aliases ?? [], opts.resolver);
    this.ctx = new EngineContext(
      this.id,
      this.clock,
      this.timerConfig,
      this.addr,
      opts.branchPrefix ?? "",
      opts.cookieKey,
      opts.refFaults,
      opts.logger,
    );
    this.pager = new AuditPager(this.id, this.ctx.table, this.ctx.unfreed);
    const stats = this.ctx.stats;
    this.limiter = opts.rateLimit
      ? new SourceRateLimiter(
          opts.rateLimit,
          () => this.clock.now(),
          () => {
            stats.rate_sources_evicted++;
          },
        )
      : undefined;
  }

  // --- transports -------------------------------------------------------------------
  /**
   * Listen on UDP and TCP sockets: each is made with this engine as its sink
   * and added to it. Resolves with the sockets as bound; if one fails to
   * bind, those already made are closed and the error is thrown.
   */
  async listen(opts: ListenOptions): Promise<BoundSocket[]> {
    const made: Transport[] = [];
    try {
      for (const o of asList(opts.udp)) made.push(await createUdpTransport({ ...o, sink: this }));
      for (const o of [...asList<TcpListen>(opts.tcp), ...asList<TlsListen>(opts.tls)])
        made.push(await createTcpTransport({ clock: this.clock, limits: this.limits, ...o, sink: this }));
      for (const o of asList(opts.ws))
        made.push(await createWsTransport({ clock: this.clock, ...o, sink: this }));
    } catch (err) {
      await Promise.all(made.map((t) => t.close()));
      throw err;
    }
    for (const t of made) this.addTransport(t);
    return made.map((t) => ({ protocol: t.protocol, address: t.localAddress, port: t.localPort }));
  }
  /** Add a transport made elsewhere (the memory network in tests, a traced wrapper); its sink must be this engine. */
  addTransport(t: Transport): void {
    this.addr.transports.push(t);
  }
  /** The first transport of this protocol. */
  transportFor(protocol: TransportProtocol): Transport | undefined {
    return this.addr.transportFor(protocol);
  }
  /** The engine's clock, in ms. */
  now(): number {
    return this.clock.now();
  }
  /** The engine's counters (Kamailio's tm.stats names), live and read-only; `snapshot()` adds the transports' and copies. */
  get stats(): Readonly<TxStats> {
    return this.ctx.stats;
  }
  /** The RFC 3263 resolver for host names (next hops of requests and proxy branches); IP literals never need it. */
  get resolver(): Resolver | undefined {
    return this.addr.resolver;
  }
  set resolver(r: Resolver | undefined) {
    this.addr.resolver = r;
  }
  /** Reference faults seen in "count" mode (at most 100 kept). */
  get refFaults(): readonly RefError[] {
    return this.ctx.refFaults;
  }

  // --- receive path -----------------------------------------------------------------
  /** TransportSink: one whole message from a transport. */
  onMessage(data: Buffer, source: Source): void {
    if (this.closed) return;
    let msg: SipMessage;
    try {
      // A WebSocket message is one SIP message, Content-Length optional (RFC 7118 §5), as a datagram's.
      const datagram = source.protocol === "UDP" || source.protocol === "WS" || source.protocol === "WSS";
      msg = parseMessage(data, { datagram, limits: this.limits });
    } catch (err) {
      this.parseFailed(err, data, source);
      return;
    }
    try {
      if (msg.isRequest) this.receiveRequest(msg, source);
      else this.receiveResponse(msg, source);
    } catch (err) {
      this.ctx.contain(err, "message");
    }
  }

  /** TransportSink: a connection closed (its flow: RFC 5626 §3). */
  onConnectionClosed(source: Source, inbound = true): void {
    if (this.closed) return;
    this.ctx.connectionClosed(source, inbound);
    this.onFlowClosed?.(source);
  }

  /** Alias of onMessage for embedding code that feeds bytes itself. */
  receive(data: Buffer, source: Source): void {
    this.onMessage(data, source);
  }

  private parseFailed(err: unknown, data: Buffer, source: Source): void {
    this.ctx.stats.parse_errors++;
    if (!(err instanceof SipParseError)) {
      this.ctx.logger?.warn({ err }, "parser threw an untyped error");
      return;
    }
    // RFC 3261 §16.3/§8.2: answer a broken request when we can find where to send it; never answer a response.
    if (err.kind !== "request" || err.status < 300) return;
    const res = buildReject(data, err.status, err.reason);
    if (res) this.ctx.sendStateless(res, replyDestination(source));
  }

  private receiveResponse(res: SipResponse, source: Source): void {
    this.ctx.stats.rpl_received++;
    const branch = res.via.branch;
    const tx = branch === undefined ? undefined : this.ctx.table.get(clientKey(branch, res.method));
    if (tx === undefined) {
      this.ctx.stats.stray_responses++;
      if (this.onStrayResponse) {
        const cb = this.onStrayResponse;
        this.ctx.safe("onStrayResponse", () => cb(res, source));
      }
      return;
    }
    (tx as InviteClientTransaction | NonInviteClientTransaction).receiveResponse(res);
  }

  private receiveRequest(req: SipRequest, source: Source): void {
    const method = req.method;
    if (source.protocol === "TLS")
      offerAlias(req, source, this.addr.transportFor("TLS", source.connectionId));
    // A retransmission, an ACK to a non-2xx, or a CANCEL retransmission: §17.2.3.
    const key = serverKey(req, false);
    const existing = this.ctx.table.get(key);
    if (existing !== undefined && (existing.kind === "ist" || existing.kind === "nist")) {
      if (method === "ACK" || method === existing.method) {
        (existing as InviteServerTransaction | NonInviteServerTransaction).receiveRequest(req);
        return;
      }
    }
    if (method === "ACK") {
      this.receiveStrayAck(req, source);
      return;
    }
    // Dropped, not answered: a 503 to each request of a flood would be a reflection amplifier.
    if (this.limiter !== undefined && method !== "CANCEL" && !this.limiter.allow(source.address)) {
      this.ctx.stats.rate_limited++;
      return;
    }
    if (this.strict) {
      try {
        fullParse(req);
      } catch (err) {
        this.ctx.stats.parse_errors++;
        if (err instanceof SipParseError && err.status >= 300)
          this.replyStateless(req, source, err.status, { reason: err.reason });
        return;
      }
    }
    if (method === "CANCEL") {
      this.receiveCancel(req, source);
      return;
    }
    if (this.draining) {
      this.replyStateless(req, source, 503, { headers: [["Retry-After", String(this.drainRetryAfter)]] });
      return;
    }
    if (this.ctx.table.size >= this.maxTransactions) {
      this.ctx.stats.table_full++;
      this.replyStateless(req, source, 503, { headers: [["Retry-After", String(this.retryAfter)]] });
      return;
    }
    if (this.mergedRequests && req.toTag === undefined && this.isMerged(req)) {
      // §8.2.2.2: same From tag, Call-ID and CSeq as a request in progress, another branch.
      this.ctx.stats.merged_requests++;
      this.replyStateless(req, source, 482, { reason: "Loop Detected" });
      return;
    }
    const tx = this.newServerTransaction(req, source, key);
    const handle = new ServerTransactionHandle(tx, this.ctx.safe);
    tx.tu = handle;
    if (this.ctx.observers.requestIn) this.ctx.observers.requestIn(tx, req, source);
    tx.start();
    const handler = this.onRequest;
    if (handler) {
      // safe() without a closure per request
      try {
        handler(handle);
      } catch (err) {
        this.ctx.userThrew("onRequest", err);
      }
    } else if (!handle.finalStatus && method !== "ACK") tx.reply(501);
  }

  private newServerTransaction(
    req: SipRequest,
    source: Source,
    key: string,
  ): InviteServerTransaction | NonInviteServerTransaction {
    stampVia(req, source);
    const dest = replyDestination(source, req.via);
    const reliable = this.addr.isReliable(source.protocol);
    const Actor = req.method === "INVITE" ? InviteServerTransaction : NonInviteServerTransaction;
    const tx = new Actor({
      id: this.ctx.nextId(),
      ctx: this.ctx,
      timers: this.timerConfig,
      reliable,
      request: req,
      source,
      dest,
      tu: NO_SERVER_TU,
    });
    tx.key = key;
    this.ctx.created(false);
    this.ctx.table.insert(tx);
    return tx;
  }

  private isMerged(req: SipRequest): boolean {
    return this.ctx.table.findInDialog(req.callId, req.cseq.seq, mergedWith, req) !== undefined;
  }

  private receiveStrayAck(ack: SipRequest, source: Source): void {
    // The ACK of a 2xx has its own branch: find the INVITE by Call-ID, CSeq and our To tag (§13.3.1.4).
    const ist = this.ctx.table.findInDialog(ack.callId, ack.cseq.seq, acceptedBy, ack) as
      | InviteServerTransaction
      | undefined;
    if (ist !== undefined) {
      ist.take("ack");
      try {
        ist.ack2xx(ack);
      } finally {
        ist.release("ack");
      }
      return;
    }
    if (this.onStrayAck) {
      // §18.2.1 / RFC 3581 §4: a request forwarded on (statelessly here) carries received/rport like any other.
      stampVia(ack, source);
      const cb = this.onStrayAck;
      this.ctx.safe("onStrayAck", () => cb(ack, source));
    }
  }

  private receiveCancel(cancel: SipRequest, source: Source): void {
    // §9.2: the INVITE is found by the §17.2.3 rules with the method INVITE.
    const target = this.ctx.table.get(serverKey(cancel, true));
    if (target === undefined || target.kind !== "ist") {
      this.ctx.stats.unmatched_cancels++;
      if (this.unmatchedCancel === "drop") return;
      if (this.unmatchedCancel === "stateless") {
        this.replyStateless(cancel, source, 481);
        return;
      }
      const tx = this.newServerTransaction(cancel, source, serverKey(cancel, false));
      tx.start();
      tx.reply(481);
      return;
    }
    const ist = target as InviteServerTransaction;
    ist.take("cancel-in");
    try {
      const tx = this.newServerTransaction(cancel, source, serverKey(cancel, false));
      tx.useToTag(ist.toTag);
      tx.start();
      // §9.2: 200 to the CANCEL at once, then the 487 to the INVITE if it had no final yet.
      tx.reply(200);
      ist.cancel(cancel, this.autoCancel487 && !ist.proxy);
    } finally {
      ist.release("cancel-in");
    }
  }

  // --- stateless responses ----------------------------------------------------------
  /**
   * A stateless response to a request (no transaction is created), with the
   * same reply options as every other reply; a To tag of our own is added when
   * the request had none (§8.2.6.2) unless `toTag` is given.
   */
  replyStateless(req: SipRequest, source: Source, status: number, opts?: ReplyOptions): void {
    const data = buildResponse(req, status, {
      reason: opts?.reason,
      toTag: req.toTag || status === 100 ? undefined : (opts?.toTag ?? newTag()),
      headers: opts?.headers,
      body: opts?.body,
      contentType: opts?.contentType,
    });
    this.ctx.stats.rpl_sent++;
    this.ctx.stats.rpl_generated++;
    this.ctx.sendStateless(data, replyDestination(source, req.via));
  }

  // --- client side (t_uac_start) ------------------------------------------------------
  /** Send a request in a new client transaction. Returns the user's handle. */
  request(opts: RequestOptions): ClientTransactionHandle {
    this.admitLocal();
    const method = opts.method.toUpperCase();
    if (method === "ACK" || method === "CANCEL")
      throw new TransactionError("bad-request", `${method} is not sent in a client transaction of its own`);
    const dest = this.addr.resolveNextHop(opts.nextHop ?? opts.uri);
    const transport = this.addr.transportFor(dest.protocol);
    if (!transport) throw new TransactionError("no-transport", `no ${dest.protocol} transport`);
    const branch = this.ctx.newBranch();
    const callId = opts.callId ?? newCallId();
    const cseq = opts.cseq ?? 1 + Math.floor(Math.random() * 10_000);
    const from = hasTag(opts.from) ? opts.from : `${opts.from};tag=${newTag()}`;
    // §8.1.1.8: a request that can create a dialog carries a Contact; ours unless the user gave one.
    let headers = opts.headers;
    if (DIALOG_CREATING.has(method) && !headers?.some(([n]) => canonicalName(n) === "contact")) {
      headers = [...(headers ?? []), ["Contact", `<${this.addr.ownUri(dest.protocol)}>`]];
    }
    const data = buildRequest({
      method,
      uri: opts.uri,
      via: this.addr.viaFor(dest, branch),
      from,
      to: opts.to,
      callId,
      cseq,
      maxForwards: opts.maxForwards,
      headers,
      body: opts.body,
      contentType: opts.contentType,
    });
    const timers = opts.timers ? resolveTimers(opts.timers, this.timerConfig) : this.timerConfig;
    const tx = this.ctx.startClient({
      data,
      dest,
      method,
      callId,
      cseq,
      branch,
      timers,
      tu: NO_CLIENT_TU,
      defer: true,
    });
    return this.handOut(tx, opts);
  }

  /**
   * Send a request the user wrote in full (start line, headers, body) in a new
   * client transaction. siptm pushes its own Via (with a fresh branch) on top;
   * everything else goes out as written. Max-Forwards is added when missing.
   */
  requestFrom(
    message: Buffer | string,
    opts: ClientEvents & { nextHop?: Destination | string; timers?: Partial<TimerConfig> } = {},
  ): ClientTransactionHandle {
    this.admitLocal();
    const text = typeof message === "string" ? message : message.toString("latin1");
    const eol = text.indexOf("\r\n");
    const startLine = eol < 0 ? text : text.slice(0, eol);
    const parts = startLine.split(" ");
    if (parts.length !== 3 || !parts[1]) throw new TransactionError("bad-request", "not a request line");
    const dest = this.addr.resolveNextHop(opts.nextHop ?? parts[1]);
    if (!this.addr.transportFor(dest.protocol))
      throw new TransactionError("no-transport", `no ${dest.protocol} transport`);
    const branch = this.ctx.newBranch();
    // Our Via goes on top of whatever the user wrote.
    const withVia = `${startLine}\r\nVia: ${this.addr.viaFor(dest, branch)}${eol < 0 ? "\r\n\r\n" : text.slice(eol)}`;
    let req: SipMessage;
    try {
      req = parseMessage(Buffer.from(withVia, "latin1"), { datagram: true, limits: this.limits });
    } catch (err) {
      throw new TransactionError("bad-request", `not a valid request: ${(err as Error).message}`);
    }
    if (!req.isRequest) throw new TransactionError("bad-request", "not a request");
    if (req.method === "ACK" || req.method === "CANCEL")
      throw new TransactionError(
        "bad-request",
        `${req.method} is not sent in a client transaction of its own`,
      );
    if (req.maxForwards === undefined) req.setMaxForwards(70);
    const timers = opts.timers ? resolveTimers(opts.timers, this.timerConfig) : this.timerConfig;
    const tx = this.ctx.startClient({
      data: req.toBuffer(),
      dest,
      method: req.method,
      callId: req.callId,
      cseq: req.cseq.seq,
      branch,
      timers,
      tu: NO_CLIENT_TU,
      defer: true,
    });
    return this.handOut(tx, opts);
  }

  /** Give a new client transaction its user's handle, then start it. */
  private handOut(
    tx: InviteClientTransaction | NonInviteClientTransaction,
    events: ClientEvents,
  ): ClientTransactionHandle {
    const handle = new ClientTransactionHandle(tx, events, this.ctx.safe);
    tx.tu = handle;
    tx.start();
    return handle;
  }

  /** The engine can take a new local request (not closed, table not full), or throws. */
  private admitLocal(): void {
    if (this.closed) throw new TransactionError("terminated", "the engine is closed");
    if (this.ctx.table.size >= this.maxTransactions) {
      this.ctx.stats.table_full++;
      throw new TransactionError("table-full", "the transaction table is full");
    }
  }

  /**
   * True when host:port is one of this engine's listening addresses, an alias,
   * or — for a socket bound to a wildcard address — any address of this host
   * (Route/R-URI processing, §16.4; loop detection, §16.3).
   */
  isLocal(host: string, port: number | undefined): boolean {
    return this.addr.isLocal(host, port);
  }

  /**
   * Stop taking new work: from now on new requests get 503 (RFC 3261
   * §21.5.4) without any state, while retransmissions, ACKs, CANCELs and
   * responses of the transactions in flight are still handled. For a bounded,
   * clean shutdown: drain, wait until `unsettled` is 0 (or a deadline), close.
   */
  drain(retryAfter = this.retryAfter): void {
    this.draining = true;
    this.drainRetryAfter = retryAfter;
  }
  get isDraining(): boolean {
    return this.draining;
  }
  /**
   * Live transactions a drain waits for: all but those only absorbing
   * retransmissions until a timer ends them (`stats.settled`: Timers D, I, J,
   * K, M, and L once nothing of ours is resent).
   */
  get unsettled(): number {
    return this.ctx.stats.current - this.ctx.stats.settled;
  }
  /**
   * The ACK of a 2xx (RFC 3261 §13.2.2.4): a new request outside any
   * transaction, sent statelessly — to the Contact of the 2xx, along the
   * route set from its Record-Route (reversed), with the INVITE's CSeq number.
   * The bytes go to the INVITE's next hop. Returns the ACK sent.
   */
  ack2xx(invite: ClientTransactionHandle, answer: SipResponse): Buffer {
    return sendAck2xx(this.ctx, invite, answeredDialog(this.ctx, invite, answer));
  }

  /**
   * For a 2xx that raced a CANCEL (or any answered call to end at once): ACK
   * it and send BYE in a new client transaction. Returns the BYE's handle.
   */
  ackAndBye(
    invite: ClientTransactionHandle,
    answer: SipResponse,
    events?: ClientEvents,
  ): ClientTransactionHandle {
    const d = answeredDialog(this.ctx, invite, answer);
    sendAck2xx(this.ctx, invite, d);
    return this.request({
      ...events,
      method: "BYE",
      uri: d.target,
      from: d.from,
      to: d.to,
      callId: invite.callId,
      cseq: invite.cseq + 1,
      headers: d.routes,
      nextHop: d.dest,
    });
  }

  /**
   * Every destination for a URI in RFC 3263 order: an IP literal at once, a
   * host name through the resolver (NAPTR, SRV, A/AAAA, cached).
   */
  resolveAll(uri: string): Promise<Destination[]> {
    return this.addr.resolveAll(uri);
  }

  /**
   * Kamailio's `tm.cancel callid cseq`: cancel the local INVITE with this
   * Call-ID and CSeq number. The lookup holds the named reference
   * "rpc:cancel" while it works — there is no ambient current transaction.
   */
  cancel(callId: string, cseq: number, reason?: string): CancelResult {
    for (const tx of this.ctx.table.byCallId(callId, cseq)) {
      if (tx.kind !== "ict") continue;
      tx.take("rpc:cancel");
      try {
        return (tx as InviteClientTransaction).cancel(reason);
      } finally {
        tx.release("rpc:cancel");
      }
    }
    return "none";
  }

  /**
   * Kamailio's `tm.reply code reason tid to_tag …`: answer a server
   * transaction found by its id (a route left it pending). Holds "rpc:reply"
   * while it works. Throws TransactionError when unknown or not allowed.
   */
  replyById(id: string, status: number, opts?: ReplyOptions): void {
    const found = this.ctx.withTransaction(id, "rpc:reply", (tx) => {
      if (tx.kind !== "ist" && tx.kind !== "nist")
        throw new TransactionError("bad-request", `transaction ${id} is not a server transaction`, id);
      (tx as InviteServerTransaction | NonInviteServerTransaction).reply(status, opts);
      return true;
    });
    if (!found) throw new TransactionError("terminated", `no transaction ${id}`, id);
  }

  /** Kamailio's `tm.reply_callid`: answer the server transaction with this Call-ID and CSeq number. */
  replyByCallId(callId: string, cseq: number, status: number, opts?: ReplyOptions): void {
    for (const tx of this.ctx.table.byCallId(callId, cseq)) {
      if ((tx.kind === "ist" || tx.kind === "nist") && !(tx as InviteServerTransaction).finalSent) {
        this.replyById(tx.id, status, opts);
        return;
      }
    }
    throw new TransactionError("terminated", `no pending server transaction for ${callId} ${cseq}`);
  }

  // --- introspection ------------------------------------------------------------------
  snapshot(): StatsSnapshot {
    const snap: StatsSnapshot = {
      ...this.ctx.stats,
      ...newTransportStats(),
      user_errors: this.ctx.userErrors,
    };
    for (const t of this.addr.transports) if (t.stats) addTransportStats(snap, t.stats);
    return snap;
  }
  /** Live transactions (and terminated ones still held): state, age and who holds them. */
  audit(): AuditEntry[] {
    const now = this.clock.now();
    const out: AuditEntry[] = [];
    for (const tx of [...this.ctx.table.values(), ...this.ctx.unfreed]) out.push(auditEntry(tx, now));
    return out;
  }
  /**
   * One page of `audit()`: at most `limit` transactions whose ids come after
   * `after` (none: from the first), in creation order, and `next`, the id to
   * pass as `after` for the page that follows (undefined: this page was the
   * last; a full page always gives one, so the page after it may be empty).
   * Any page can be asked for at any time; a page costs O(limit). A cursor
   * that is no id of this engine is a RangeError.
   */
  auditPage(after: string | undefined, limit: number): { entries: AuditEntry[]; next: string | undefined } {
    return this.pager.page(after, limit, this.clock.now());
  }
  /** How long a leak check must wait for every timer to have run out. */
  get longestTimer(): number {
    return longestLifetime(this.timerConfig);
  }
  get armedTimers(): number {
    return this.ctx.timers.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pager.clear();
    this.ctx.timers.close();
    await Promise.all(this.addr.transports.map((t) => t.close()));
  }
}

function asList<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

const NO_CLIENT_TU: ClientTu = {
  onResponse() {},
  onFinal() {},
  onTerminated() {},
};
const NO_SERVER_TU: ServerTu = {
  onTerminated() {},
};

function hasTag(nameAddr: string): boolean {
  const gt = nameAddr.lastIndexOf(">");
  return nameAddr
    .slice(gt + 1)
    .toLowerCase()
    .includes(";tag=");
}

/** §8.2.2.2: `tx` is a server transaction of the same method and From tag as `req` (same Call-ID and CSeq). */
function mergedWith(tx: Transaction, req: SipRequest): boolean {
  if ((tx.kind !== "ist" && tx.kind !== "nist") || tx.method !== req.method) return false;
  return (tx as InviteServerTransaction | NonInviteServerTransaction).request.fromTag === req.fromTag;
}

/** §13.3.1.4: `tx` is the INVITE server transaction that sent the 2xx this ACK acknowledges. */
function acceptedBy(tx: Transaction, ack: SipRequest): boolean {
  if (tx.kind !== "ist") return false;
  const ist = tx as InviteServerTransaction;
  return ist.state === "accepted" && ist.toTag === ack.toTag;
}
