/**
 * The engine: the thin driver around the transaction actors. It wires
 * transports ↔ parser ↔ table ↔ actors ↔ the user's handlers, owns one timer
 * service (one clock wakeup for all timers) and the counters. It keeps no
 * ambient "current transaction": every lookup names its holder and releases
 * it before returning.
 *
 * Path of one datagram: transport.onMessage → Engine.onMessage → parseMessage
 * → (response) table.get(clientKey) → actor.receiveResponse → effects via
 * TxContext (send, timers, user) ; (request) table.get(serverKey) → actor, or
 * a new server transaction → the user's onRequest handler → handle.reply →
 * actor.sendResponse → TxContext.send → transport.send.
 */
import { networkInterfaces } from "node:os";
import { type Clock, RealClock } from "./clock.js";
import { buildRequest, buildResponse } from "./message/build.js";
import { SipParseError } from "./message/errors.js";
import { newBranch, newCallId, newTag } from "./message/ids.js";
import { parseMessage } from "./message/parser.js";
import { canonicalName, flat } from "./message/text.js";
import type { ParseLimits, SipMessage, SipRequest, SipResponse } from "./message/types.js";
import { parseUri } from "./message/uri.js";
import { fullParse } from "./message/validate.js";
import { BranchCookie } from "./proxy/cookie.js";
import type { Resolver } from "./proxy/resolver.js";
import {
  newStats,
  type Observers,
  type TimerKind,
  type Transaction,
  type TxContext,
  type TxKind,
  type TxState,
  type TxStats,
} from "./transaction/actor.js";
import type { CancelResult, ClientTu } from "./transaction/client.js";
import { longestLifetime, resolveTimers, type TimerConfig } from "./transaction/config.js";
import { TransactionError } from "./transaction/errors.js";
import {
  type ClientEvents,
  ClientTransactionHandle,
  type SafeCall,
  ServerTransactionHandle,
} from "./transaction/handles.js";
import { InviteClientTransaction } from "./transaction/ict.js";
import { InviteServerTransaction } from "./transaction/ist.js";
import { NonInviteClientTransaction } from "./transaction/nict.js";
import { NonInviteServerTransaction } from "./transaction/nist.js";
import { countingReporter, RefError, type RefReporter, throwingReporter } from "./transaction/refs.js";
import type { ReplyOptions, ServerTu } from "./transaction/server.js";
import { clientKey, serverKey, TransactionTable } from "./transaction/table.js";
import type { TimerEntry } from "./transaction/timers.js";
import { TimerService } from "./transaction/timers.js";
import { type RateLimitOptions, SourceRateLimiter } from "./transport/ratelimit.js";
import {
  addTransportStats,
  type Destination,
  newTransportStats,
  type SendErrorTarget,
  type Source,
  type Transport,
  type TransportProtocol,
  type TransportSink,
  type TransportStats,
} from "./transport/types.js";

export interface EngineLogger {
  warn(obj: object, msg: string): void;
  debug?(obj: object, msg: string): void;
}

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
  /** §8.2.2.2 merged-request detection (482). Default true. */
  mergedRequests?: boolean;
  /** Extra text after "z9hG4bK" in our branches (e.g. a shard id), before the random part. */
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

export interface AuditEntry {
  id: string;
  kind: TxKind;
  state: TxState;
  method: string;
  callId: string;
  cseq: number;
  ageMs: number;
  holders: string[];
  timers: string[];
}

/** The transaction counters, and the limit counters of the engine's transports (TCP), added up. */
export type StatsSnapshot = TxStats & TransportStats & { user_errors: number };

const MAGIC = "z9hG4bK";
/** Methods whose requests can create a dialog (RFC 3261 §12, RFC 6665, RFC 3515). */
const DIALOG_CREATING: ReadonlySet<string> = new Set(["INVITE", "SUBSCRIBE", "REFER", "NOTIFY"]);

export class Engine implements TxContext, TransportSink {
  readonly clock: Clock;
  readonly timerConfig: TimerConfig;
  readonly stats: TxStats = newStats();
  readonly observers: Observers = {};
  readonly report: RefReporter;
  readonly table = new TransactionTable();
  readonly id: string;
  onRequest: ((tx: ServerTransactionHandle) => void) | undefined;
  /** An ACK that matched no transaction (the ACK of a 2xx passes statelessly, §17.2.3 / §13.3.1.4). */
  onStrayAck: ((ack: SipRequest, source: Source) => void) | undefined;
  /** A response that matched no client transaction (§18.1.2; a 2xx to an INVITE is passed up statelessly). */
  onStrayResponse: ((res: SipResponse, source: Source) => void) | undefined;

  private readonly timerService: TimerService<Transaction>;
  private readonly transports: Transport[] = [];
  private readonly limits: Partial<ParseLimits> | undefined;
  private readonly maxTransactions: number;
  private readonly retryAfter: number;
  private readonly limiter: SourceRateLimiter | undefined;
  private readonly strict: boolean;
  private readonly autoCancel487: boolean;
  private readonly unmatchedCancel: "stateless" | "stateful" | "drop";
  private readonly mergedRequests: boolean;
  private readonly branchPrefix: string;
  private readonly advertisedHost: string | undefined;
  private readonly aliases: Set<string>;
  private draining = false;
  private readonly logger: EngineLogger | undefined;
  readonly resolver: Resolver | undefined;
  /** Seals and checks the branches of relayed INVITEs (proxy/cookie.ts). */
  readonly branchCookie: BranchCookie;
  private seq = 0;
  /** Terminated actors out of every index but still held by someone: normally empty at once. */
  private readonly unfreed = new Set<Transaction>();
  /** auditPage: the table iterator of a walk, by the id its last page ended with (a shortcut; at most PAGE_WALKS). */
  private readonly pageWalks = new Map<string, Iterator<Transaction>>();
  private userErrors = 0;
  private closed = false;
  readonly refFaults: RefError[] = [];

  constructor(opts: EngineOptions = {}) {
    this.clock = opts.clock ?? new RealClock();
    this.timerConfig = resolveTimers(opts.timers);
    this.limits = opts.limits;
    this.maxTransactions = opts.maxTransactions ?? 1_000_000;
    this.retryAfter = opts.retryAfter ?? 5;
    this.limiter = opts.rateLimit
      ? new SourceRateLimiter(
          opts.rateLimit,
          () => this.clock.now(),
          () => {
            this.stats.rate_sources_evicted++;
          },
        )
      : undefined;
    this.strict = opts.strict ?? true;
    this.autoCancel487 = opts.autoCancel487 ?? true;
    this.unmatchedCancel = opts.unmatchedCancel ?? "stateless";
    this.mergedRequests = opts.mergedRequests ?? true;
    this.branchPrefix = opts.branchPrefix ?? "";
    this.advertisedHost = opts.advertisedHost;
    this.aliases = new Set((opts.aliases ?? []).map((a) => unbracket(a).toLowerCase()));
    if (opts.advertisedHost) this.aliases.add(unbracket(opts.advertisedHost).toLowerCase());
    this.logger = opts.logger;
    this.resolver = opts.resolver;
    this.branchCookie = new BranchCookie(opts.cookieKey);
    this.onRequest = opts.onRequest;
    this.id = opts.id ?? Math.floor(Math.random() * 0xffffff).toString(36);
    if (opts.refFaults === "throw") this.report = throwingReporter;
    else {
      const counter = countingReporter({ keep: 100 });
      this.report = (err: RefError) => {
        this.stats.ref_faults++;
        if (this.refFaults.length < 100) this.refFaults.push(err);
        this.logger?.warn(
          { fault: err.fault, holder: err.holder, tx: err.owner },
          "transaction reference fault",
        );
        counter(err);
      };
    }
    this.timerService = new TimerService<Transaction>(this.clock, (entry) => {
      try {
        entry.owner.fire(entry.kind as TimerKind);
      } catch (err) {
        this.contain(err, "timer");
      }
    });
  }

  // --- transports -------------------------------------------------------------------
  addTransport(t: Transport): void {
    this.transports.push(t);
  }
  transportFor(protocol: TransportProtocol): Transport | undefined {
    for (const t of this.transports) if (t.protocol === protocol) return t;
    return undefined;
  }

  // --- TxContext ----------------------------------------------------------------------
  now(): number {
    return this.clock.now();
  }
  send(data: Buffer, dest: Destination, onError: SendErrorTarget): void {
    const t = this.transportFor(dest.protocol);
    if (!t) {
      onError.transportError(new Error(`no ${dest.protocol} transport`));
      return;
    }
    t.send(data, dest, onError);
  }
  armTimer(tx: Transaction, kind: TimerKind, duration: number): TimerEntry<Transaction> {
    return this.timerService.arm(tx, kind, duration);
  }
  cancelTimer(entry: TimerEntry<Transaction>): boolean {
    return this.timerService.cancel(entry);
  }
  leaveIndexes(tx: Transaction): void {
    // Until it is freed, a terminated actor stays visible to audit() so a leak names its holders.
    this.unfreed.add(tx);
    this.table.remove(tx);
  }
  freed(tx: Transaction): void {
    this.unfreed.delete(tx);
    this.stats.freed++;
    this.stats.current--;
    if (this.observers.destroyed) this.observers.destroyed(tx);
  }
  startCancel(ict: Transaction, cancel: Buffer, dest: Destination): void {
    const invite = ict as InviteClientTransaction;
    const tu = new CancelTu(invite);
    const tx = new NonInviteClientTransaction({
      id: this.nextId(),
      ctx: this,
      timers: invite.timers,
      reliable: this.isReliable(dest.protocol),
      request: cancel,
      dest,
      callId: invite.callId,
      cseq: invite.cseq,
      method: "CANCEL",
      branch: invite.branch,
      tu,
    });
    tx.key = clientKey(invite.branch, "CANCEL");
    this.created(tx, true);
    this.table.insert(tx);
    tx.start();
  }

  private created(_tx: Transaction, local: boolean): void {
    this.stats.created++;
    this.stats.current++;
    this.stats.total++;
    if (local) this.stats.total_local++;
  }
  private nextId(): string {
    return flat(`${this.id}.${(++this.seq).toString(36)}`);
  }
  private isReliable(protocol: TransportProtocol): boolean {
    const t = this.transportFor(protocol);
    return t ? t.reliable : protocol !== "UDP";
  }
  /** Run a user callback; a throw is counted and logged, never propagated into the engine. */
  readonly safe: SafeCall = (what, fn) => {
    try {
      fn();
    } catch (err) {
      this.userThrew(what, err);
    }
  };
  private userThrew(what: string, err: unknown): void {
    // A reference fault in throwing mode is an engine bug found by a test: let it out.
    if (err instanceof RefError && this.report === throwingReporter) throw err;
    this.userErrors++;
    this.logger?.warn({ err, callback: what }, "user callback threw");
  }

  // --- receive path -----------------------------------------------------------------
  /** TransportSink: one whole message from a transport. */
  onMessage(data: Buffer, source: Source): void {
    if (this.closed) return;
    let msg: SipMessage;
    try {
      msg = parseMessage(data, { datagram: source.protocol === "UDP", limits: this.limits });
    } catch (err) {
      this.parseFailed(err, data, source);
      return;
    }
    try {
      if (msg.isRequest) this.receiveRequest(msg, source);
      else this.receiveResponse(msg, source);
    } catch (err) {
      this.contain(err, "message");
    }
  }

  /**
   * An exception escaped while handling a message or a timer (a bug in a route
   * or in siptm): counted in `internal_errors` and logged, never a crashed
   * process. A reference fault in throwing mode (tests) is let out.
   */
  private contain(err: unknown, where: string): void {
    if (err instanceof RefError && this.report === throwingReporter) throw err;
    this.stats.internal_errors++;
    this.logger?.warn({ err, where }, "exception contained by the engine");
  }
  /** Alias of onMessage for embedding code that feeds bytes itself. */
  receive(data: Buffer, source: Source): void {
    this.onMessage(data, source);
  }

  private parseFailed(err: unknown, data: Buffer, source: Source): void {
    this.stats.parse_errors++;
    if (!(err instanceof SipParseError)) {
      this.logger?.warn({ err }, "parser threw an untyped error");
      return;
    }
    // RFC 3261 §16.3/§8.2: answer a broken request when we can find where to send it; never answer a response.
    if (err.kind !== "request" || err.status < 300) return;
    const res = salvageResponse(data, err.status, err.reason);
    if (res) this.sendStateless(res, replyDestination(source));
  }

  private receiveResponse(res: SipResponse, source: Source): void {
    this.stats.rpl_received++;
    const branch = res.via.branch;
    const tx = branch === undefined ? undefined : this.table.get(clientKey(branch, res.method));
    if (tx === undefined) {
      this.stats.stray_responses++;
      if (this.onStrayResponse) {
        const cb = this.onStrayResponse;
        this.safe("onStrayResponse", () => cb(res, source));
      }
      return;
    }
    (tx as InviteClientTransaction | NonInviteClientTransaction).receiveResponse(res);
  }

  private receiveRequest(req: SipRequest, source: Source): void {
    const method = req.method;
    // A retransmission, an ACK to a non-2xx, or a CANCEL retransmission: §17.2.3.
    const key = serverKey(req, false);
    const existing = this.table.get(key);
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
      this.stats.rate_limited++;
      return;
    }
    if (this.strict) {
      try {
        fullParse(req);
      } catch (err) {
        this.stats.parse_errors++;
        if (err instanceof SipParseError && err.status >= 300)
          this.replyStateless(req, source, err.status, err.reason);
        return;
      }
    }
    if (method === "CANCEL") {
      this.receiveCancel(req, source);
      return;
    }
    if (this.draining) {
      this.replyStateless(req, source, 503, undefined, [["Retry-After", String(this.drainRetryAfter)]]);
      return;
    }
    if (this.table.size >= this.maxTransactions) {
      this.stats.table_full++;
      this.replyStateless(req, source, 503, undefined, [["Retry-After", String(this.retryAfter)]]);
      return;
    }
    if (this.mergedRequests && req.toTag === undefined && this.isMerged(req)) {
      // §8.2.2.2: same From tag, Call-ID and CSeq as a request in progress, another branch.
      this.stats.merged_requests++;
      this.replyStateless(req, source, 482, "Loop Detected");
      return;
    }
    const tx = this.newServerTransaction(req, source, key);
    const handle = new ServerTransactionHandle(tx, this.safe);
    tx.tu = handle;
    if (this.observers.requestIn) this.observers.requestIn(tx, req, source);
    tx.start();
    const handler = this.onRequest;
    if (handler) {
      // safe() without a closure per request
      try {
        handler(handle);
      } catch (err) {
        this.userThrew("onRequest", err);
      }
    } else if (!handle.finalStatus && method !== "ACK") tx.reply(501);
  }

  private newServerTransaction(
    req: SipRequest,
    source: Source,
    key: string,
  ): InviteServerTransaction | NonInviteServerTransaction {
    stampVia(req, source);
    const dest = replyDestination(source, req);
    const reliable = this.isReliable(source.protocol);
    const Actor = req.method === "INVITE" ? InviteServerTransaction : NonInviteServerTransaction;
    const tx = new Actor({
      id: this.nextId(),
      ctx: this,
      timers: this.timerConfig,
      reliable,
      request: req,
      source,
      dest,
      tu: NO_SERVER_TU,
    });
    tx.key = key;
    this.created(tx, false);
    this.table.insert(tx);
    return tx;
  }

  private isMerged(req: SipRequest): boolean {
    return this.table.findInDialog(req.callId, req.cseq.seq, mergedWith, req) !== undefined;
  }

  private receiveStrayAck(ack: SipRequest, source: Source): void {
    // The ACK of a 2xx has its own branch: find the INVITE by Call-ID, CSeq and our To tag (§13.3.1.4).
    const ist = this.table.findInDialog(ack.callId, ack.cseq.seq, acceptedBy, ack) as
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
      this.safe("onStrayAck", () => cb(ack, source));
    }
  }

  /**
   * True when this ACK (of a 2xx, no transaction of its own) belongs to an
   * INVITE we relayed whose server transaction is still Accepted (RFC 6026,
   * Timer L): same Call-ID, CSeq and From tag. Such an ACK may be forwarded
   * even without a Route naming us (a UA that sends everything to its
   * proxy's address).
   */
  relayedAck(ack: SipRequest): boolean {
    return this.table.findInDialog(ack.callId, ack.cseq.seq, relayedFor, ack) !== undefined;
  }

  private receiveCancel(cancel: SipRequest, source: Source): void {
    // §9.2: the INVITE is found by the §17.2.3 rules with the method INVITE.
    const target = this.table.get(serverKey(cancel, true));
    if (target === undefined || target.kind !== "ist") {
      this.stats.unmatched_cancels++;
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

  // --- stateless sending -------------------------------------------------------------
  /** Send bytes without any transaction (a stateless response, the ACK of a 2xx). */
  sendStateless(data: Buffer, dest: Destination): void {
    const t = this.transportFor(dest.protocol);
    if (t) t.send(data, dest);
  }
  /** A stateless response to a request (no transaction is created). */
  replyStateless(
    req: SipRequest,
    source: Source,
    status: number,
    reason?: string,
    headers?: Array<[string, string]>,
  ): void {
    const data = buildResponse(req, status, {
      reason,
      toTag: req.toTag || status === 100 ? undefined : newTag(),
      headers,
    });
    this.stats.rpl_sent++;
    this.stats.rpl_generated++;
    this.sendStateless(data, replyDestination(source, req));
  }

  // --- client side (t_uac_start) ------------------------------------------------------
  /** Send a request in a new client transaction. Returns the user's handle. */
  request(opts: RequestOptions): ClientTransactionHandle {
    this.admitLocal();
    const method = opts.method.toUpperCase();
    if (method === "ACK" || method === "CANCEL")
      throw new TransactionError("bad-request", `${method} is not sent in a client transaction of its own`);
    const dest = this.resolveNextHop(opts.nextHop ?? opts.uri);
    const transport = this.transportFor(dest.protocol);
    if (!transport) throw new TransactionError("no-transport", `no ${dest.protocol} transport`);
    const branch = this.newBranch();
    const callId = opts.callId ?? newCallId();
    const cseq = opts.cseq ?? 1 + Math.floor(Math.random() * 10_000);
    const from = hasTag(opts.from) ? opts.from : `${opts.from};tag=${newTag()}`;
    const body = typeof opts.body === "string" ? Buffer.from(opts.body, "utf8") : opts.body;
    // §8.1.1.8: a request that can create a dialog carries a Contact; ours unless the user gave one.
    let headers = opts.headers;
    if (DIALOG_CREATING.has(method) && !headers?.some(([n]) => canonicalName(n) === "contact")) {
      headers = [...(headers ?? []), ["Contact", `<${this.ownUri(dest.protocol)}>`]];
    }
    const data = buildRequest({
      method,
      uri: opts.uri,
      via: this.viaFor(dest, branch),
      from,
      to: opts.to,
      callId,
      cseq,
      maxForwards: opts.maxForwards,
      headers,
      body,
      contentType: opts.contentType,
    });
    const timers = opts.timers ? resolveTimers(opts.timers, this.timerConfig) : this.timerConfig;
    const tx = this.startClient({
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
    const dest = this.resolveNextHop(opts.nextHop ?? parts[1]);
    if (!this.transportFor(dest.protocol))
      throw new TransactionError("no-transport", `no ${dest.protocol} transport`);
    const branch = this.newBranch();
    // Our Via goes on top of whatever the user wrote.
    const withVia = `${startLine}\r\nVia: ${this.viaFor(dest, branch)}${eol < 0 ? "\r\n\r\n" : text.slice(eol)}`;
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
    const tx = this.startClient({
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
    const handle = new ClientTransactionHandle(tx, events, this.safe);
    tx.tu = handle;
    tx.start();
    return handle;
  }

  /** The engine can take a new local request (not closed, table not full), or throws. */
  private admitLocal(): void {
    if (this.closed) throw new TransactionError("terminated", "the engine is closed");
    if (this.table.size >= this.maxTransactions) {
      this.stats.table_full++;
      throw new TransactionError("table-full", "the transaction table is full");
    }
  }

  /**
   * Start a client transaction for bytes already built (a proxy branch, a
   * request from the user). The caller's `tu` hears its responses. With
   * `defer` the caller calls `start()` itself (after it attached a handle).
   */
  startClient(p: {
    data: Buffer;
    dest: Destination;
    method: string;
    callId: string;
    cseq: number;
    branch: string;
    tu: ClientTu;
    timers?: TimerConfig | undefined;
    local?: boolean;
    defer?: boolean;
  }): InviteClientTransaction | NonInviteClientTransaction {
    const reliable = this.isReliable(p.dest.protocol);
    const timers = p.timers ?? this.timerConfig;
    const id = this.nextId();
    const tx =
      p.method === "INVITE"
        ? new InviteClientTransaction({
            id,
            ctx: this,
            timers,
            reliable,
            request: p.data,
            dest: p.dest,
            callId: p.callId,
            cseq: p.cseq,
            branch: p.branch,
            tu: p.tu,
          })
        : new NonInviteClientTransaction({
            id,
            ctx: this,
            timers,
            reliable,
            request: p.data,
            dest: p.dest,
            callId: p.callId,
            cseq: p.cseq,
            method: p.method,
            branch: p.branch,
            tu: p.tu,
          });
    tx.key = clientKey(p.branch, p.method);
    this.created(tx, p.local ?? true);
    this.table.insert(tx);
    if (!p.defer) tx.start();
    return tx;
  }

  /** A new branch id: z9hG4bK, the engine's prefix (a shard id), `extra`, then ≥ 96 random bits. */
  newBranch(extra = ""): string {
    return newBranch(this.branchPrefix + extra);
  }

  /**
   * True when host:port is one of this engine's listening addresses, an alias,
   * or — for a socket bound to a wildcard address — any address of this host
   * (Route/R-URI processing, §16.4; loop detection, §16.3).
   */
  isLocal(host: string, port: number | undefined): boolean {
    const h = unbracket(host).toLowerCase();
    for (const t of this.transports) {
      const p = port ?? (t.protocol === "TLS" || t.protocol === "WSS" ? 5061 : 5060);
      if (p !== t.localPort) continue;
      const local = t.localAddress.toLowerCase();
      if (h === local || this.aliases.has(h)) return true;
      if ((local === "0.0.0.0" || local === "::") && hostAddresses().has(h)) return true;
    }
    return false;
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
    return this.stats.current - this.stats.settled;
  }
  private drainRetryAfter = 5;

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
      host?: string;
      port?: number;
      params?: ReadonlyArray<readonly [string, string | null]>;
    };
    if (!u.host) throw new TransactionError("bad-request", `no host in ${hop}`);
    const address = unbracket(u.host);
    if (!isIpLiteral(address)) {
      const cached = this.resolver?.resolveCached(hop);
      if (cached?.[0]) return cached[0];
      throw new TransactionError(
        "no-transport",
        `${u.host} needs DNS resolution (RFC 3263): use a resolver or a nextHop`,
      );
    }
    let protocol: TransportProtocol = "UDP";
    for (const [name, value] of u.params ?? [])
      if (name === "transport" && value) protocol = value.toUpperCase() as TransportProtocol;
    return { protocol, address, port: u.port ?? 5060 };
  }

  /**
   * The ACK of a 2xx (RFC 3261 §13.2.2.4): a new request outside any
   * transaction, sent statelessly — to the Contact of the 2xx, along the
   * route set from its Record-Route (reversed), with the INVITE's CSeq number.
   * The bytes go to the INVITE's next hop. Returns the ACK sent.
   */
  ack2xx(invite: ClientTransactionHandle, answer: SipResponse): Buffer {
    const d = this.dialogFrom(invite, answer);
    const data = buildRequest({
      method: "ACK",
      uri: d.target,
      via: this.viaFor(d.dest, newBranch(this.branchPrefix)),
      from: d.from,
      to: d.to,
      callId: invite.callId,
      cseq: invite.cseq,
      headers: d.routes,
    });
    this.sendStateless(data, d.dest);
    return data;
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
    this.ack2xx(invite, answer);
    const d = this.dialogFrom(invite, answer);
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

  private dialogFrom(invite: ClientTransactionHandle, answer: SipResponse) {
    const sent = parseMessage(invite.request) as SipRequest;
    const contact = answer.header("contact");
    const target = contact ? uriOfNameAddr(contact) : sent.uri;
    const routes: Array<[string, string]> = answer
      .headerValues("record-route")
      .reverse()
      .map((r) => ["Route", r]);
    const tx = this.table.getById(invite.id) as InviteClientTransaction | undefined;
    const dest = tx?.dest ?? this.resolveNextHop(target);
    return { target, routes, dest, from: sent.header("from") ?? "", to: answer.header("to") ?? "" };
  }

  /**
   * A SIP URI that reaches this engine over `protocol` (for Record-Route, RFC 3261 §16.6 item 4):
   * the socket `local` names (the one a request came in on), else our first socket of that protocol.
   */
  ownUri(protocol: TransportProtocol, local?: { readonly address: string; readonly port: number }): string {
    const t = local ? undefined : (this.transportFor(protocol) ?? this.transports[0]);
    const host = this.advertisedHost ?? local?.address ?? t?.localAddress ?? "127.0.0.1";
    const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
    const port = local?.port ?? t?.localPort ?? 5060;
    return `sip:${h}:${port}${protocol === "UDP" ? "" : `;transport=${protocol.toLowerCase()}`}`;
  }

  /** A Via value for a request we send to `dest`. */
  viaFor(dest: Destination, branch: string): string {
    const transport = this.transportFor(dest.protocol);
    const host = this.advertisedHost ?? transport?.localAddress ?? "127.0.0.1";
    const sentBy = `${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${transport?.localPort ?? 5060}`;
    return `SIP/2.0/${dest.protocol} ${sentBy};branch=${branch};rport`;
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
   * Kamailio's `tm.cancel callid cseq`: cancel the local INVITE with this
   * Call-ID and CSeq number. The lookup holds the named reference
   * "rpc:cancel" while it works — there is no ambient current transaction.
   */
  cancel(callId: string, cseq: number, reason?: string): CancelResult {
    for (const tx of this.table.byCallId(callId, cseq)) {
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
  replyById(
    id: string,
    status: number,
    reason?: string,
    opts?: Omit<ReplyOptions, "reason">,
    toTag?: string,
  ): void {
    const found = this.withTransaction(id, "rpc:reply", (tx) => {
      if (tx.kind !== "ist" && tx.kind !== "nist")
        throw new TransactionError("bad-request", `transaction ${id} is not a server transaction`, id);
      const stx = tx as InviteServerTransaction | NonInviteServerTransaction;
      if (toTag && !stx.finalSent && stx.lastStatus === 0) stx.useToTag(toTag);
      stx.reply(status, { ...opts, reason });
      return true;
    });
    if (!found) throw new TransactionError("terminated", `no transaction ${id}`, id);
  }

  /** Kamailio's `tm.reply_callid`: answer the server transaction with this Call-ID and CSeq number. */
  replyByCallId(
    callId: string,
    cseq: number,
    status: number,
    reason?: string,
    opts?: Omit<ReplyOptions, "reason">,
    toTag?: string,
  ): void {
    for (const tx of this.table.byCallId(callId, cseq)) {
      if ((tx.kind === "ist" || tx.kind === "nist") && !(tx as InviteServerTransaction).finalSent) {
        this.replyById(tx.id, status, reason, opts, toTag);
        return;
      }
    }
    throw new TransactionError("terminated", `no pending server transaction for ${callId} ${cseq}`);
  }

  /**
   * Run `fn` on a transaction found by id, holding the named reference
   * `holder` for the duration (control requests: tm.reply, tm.list…).
   */
  withTransaction<R>(id: string, holder: string, fn: (tx: Transaction) => R): R | undefined {
    const tx = this.table.getById(id);
    if (!tx) return undefined;
    tx.take(holder);
    try {
      return fn(tx);
    } finally {
      tx.release(holder);
    }
  }

  // --- introspection ------------------------------------------------------------------
  snapshot(): StatsSnapshot {
    const snap: StatsSnapshot = { ...this.stats, ...newTransportStats(), user_errors: this.userErrors };
    for (const t of this.transports) if (t.stats) addTransportStats(snap, t.stats);
    return snap;
  }
  /** Live transactions: state, age and who holds them. */
  audit(): AuditEntry[] {
    const now = this.clock.now();
    const out: AuditEntry[] = [];
    for (const tx of [...this.table.values(), ...this.unfreed]) out.push(auditEntry(tx, now));
    return out;
  }
  /**
   * One page of `audit()`: at most `limit` transactions (live, or terminated and still held) whose
   * ids come after `after` (none: from the first), in creation order, and `next`, the id to pass as
   * `after` for the page that follows (undefined: this page was the last; a full page always gives
   * one, so the page after it may be empty). The cursor is an id: any page can be asked for at any
   * time. The table holds transactions in creation order (ids are made and inserted in one step),
   * so a page reads only up to its last entry — and where a walk stopped the table iterator waits
   * for its next page (a few kept, a shortcut only), so walking a big table costs O(limit) a page.
   * A cursor that is no id of this engine is a RangeError.
   */
  auditPage(after: string | undefined, limit: number): { entries: AuditEntry[]; next: string | undefined } {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`page limit ${limit} is not a whole number ≥ 1`);
    if (
      after !== undefined &&
      !(after.startsWith(`${this.id}.`) && /^[0-9a-z]+$/.test(after.slice(this.id.length + 1)))
    )
      throw new RangeError(
        `cursor ${JSON.stringify(after.slice(0, 80))} is not a transaction id of this engine`,
      );
    // The table's transactions after `after`, in order: where the walk stopped, or read up to there.
    let it = after === undefined ? undefined : this.pageWalks.get(after);
    if (it) this.pageWalks.delete(after!);
    else {
      it = this.table.values();
      if (after !== undefined) {
        let r = it.next();
        while (!r.done && !idAfter(r.value.id, after)) r = it.next();
        if (!r.done) it = prepend(r.value, it);
      }
    }
    const fromTable: Transaction[] = [];
    while (fromTable.length < limit) {
      const r = it.next();
      if (r.done) break;
      fromTable.push(r.value);
    }
    // Terminated ones still held (few: they have left the table) go where their ids are.
    let held: Transaction[] | undefined;
    for (const tx of this.unfreed)
      if (after === undefined || idAfter(tx.id, after)) {
        held ??= [];
        held.push(tx);
      }
    let picked = fromTable;
    let walkGoesOn = fromTable.length === limit;
    if (held) {
      picked = [...fromTable, ...held].sort((a, b) => (idAfter(a.id, b.id) ? 1 : -1)).slice(0, limit);
      // A table entry pushed off the page by held ones is not where the iterator stopped.
      if (picked[picked.length - 1] !== fromTable[fromTable.length - 1]) walkGoesOn = false;
    }
    const full = picked.length === limit;
    const last = picked[picked.length - 1];
    if (full && walkGoesOn && last) {
      this.pageWalks.set(last.id, it);
      if (this.pageWalks.size > PAGE_WALKS) this.pageWalks.delete(this.pageWalks.keys().next().value!);
    }
    const now = this.clock.now();
    const entries = picked.map((tx) => auditEntry(tx, now));
    return { entries, next: full && last ? last.id : undefined };
  }
  /** How long a leak check must wait for every timer to have run out. */
  get longestTimer(): number {
    return longestLifetime(this.timerConfig);
  }
  get armedTimers(): number {
    return this.timerService.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pageWalks.clear();
    this.timerService.close();
    await Promise.all(this.transports.map((t) => t.close()));
  }
}

/** Walks of auditPage kept for their next page. */
const PAGE_WALKS = 4;

/** Ids of one engine, "<engine id>.<n in base 36>": a longer one is later, ids of one length compare as strings. */
function idAfter(a: string, b: string): boolean {
  return a.length !== b.length ? a.length > b.length : a > b;
}

function* prepend<T>(first: T, rest: Iterator<T>): Iterator<T> {
  yield first;
  for (let r = rest.next(); !r.done; r = rest.next()) yield r.value;
}

/** The CANCEL's own client transaction reports to its INVITE, holding "cancel-txn" until its final response. */
class CancelTu implements ClientTu {
  private held = true;
  constructor(private readonly invite: InviteClientTransaction) {
    invite.take("cancel-txn");
  }
  onResponse(): void {}
  onFinal(
    _tx: Transaction,
    outcome: { status: number; cause: string; response?: SipResponse | undefined },
  ): void {
    if (outcome.cause === "response" && outcome.response)
      this.invite.notifyCancel({ kind: "answered", status: outcome.status, response: outcome.response });
    else
      this.invite.notifyCancel({
        kind: "failed",
        cause: outcome.cause === "transport-error" ? "transport-error" : "timeout",
      });
    this.let();
  }
  onTerminated(): void {
    this.let();
  }
  private let(): void {
    if (!this.held) return;
    this.held = false;
    this.invite.release("cancel-txn");
  }
}

const NO_CLIENT_TU: ClientTu = {
  onResponse() {},
  onFinal() {},
  onTerminated() {},
};
const NO_SERVER_TU: ServerTu = {
  onTerminated() {},
};

/** The URI inside a name-addr ("<sip:x>;p") or an addr-spec ("sip:x;p" → "sip:x"). */
function uriOfNameAddr(value: string): string {
  const lt = value.indexOf("<");
  if (lt >= 0) {
    const gt = value.indexOf(">", lt);
    return value.slice(lt + 1, gt < 0 ? undefined : gt).trim();
  }
  const semi = value.indexOf(";");
  return (semi < 0 ? value : value.slice(0, semi)).trim();
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

function hasTag(nameAddr: string): boolean {
  const gt = nameAddr.lastIndexOf(">");
  return nameAddr
    .slice(gt + 1)
    .toLowerCase()
    .includes(";tag=");
}

function unbracket(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

function isIpLiteral(host: string): boolean {
  if (host.includes(":")) return true;
  const parts = host.split(".");
  return (
    parts.length === 4 &&
    parts.every((p) => p.length > 0 && p.length <= 3 && /^\d+$/.test(p) && Number(p) <= 255)
  );
}

/**
 * §18.2.1 / RFC 3581: stamp `received` when the sent-by host is not the
 * source address, and fill an empty `rport` with the source port. Only the
 * top Via line changes.
 */
function stampVia(req: SipRequest, source: Source): void {
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
 * when rport was asked for, else at the sent-by port (default 5060).
 */
function replyDestination(source: Source, req?: SipRequest): Destination {
  if (source.protocol !== "UDP" || !req) {
    return {
      protocol: source.protocol,
      address: source.address,
      port: source.port,
      connectionId: source.connectionId,
    };
  }
  const via = req.via;
  const port = via.rport !== undefined ? source.port : (via.port ?? 5060);
  return { protocol: "UDP", address: source.address, port };
}

/**
 * A response to a request that failed to parse, built from whatever Via,
 * From, To, Call-ID and CSeq lines can be found with a tolerant line scan.
 * Returns undefined when there is no Via to answer along.
 */
function salvageResponse(data: Buffer, status: number, reason: string): Buffer | undefined {
  const end = data.indexOf("\r\n\r\n");
  const head = data.subarray(0, end < 0 ? Math.min(data.length, 8192) : end).toString("latin1");
  const lines = head.split("\r\n");
  const keep: string[] = [];
  let via = false;
  for (let i = 1; i < lines.length && keep.length < 40; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (name === "via" || name === "v") via = true;
    if (["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"].includes(name)) keep.push(line);
  }
  if (!via) return undefined;
  const phrase = reason.replace(/[\r\n]/g, " ").slice(0, 100);
  return Buffer.from(
    `SIP/2.0 ${status} ${phrase}\r\n${keep.join("\r\n")}\r\nContent-Length: 0\r\n\r\n`,
    "latin1",
  );
}

export { MAGIC as BRANCH_MAGIC_COOKIE };

/** §8.2.2.2: `tx` is a server transaction of the same method and From tag as `req` (same Call-ID and CSeq). */
function mergedWith(tx: Transaction, req: SipRequest): boolean {
  if ((tx.kind !== "ist" && tx.kind !== "nist") || tx.method !== req.method) return false;
  return (tx as InviteServerTransaction | NonInviteServerTransaction).request.fromTag === req.fromTag;
}

/** What `audit()` and `auditPage()` say of one transaction at `now`. */
function auditEntry(tx: Transaction, now: number): AuditEntry {
  return {
    id: tx.id,
    kind: tx.kind,
    state: tx.state,
    method: tx.method,
    callId: tx.callId,
    cseq: tx.cseq,
    ageMs: now - tx.createdAt,
    holders: tx.refs.holders(),
    timers: tx.armedTimers(),
  };
}

/** `tx` is a proxy's INVITE server transaction that relayed a 2xx (RFC 6026 Accepted) to the sender of this ACK. */
function relayedFor(tx: Transaction, ack: SipRequest): boolean {
  if (tx.kind !== "ist") return false;
  const ist = tx as InviteServerTransaction;
  return ist.state === "accepted" && ist.proxy !== undefined && ist.request.fromTag === ack.fromTag;
}

/** §13.3.1.4: `tx` is the INVITE server transaction that sent the 2xx this ACK acknowledges. */
function acceptedBy(tx: Transaction, ack: SipRequest): boolean {
  if (tx.kind !== "ist") return false;
  const ist = tx as InviteServerTransaction;
  return ist.state === "accepted" && ist.toTag === ack.toTag;
}
