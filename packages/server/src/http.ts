/**
 * The control HTTP server (node:http): JSON-RPC 2.0 on POST /rpc, Prometheus
 * text on GET /metrics, "ok" on GET /health.
 *
 * Safety: with a token every request needs "Authorization: Bearer TOKEN";
 * request bodies are capped (413); a request carrying an Origin header is
 * refused, so a web page in a local browser cannot drive the loopback
 * control interface (browsers send Origin on every POST, no API client must).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import { FORBIDDEN, INVALID_REQUEST, type RpcServer, TOO_LARGE, UNAUTHORIZED } from "./rpc.js";

export const MAX_BODY_BYTES = 64 * 1024;

export interface ControlOptions {
  host: string;
  port: number;
  token: string | undefined;
  rpc: RpcServer;
  metrics: Metrics;
  logger: Logger;
  maxBodyBytes?: number;
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
  const tokenDigest = opts.token === undefined ? undefined : digest(opts.token);
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      opts.logger.warn({ err }, "control request failed");
      if (!res.headersSent) sendJson(res, 500, rpcError(-32603, "internal error"));
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    if (req.headers.origin !== undefined) {
      sendJson(
        res,
        403,
        rpcError(FORBIDDEN, "forbidden: requests from web pages (with an Origin header) are refused"),
      );
      req.resume();
      return;
    }
    if (tokenDigest !== undefined && !authorized(req.headers.authorization, tokenDigest)) {
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
      const body = await readBody(req, maxBody);
      if (body === undefined) {
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
  server.on("clientError", (_err, socket) => socket.destroy());
  // t_uac_wait may wait for a long INVITE: no request timeout beyond the engine's own timers.
  server.requestTimeout = 0;
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
