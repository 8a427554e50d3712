// The control HTTP server in-process: Host must be ours (DNS rebinding), POST /rpc must be JSON,
// a request must arrive whole within the request timeout (a tm.t_uac_wait's wait is not part of
// it), bodies and connections are capped, and every refusal is counted in /metrics.
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { Engine, type FinalOutcome } from "@siptm/core";
import { wrapEngine } from "@siptm/workers";
import { afterEach, describe, expect, it } from "vitest";
import { type ControlOptions, type ControlServer, startControl } from "../src/http.js";
import { createLogger } from "../src/log.js";
import { Metrics } from "../src/metrics.js";
import { Registrar } from "../src/registrar.js";
import { RpcServer } from "../src/rpc.js";

const open: Array<{ control: ControlServer; engine: Engine }> = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.control.close();
    await o.engine.close();
  }
});

async function control(
  opts: Partial<ControlOptions> = {},
  request?: (o: unknown) => unknown,
): Promise<{ port: number; engine: Engine }> {
  const engine = new Engine();
  const tm = wrapEngine(engine);
  if (request) (tm as { request: unknown }).request = request;
  const logger = createLogger("silent");
  const rpc = new RpcServer({
    tm,
    resolveAll: async () => [{ protocol: "UDP", address: "127.0.0.1", port: 5070 }],
    registrar: new Registrar(),
    sockets: [{ protocol: "UDP", address: "127.0.0.1", port: 5060 }],
    logger,
    version: "0.0.0",
    coreVersion: "0.0.0",
    startedAt: Date.now(),
    draining: () => false,
  });
  const c = await startControl({
    host: "127.0.0.1",
    port: 0,
    token: undefined,
    rpc,
    metrics: new Metrics(engine, { processMetrics: false }),
    logger,
    ...opts,
  });
  open.push({ control: c, engine });
  return { port: c.port, engine };
}

interface Reply {
  status: number;
  body: string;
}

function http(
  port: number,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: opts.method ?? "GET",
        path: opts.path ?? "/health",
        headers: opts.headers,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

const JSON_CT = { "Content-Type": "application/json" };
const STATS = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tm.stats" });

/** A raw TCP connection: what it received, and when the server closed it. */
function raw(port: number): {
  socket: Socket;
  data(): string;
  closed: Promise<void>;
  connected: Promise<void>;
} {
  const socket = connect(port, "127.0.0.1");
  let data = "";
  socket.setEncoding("utf8").on("data", (d: string) => {
    data += d;
  });
  socket.on("error", () => {});
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  const connected = new Promise<void>((r) => socket.once("connect", () => r()));
  return { socket, data: () => data, closed, connected };
}

async function refusedCount(port: number, reason: string): Promise<number> {
  const m = await http(port, { path: "/metrics" });
  const line = m.body
    .split("\n")
    .find((l) => l.startsWith(`siptm_control_refused_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

describe("Host (DNS rebinding)", () => {
  it("answers loopback hosts with any port and the --rpc-host names; others get 421, on every path", async () => {
    const { port } = await control({ hosts: ["siptm.example", "[2001:db8::1]"] });
    for (const host of [
      `127.0.0.1:${port}`,
      "127.8.9.10",
      "localhost",
      `localhost:${port}`,
      "[::1]:80",
      "[::1]",
      `siptm.example:${port}`,
      "SIPTM.example",
      "[2001:db8::1]:5080",
    ])
      expect((await http(port, { headers: { Host: host } })).status, host).toBe(200);
    for (const host of [
      "evil.example",
      `evil.example:${port}`,
      "127.0.0.1.evil.example",
      "localhost.evil.example",
      "siptm.example.evil",
      "[::2]",
    ]) {
      const metrics = await http(port, { path: "/metrics", headers: { Host: host } });
      expect(metrics.status, host).toBe(421);
      expect(metrics.body).not.toContain("siptm_tm_current");
      const rpc = await http(port, {
        method: "POST",
        path: "/rpc",
        headers: { Host: host, ...JSON_CT },
        body: STATS,
      });
      expect(rpc.status, host).toBe(421);
      expect(JSON.parse(rpc.body).error.code).toBe(-32013);
    }
    expect(await refusedCount(port, "host")).toBe(12);
  });
});

describe("Content-Type", () => {
  it("POST /rpc needs application/json (415 otherwise)", async () => {
    const { port } = await control();
    const post = (ct: string) =>
      http(port, { method: "POST", path: "/rpc", headers: { "Content-Type": ct }, body: STATS });
    for (const ct of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      const r = await post(ct);
      expect(r.status, ct).toBe(415);
      expect(JSON.parse(r.body).error.code).toBe(-32014);
    }
    const none = await http(port, { method: "POST", path: "/rpc", body: STATS });
    expect(none.status).toBe(415);
    for (const ct of ["application/json", "application/json; charset=utf-8", "Application/JSON"]) {
      const r = await post(ct);
      expect(r.status, ct).toBe(200);
    }
    expect(await refusedCount(port, "content_type")).toBe(4);
    // tm.stats says the same as /metrics.
    const stats = await http(port, { method: "POST", path: "/rpc", headers: JSON_CT, body: STATS });
    expect(JSON.parse(stats.body).result.control_refused).toMatchObject({ content_type: 4 });
  });
});

describe("request timeout, body and connection caps", () => {
  it("a body that does not arrive within the request timeout gets 408 and the connection is closed", async () => {
    const { port } = await control({ requestTimeoutMs: 300 });
    const slow = raw(port);
    await slow.connected;
    slow.socket.write(
      `POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"jsonrpc"`,
    );
    await slow.closed;
    expect(slow.data()).toMatch(/^HTTP\/1\.1 408/);
    expect(await refusedCount(port, "timeout")).toBe(1);
  });

  it("headers that never end, and a connection that sends nothing, are closed after the request timeout", async () => {
    const { port } = await control({ requestTimeoutMs: 300 });
    const slow = raw(port);
    const idle = raw(port);
    await slow.connected;
    slow.socket.write("POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    await Promise.all([slow.closed, idle.closed]);
    expect(await refusedCount(port, "timeout")).toBe(2);
  });

  it("tm.t_uac_wait waits for its final response past the request timeout", async () => {
    const final = new Promise<FinalOutcome>((resolve) =>
      setTimeout(
        () => resolve({ status: 200, reason: "OK", response: undefined } as unknown as FinalOutcome),
        1200,
      ),
    );
    const { port } = await control({ requestTimeoutMs: 300 }, () => ({
      id: "t.1",
      callId: "c",
      cseq: 1,
      final,
    }));
    const r = await http(port, {
      method: "POST",
      path: "/rpc",
      headers: JSON_CT,
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "tm.t_uac_wait",
        params: [
          "OPTIONS",
          "sip:b@127.0.0.1:5070",
          ".",
          ".",
          "From: <sip:a@127.0.0.1>\r\nTo: <sip:b@127.0.0.1>",
        ],
      }),
    });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).result).toEqual({ code: 200, reason: "OK", headers: "", body: "" });
  });

  it("a body over the configured cap gets 413", async () => {
    const { port } = await control({ maxBodyBytes: 2048 });
    const big = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tm.stats", params: ["x".repeat(3000)] });
    const r = await http(port, { method: "POST", path: "/rpc", headers: JSON_CT, body: big });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body).error.code).toBe(-32011);
    expect(await refusedCount(port, "body")).toBe(1);
  });

  it("connections past the cap are closed at once; the held ones still work, and a new one once they go", async () => {
    const { port } = await control({ maxConnections: 3 });
    const held = [raw(port), raw(port), raw(port)];
    await Promise.all(held.map((h) => h.connected));
    // Let the server accept the three before the fourth comes.
    held[0]!.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    while (!held[0]!.data().includes("ok")) await new Promise((r) => setTimeout(r, 10));
    const extra = raw(port);
    await extra.closed;
    expect(extra.data()).toBe("");
    held[1]!.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    while (!held[1]!.data().includes("ok")) await new Promise((r) => setTimeout(r, 10));
    for (const h of held) h.socket.destroy();
    await Promise.all(held.map((h) => h.closed));
    let count = 0;
    // The server sees the closes a moment later: retry until a new connection is served.
    for (let i = 0; i < 100; i++) {
      count = await refusedCount(port, "connections").catch(() => -1);
      if (count >= 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(count).toBe(1);
  });
});
