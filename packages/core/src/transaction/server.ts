/** What the two server transaction actors share: their user interface, the reply path, stats and how they end. */
import { buildResponse } from "../message/build.js";
import { newTag } from "../message/ids.js";
import { canonicalName } from "../message/text.js";
import type { SipRequest } from "../message/types.js";
import type { Destination, Source } from "../transport/types.js";
import { impossible, statusClassKey, Transaction, type TransactionInit } from "./actor.js";
import { TransactionError } from "./errors.js";
import type { IstState } from "./ist.js";
import type { NistState } from "./nist.js";

export type ServerEndCause = "normal" | "ack-timeout" | "transport-error" | "lifetime";

/** The user of a server transaction (a handle, or a proxy's response context). */
export interface ServerTu {
  /** A CANCEL matched this INVITE (§9.2) before a final response. */
  onCancel?(tx: Transaction, cancel: SipRequest): void;
  /** The ACK for a 2xx this transaction sent (matched by dialog, §13.3.1.4). */
  onAck?(tx: Transaction, ack: SipRequest): void;
  /** A final response went out (from the user or automatically, e.g. the 487 after a CANCEL). */
  onFinalSent?(tx: Transaction, status: number): void;
  onTerminated(tx: Transaction, cause: ServerEndCause): void;
}

/** How to answer a request: every reply in the API (handle, id, Call-ID) takes these. */
export interface ReplyOptions {
  /** Reason-Phrase; the RFC's table when absent. */
  reason?: string | undefined;
  /** Extra header lines, in order. */
  headers?: Array<[string, string]> | undefined;
  /** A string body is sent as UTF-8. */
  body?: Buffer | string | undefined;
  contentType?: string | undefined;
  /**
   * The To tag of this transaction's responses (Kamailio's tm.reply to_tag);
   * honoured only before the first response other than 100.
   */
  toTag?: string | undefined;
}

/** A stateful proxy's response context, linked to the server transaction it relays for. */
export interface ProxyLink {
  /** A CANCEL matched the INVITE (§16.10): cancel the branches; no local 487. */
  upstreamCancel(cancel: SipRequest): void;
  /** The server transaction terminated. */
  serverTerminated(): void;
}

/** What a server transaction is made with (INVITE and non-INVITE alike). */
export interface ServerInit extends TransactionInit {
  /** The request that created it (its Via already stamped, §18.2.1); responses are built from it. */
  readonly request: SipRequest;
  /** Where it came from: the peer and the local socket (our Contact in a 2xx, §12.1.1). */
  readonly source: Source;
  /** Where responses go (RFC 3261 §18.2.2, RFC 3581). */
  readonly dest: Destination;
  /** Who hears CANCEL, ACK, the final sent and the end (a handle, once made; a proxy's context). */
  readonly tu: ServerTu;
}

/**
 * The two server actors (ist.ts, nist.ts): what they are made with, the
 * reply path, and the events both figures answer alike — the lifetime cap and
 * a transport error — as one switch over the states of Figures 7 and 8.
 */
export abstract class ServerTransaction extends Transaction {
  abstract override state: IstState | NistState;
  readonly callId: string;
  readonly cseq: number;
  readonly method: string;
  readonly request: SipRequest;
  readonly source: Source;
  /** Where responses go (RFC 3261 §18.2.2, RFC 3581). */
  readonly dest: Destination;
  tu: ServerTu;
  /** Set while a proxy relays this request (RFC 3261 §16). */
  proxy: ProxyLink | undefined;
  /** The last response sent, as bytes: retransmissions resend it as is. */
  lastResponse: Buffer | undefined;
  lastStatus = 0;
  /** To tag used in every response but 100 (one per transaction). */
  private tag: string | undefined;
  endCause: ServerEndCause = "normal";

  constructor(init: ServerInit) {
    super(init);
    const request = init.request;
    this.callId = request.callId;
    this.cseq = request.cseq.seq;
    this.method = request.method;
    this.request = request;
    this.source = init.source;
    this.dest = init.dest;
    this.tu = init.tu;
  }

  /** The To tag of this transaction's responses: the request's own when it has one (in-dialog), else ours. */
  get toTag(): string {
    if (this.tag === undefined) this.tag = this.request.toTag ?? newTag();
    return this.tag;
  }

  /** Use this To tag (a CANCEL's 200 carries the tag of its INVITE's responses, §9.2). */
  useToTag(tag: string): void {
    this.tag = tag;
  }

  get finalSent(): boolean {
    return this.lastStatus >= 200;
  }

  /** Build a response to the request (§8.2.6) with this transaction's To tag. */
  protected build(status: number, opts: ReplyOptions | undefined): Buffer {
    if (!Number.isInteger(status) || status < 100 || status > 699)
      throw new TransactionError("bad-status", `status ${status} is not a SIP status code`, this.id);
    let headers = opts?.headers;
    if (status > 100 && status < 300 && this.request.method === "INVITE") {
      // §12.1.1: a dialog-creating response copies the request's Record-Route, in order,
      // and carries a Contact: ours (the socket the request came in on) unless the user gave one.
      const extra: Array<[string, string]> = this.request.has("record-route")
        ? this.request.headerLines("record-route").map((v) => ["Record-Route", v])
        : [];
      if (!headers?.some(([n]) => canonicalName(n) === "contact")) extra.push(["Contact", this.ownContact()]);
      headers = headers ? [...extra, ...headers] : extra;
    }
    return buildResponse(this.request, status, {
      reason: opts?.reason,
      toTag: status === 100 || this.request.toTag ? undefined : this.toTag,
      headers,
      body: opts?.body,
      contentType: opts?.contentType,
    });
  }

  /** A Contact URI for the local socket the request arrived on. */
  private ownContact(): string {
    const src = this.source;
    const host = src.localAddress.includes(":") ? `[${src.localAddress}]` : src.localAddress;
    const transport = src.protocol === "UDP" ? "" : `;transport=${src.protocol.toLowerCase()}`;
    return `<sip:${host}:${src.localPort}${transport}>`;
  }

  /** Put a response on the wire and count it. */
  protected transmit(status: number, data: Buffer, generated: boolean): void {
    this.lastResponse = data;
    this.lastStatus = status;
    const stats = this.ctx.stats;
    stats.rpl_sent++;
    if (generated) stats.rpl_generated++;
    stats[statusClassKey(status)]++;
    if (this.ctx.observers.responseOut) this.ctx.observers.responseOut(this, status, data);
    this.ctx.send(data, this.dest, this);
  }

  /**
   * A final response went out and the transaction now waits (Timer J, L, H, I)
   * with nothing left to build: its request shrinks to its bytes and eager
   * fields for that time (the handle still reads it the same).
   */
  protected settle(): void {
    this.request.compact();
  }

  protected retransmitLast(): void {
    if (!this.lastResponse) return;
    this.ctx.stats.retransmissions++;
    this.ctx.send(this.lastResponse, this.dest, this);
  }

  /** The user's reply: build and send. Throws TransactionError when the state does not allow it. */
  reply(status: number, opts?: ReplyOptions): void {
    this.checkReply(status);
    // One To tag per transaction (§8.2.6.2): a caller's tag only before any response that carries one.
    if (opts?.toTag !== undefined && this.lastStatus <= 100) this.useToTag(opts.toTag);
    this.sendResponse(status, this.build(status, opts), true);
  }

  /** Send a response the caller already built (a proxy relaying a response). */
  abstract sendResponse(status: number, data: Buffer, generated: boolean): void;

  protected checkReply(status: number): void {
    if (this.state === "terminated")
      throw new TransactionError("terminated", "the transaction has terminated", this.id);
    if (this.finalSent)
      throw new TransactionError(
        "final-already-sent",
        `a final response (${this.lastStatus}) was already sent`,
        this.id,
      );
    if (!Number.isInteger(status) || status < 100 || status > 699)
      throw new TransactionError("bad-status", `status ${status} is not a SIP status code`, this.id);
  }

  /** The hard lifetime cap (Kamailio max_inv_lifetime / max_noninv_lifetime): → Terminated whatever the state. */
  protected lifetimeExpired(): void {
    this.endEarly("lifetime");
  }

  /** §17.2.1 / §17.2.2: a transport failure ends a server transaction. */
  transportError(_err: Error): void {
    this.endEarly("transport-error");
  }

  /** The lifetime cap or a transport error, counted as such. */
  private endEarly(cause: "lifetime" | "transport-error"): void {
    switch (this.state) {
      case "trying":
      case "proceeding":
      case "accepted":
      case "completed":
      case "confirmed":
        // Figures 7 and 8: any state —transport error (or the lifetime cap)→ Terminated.
        if (cause === "lifetime") this.ctx.stats.lifetime_expired++;
        else this.ctx.stats.transport_errors++;
        this.endCause = cause;
        this.terminate();
        return;
      case "terminated":
        return; // a late report of a send made before the end; the cap is disarmed at the end
      default:
        impossible(this.state);
    }
  }

  protected onTerminated(): void {
    this.tu.onTerminated(this, this.endCause);
    if (this.proxy) this.proxy.serverTerminated();
  }
}
