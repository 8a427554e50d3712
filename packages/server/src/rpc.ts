/**
 * JSON-RPC 2.0 control methods with Kamailio's tm names and positional
 * parameters (named parameters accepted too). Transport-agnostic: `handle`
 * takes the request body text and returns the response text (or undefined
 * for notifications only); http.ts serves it on POST /rpc.
 */
import { setImmediate as turn } from "node:timers/promises";
import { type Destination, type FinalOutcome, type SipResponse, TransactionError } from "@siptm/core";
import { checkHeaderFields } from "@siptm/core/internal";
import type { AuditPage, ClientTransactionLike, TransactionEngine } from "@siptm/workers";
import { hostPort } from "./config.js";
import type { BoundSocket } from "./local.js";
import type { Logger } from "./log.js";
import { type Binding, canonicalAor, type Registrar } from "./registrar.js";

// One constant per JSON-RPC error code, alike on purpose: a code table (JSON-RPC 2.0 §5.1, then ours), each name its own value.
export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;
export const METHOD_NOT_FOUND = -32601;
export const INVALID_PARAMS = -32602;
export const INTERNAL_ERROR = -32603;
/** The transaction layer refused (a final already sent, cancelled, table full…). */
export const TRANSACTION_REFUSED = -32000;
export const UNKNOWN_TRANSACTION = -32001;
/** The server is shutting down. */
export const UNAVAILABLE = -32002;
export const UNAUTHORIZED = -32010;
export const TOO_LARGE = -32011;
export const FORBIDDEN = -32012;
/** The Host header is not one of the control server's names (421): DNS rebinding. */
export const MISDIRECTED = -32013;
/** POST /rpc without Content-Type: application/json (415). */
export const UNSUPPORTED_MEDIA = -32014;

/** What one control request may cost. */
export interface RpcLimits {
  /** Most calls in one batch (--rpc-max-batch). */
  readonly maxBatch: number;
  /** Most bytes of one answer, a batch's included (--rpc-max-response); a call past it gets -32011. */
  readonly maxResponseBytes: number;
  /**
   * The largest `limit` of a paged tm.list / ul.dump (--rpc-max-page), and the page in which the
   * unpaged forms are built, one event-loop turn each.
   */
  readonly maxPage: number;
}

export const DEFAULT_RPC_LIMITS: RpcLimits = {
  maxBatch: 16,
  maxResponseBytes: 4 * 1024 * 1024,
  maxPage: 1000,
};
/** `limit` of a paged call that gives only a cursor. */
export const DEFAULT_PAGE = 100;

/** Requests the control interface refused, by reason (/metrics `siptm_control_refused_total`). */
export type RefusalCounts = Record<string, number>;

export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

export interface RpcDeps {
  /** The engine: the core Engine through `wrapEngine` (one thread), or the sharded engine. Every call is awaited. */
  readonly tm: TransactionEngine;
  /** Every destination of a next hop, RFC 3263 order (the engine's resolver). */
  readonly resolveAll: (hop: string) => Promise<Destination[]>;
  readonly registrar: Registrar;
  readonly sockets: readonly BoundSocket[];
  readonly logger: Logger;
  readonly version: string;
  readonly coreVersion: string;
  /** ms since epoch when the server started. */
  readonly startedAt: number;
  /** True once shutting down: no new client transactions. */
  readonly draining: () => boolean;
  readonly limits?: Partial<RpcLimits>;
}

type Params = Record<string, unknown>;

interface MethodSpec {
  /** Parameter names in positional order; a trailing "?" marks an optional one. */
  readonly params: readonly string[];
  /** Positional parameters that named params may leave out ("." positionally). */
  readonly namedOptional?: readonly string[];
  readonly help: string;
  readonly run: (p: Params, ctx: CallContext) => unknown;
}

interface CallContext {
  /** Bytes the result may still take in this answer. */
  readonly budget: number;
}

/** A result already serialised (a list built page by page). */
class RawJson {
  constructor(readonly text: string) {}
}

/** One page of a list: its items and the cursor of the next (undefined: the last). */
interface ListPage {
  readonly items: readonly unknown[];
  readonly next: string | undefined;
}

const JSONRPC = "2.0";

export class RpcServer {
  private readonly methods = new Map<string, MethodSpec>();
  readonly limits: RpcLimits;
  /** Control requests refused, by reason: for their size (batch, response) here, the rest in http.ts. */
  readonly refused: RefusalCounts = {};
  /** The list in the making (tm.list, ul.dump, tm.hash_stats): one at a time, whoever asks. */
  private listing: Promise<void> = Promise.resolve();

  constructor(private readonly deps: RpcDeps) {
    this.limits = { ...DEFAULT_RPC_LIMITS, ...deps.limits };
    const uacParams = ["method", "ruri", "nexthop", "socket", "headers", "body?"];
    const m = this.methods;
    m.set("tm.t_uac_start", {
      params: uacParams,
      namedOptional: ["nexthop", "socket"],
      help: "send a request in a new client transaction; headers is CRLF-separated text with From and To (Call-ID, CSeq used when given); nexthop/socket '.' = default → {callid, cseq, tid}",
      run: async (p) => {
        const h = await this.startUac(p);
        return { callid: h.callId, cseq: h.cseq, tid: h.id };
      },
    });
    m.set("tm.t_uac_wait", {
      params: uacParams,
      namedOptional: ["nexthop", "socket"],
      help: "like tm.t_uac_start, and wait for the final response → {code, reason, headers, body}",
      run: async (p) => finalResult(await (await this.startUac(p)).final),
    });
    m.set("tm.cancel", {
      params: ["callid", "cseq"],
      help: "cancel the local INVITE with this Call-ID and CSeq number → {result: sent|pending|none}",
      run: async (p) => ({
        result: await deps.tm.cancel(str(p, "callid"), int(p, "cseq", 0, 4294967295)),
      }),
    });
    m.set("tm.reply", {
      params: ["code", "reason", "tid", "to_tag", "headers", "body?"],
      help: "answer the pending server transaction with this id (reason/to_tag/headers '.' = default)",
      run: async (p) => {
        const tid = str(p, "tid");
        const { headers, contentType } = replyHeaders(p);
        await this.tx(tid, () =>
          deps.tm.replyById(tid, int(p, "code", 100, 699), {
            reason: opt(p, "reason"),
            headers,
            body: body(p),
            contentType,
            toTag: opt(p, "to_tag"),
          }),
        );
        return { result: "sent" };
      },
    });
    m.set("tm.reply_callid", {
      params: ["code", "reason", "callid", "cseq", "to_tag", "headers", "body?"],
      help: "answer the pending server transaction with this Call-ID and CSeq number",
      run: async (p) => {
        const { headers, contentType } = replyHeaders(p);
        const callId = str(p, "callid");
        const cseq = int(p, "cseq", 0, 4294967295);
        await this.tx(`${callId} ${cseq}`, () =>
          deps.tm.replyByCallId(callId, cseq, int(p, "code", 100, 699), {
            reason: opt(p, "reason"),
            headers,
            body: body(p),
            contentType,
            toTag: opt(p, "to_tag"),
          }),
        );
        return { result: "sent" };
      },
    });
    m.set("tm.list", {
      params: ["limit?", "cursor?"],
      help: "live transactions: id, kind, state, method, callid, cseq, age (ms), shard, holders, timers. With limit and/or cursor: one page → {items, next} (pass next as cursor; null: the last page)",
      run: (p, ctx) => this.list("tm.list", p, ctx, (after, limit) => this.auditPage(after, limit)),
    });
    m.set("tm.stats", {
      params: [],
      help: "transaction counters (current, waiting, total, created, freed, rpl_*, 1xx..6xx, retransmissions, …) and the same per shard; control_refused: control requests refused, by reason",
      run: async () => ({ ...(await deps.tm.stats()), control_refused: { ...this.refused } }),
    });
    m.set("tm.hash_stats", {
      params: [],
      help: "transaction table occupancy: entries in total, per shard and per kind",
      run: () =>
        this.oneAtATime(async () => {
          const stats = await deps.tm.stats();
          const shards = stats.shards.map((s) => ({
            shard: s.shard,
            entries: 0,
            ist: 0,
            nist: 0,
            ict: 0,
            nict: 0,
          }));
          let entries = 0;
          // Page by page, a turn of the event loop between pages: SIP goes on meanwhile.
          let after: string | undefined;
          for (;;) {
            const page = await deps.tm.auditPage(after, this.limits.maxPage);
            for (const a of page.entries) {
              entries++;
              const row = shards.find((s) => s.shard === a.shard);
              if (!row) continue;
              row.entries++;
              const kind = a.kind as "ist" | "nist" | "ict" | "nict";
              if (kind in row) row[kind]++;
            }
            if (page.next === undefined) break;
            after = page.next;
            await turn();
          }
          return { entries, shards };
        }),
    });
    m.set("ul.dump", {
      params: ["limit?", "cursor?"],
      help: "registrar bindings: [{aor, contacts: [{uri, expires, q, callid, cseq, flow?, instance?, reg_id?}]}]. With limit and/or cursor: one page → {items, next} (AORs in order; pass next as cursor; null: the last page)",
      run: (p, ctx) =>
        this.list("ul.dump", p, ctx, (after, limit) => {
          const page = deps.registrar.dumpPage(after, limit);
          return {
            items: page.aors.map((a) => ({ aor: a.aor, contacts: a.bindings.map((b) => this.binding(b)) })),
            next: page.next,
          };
        }),
    });
    m.set("ul.lookup", {
      params: ["aor"],
      help: "bindings of one address-of-record (a SIP URI)",
      run: (p) => {
        const aor = str(p, "aor");
        try {
          canonicalAor(aor);
        } catch (err) {
          throw new RpcError(
            INVALID_PARAMS,
            `aor "${aor.slice(0, 80)}" is not a SIP URI: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        return deps.registrar.lookup(aor).map((b) => this.binding(b));
      },
    });
    m.set("core.uptime", {
      params: [],
      help: "{now, up_since, uptime (s)}",
      run: () => ({
        now: new Date().toISOString(),
        up_since: new Date(deps.startedAt).toISOString(),
        uptime: Math.floor((Date.now() - deps.startedAt) / 1000),
      }),
    });
    m.set("core.version", {
      params: [],
      help: "{name, version, core, node}",
      run: () => ({ name: "siptm", version: deps.version, core: deps.coreVersion, node: process.version }),
    });
    m.set("system.listMethods", {
      params: [],
      help: "the method names",
      run: () => [...this.methods.keys()].sort(),
    });
    m.set("system.methodHelp", {
      params: ["method"],
      help: "one method's parameters and description",
      run: (p) => {
        const name = str(p, "method");
        const spec = this.methods.get(name);
        if (!spec) throw new RpcError(INVALID_PARAMS, `no method ${name}`);
        return `${name}${spec.params.map((x) => (x.endsWith("?") ? ` [${x.slice(0, -1)}]` : ` ${x}`)).join("")}: ${spec.help}`;
      },
    });
  }

  /** Method names, sorted. */
  names(): string[] {
    return [...this.methods.keys()].sort();
  }

  /** Run one call (params positional or named). Throws RpcError. A list comes back as its JSON text. */
  async call(method: string, params: unknown): Promise<unknown> {
    const result = await this.run(method, params, { budget: this.limits.maxResponseBytes });
    return result instanceof RawJson ? JSON.parse(result.text) : result;
  }

  private async run(method: string, params: unknown, ctx: CallContext): Promise<unknown> {
    const spec = this.methods.get(method);
    if (!spec) throw new RpcError(METHOD_NOT_FOUND, `method not found: ${method} (see system.listMethods)`);
    return await spec.run(bindParams(method, spec, params), ctx);
  }

  /**
   * Handle a JSON-RPC request body. Returns the response body, or undefined when there is nothing to
   * answer. The calls of a batch run one after another, with a turn of the event loop between them
   * (SIP goes on meanwhile), and all of them share one answer of at most `maxResponseBytes`.
   */
  async handle(body: string): Promise<string | undefined> {
    let msg: unknown;
    try {
      msg = JSON.parse(body);
    } catch (err) {
      return JSON.stringify(errorResponse(null, PARSE_ERROR, `parse error: ${(err as Error).message}`));
    }
    let budget = this.limits.maxResponseBytes;
    if (Array.isArray(msg)) {
      if (msg.length === 0)
        return JSON.stringify(errorResponse(null, INVALID_REQUEST, "invalid request: empty batch"));
      if (msg.length > this.limits.maxBatch) {
        this.count("batch");
        return JSON.stringify(
          errorResponse(
            null,
            INVALID_REQUEST,
            `invalid request: a batch of ${msg.length} calls; at most ${this.limits.maxBatch} (--rpc-max-batch)`,
          ),
        );
      }
      // Every call of the batch gets an answer within the one cap: room is kept for each call still
      // to come (its shortest error answer and a comma) and for the brackets, so a call that comes
      // after the budget is spent can still say so without the answer overshooting the cap.
      const reserves = msg.map((m) => Buffer.byteLength(shortestTooLarge(idOf(m))) + 1);
      let later = reserves.reduce((a, b) => a + b, 0) + 2;
      if (later > budget) {
        this.count("response");
        return JSON.stringify(
          errorResponse(null, TOO_LARGE, "the batch's answers cannot fit --rpc-max-response"),
        );
      }
      const out: string[] = [];
      for (let i = 0; i < msg.length; i++) {
        if (i > 0) await turn();
        later -= reserves[i]!;
        const res = await this.one(msg[i], budget - later - 1);
        if (res === undefined) continue;
        out.push(res);
        budget -= Buffer.byteLength(res) + 1;
      }
      return out.length > 0 ? `[${out.join(",")}]` : undefined;
    }
    return await this.one(msg, budget);
  }

  private count(reason: string): void {
    this.refused[reason] = (this.refused[reason] ?? 0) + 1;
  }

  /** One call's answer as JSON text (undefined for a notification), at most `budget` bytes. */
  private async one(msg: unknown, budget: number): Promise<string | undefined> {
    const text = await this.answerTo(msg, budget);
    if (text === undefined || Buffer.byteLength(text) <= budget) return text;
    // An error answer longer than what is left (its message names the method, its data…): the shortest one.
    this.count("response");
    return shortestTooLarge(idOf(msg));
  }

  private async answerTo(msg: unknown, budget: number): Promise<string | undefined> {
    const answer = (o: object) => JSON.stringify(o);
    if (msg === null || typeof msg !== "object" || Array.isArray(msg))
      return answer(errorResponse(null, INVALID_REQUEST, "invalid request: not an object"));
    const req = msg as { jsonrpc?: unknown; method?: unknown; params?: unknown; id?: unknown };
    const hasId = "id" in req;
    const id = req.id;
    const validId = id === null || typeof id === "string" || (typeof id === "number" && Number.isFinite(id));
    if (hasId && !validId) return answer(errorResponse(null, INVALID_REQUEST, "invalid request: bad id"));
    const rid = hasId ? (id as string | number | null) : null;
    if (req.jsonrpc !== JSONRPC)
      return answer(errorResponse(rid, INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"'));
    if (typeof req.method !== "string")
      return answer(errorResponse(rid, INVALID_REQUEST, "invalid request: no method"));
    if (req.params !== undefined && (req.params === null || typeof req.params !== "object"))
      return answer(
        errorResponse(rid, INVALID_REQUEST, "invalid request: params must be an array or an object"),
      );
    const head = `{"jsonrpc":"2.0","id":${JSON.stringify(rid)},"result":`;
    try {
      const result = await this.run(req.method, req.params, { budget: budget - head.length - 1 });
      if (!hasId) return undefined;
      const text = result instanceof RawJson ? result.text : JSON.stringify(result ?? null);
      if (Buffer.byteLength(text) + head.length + 1 > budget) throw this.tooLarge(req.method);
      return `${head}${text}}`;
    } catch (err) {
      const e = toRpcError(err);
      if (e.code === INTERNAL_ERROR)
        this.deps.logger.warn({ err, method: req.method }, "control method failed");
      return hasId ? answer(errorResponse(rid, e.code, e.message, e.data)) : undefined;
    }
  }

  private tooLarge(method: string): RpcError {
    this.count("response");
    return new RpcError(
      TOO_LARGE,
      `the answer to ${method} would be larger than ${this.limits.maxResponseBytes} bytes (--rpc-max-response)${
        method === "tm.list" || method === "ul.dump" ? ": page it with {limit, cursor}" : ""
      }`,
    );
  }

  /**
   * Run `fn` after the list in the making, if any, is done: lists are built one at a time, so that
   * many connections asking at once cost the memory and the CPU of one.
   */
  private async oneAtATime<T>(fn: () => Promise<T>): Promise<T> {
    const before = this.listing;
    let done!: () => void;
    this.listing = new Promise<void>((r) => {
      done = r;
    });
    await before;
    try {
      return await fn();
    } finally {
      done();
    }
  }

  /**
   * tm.list / ul.dump. With limit or cursor: one page, `{ items, next }`. Without: the whole list as
   * it always was, built page by page with a turn of the event loop between pages, each page
   * serialised on its own, and given up past the answer's budget.
   */
  private list(
    method: string,
    p: Params,
    ctx: CallContext,
    page: (after: string | undefined, limit: number) => ListPage | Promise<ListPage>,
  ): Promise<unknown> {
    return this.oneAtATime(() => this.build(method, p, ctx, page));
  }

  private async build(
    method: string,
    p: Params,
    ctx: CallContext,
    page: (after: string | undefined, limit: number) => ListPage | Promise<ListPage>,
  ): Promise<unknown> {
    const cursor = opt(p, "cursor");
    // Any text: an AOR (ul.dump's cursor) has its user part %-decoded.
    if (cursor !== undefined && cursor.length > 2048)
      throw new RpcError(INVALID_PARAMS, 'parameter "cursor" must be the "next" of the previous page');
    const limitGiven = p.limit !== undefined && p.limit !== null && p.limit !== "." && p.limit !== "";
    if (limitGiven || cursor !== undefined) {
      const limit = limitGiven
        ? int(p, "limit", 1, this.limits.maxPage)
        : Math.min(DEFAULT_PAGE, this.limits.maxPage);
      const one = await page(cursor, limit);
      return { items: one.items, next: one.next ?? null };
    }
    let text = "[";
    let bytes = 2;
    let after: string | undefined;
    for (;;) {
      const one = await page(after, this.limits.maxPage);
      if (one.items.length > 0) {
        const chunk = JSON.stringify(one.items).slice(1, -1);
        text += bytes > 2 ? `,${chunk}` : chunk;
        bytes += Buffer.byteLength(chunk) + 1;
        if (bytes > ctx.budget) throw this.tooLarge(method);
      }
      if (one.next === undefined) break;
      after = one.next;
      await turn();
    }
    return new RawJson(`${text}]`);
  }

  private async auditPage(after: string | undefined, limit: number): Promise<ListPage> {
    let page: AuditPage;
    try {
      page = await this.deps.tm.auditPage(after, limit);
    } catch (err) {
      // A cursor that is no transaction id of ours.
      if (err instanceof RangeError) throw new RpcError(INVALID_PARAMS, err.message);
      throw err;
    }
    return {
      items: page.entries.map((a) => ({
        id: a.id,
        kind: a.kind,
        state: a.state,
        method: a.method,
        callid: a.callId,
        cseq: a.cseq,
        age: Math.round(a.ageMs),
        shard: a.shard,
        holders: a.holders,
        timers: a.timers,
      })),
      next: page.next,
    };
  }

  // --- helpers --------------------------------------------------------------------

  private binding(b: Binding) {
    return {
      uri: b.uri,
      expires: this.deps.registrar.expiresIn(b),
      q: b.q,
      callid: b.callId,
      cseq: b.cseq,
      // RFC 5626: the connection the binding lives on (stream transports), and its outbound identity.
      ...(b.flow
        ? {
            flow: `${b.flow.protocol.toLowerCase()}:${hostPort(b.flow.address, b.flow.port)}#${b.flow.connectionId}`,
          }
        : {}),
      ...(b.instance !== undefined ? { instance: b.instance } : {}),
      ...(b.regId !== undefined ? { reg_id: b.regId } : {}),
    };
  }

  /** Run a reply on a server transaction, mapping the engine's refusals to RPC errors. */
  private async tx(what: string, fn: () => unknown): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (err instanceof TransactionError && err.code === "terminated")
        throw new RpcError(UNKNOWN_TRANSACTION, `unknown transaction: ${what} (${err.message})`);
      throw err;
    }
  }

  private async startUac(p: Params): Promise<ClientTransactionLike> {
    const { tm } = this.deps;
    if (this.deps.draining()) throw new RpcError(UNAVAILABLE, "the server is shutting down");
    const method = str(p, "method").toUpperCase();
    if (!/^[A-Za-z][A-Za-z0-9._!%*+`'~-]*$/.test(method))
      throw new RpcError(INVALID_PARAMS, `bad method "${method}"`);
    const ruri = str(p, "ruri");
    const fields = parseHeaderText(opt(p, "headers") ?? "");
    // Before anything is taken out of them: no Via or Content-Length (the engine's own), no header
    // twice that a message has once, no control character (RFC 3261 §7.3.1, §20, §25.1).
    checkFields(fields, UAC_OWN);
    const pick = (...names: string[]): string | undefined => {
      const i = fields.findIndex(([n]) => names.includes(n.toLowerCase()));
      if (i < 0) return undefined;
      const v = fields[i]![1];
      fields.splice(i, 1);
      return v;
    };
    const from = pick("from", "f");
    const to = pick("to", "t");
    if (!from || !to) throw new RpcError(INVALID_PARAMS, "headers must include From and To");
    const callId = pick("call-id", "i");
    const cseqText = pick("cseq");
    let cseq: number | undefined;
    if (cseqText !== undefined) {
      const m = /^(\d{1,10})(?:\s+(\S+))?$/.exec(cseqText.trim());
      if (!m || Number(m[1]) > 4294967295) throw new RpcError(INVALID_PARAMS, `bad CSeq "${cseqText}"`);
      if (m[2] && m[2].toUpperCase() !== method)
        throw new RpcError(INVALID_PARAMS, `CSeq method ${m[2]} does not match ${method}`);
      cseq = Number(m[1]);
    }
    const mfText = pick("max-forwards");
    const maxForwards = mfText === undefined ? undefined : Number(mfText.trim());
    if (
      maxForwards !== undefined &&
      !(Number.isInteger(maxForwards) && maxForwards >= 0 && maxForwards <= 255)
    )
      throw new RpcError(INVALID_PARAMS, `bad Max-Forwards "${mfText}"`);
    const contentType = pick("content-type", "c");
    const dest = await this.destination(opt(p, "nexthop"), opt(p, "socket"), ruri);
    if (this.deps.draining()) throw new RpcError(UNAVAILABLE, "the server is shutting down");
    let handle: ClientTransactionLike | undefined;
    try {
      handle = await tm.request({
        method,
        uri: ruri,
        from,
        to,
        callId,
        cseq,
        maxForwards,
        headers: fields,
        body: body(p),
        contentType,
        nextHop: dest,
        // Kamailio's local UAC ACKs a 2xx itself: so do we, for every 2xx (retransmissions, forks).
        onResponse:
          method === "INVITE"
            ? (res: SipResponse) => {
                // (The sharded engine delivers events once the caller has the handle: a tick later at most.)
                if (res.status >= 200 && res.status < 300)
                  Promise.resolve()
                    .then(() => (handle ? tm.ack2xx(handle, res) : undefined))
                    .catch((err: unknown) => this.deps.logger.debug({ err }, "ACK of a 2xx not sent"));
              }
            : undefined,
      });
    } catch (err) {
      throw toRpcError(err);
    }
    return handle;
  }

  /**
   * The next hop: `nexthop` (URI or PROTO:HOST:PORT) or the Request-URI —
   * host names through the engine's RFC 3263 resolver — on the protocol of
   * `socket` when one is named.
   */
  private async destination(
    nexthop: string | undefined,
    socket: string | undefined,
    ruri: string,
  ): Promise<Destination> {
    const hop = nexthop ?? ruri;
    let dest: Destination | undefined;
    try {
      dest = (await this.deps.resolveAll(hop))[0];
    } catch (err) {
      const temporary = (err as { code?: string }).code === "EDNS";
      throw new RpcError(
        temporary ? UNAVAILABLE : INVALID_PARAMS,
        `cannot route to ${hop}: ${(err as Error).message}`,
      );
    }
    if (!dest) throw new RpcError(INVALID_PARAMS, `cannot route to ${hop}: no destination`);
    if (socket === undefined) return dest;
    const sock = this.findSocket(socket);
    if (dest.protocol === sock.protocol) return dest;
    const explicit = /^(udp|tcp|tls|ws|wss):/i.test(hop) || /;transport=/i.test(hop);
    if (nexthop !== undefined && explicit)
      throw new RpcError(
        INVALID_PARAMS,
        `socket ${socket} is ${sock.protocol} but the next hop ${hop} is ${dest.protocol}`,
      );
    return { ...dest, protocol: sock.protocol };
  }

  private findSocket(text: string): BoundSocket {
    const m = /^(udp|tcp):(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/i.exec(text.trim());
    if (!m)
      throw new RpcError(INVALID_PARAMS, `bad socket "${text}": expected udp:HOST:PORT or tcp:HOST:PORT`);
    const protocol = m[1]!.toUpperCase();
    const address = m[2]!.replace(/^\[|\]$/g, "").toLowerCase();
    const port = Number(m[3]);
    const sock = this.deps.sockets.find(
      (s) => s.protocol === protocol && s.address.toLowerCase() === address && s.port === port,
    );
    if (!sock) throw new RpcError(INVALID_PARAMS, `socket ${text} is not one of ours`);
    return sock;
  }
}

// --- parameters ---------------------------------------------------------------------

function bindParams(method: string, spec: MethodSpec, params: unknown): Params {
  const names = spec.params.map((n) => n.replace(/\?$/, ""));
  const required = spec.params.filter((n) => !n.endsWith("?")).length;
  const usage = `${method}${spec.params.map((x) => (x.endsWith("?") ? ` [${x.slice(0, -1)}]` : ` ${x}`)).join("")}`;
  const out: Params = {};
  if (params === undefined) {
    // no params: fine when none are required
  } else if (Array.isArray(params)) {
    if (params.length > names.length)
      throw new RpcError(INVALID_PARAMS, `too many parameters: ${params.length} for ${usage}`);
    params.forEach((v, i) => {
      out[names[i]!] = v;
    });
  } else if (params !== null && typeof params === "object") {
    for (const [k, v] of Object.entries(params)) {
      if (!names.includes(k)) throw new RpcError(INVALID_PARAMS, `unknown parameter "${k}" for ${usage}`);
      out[k] = v;
    }
  }
  const named = params !== undefined && !Array.isArray(params);
  for (const n of names.slice(0, required))
    if (out[n] === undefined && !(named && spec.namedOptional?.includes(n)))
      throw new RpcError(INVALID_PARAMS, `missing parameter "${n}": ${usage}`);
  return out;
}

function str(p: Params, name: string, allowEmpty = false): string {
  const v = p[name];
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  if (typeof v !== "string") throw new RpcError(INVALID_PARAMS, `parameter "${name}" must be a string`);
  if (!allowEmpty && v.length === 0) throw new RpcError(INVALID_PARAMS, `parameter "${name}" is empty`);
  return v;
}

/** An optional string where "." or "" means none (kamcmd convention). */
function opt(p: Params, name: string): string | undefined {
  const v = p[name];
  if (v === undefined || v === null) return undefined;
  const s = str(p, name, true);
  return s === "" || s === "." ? undefined : s;
}

function int(p: Params, name: string, min: number, max: number): number {
  const v = p[name];
  const n =
    typeof v === "number" ? v : typeof v === "string" && /^\s*\d+\s*$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max)
    throw new RpcError(INVALID_PARAMS, `parameter "${name}" must be a whole number in ${min}..${max}`);
  return n;
}

function body(p: Params): Buffer | undefined {
  const v = p.body;
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw new RpcError(INVALID_PARAMS, 'parameter "body" must be a string');
  return Buffer.from(v, "utf8");
}

function replyHeaders(p: Params): { headers: Array<[string, string]>; contentType: string | undefined } {
  const raw = opt(p, "headers");
  const fields = raw === undefined ? [] : parseHeaderText(raw);
  // Via, From, To, Call-ID and CSeq are the request's, Content-Length the engine's.
  checkFields(fields, REPLY_OWN);
  let contentType: string | undefined;
  const headers = fields.filter(([n, v]) => {
    const l = n.toLowerCase();
    if (l === "content-type" || l === "c") {
      contentType = v;
      return false;
    }
    return true;
  });
  return { headers, contentType };
}

/** Caller-supplied headers that tm.t_uac_* refuse: the engine writes them. */
const UAC_OWN: ReadonlySet<string> = new Set(["via", "content-length"]);
/** Caller-supplied headers that tm.reply* refuse: copied from the request, or the engine's. */
const REPLY_OWN: ReadonlySet<string> = new Set(["via", "from", "to", "call-id", "cseq", "content-length"]);

/** The core's check of caller-supplied header fields, as -32602 with the reason. */
function checkFields(fields: ReadonlyArray<readonly [string, string]>, own: ReadonlySet<string>): void {
  try {
    checkHeaderFields(fields, own);
  } catch (err) {
    throw new RpcError(INVALID_PARAMS, `bad headers: ${(err as Error).message}`);
  }
}

/** "Name: value" lines, CRLF (or LF) separated; folded continuation lines joined; blank lines ignored. */
export function parseHeaderText(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === "") continue;
    if (/^[ \t]/.test(line) && out.length > 0) {
      out[out.length - 1]![1] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon).trim() : "";
    if (!/^[A-Za-z0-9.!%*_+`'~-]+$/.test(name))
      throw new RpcError(INVALID_PARAMS, `bad header line "${line.slice(0, 60)}": expected "Name: value"`);
    out.push([name, line.slice(colon + 1).trim()]);
  }
  return out;
}

function finalResult(o: FinalOutcome): { code: number; reason: string; headers: string; body: string } {
  const res = o.response;
  return {
    code: o.status,
    reason: o.reason,
    headers: res
      ? res
          .headers()
          .map(([n, v]) => `${n}: ${v}`)
          .join("\r\n")
      : "",
    body: res ? res.body.toString("utf8") : "",
  };
}

function toRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  if (err instanceof TransactionError) {
    if (err.code === "bad-request" || err.code === "no-transport" || err.code === "bad-status")
      return new RpcError(INVALID_PARAMS, err.message, { reason: err.code });
    return new RpcError(TRANSACTION_REFUSED, err.message, { reason: err.code });
  }
  // The message builders throw RangeError for values they cannot write (bad header name, CR/LF, status…).
  if (err instanceof RangeError) return new RpcError(INVALID_PARAMS, err.message);
  return new RpcError(INTERNAL_ERROR, `internal error: ${err instanceof Error ? err.message : String(err)}`);
}

function errorResponse(id: string | number | null, code: number, message: string, data?: unknown): object {
  return { jsonrpc: JSONRPC, id, error: data === undefined ? { code, message } : { code, message, data } };
}

/** The id a batch element's answer carries (what `one()` answers with): null when it has no valid one. */
function idOf(msg: unknown): string | number | null {
  if (msg === null || typeof msg !== "object" || Array.isArray(msg) || !("id" in msg)) return null;
  const id = (msg as { id?: unknown }).id;
  return typeof id === "string" || (typeof id === "number" && Number.isFinite(id)) ? id : null;
}

/** The shortest answer that says a call's answer did not fit (-32011). */
function shortestTooLarge(id: string | number | null): string {
  return JSON.stringify(errorResponse(id, TOO_LARGE, "answer too large (--rpc-max-response)"));
}
