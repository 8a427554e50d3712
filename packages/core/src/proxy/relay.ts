/**
 * Stateful proxying (RFC 3261 §16), Kamailio's t_relay(): a server
 * transaction forwarded through one or more client transactions (branches),
 * responses relayed back through a response context (§16.5–§16.7).
 *
 * References: the response context takes "proxy" on the server transaction
 * and "proxy-branch" on each branch's client transaction; the context itself
 * is held by "server" (until the server transaction ends) and "branch:N"
 * (until each branch's transaction ends). Nothing is freed while a branch can
 * still answer; the engine counts contexts made and freed.
 */

import { type EngineContext, internals } from "../engine/context.js";
import type { Engine } from "../engine.js";
import { uriOfNameAddr } from "../message/nameaddr.js";
import { parseMessage } from "../message/parser.js";
import type { SipRequest, SipResponse } from "../message/types.js";
import type { FinalOutcome, Transaction } from "../transaction/actor.js";
import type { ClientTu } from "../transaction/client.js";
import { resolveTimers } from "../transaction/config.js";
import { TransactionError } from "../transaction/errors.js";
import type { ServerTransactionHandle } from "../transaction/handles.js";
import type { InviteClientTransaction } from "../transaction/ict.js";
import type { InviteServerTransaction } from "../transaction/ist.js";
import type { NonInviteClientTransaction } from "../transaction/nict.js";
import type { NonInviteServerTransaction } from "../transaction/nist.js";
import { RefSet } from "../transaction/refs.js";
import type { ProxyLink } from "../transaction/server.js";
import type { Destination } from "../transport/types.js";
import { isLoop, loopHash, ownRouteProcessing } from "./routing.js";
import { type BranchFinal, selectBest } from "./select.js";

export interface RelayTarget {
  /** The Request-URI of the branch. */
  uri: string;
  /** q-value (RFC 3261 §16.6 / §20.10): higher first; equal q-values are forked in parallel. Default 1.0. */
  q?: number;
  /** Bypass next-hop resolution. */
  nextHop?: Destination | string;
}

export interface RelayOptions {
  /** Targets; default the Request-URI (§16.5). */
  targets?: RelayTarget[];
  /**
   * Insert Record-Route (§16.6 item 4). true: our URI on the socket the request came in on, with
   * its transport (`;transport=tcp` for TCP), and a second one on top naming the outbound socket
   * when the branch leaves by another (RFC 5658); our route processing removes both. A string:
   * that value, as it is.
   */
  recordRoute?: boolean | string;
  /**
   * With `recordRoute: true`: the URI written (before `;lr`) for each Record-Route we add, given
   * ours (`uri`). `side` "inbound" is the one facing the request's sender (the socket it came in
   * on; `dest` undefined), "outbound" the one facing the branch's destination `dest` (RFC 5658).
   * A flow token goes here (RFC 5626 §5.3: `sip:TOKEN@host:port;transport=tcp;ob`). When the two
   * sides get different URIs, both are written, even on one socket. Default: ours as it is.
   */
  recordRouteUri?: (
    uri: string,
    side: "inbound" | "outbound",
    dest: Destination | undefined,
    target: RelayTarget,
  ) => string;
  /** Kamailio fr_timer: no response at all on a branch (Timer B/F of the branch), ms. Default 64·T1. */
  frTimer?: number;
  /** Timer C (§16.6 item 11) / Kamailio fr_inv_timer: final wait after a provisional, refreshed by each. Default: the engine's `frInvTimer`. */
  timerC?: number;
  /** §16.3 item 4 loop detection (482). Default true. */
  loopDetection?: boolean;
  /** Called for each branch request before it is sent (header edits). */
  onBranch?: (branch: { index: number; target: RelayTarget; request: SipRequest }) => void;
  /** Called for each response received on a branch, before it is relayed or stored. */
  onResponse?: (response: SipResponse, branch: number) => void;
  /**
   * Kamailio failure_route: all branches failed; return new targets to try
   * (a new serial group), or nothing to send the best response upstream.
   */
  onFailure?: (best: {
    status: number;
    reason: string;
    response?: SipResponse | undefined;
  }) => RelayTarget[] | undefined;
}

/** How a relay ended, once its final response went upstream (or none will). */
export interface RelayOutcome {
  /**
   * The final status sent upstream: the first 2xx relayed, the best response
   * (§16.7), or the proxy's own (483, 482, 420, 416, 480, 500…); 0 when none
   * went — a non-INVITE whose branches all timed out (no 408, RFC 4320 §4.2),
   * or a server transaction that ended first.
   */
  status: number;
  /** Branches started. */
  branches: number;
}

/** Option tags this proxy supports in Proxy-Require (§16.3 item 6): none. */
const SUPPORTED_PROXY_OPTIONS: ReadonlySet<string> = new Set();

/** What relaying needs of the engine: its private context (engine/context.ts) has this shape. */
export type RelayHost = Pick<
  EngineContext,
  "report" | "stats" | "timerConfig" | "addressing" | "newBranch" | "branchCookie" | "startClient" | "safe"
>;

function answered(status: number): Promise<RelayOutcome> {
  return Promise.resolve({ status, branches: 0 });
}

/**
 * Relay `tx`'s request statefully. Validation of §16.3 answers 483, 482 or
 * 420 itself (no branch is started). Resolves once the final response went
 * upstream (or none will); never rejects. Throws TransactionError, at once,
 * when the transaction already has a final response.
 */
export function relay(
  engine: Engine,
  tx: ServerTransactionHandle,
  opts: RelayOptions = {},
): Promise<RelayOutcome> {
  const actor = tx.actor();
  if (!actor || actor.finalSent)
    throw new TransactionError("final-already-sent", "nothing left to relay", tx.id);
  const req = tx.request;
  // §16.3 item 3: Max-Forwards.
  if (req.maxForwards === 0) {
    tx.reply(483);
    return answered(483);
  }
  // §16.3 item 6: Proxy-Require.
  const unsupported = req
    .headerValues("proxy-require")
    .map((t) => t.trim())
    .filter((t) => t && !SUPPORTED_PROXY_OPTIONS.has(t.toLowerCase()));
  if (unsupported.length) {
    tx.reply(420, { headers: [["Unsupported", unsupported.join(", ")]] });
    return answered(420);
  }
  // §16.3 item 4: loop detection.
  if (opts.loopDetection !== false && isLoop(engine, req)) {
    tx.reply(482, { reason: "Loop Detected" });
    return answered(482);
  }
  const targets = (opts.targets ?? [{ uri: req.uri }]).filter(relayable);
  if (targets.length === 0) {
    // Nothing we can send a SIP request to: the Request-URI's scheme is not ours (§21.4.14:
    // 416), or no target (registered contacts, say) is a SIP URI (480, §21.4.18).
    const status = opts.targets ? 480 : 416;
    tx.reply(status);
    return answered(status);
  }
  const ctx = new ResponseContext(internals(engine), actor, req, opts);
  ctx.begin(targets);
  return ctx.outcome;
}

const SIP_SCHEME = /^sips?:/i;
const TEL_SCHEME = /^tel:/i;

/**
 * A target a SIP request can be sent to (§16.5): a SIP or SIPS URI, or a tel URI with an
 * explicit next hop (a gateway). Anything else (an http: Contact a registrar took) is skipped.
 */
function relayable(t: RelayTarget): boolean {
  return SIP_SCHEME.test(t.uri) || (t.nextHop !== undefined && TEL_SCHEME.test(t.uri));
}

/** One target of the fork. Its attempts (RFC 3263 §4.3 failover) run one after another. */
class Branch {
  tx: InviteClientTransaction | NonInviteClientTransaction | null = null;
  done = false;
  provisional = false;
  attempts = 0;
  /** The branch request without our Via, and where it may go, in order. */
  template: Buffer | undefined;
  destinations: Destination[] = [];
  /** The URI of the Record-Route facing upstream (recordRoute true), as written. */
  inboundRr: string | undefined;
  constructor(
    readonly ctx: ResponseContext,
    readonly index: number,
    readonly target: RelayTarget,
  ) {}
}

/** One client transaction of a branch: its user, holding "proxy-branch" on it and "branch:N.A" on the context. */
class Attempt implements ClientTu {
  readonly holder: string;
  private tx: InviteClientTransaction | NonInviteClientTransaction | null = null;
  constructor(
    readonly branch: Branch,
    readonly dest: Destination,
  ) {
    this.holder = `branch:${branch.index}.${branch.attempts}`;
  }
  attach(tx: InviteClientTransaction | NonInviteClientTransaction): void {
    this.tx = tx;
    this.branch.tx = tx;
    tx.take("proxy-branch");
  }
  onResponse(_tx: Transaction, res: SipResponse): void {
    if (this.branch.tx === this.tx) this.branch.ctx.branchResponse(this.branch, res);
  }
  onFinal(_tx: Transaction, outcome: FinalOutcome): void {
    if (this.branch.tx === this.tx) this.branch.ctx.branchFinal(this.branch, outcome, this);
  }
  onTerminated(_tx: Transaction): void {
    const tx = this.tx;
    if (tx) {
      this.tx = null;
      if (this.branch.tx === tx) this.branch.tx = null;
      tx.release("proxy-branch");
    }
    this.branch.ctx.release(this.holder);
  }
}

class ResponseContext implements ProxyLink {
  /** Resolved once, by `settle()`. */
  readonly outcome: Promise<RelayOutcome>;
  private settled: ((o: RelayOutcome) => void) | undefined;
  private readonly refs: RefSet;
  private readonly list: Branch[] = [];
  private readonly finals: BranchFinal[] = [];
  private readonly groups: RelayTarget[][] = [];
  private readonly popped = new WeakSet<SipResponse>();
  private readonly branchTimers;
  private group: Branch[] = [];
  private serverHeld = true;
  private starting = false;
  private cancelled = false;
  private ended = false;
  private inbound: string | undefined;
  finalStatus = 0;

  constructor(
    private readonly engine: RelayHost,
    private readonly server: InviteServerTransaction | NonInviteServerTransaction,
    private readonly req: SipRequest,
    private readonly opts: RelayOptions,
  ) {
    this.outcome = new Promise((resolve) => {
      this.settled = resolve;
    });
    this.refs = new RefSet(`ctx:${server.id}`, engine.report);
    this.refs.take("server");
    server.take("proxy");
    server.proxy = this;
    engine.stats.ctx_created++;
    engine.stats.relayed++;
    const base = engine.timerConfig;
    this.branchTimers = resolveTimers(
      {
        timerB: opts.frTimer ?? base.timerB,
        timerF: opts.frTimer ?? base.timerF,
        frInvTimer: opts.timerC ?? base.frInvTimer,
        maxInviteLifetime: Math.max(
          base.maxInviteLifetime,
          (opts.timerC ?? base.frInvTimer) + base.cancelTimeout + 1,
        ),
      },
      base,
    );
  }

  get branches(): number {
    return this.list.length;
  }

  /** Our URI on the socket the request came in on (Record-Route, §16.6 item 4). */
  private inboundUri(): string {
    if (this.inbound === undefined) {
      const src = this.server.source;
      this.inbound = this.engine.addressing.ownUri(src.protocol, {
        address: src.localAddress,
        port: src.localPort,
      });
    }
    return this.inbound;
  }

  /** Targets grouped by q-value, highest first: one group forks in parallel, groups go in series (§16.6). */
  begin(targets: RelayTarget[]): void {
    const byQ = new Map<number, RelayTarget[]>();
    for (const t of targets) {
      if (!relayable(t)) continue;
      const q = t.q ?? 1;
      const g = byQ.get(q);
      if (g) g.push(t);
      else byQ.set(q, [t]);
    }
    for (const q of [...byQ.keys()].sort((a, b) => b - a)) this.groups.push(byQ.get(q)!);
    this.nextGroup();
  }

  private nextGroup(): void {
    const targets = this.groups.shift();
    if (!targets || targets.length === 0) {
      this.sendBest();
      return;
    }
    this.group = [];
    // Hold the context while the group starts: a branch may fail before the others exist.
    this.refs.take("starting");
    this.starting = true;
    for (const target of targets) {
      const b = new Branch(this, this.list.length, target);
      this.list.push(b);
      this.group.push(b);
      this.startBranch(b, target);
    }
    this.starting = false;
    this.checkComplete();
    this.release("starting");
  }

  /** §16.6: copy the request, set the target, Max-Forwards, Record-Route, Route; then find where it goes. */
  private startBranch(b: Branch, target: RelayTarget): void {
    const copy = parseMessage(this.req.toBuffer()) as SipRequest;
    // §16.4: our own Route value (loose routing) or a strict-routing previous hop.
    ownRouteProcessing(this.engine.addressing, copy);
    if (target.uri !== copy.uri) copy.setUri(target.uri); // §16.6 item 2
    copy.setMaxForwards(copy.maxForwards === undefined ? 70 : copy.maxForwards - 1); // §16.6 item 3
    if (typeof this.opts.recordRoute === "string") copy.prependHeader("Record-Route", this.opts.recordRoute);
    else if (this.opts.recordRoute) {
      // §16.6 item 4: a URI that resolves to this element, with lr: the socket the request came in
      // on, with its transport (the peer upstream reaches us there). The side facing downstream is
      // added per attempt, once the outbound transport is known (RFC 5658 double Record-Route).
      const own = this.inboundUri();
      b.inboundRr = this.opts.recordRouteUri
        ? this.opts.recordRouteUri(own, "inbound", undefined, target)
        : own;
      copy.prependHeader("Record-Route", `<${b.inboundRr};lr>`);
    }
    if (this.opts.onBranch) this.opts.onBranch({ index: b.index, target, request: copy });
    b.template = copy.toBuffer();
    if (target.nextHop) {
      b.destinations = [this.engine.addressing.resolveNextHop(target.nextHop)];
      this.attempt(b);
      return;
    }
    // §16.6 items 6/7: the first Route if any, else the Request-URI; RFC 3263 for host names.
    const route = copy.headerValues("route")[0];
    const uri = route ? uriOfNameAddr(route) : copy.uri;
    try {
      b.destinations = [this.engine.addressing.resolveNextHop(uri)];
      this.attempt(b);
    } catch (err) {
      if (!this.engine.addressing.resolver) {
        this.branchFailed(b, err);
        return;
      }
      // Resolve asynchronously; the branch holds the context meanwhile.
      const holder = `resolving:${b.index}`;
      this.refs.take(holder);
      this.engine.addressing.resolver.resolve(uri).then(
        (dests) => {
          b.destinations = dests;
          if (this.cancelled || this.finalStatus !== 0 || this.server.terminated) b.done = true;
          else this.attempt(b);
          this.release(holder);
          this.checkComplete();
        },
        (e: unknown) => {
          this.branchFailed(b, e);
          this.release(holder);
        },
      );
    }
  }

  /** Send the branch to its next destination in a new client transaction (a new Via branch each time). */
  private attempt(b: Branch): void {
    const dest = b.destinations[b.attempts];
    if (!dest || !b.template) {
      this.branchFailed(b, new Error("no destination left"));
      return;
    }
    const a = new Attempt(b, dest);
    b.attempts++;
    this.refs.take(a.holder);
    const copy = parseMessage(b.template) as SipRequest;
    if (this.opts.recordRoute === true) {
      // RFC 5658 §4: when the request leaves by another transport or socket than it came in on,
      // a second Record-Route on top names the outbound one, so that each side of the dialog
      // reaches us over its own transport; both are ours and both are removed (routing.ts).
      const own = this.engine.addressing.ownUri(dest.protocol);
      const outbound = this.opts.recordRouteUri
        ? this.opts.recordRouteUri(own, "outbound", dest, b.target)
        : own;
      if (outbound !== (b.inboundRr ?? this.inboundUri()))
        copy.prependHeader("Record-Route", `<${outbound};lr>`);
    }
    // §16.6 item 8: a branch that makes loop detection possible (§16.3 item 4).
    let branch = this.engine.newBranch(`${loopHash(this.req)}.`);
    // A late 2xx to an INVITE may be forwarded statelessly only with our tag (proxy/cookie.ts).
    if (copy.method === "INVITE") branch = this.engine.branchCookie.seal(branch, copy.via, copy.callId);
    copy.pushVia(this.engine.addressing.viaFor(dest, branch));
    const tx = this.engine.startClient({
      data: copy.toBuffer(),
      dest,
      method: copy.method,
      callId: copy.callId,
      cseq: copy.cseq.seq,
      branch,
      tu: a,
      timers: this.branchTimers,
      local: false,
      defer: true,
    });
    a.attach(tx);
    tx.start();
  }

  /** No route for this branch: it fails alone, like a 503 (§16.6 item 10 would send 503 upstream if it were the only one). */
  private branchFailed(b: Branch, err: unknown): void {
    b.done = true;
    const reason =
      err instanceof Error ? err.message.replace(/[\r\n]/g, " ").slice(0, 80) : "Service Unavailable";
    this.finals.push({ status: 503, reason });
    this.checkComplete();
  }

  // --- responses (§16.7) --------------------------------------------------------------
  branchResponse(b: Branch, res: SipResponse): void {
    const status = res.status;
    if (this.opts.onResponse) this.engine.safe("onResponse", () => this.opts.onResponse!(res, b.index));
    if (status === 100) return; // §16.7 item 3: a 100 is not forwarded
    if (status < 200) {
      b.provisional = true;
      if (!this.server.finalSent) this.forward(res);
      return;
    }
    if (status < 300) {
      // §16.7 item 4/5: every 2xx is forwarded at once, even after another.
      const first = this.finalStatus === 0;
      if (first) this.finalStatus = status;
      this.forward(res);
      if (first) this.settle(status);
      if (first) this.cancelOthers(b, 'SIP;cause=200;text="Call completed elsewhere"');
    }
  }

  branchFinal(b: Branch, outcome: FinalOutcome, a: Attempt): void {
    // RFC 3263 §4.3: a transport error or a 503 moves on to the next destination of the branch.
    if (
      (outcome.cause === "transport-error" || outcome.status === 503) &&
      b.attempts < b.destinations.length &&
      !this.cancelled &&
      this.finalStatus === 0
    ) {
      this.engine.addressing.resolver?.markFailed(a.dest);
      this.attempt(b);
      return;
    }
    b.done = true;
    if (outcome.status >= 200 && outcome.status < 300) return;
    this.finals.push({ status: outcome.status, reason: outcome.reason, response: outcome.response });
    // §16.7: a 6xx ends the search: cancel the other branches.
    if (outcome.status >= 600) this.cancelOthers(b, undefined);
    this.checkComplete();
  }

  private checkComplete(): void {
    if (this.starting) return;
    if (this.finalStatus !== 0 || this.server.finalSent || this.server.terminated) return;
    if (this.group.some((b) => !b.done)) return;
    const six = this.finals.some((f) => f.status >= 600);
    if (!six && !this.cancelled && this.groups.length) {
      this.nextGroup();
      return;
    }
    if (!six && !this.cancelled && this.opts.onFailure) {
      const sel = selectBest(this.finals);
      let more: RelayTarget[] | undefined;
      this.engine.safe("onFailure", () => {
        more = this.opts.onFailure!({ status: sel.status, reason: sel.reason, response: sel.response });
      });
      if (more?.length) {
        this.begin(more);
        return;
      }
    }
    this.sendBest();
  }

  private sendBest(): void {
    if (this.finalStatus !== 0 || this.server.finalSent || this.server.terminated) return;
    const sel = selectBest(this.finals);
    this.finalStatus = sel.status;
    if (sel.status === 408 && this.server.kind === "nist") {
      // RFC 4320 §4.2: no 408 to a non-INVITE. A proxy that has nothing better sends
      // nothing: the client's own Timer F ends its transaction; ours ends by its lifetime.
      this.settle(0);
      return;
    }
    if (sel.response) {
      for (const [name, value] of sel.challenges) sel.response.appendHeader(name, value);
      if (this.forward(sel.response)) {
        this.settle(sel.status);
        return;
      }
    }
    // No response to relay (timeouts, 503 → 500), or one that named only us: answer locally.
    this.server.reply(sel.status, {
      reason: sel.reason,
      headers: sel.challenges.length ? sel.challenges : undefined,
    });
    this.settle(sel.status);
  }

  /** The outcome is known: tell whoever awaits relay(). */
  private settle(status: number): void {
    const settled = this.settled;
    if (!settled) return;
    this.settled = undefined;
    settled({ status, branches: this.list.length });
  }

  /** §16.7 item 9: remove our Via and send the response upstream in the server transaction. */
  private forward(res: SipResponse): boolean {
    if (!this.popped.has(res)) {
      this.popped.add(res);
      res.popVia();
    }
    if (res.viaCount === 0) return false; // it was addressed to us alone
    this.server.sendResponse(res.status, res.toBuffer(), false);
    return true;
  }

  private cancelOthers(except: Branch | undefined, reason: string | undefined): void {
    for (const b of this.list) {
      if (b === except || b.done || !b.tx) continue;
      if (b.tx.kind === "ict") (b.tx as InviteClientTransaction).cancel(reason); // two-phase (§9.1)
    }
  }

  // --- ProxyLink ------------------------------------------------------------------------
  upstreamCancel(_cancel: SipRequest): void {
    // §16.10: cancel every pending branch; their 487s make the final response.
    this.cancelled = true;
    this.groups.length = 0;
    this.cancelOthers(undefined, undefined);
  }
  serverTerminated(): void {
    if (!this.serverHeld) return;
    this.serverHeld = false;
    this.cancelOthers(undefined, undefined);
    this.release("server");
  }

  release(holder: string): void {
    if (this.refs.release(holder) && !this.ended) {
      this.ended = true;
      this.settle(this.server.lastStatus >= 200 ? this.server.lastStatus : 0);
      this.refs.markFreed();
      this.engine.stats.ctx_freed++;
      this.server.proxy = undefined;
      this.server.release("proxy");
    }
  }
}
