// Flag and config-file parsing, in process (no child processes).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isLoopback, parseHostPort, parseListen, parseServeArgs, UsageError } from "../src/config.js";

const dir = mkdtempSync(join(tmpdir(), "siptm-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const parse = (args: string[], env: NodeJS.ProcessEnv = {}) => {
  const r = parseServeArgs(args, env, dir);
  if (r.help) throw new Error("unexpected help");
  return r.config;
};

describe("serve flags", () => {
  it("defaults: UDP and TCP on 127.0.0.1:5060, control on 127.0.0.1:5080, route default, quiet logs", () => {
    const c = parse([]);
    expect(c.listen).toEqual([
      { protocol: "UDP", address: "127.0.0.1", port: 5060 },
      { protocol: "TCP", address: "127.0.0.1", port: 5060 },
    ]);
    expect(c.rpc).toEqual({ host: "127.0.0.1", port: 5080 });
    expect(c.route).toBe("default");
    expect(c.logLevel).toBe("warn");
    expect(c.workers).toBeGreaterThan(0);
    expect(c.answerCode).toBe(200);
    expect(c.answerAfter).toBe(0);
  });

  it("--listen takes PROTO:HOST:PORT, IPv6 in brackets, and HOST:PORT for both protocols", () => {
    expect(parseListen("udp:[::1]:5070")).toEqual([{ protocol: "UDP", address: "::1", port: 5070 }]);
    expect(parseListen("TCP:10.0.0.1:5080")).toEqual([{ protocol: "TCP", address: "10.0.0.1", port: 5080 }]);
    expect(parseListen("127.0.0.1:5062").map((l) => l.protocol)).toEqual(["UDP", "TCP"]);
    for (const bad of [
      "udp:::1:5060",
      "udp:[127.0.0.1]:5060",
      "sctp:1.2.3.4:5060",
      "udp:1.2.3.4:99999",
      "udp:host:5060",
    ])
      expect(() => parseListen(bad), bad).toThrow(UsageError);
  });

  it("timers go to the engine (t1, t2, t4, timerD, frInvTimer) and the proxy (fr_timer, Timer C)", () => {
    const c = parse([
      "--t1",
      "50",
      "--t2",
      "400",
      "--t4",
      "500",
      "--timer-d",
      "0",
      "--fr-inv-timer",
      "9000",
      "--fr-timer",
      "700",
    ]);
    expect(c.timers).toEqual({ t1: 50, t2: 400, t4: 500, timerD: 0, frInvTimer: 9000 });
    expect(c.proxy).toEqual({ frTimer: 700, timerC: 9000 });
    expect(parse(["--fr-inv-timer", "9000", "--timer-c", "60000"]).proxy.timerC).toBe(60000);
  });

  it("--answer-after never, --workers 0, --rpc off", () => {
    const c = parse(["--answer-after", "never", "--workers", "0", "--rpc", "off"]);
    expect(c.answerAfter).toBe("never");
    expect(c.workers).toBe(0);
    expect(c.rpc).toBeNull();
  });

  it("--alias is repeatable (default none) and must be a host", () => {
    expect(parse([]).aliases).toEqual([]);
    expect(parse(["--alias", "example.com", "--alias", "sip.example.com"]).aliases).toEqual([
      "example.com",
      "sip.example.com",
    ]);
    expect(() => parse(["--alias", "bad host"])).toThrow(UsageError);
  });

  it("--record-route on|off (default on); anything else is a usage error", () => {
    expect(parse([]).recordRoute).toBe(true);
    expect(parse(["--record-route", "off"]).recordRoute).toBe(false);
    expect(parse(["--record-route", "on"]).recordRoute).toBe(true);
    expect(() => parse(["--record-route", "yes"])).toThrow(UsageError);
  });

  it("a control address off loopback needs a token (flag or SIPTM_RPC_TOKEN)", () => {
    expect(() => parse(["--rpc", "0.0.0.0:5080"])).toThrow(/without a token/);
    expect(parse(["--rpc", "0.0.0.0:5080", "--rpc-token", "t"]).rpcToken).toBe("t");
    expect(parse(["--rpc", "[::]:5080"], { SIPTM_RPC_TOKEN: "e" }).rpcToken).toBe("e");
    expect(isLoopback("127.1.2.3") && isLoopback("::1") && isLoopback("localhost")).toBe(true);
    expect(isLoopback("10.0.0.1")).toBe(false);
    expect(parseHostPort("[::1]:80", "--rpc")).toEqual({ host: "::1", port: 80 });
  });

  it("--rate-limit N or N/s, --rate-burst (default twice the rate), --rate-sources; 0 = off", () => {
    expect(parse([]).rateLimit).toEqual({ rate: 1000, burst: 2000, sources: 65536 });
    expect(parse(["--rate-limit", "50/s"]).rateLimit).toEqual({ rate: 50, burst: 100, sources: 65536 });
    expect(parse(["--rate-limit", "50", "--rate-burst", "7", "--rate-sources", "9"]).rateLimit).toEqual({
      rate: 50,
      burst: 7,
      sources: 9,
    });
    expect(parse(["--rate-limit", "0"]).rateLimit).toBeUndefined();
    for (const bad of [
      ["--rate-limit", "-1"],
      ["--rate-limit", "fast"],
      ["--rate-burst", "0"],
      ["--rate-sources", "0"],
    ])
      expect(() => parse(bad)).toThrow(UsageError);
  });

  it("--secret, SIPTM_SECRET or the config file's secret: at least 16 characters", () => {
    expect(parse([]).secret).toBeUndefined();
    expect(parse(["--secret", "0123456789abcdef"]).secret).toBe("0123456789abcdef");
    expect(parse([], { SIPTM_SECRET: "from-the-environment" }).secret).toBe("from-the-environment");
    expect(parse(["--secret", "the-flag-wins-here"], { SIPTM_SECRET: "from-the-environment" }).secret).toBe(
      "the-flag-wins-here",
    );
    const file = join(dir, "secret.json");
    writeFileSync(file, JSON.stringify({ secret: "written-in-the-file" }));
    expect(parse(["--config", file]).secret).toBe("written-in-the-file");
    expect(() => parse(["--secret", "too-short"])).toThrow(/at least 16 characters/);
  });

  it("a config file is read (kebab-case or camelCase keys) and flags override it", () => {
    const file = join(dir, "siptm.json");
    writeFileSync(
      file,
      JSON.stringify({
        listen: "udp:127.0.0.1:5099",
        route: "./routes/mine.js",
        answerCode: 486,
        "log-level": "info",
        trace: true,
      }),
    );
    const c = parse(["--config", file, "--answer-code", "603"]);
    expect(c.listen).toEqual([{ protocol: "UDP", address: "127.0.0.1", port: 5099 }]);
    expect(c.answerCode).toBe(603);
    expect(c.logLevel).toBe("info");
    expect(c.trace).toBe(true);
    expect(c.routeBase).toBe(dir);
    writeFileSync(file, JSON.stringify({ lsiten: "x" }));
    expect(() => parse(["--config", file])).toThrow(/unknown option "lsiten"/);
    writeFileSync(file, "{");
    expect(() => parse(["--config", file])).toThrow(/not valid JSON/);
    expect(() => parse(["--config", join(dir, "missing.json")])).toThrow(/cannot read config file/);
  });

  it("TCP limits: flags and config-file keys, none given = the transport's defaults", () => {
    expect(parse([]).tcp).toEqual({});
    expect(
      parse([
        "--tcp-max-connections",
        "1000",
        "--tcp-max-per-ip",
        "0",
        "--tcp-msg-timeout",
        "5000",
        "--tcp-max-pings",
        "5",
      ]).tcp,
    ).toEqual({ maxConnections: 1000, maxConnectionsPerIp: 0, msgTimeoutMs: 5000, maxPingsPerWindow: 5 });
    const file = join(dir, "tcp.json");
    writeFileSync(file, JSON.stringify({ tcpMaxPerIp: 8, "tcp-msg-timeout": 0 }));
    expect(parse(["--config", file, "--tcp-max-per-ip", "16"]).tcp).toEqual({
      maxConnectionsPerIp: 16,
      msgTimeoutMs: 0,
    });
    for (const args of [
      ["--tcp-max-connections", "0"],
      ["--tcp-max-per-ip", "-1"],
      ["--tcp-msg-timeout", "soon"],
      ["--tcp-max-pings", "1.5"],
    ])
      expect(() => parse(args), args.join(" ")).toThrow(UsageError);
  });

  it("control limits and --min-expires: defaults, flags, config file keys (rpc-host repeatable)", () => {
    const d = parse([]);
    expect(d.control).toEqual({
      hosts: [],
      requestTimeoutMs: undefined,
      maxConnections: undefined,
      maxBodyBytes: undefined,
      maxBatch: undefined,
      maxResponseBytes: undefined,
      maxPage: undefined,
    });
    expect(d.minExpires).toBe(60);
    // The --rpc-* flags and what they set, written out as the other flag groups' tests are (same form on purpose).
    const c = parse([
      "--rpc-host",
      "siptm.example",
      "--rpc-host",
      "[2001:db8::1]",
      "--rpc-request-timeout",
      "2000",
      "--rpc-max-connections",
      "8",
      "--rpc-max-body",
      "4096",
      "--rpc-max-batch",
      "4",
      "--rpc-max-response",
      "100000",
      "--rpc-max-page",
      "50",
      "--min-expires",
      "0",
    ]);
    expect(c.control).toEqual({
      hosts: ["siptm.example", "[2001:db8::1]"],
      requestTimeoutMs: 2000,
      maxConnections: 8,
      maxBodyBytes: 4096,
      maxBatch: 4,
      maxResponseBytes: 100000,
      maxPage: 50,
    });
    expect(c.minExpires).toBe(0);
    const file = join(dir, "limits.json");
    writeFileSync(file, JSON.stringify({ rpcHost: "a.example", "rpc-max-batch": 2, minExpires: 15 }));
    const f = parse(["--config", file]);
    expect(f.control.hosts).toEqual(["a.example"]);
    expect(f.control.maxBatch).toBe(2);
    expect(f.minExpires).toBe(15);
  });

  it("bad values are one-line usage errors", () => {
    for (const args of [
      ["--bogus"],
      ["--t1", "0"],
      ["--workers", "x"],
      ["--log-level", "loud"],
      ["--answer-after", "soon"],
      ["--workers", "-1"],
      ["--rpc-max-page", "0"],
      ["--rpc-request-timeout", "10"],
      ["--min-expires", "86401"],
    ])
      expect(() => parse(args), args.join(" ")).toThrow(UsageError);
  });
});

describe("TLS and WebSocket listeners (--listen tls|ws|wss, --tls-*, --ws-*)", () => {
  it("parses tls, ws and wss listeners with their default ports", () => {
    expect(parseListen("tls:127.0.0.1")).toEqual([{ protocol: "TLS", address: "127.0.0.1", port: 5061 }]);
    expect(parseListen("ws:127.0.0.1:8080")).toEqual([{ protocol: "WS", address: "127.0.0.1", port: 8080 }]);
    expect(parseListen("WSS:[::1]")).toEqual([{ protocol: "WSS", address: "::1", port: 443 }]);
    expect(() => parseListen("sctp:127.0.0.1:5060")).toThrow(UsageError);
  });

  it("a TLS or WSS listener needs --tls-cert and --tls-key; the files resolve against the base directory", () => {
    expect(() => parse(["--listen", "tls:127.0.0.1:5061"])).toThrow(
      /needs --tls-cert FILE and --tls-key FILE/,
    );
    expect(() => parse(["--listen", "wss:127.0.0.1:8443", "--tls-cert", "c.pem"])).toThrow(UsageError);
    expect(() => parse(["--tls-cert", "c.pem"])).toThrow(/go together/);
    const c = parse(["--listen", "tls:127.0.0.1:5061", "--tls-cert", "c.pem", "--tls-key", "k.pem"]);
    expect(c.tls).toEqual({
      certFile: join(dir, "c.pem"),
      keyFile: join(dir, "k.pem"),
      caFile: undefined,
      clientCert: "off",
      verify: "verify",
      pins: [],
      handshakeTimeoutMs: undefined,
    });
    expect(parse([]).tls).toBeUndefined();
  });

  it("takes the TLS policy flags, and refuses bad values", () => {
    const base = ["--tls-cert", "c.pem", "--tls-key", "k.pem"];
    const pin = `${"AB:".repeat(31)}AB`;
    const c = parse([
      ...base,
      "--tls-client-cert",
      "required",
      "--tls-verify",
      "off",
      "--tls-pin",
      pin,
      "--tls-handshake-timeout",
      "2500",
    ]);
    expect(c.tls?.clientCert).toBe("required");
    expect(c.tls?.verify).toBe("insecure");
    expect(c.tls?.pins).toEqual([pin]);
    expect(c.tls?.handshakeTimeoutMs).toBe(2500);
    expect(() => parse([...base, "--tls-client-cert", "maybe"])).toThrow(UsageError);
    expect(() => parse([...base, "--tls-verify", "no"])).toThrow(UsageError);
    expect(() => parse([...base, "--tls-pin", "1234"])).toThrow(/SHA-256/);
  });

  // Each flag group's test lists its own flags and expected config, in the same form as the --rpc-* test
  // above on purpose: a table would put the flags of unrelated options side by side.
  it("takes the WebSocket limits and trusted proxies (CIDR or address), and refuses bad ones", () => {
    const c = parse([
      "--ws-trusted-proxy",
      "10.0.0.0/8",
      "--ws-trusted-proxy",
      "::1",
      "--ws-max-message",
      "8192",
      "--ws-ping-interval",
      "0",
      "--ws-pong-timeout",
      "3000",
    ]);
    expect(c.ws).toEqual({
      trustedProxies: ["10.0.0.0/8", "::1"],
      maxMessageBytes: 8192,
      pingIntervalMs: 0,
      pongTimeoutMs: 3000,
    });
    for (const bad of ["10.0.0.0/33", "example.com", "10.0.0.0/8/1", "::1/129"])
      expect(() => parse(["--ws-trusted-proxy", bad]), bad).toThrow(UsageError);
    expect(() => parse(["--ws-max-message", "10"])).toThrow(UsageError);
  });
});
