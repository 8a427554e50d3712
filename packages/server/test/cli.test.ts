// The `siptm` command as a user meets it: help, one-line failures with a
// non-zero exit status, a route module loaded by path, and a clean exit on
// SIGTERM.
import { spawn } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { forEachEngine, workersFlag } from "../../../test/setup/engines.js";
import { SERVE_OPTIONS } from "../src/options.js";
import { BUSY_ROUTE, CLI, killAll, runCli, serve, sleep, testEngine } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "siptm-cli-"));

afterEach(killAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function oneLine(text: string): string {
  const lines = text.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(text).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

describe("siptm", () => {
  it("--help lists every command and every serve flag", async () => {
    const c = runCli(["--help"]);
    expect((await c.exited).code).toBe(0);
    for (const cmd of ["siptm serve", "siptm rpc", "siptm help", "siptm version"])
      expect(c.stdout()).toContain(cmd);
    for (const o of SERVE_OPTIONS) expect(c.stdout()).toContain(`--${o.name}`);
    expect(c.stdout()).toContain("tm.t_uac_start");
  });

  it.each([
    [["serve", "--bogus"], /--bogus/],
    [["serve", "--listen", "udp:nowhere:5060"], /not an IP address/],
    [["serve", "--listen", "udp:::1:5060"], /--listen/],
    [["serve", "--t1", "fast"], /--t1/],
    [["serve", "--answer-code", "99"], /--answer-code/],
    [["serve", "--rpc", "0.0.0.0:5080"], /without a token/],
    [["frobnicate"], /unknown command/],
    // A negative number is the flag's value, refused by the flag's own check (not "ambiguous").
    [["serve", "--workers", "-1"], /^siptm: --workers takes a whole number in 0\.\.1024, got "-1"/],
    [["serve", "-w", "-1"], /^siptm: --workers takes a whole number in 0\.\.1024, got "-1"/],
    [["serve", "--t1", "-5"], /^siptm: --t1 takes a whole number ≥ 1, got "-5"/],
    [["serve", "--min-expires", "-5"], /^siptm: --min-expires takes a whole number in 0\.\.86400, got "-5"/],
    [["serve", "--rpc-max-batch", "0"], /--rpc-max-batch takes a whole number ≥ 1/],
    [["serve", "--rpc-host", "a b"], /--rpc-host/],
  ])("bad usage %j → exit 2 with a one-line reason", async (args, why) => {
    const c = runCli(args);
    expect((await c.exited).code).toBe(2);
    expect(oneLine(c.stderr())).toMatch(why);
  });

  it("siptm rpc: arguments after METHOD starting with '-' (a Call-ID may) are ARGS, not options", async () => {
    // Regression: a generated Call-ID "-8GAG…" was refused as an unknown option.
    const http = createHttpServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => {
        body += d.toString("utf8");
      });
      req.on("end", () => {
        const call = JSON.parse(body) as { method: string; params: unknown };
        res.setHeader("Content-Type", "application/json");
        res.end(
          JSON.stringify({ jsonrpc: "2.0", id: 1, result: { method: call.method, params: call.params } }),
        );
      });
    });
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
    try {
      const port = (http.address() as { port: number }).port;
      const c = runCli([
        "rpc",
        "--rpc",
        `127.0.0.1:${port}`,
        "tm.cancel",
        "-8GAGsz1C618",
        "8685",
        "--timeout",
      ]);
      expect((await c.exited).code).toBe(0);
      expect(JSON.parse(c.stdout())).toEqual({
        method: "tm.cancel",
        params: ["-8GAGsz1C618", "8685", "--timeout"],
      });
      const d = runCli(["rpc", `--rpc=127.0.0.1:${port}`, "--", "core.echo", "-h"]);
      expect((await d.exited).code).toBe(0);
      expect(JSON.parse(d.stdout())).toEqual({ method: "core.echo", params: ["-h"] });
      // The address from SIPTM_RPC when there is no --rpc.
      const e = runCli(["rpc", "core.echo", "x"], { SIPTM_RPC: `127.0.0.1:${port}` });
      expect((await e.exited).code).toBe(0);
      expect(JSON.parse(e.stdout())).toEqual({ method: "core.echo", params: ["x"] });
      const f = runCli(["rpc", "core.echo"], { SIPTM_RPC: "nowhere" });
      expect((await f.exited).code).toBe(2);
      expect(oneLine(f.stderr())).toMatch(/SIPTM_RPC "nowhere"/);
      // Options still work before METHOD, and a bad one is still refused.
      const bad = runCli(["rpc", "--bogus", "core.uptime"]);
      expect((await bad.exited).code).toBe(2);
      expect(oneLine(bad.stderr())).toMatch(/--bogus/);
    } finally {
      await new Promise((r) => http.close(r));
    }
  });

  it("a SIP port in use → non-zero exit with a one-line reason", async () => {
    const sock: Socket = createSocket("udp4");
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
    try {
      const port = sock.address().port;
      const c = runCli(["serve", "--listen", `udp:127.0.0.1:${port}`, "--rpc", "off"]);
      expect((await c.exited).code).not.toBe(0);
      expect(oneLine(c.stderr())).toMatch(/EADDRINUSE/);
    } finally {
      sock.close();
    }
  });

  it("a control port in use → non-zero exit with a one-line reason", async () => {
    const srv: Server = createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    try {
      const port = (srv.address() as { port: number }).port;
      const c = runCli(["serve", "--listen", "udp:127.0.0.1:0", "--rpc", `127.0.0.1:${port}`]);
      expect((await c.exited).code).not.toBe(0);
      expect(oneLine(c.stderr())).toMatch(/control.*EADDRINUSE/);
    } finally {
      srv.close();
    }
  });

  it("an unreadable or broken route → non-zero exit with a one-line reason", async () => {
    const missing = runCli(["serve", "--route", "./does-not-exist.js", "--rpc", "off"]);
    expect((await missing.exited).code).not.toBe(0);
    expect(oneLine(missing.stderr())).toMatch(/cannot read route/);
    const broken = join(dir, "broken.mjs");
    writeFileSync(broken, "export default 42;\n");
    const c = runCli(["serve", "--route", broken, "--rpc", "off"]);
    expect((await c.exited).code).not.toBe(0);
    expect(oneLine(c.stderr())).toMatch(/no default export function/);
  });

  it("a route module given by path answers requests", async () => {
    const server = await serve(["--route", BUSY_ROUTE]);
    expect(server.stdout()).toMatch(/route:\s+busy: everything gets 486 \(2 sockets\)/);
    const uac = await testEngine();
    try {
      const h = uac.request({
        method: "OPTIONS",
        uri: `sip:127.0.0.1:${server.udp}`,
        from: "<sip:a@127.0.0.1>",
        to: "<sip:b@127.0.0.1>",
        nextHop: `udp:127.0.0.1:${server.udp}`,
      });
      const outcome = await h.final;
      expect(outcome.status).toBe(486);
      expect(outcome.response?.header("x-route")).toBe("busy");
    } finally {
      await uac.close();
    }
  });

  it("a --config file sets options, flags override it", async () => {
    const file = join(dir, "siptm.json");
    writeFileSync(file, JSON.stringify({ route: "uas", "answer-code": 486, workers: 3, t1: 100 }));
    const server = await serve(["--config", file, "--answer-code", "603"]);
    expect(server.stdout()).toMatch(/route:\s+uas: INVITE → 180, then 603/);
    expect(server.stdout()).toContain("t1=100");
  });

  it("the SIGTERM handler is in place when the banner is written (a signal right after it drains, not kills)", async () => {
    const probe = fileURLToPath(new URL("./fixtures/banner-probe.mjs", import.meta.url));
    const proc = spawn(
      process.execPath,
      [
        "--import",
        probe,
        CLI,
        "serve",
        "--listen",
        "udp:127.0.0.1:0",
        "--rpc",
        "127.0.0.1:0",
        "--workers",
        "0",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let err = "";
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
    const deadline = Date.now() + 15_000;
    while (!/sigterm-handlers-at-banner=/.test(err) && Date.now() < deadline) await sleep(20);
    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(err).toMatch(/sigterm-handlers-at-banner=[1-9]/);
  });

  forEachEngine((_bed, _kind, engine) => {
    const workers = workersFlag(engine);
    it(`--workers ${workers}: transactions answered and only waiting on Timer J/D hold no drain, and nothing is said to be cut short`, async () => {
      // A drain timeout far beyond the test's: waiting for Timer J (32 s) or the drain would time the test out.
      const server = await serve([
        "--route",
        "uas",
        "--answer-code",
        "486",
        "--workers",
        workers,
        "--drain-timeout",
        "600000",
      ]);
      const uac = await testEngine({ timers: {} });
      try {
        for (const method of ["OPTIONS", "INVITE"]) {
          const h = uac.request({
            method,
            uri: `sip:127.0.0.1:${server.udp}`,
            from: "<sip:alice@127.0.0.1>",
            to: "<sip:bob@127.0.0.1>",
            nextHop: `udp:127.0.0.1:${server.udp}`,
          });
          expect((await h.final).status).toBe(method === "OPTIONS" ? 200 : 486);
        }
        // The INVITE's 486 was ACKed by our ICT: the server's IST is Confirmed (Timer I), its NIST Completed (Timer J).
        await sleep(100);
        server.proc.kill("SIGTERM");
        expect((await server.exited).code).toBe(0);
        expect(server.stdout()).toMatch(/^stopping \(SIGTERM\): nothing to drain$/m);
        expect(server.stdout()).toMatch(/^stopped$/m);
        expect(server.stderr()).not.toMatch(/closing with live transactions/);
      } finally {
        await uac.close();
      }
    });
  });

  it("SIGTERM → a clean exit with status 0", async () => {
    const server = await serve(["--route", "uas"]);
    expect(server.stdout()).toMatch(/workers:\s+1 thread/);
    server.proc.kill("SIGTERM");
    const exit = await server.exited;
    expect(exit.code).toBe(0);
    expect(server.stdout()).toMatch(/^stopped/m);
  });
});
