/**
 * JSON-RPC 2.0 control methods with Kamailio's tm names and positional
 * parameters (named parameters accepted too). Transport-agnostic: `handle`
 * takes the request body text and returns the response text (or undefined
 * for notifications only); http.ts serves it on POST /rpc.
 */
import { type Destination, type FinalOutcome, type SipResponse, TransactionError } from "@siptm/core";
import type { ClientTransactionLike, TransactionEngine } from "@siptm/workers";
import type { Logger } from "./log.js";
import type { Binding, Registrar } from "./registrar.js";
import type { BoundSocket } from "./route.js";

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
}

type Params = Record<string, unknown>;

interface MethodSpec {
  /** Parameter names in positional order; a trailing "?" marks an optional one. */
  readonly params: readonly string[];
  readonly help: string;
  readonly run: (p: Params) => unknown;
}

const JSONRPC = "2.0";

export class RpcServer {
  private readonly methods = new Map<string, MethodSpec>();

  constructor(private readonly deps: RpcDeps) {
    const uacParams = ["method", "ruri", "nexthop", "socket", "headers", "body?"];
    const m = this.methods;
    m.set("tm.t_uac_start", {
      params: uacParams,
      help: "send a request in a new client transaction; headers is CRLF-separated text with From and To (Call-ID, CSeq used when given); nexthop/socket '.' = default → {callid, cseq, tid}",
      run: async (p) => {
        const h = await this.startUac(p);
        return { callid: h.callId, cseq: h.cseq, tid: h.id };
      },
    });
    m.set("tm.t_uac_wait", {
      params: uacParams,
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
          deps.tm.replyById(
            tid,
            int(p, "code", 100, 699),
            opt(p, "reason"),
            { headers, body: body(p), contentType },
            opt(p, "to_tag"),
          ),
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
          deps.tm.replyByCallId(
            callId,
            cseq,
            int(p, "code", 100, 699),
            opt(p, "reason"),
            { headers, body: body(p), contentType },
            opt(p, "to_tag"),
          ),
        );
        return { result: "sent" };
      },
    });
    m.set("tm.list", {
      params: [],
      help: "live transactions: id, kind, state, method, callid, cseq, age (ms), shard, holders, timers",
      run: async () =>
        (await deps.tm.audit()).map((a) => ({
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
    });
    m.set("tm.stats", {
      params: [],
      help: "transaction counters (current, waiting, total, created, freed, rpl_*, 1xx..6xx, retransmissions, …) and the same per shard",
      run: async () => await deps.tm.stats(),
    });
    m.set("tm.hash_stats", {
      params: [],
      help: "transaction table occupancy: entries in total, per shard and per kind",
      run: async () => {
        const [stats, list] = await Promise.all([deps.tm.stats(), deps.tm.audit()]);
        const shards = stats.shards.map((s) => ({
          shard: s.shard,
          entries: 0,
          ist: 0,
          nist: 0,
          ict: 0,
          nict: 0,
        }));
        for (const a of list) {
          const row = shards.find((s) => s.shard === a.shard);
          if (!row) continue;
          row.entries++;
          const kind = a.kind as "ist" | "nist" | "ict" | "nict";
          if (kind in row) row[kind]++;
        }
        return { entries: list.length, shards };
      },
    });
    m.set("ul.dump", {
      params: [],
      help: "registrar bindings: [{aor, contacts: [{uri, expires, q, callid, cseq}]}]",
      run: () =>
        deps.registrar.dump().map((a) => ({ aor: a.aor, contacts: a.bindings.map((b) => this.binding(b)) })),
    });
    m.set("ul.lookup", {
      params: ["aor"],
      help: "bindings of one address-of-record (a SIP URI)",
      run: (p) => deps.registrar.lookup(str(p, "aor")).map((b) => this.binding(b)),
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

  /** Run one call (params positional or named). Throws RpcError. */
  async call(method: string, params: unknown): Promise<unknown> {
    const spec = this.methods.get(method);
    if (!spec) throw new RpcError(METHOD_NOT_FOUND, `method not found: ${method} (see system.listMethods)`);
    return await spec.run(bindParams(method, spec, params));
  }

  /** Handle a JSON-RPC request body. Returns the response body, or undefined when there is nothing to answer. */
  async handle(body: string): Promise<string | undefined> {
    let msg: unknown;
    try {
      msg = JSON.parse(body);
    } catch (err) {
      return JSON.stringify(errorResponse(null, PARSE_ERROR, `parse error: ${(err as Error).message}`));
    }
    if (Array.isArray(msg)) {
      if (msg.length === 0)
        return JSON.stringify(errorResponse(null, INVALID_REQUEST, "invalid request: empty batch"));
      const out = (await Promise.all(msg.map((m) => this.one(m)))).filter((r) => r !== undefined);
      return out.length > 0 ? JSON.stringify(out) : undefined;
    }
    const res = await this.one(msg);
    return res === undefined ? undefined : JSON.stringify(res);
  }

  private async one(msg: unknown): Promise<object | undefined> {
    if (msg === null || typeof msg !== "object" || Array.isArray(msg))
      return errorResponse(null, INVALID_REQUEST, "invalid request: not an object");
    const req = msg as { jsonrpc?: unknown; method?: unknown; params?: unknown; id?: unknown };
    const hasId = "id" in req;
    const id = req.id;
    const validId = id === null || typeof id === "string" || (typeof id === "number" && Number.isFinite(id));
    if (hasId && !validId) return errorResponse(null, INVALID_REQUEST, "invalid request: bad id");
    const rid = hasId ? (id as string | number | null) : null;
    if (req.jsonrpc !== JSONRPC)
      return errorResponse(rid, INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"');
    if (typeof req.method !== "string")
      return errorResponse(rid, INVALID_REQUEST, "invalid request: no method");
    if (req.params !== undefined && (req.params === null || typeof req.params !== "object"))
      return errorResponse(rid, INVALID_REQUEST, "invalid request: params must be an array or an object");
    try {
      const result = await this.call(req.method, req.params);
      return hasId ? { jsonrpc: JSONRPC, id: rid, result: result ?? null } : undefined;
    } catch (err) {
      const e = toRpcError(err);
      if (e.code === INTERNAL_ERROR)
        this.deps.logger.warn({ err, method: req.method }, "control method failed");
      return hasId ? errorResponse(rid, e.code, e.message, e.data) : undefined;
    }
  }

  // --- helpers --------------------------------------------------------------------

  private binding(b: Binding) {
    return {
      uri: b.uri,
      expires: this.deps.registrar.expiresIn(b),
      q: b.q,
      callid: b.callId,
      cseq: b.cseq,
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
    pick("via", "v");
    pick("content-length", "l");
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
  for (const n of names.slice(0, required))
    if (out[n] === undefined) throw new RpcError(INVALID_PARAMS, `missing parameter "${n}": ${usage}`);
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
  let contentType: string | undefined;
  const headers = fields.filter(([n, v]) => {
    const l = n.toLowerCase();
    if (l === "content-type" || l === "c") {
      contentType = v;
      return false;
    }
    return l !== "content-length" && l !== "l";
  });
  return { headers, contentType };
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
