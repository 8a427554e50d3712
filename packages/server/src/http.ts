/**
 * The control HTTP server (node:http): JSON-RPC 2.0 on POST /rpc, Prometheus
 * text on GET /metrics, "ok" on GET /health.
 *
 * Safety: with a token every request needs "Authorization: Bearer TOKEN";
 * request bodies are capped (413); a request carrying an Origin header is
 * refused, so a web page in a local browser cannot drive the loopback
 * control interface (browsers send Origin on every POST, no API client must);
 * a Host that is not one of ours is refused (421), so a page whose DNS name
 * was rebound to 127.0.0.1 cannot read /metrics with a same-origin GET (which
 * carries no Origin); POST /rpc must be application/json (415: no HTML form
 * can send it without a CORS preflight). A request must arrive whole within
 * the request timeout (headers and body; the wait for an answer — tm.t_uac_wait
 * — is not part of it), and the open connections are capped.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type AddressInfo, isIP } from "node:net";
import { Counter } from "prom-client";
import { isLoopback } from "./config.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import {
  FORBIDDEN,
  INVALID_REQUEST,
  MISDIRECTED,
  type RpcServer,
  TOO_LARGE,
  UNAUTHORIZED,
  UNSUPPORTED_MEDIA,
} from "./rpc.js";

export const MAX_BODY_BYTES = 64 * 1024;
/** Time to receive a whole request, headers and body (--rpc-request-timeout). */
export const REQUEST_TIMEOUT_MS = 10_000;
/** Open connections at most (--rpc-max-connections); more are closed at once. */
export const MAX_CONNECTIONS = 64;

export interface ControlOptions {
  host: string;
  port: number;
  token: string | undefined;
  rpc: RpcServer;
  metrics: Metrics;
  logger: Logger;
  maxBodyBytes?: number | undefined;
  requestTimeoutMs?: number | undefined;
  maxConnections?: number | undefined;
  /** Host names (or IP literals) accepted in the Host header besides loopback and the bound address (--rpc-host). */
  hosts?: readonly string[] | undefined;
}

/** The control server could not bind: one line, exit 1. */
export class ControlBindError extends Error {
  override readonly name = "ControlBindError";
}

export interface ControlServer {
  readonly host: string;
  readonly port: number;
  /** Stop accepting connections; open ones finish their requests. */
  stopListening(): void;
  /** Close everything now. */
  close(): Promise<void>;
}

export async function startControl(opts: ControlOptions): Promise<ControlServer> {
  const maxBody = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  const requestTimeout = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const tokenDigest = opts.token === undefined ? undefined : digest(opts.token);
  const hosts = new Set((opts.hosts ?? []).map((h) => bareHost(h)));
  if (!isWildcard(opts.host)) hosts.add(bareHost(opts.host));
  // One tally with the RPC layer's own refusals: tm.stats `control_refused` and /metrics read it.
  const rpcRefused = opts.rpc.refused;
  const count = (reason: string) => {
    rpcRefused[reason] = (rpcRefused[reason] ?? 0) + 1;
  };
  new Counter({
    name: "siptm_control_refused_total",
    help: "control requests refused, by reason (host, origin, unauthorized, content_type, body, batch, response, timeout, connections)",
    labelNames: ["reason"],
    registers: [opts.metrics.registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(rpcRefused)) this.inc({ reason }, n);
    },
  });
  const server: Server = createServer(
    {
      // Node's requestTimeout covers receiving the request (headers and body), not the wait for its
      // answer: a tm.t_uac_wait may wait as long as its transaction lives.
      requestTimeout,
      headersTimeout: requestTimeout,
      // How often those deadlines are checked (Node's default, 30 s, would let a slow body hold on
      // three times longer than the timeout of 10 s).
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(requestTimeout / 4))),
    },
    (req, res) => {
      handle(req, res).catch((err) => {
        opts.logger.warn({ err }, "control request failed");
        if (!res.headersSent) sendJson(res, 500, rpcError(-32603, "internal error"));
        else res.destroy();
      });
    },
  );
  server.maxConnections = opts.maxConnections ?? MAX_CONNECTIONS;
  server.on("drop", () => count("connections"));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const host = req.headers.host;
    if (host !== undefined && !hostAllowed(host, hosts)) {
      count("host");
      sendJson(
        res,
        421,
        rpcError(
          MISDIRECTED,
          `misdirected: Host ${JSON.stringify(host.slice(0, 100))} is not this control server's (loopback, or --rpc-host)`,
        ),
        true,
      );
      req.resume();
      return;
    }
    if (req.headers.origin !== undefined) {
      count("origin");
      sendJson(
        res,
        403,
        rpcError(FORBIDDEN, "forbidden: requests from web pages (with an Origin header) are refused"),
      );
      req.resume();
      return;
    }
    if (tokenDigest !== undefined && !authorized(req.headers.authorization, tokenDigest)) {
      count("unauthorized");
      res.setHeader("WWW-Authenticate", 'Bearer realm="siptm"');
      sendJson(res, 401, rpcError(UNAUTHORIZED, "unauthorized: send Authorization: Bearer <token>"));
      req.resume();
      return;
    }
    if (path === "/rpc") {
      if (req.method !== "POST") {
        res.setHeader("Allow", "POST");
        sendJson(res, 405, rpcError(INVALID_REQUEST, "use POST for /rpc"));
        req.resume();
        return;
      }
      if (!isJson(req.headers["content-type"])) {
        count("content_type");
        sendJson(
          res,
          415,
          rpcError(UNSUPPORTED_MEDIA, "unsupported media type: send Content-Type: application/json"),
          true,
        );
        req.resume();
        return;
      }
      const body = await readBody(req, maxBody);
      if (body === undefined) {
        count("body");
        sendJson(res, 413, rpcError(TOO_LARGE, `request body larger than ${maxBody} bytes`), true);
        return;
      }
      const out = await opts.rpc.handle(body);
      if (out === undefined) {
        res.writeHead(204).end();
        return;
      }
      res
        .writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(out) })
        .end(out);
      return;
    }
    if (path === "/metrics" || path === "/health") {
      req.resume();
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { Allow: "GET, HEAD" }).end();
        return;
      }
      if (path === "/health") {
        res.writeHead(200, { "Content-Type": "text/plain" }).end("ok\n");
        return;
      }
      const { contentType, body } = await opts.metrics.render();
      res.writeHead(200, { "Content-Type": contentType, "Content-Length": Buffer.byteLength(body) });
      res.end(req.method === "HEAD" ? undefined : body);
      return;
    }
    req.resume();
    res
      .writeHead(404, { "Content-Type": "text/plain" })
      .end("not found: POST /rpc, GET /metrics, GET /health\n");
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new ControlBindError(
          `cannot bind the control server on ${hostPort(opts.host, opts.port)}: ${err.code ?? err.message}`,
        ),
      );
    };
    server.once("error", onError);
    server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (err) => opts.logger.warn({ err }, "control server error"));
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (err.code === "ERR_HTTP_REQUEST_TIMEOUT" || err.code === "ERR_HTTP_HEADERS_TIMEOUT") {
      count("timeout");
      if (socket.writable && !socket.writableEnded)
        socket.end("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", () =>
          socket.destroy(),
        );
      else socket.destroy();
      return;
    }
    socket.destroy();
  });
  const addr = server.address() as AddressInfo;

  return {
    host: addr.address,
    port: addr.port,
    stopListening: () => {
      server.close();
      server.closeIdleConnections();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The host of a Host header or a --rpc-host value, lower-case, without port or brackets. */
function bareHost(text: string): string {
  const t = text.trim().toLowerCase();
  if (t.startsWith("[")) {
    const end = t.indexOf("]");
    return end < 0 ? t : t.slice(1, end);
  }
  const colon = t.indexOf(":");
  // More than one colon: an IPv6 literal without brackets (a --rpc address).
  if (colon >= 0 && t.indexOf(":", colon + 1) < 0) return t.slice(0, colon);
  return t;
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "";
}

/** Loopback (127.0.0.0/8, localhost, [::1]) with any port, or one of `hosts` (any port). */
export function hostAllowed(header: string, hosts: ReadonlySet<string>): boolean {
  const h = bareHost(header);
  if (h === "localhost" || (isIP(h) !== 0 && isLoopback(h))) return true;
  return hosts.has(h);
}

function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  return contentType.split(";")[0]!.trim().toLowerCase() === "application/json";
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

function authorized(header: string | undefined, want: Buffer): boolean {
  if (header === undefined) return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return false;
  return timingSafeEqual(digest(m[1]!), want);
}

/** The body as text, or undefined when it is over the limit (the rest is not read). */
function readBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > max) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > max) {
        over = true;
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!over) resolve(Buffer.concat(chunks).toString("utf8"));
    });
    req.on("error", reject);
  });
}

function rpcError(code: number, message: string): object {
  return { jsonrpc: "2.0", id: null, error: { code, message } };
}

function sendJson(res: ServerResponse, status: number, body: object, close = false): void {
  const text = JSON.stringify(body);
  const headers: Record<string, string | number> = {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
  };
  // After refusing a body we did not read, do not keep the connection.
  if (close) headers.Connection = "close";
  res.writeHead(status, headers).end(text);
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
