// The server's authentication glue (auth.ts) in process, on a settable wall clock: the policy's
// verdicts, stale nonces (RFC 7616 §3.3), replays, the consumed Proxy-Authorization (RFC 3261
// §22.3), --trusted matching, our domain whatever the port, and the config flags.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { digestHa1, parseMessage, type SipRequest, type Source } from "@siptm/core";
import { afterAll, describe, expect, it } from "vitest";
import { authorize, readChallenge } from "../../core/test/auth/client.js";
import { type AuthVerdict, loadUsersFile, removeConsumed, ServerAuth } from "../src/auth.js";
import { type AuthConfig, parseServeArgs, UsageError } from "../src/config.js";
import { makeIsLocal } from "../src/local.js";

const REALM = "siptm.test";
const dir = mkdtempSync(join(tmpdir(), "siptm-auth-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const USERS = join(dir, "users");
const line = (u: string, p: string) =>
  `${u}:${REALM}:${digestHa1("MD5", u, REALM, p)}:${digestHa1("SHA-256", u, REALM, p)}`;
writeFileSync(USERS, `${line("alice", "wonderland")}\n${line("bob", "builder")}\n`);

const SOURCE: Source = {
  protocol: "UDP",
  address: "192.0.2.7",
  port: 5060,
  localAddress: "127.0.0.1",
  localPort: 5060,
} as Source;

function conf(over: Partial<AuthConfig> = {}): AuthConfig {
  return { usersFile: USERS, realm: REALM, domains: ["siptm.test"], trusted: [], open: false, ...over };
}

function make(over: Partial<AuthConfig> = {}) {
  let t = 1_765_000_000_000;
  const auth = new ServerAuth({
    config: conf(over),
    key: new Uint8Array(32).fill(7),
    isLocal: makeIsLocal([{ protocol: "UDP", address: "127.0.0.1", port: 5060 }], undefined, ["siptm.test"]),
    now: () => t,
  });
  return { auth, advance: (ms: number) => (t += ms) };
}

function request(method: string, uri: string, from: string, to: string, extra: string[] = []): SipRequest {
  const text = [
    `${method} ${uri} SIP/2.0`,
    "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-1",
    `From: ${from};tag=1`,
    `To: ${to}`,
    "Call-ID: c1",
    `CSeq: 1 ${method}`,
    "Max-Forwards: 70",
    ...extra,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
  return parseMessage(Buffer.from(text)) as SipRequest;
}

function answer(v: AuthVerdict, user: string, password: string, method: string, uri: string, nc = 1): string {
  if (v.ok) throw new Error("expected a challenge");
  const c = readChallenge(v.headers![0]![1]);
  return authorize(c, { user, password, method, uri, nc });
}

describe("ServerAuth", () => {
  it("REGISTER: 401, then 200 with the AOR user's credentials; a replay of them gets a new 401", async () => {
    const { auth } = make();
    const reg = (extra: string[] = []) =>
      request("REGISTER", "sip:siptm.test", "<sip:alice@siptm.test>", "<sip:alice@siptm.test>", extra);
    const first = await auth.register(reg(), SOURCE);
    expect(first).toMatchObject({ ok: false, status: 401 });
    const value = answer(first, "alice", "wonderland", "REGISTER", "sip:siptm.test");
    expect(await auth.register(reg([`Authorization: ${value}`]), SOURCE)).toEqual({
      ok: true,
      user: "alice",
      consumed: undefined,
    });
    const replay = await auth.register(reg([`Authorization: ${value}`]), SOURCE);
    expect(replay).toMatchObject({ ok: false, status: 401 });
    expect(auth.counters).toMatchObject({ ok: 1, failed: 1, challenged: 2 });
  });

  it("an expired nonce with the right digest gets a challenge with stale=true; a wrong one without", async () => {
    const { auth, advance } = make();
    const reg = (extra: string[] = []) =>
      request("REGISTER", "sip:siptm.test", "<sip:bob@siptm.test>", "<sip:bob@siptm.test>", extra);
    const first = await auth.register(reg(), SOURCE);
    const right = answer(first, "bob", "builder", "REGISTER", "sip:siptm.test");
    const wrong = answer(first, "bob", "nope", "REGISTER", "sip:siptm.test");
    advance(301_000);
    const stale = await auth.register(reg([`Authorization: ${right}`]), SOURCE);
    expect(stale.ok).toBe(false);
    if (!stale.ok) expect(stale.headers!.every(([, v]) => readChallenge(v).stale)).toBe(true);
    const bad = await auth.register(reg([`Authorization: ${wrong}`]), SOURCE);
    if (!bad.ok) expect(bad.headers!.some(([, v]) => readChallenge(v).stale)).toBe(false);
    else throw new Error("a wrong password was accepted");
  });

  it("relay: strangers 403; our user 407, then ok naming the Proxy-Authorization line consumed", async () => {
    const { auth } = make();
    const uri = "sip:carol@example.org";
    const stranger = await auth.relay(request("INVITE", uri, "<sip:eve@evil.example>", `<${uri}>`), SOURCE);
    expect(stranger).toMatchObject({ ok: false, status: 403 });
    // Our domain whatever the From's port.
    const mine = (extra: string[] = []) =>
      request("INVITE", uri, "<sip:alice@siptm.test:5099>", `<${uri}>`, extra);
    const first = await auth.relay(mine(), SOURCE);
    expect(first).toMatchObject({ ok: false, status: 407, reason: "Proxy Authentication Required" });
    const value = answer(first, "alice", "wonderland", "INVITE", uri);
    const req = mine([
      'Proxy-Authorization: Digest realm="other", username="a"',
      `Proxy-Authorization: ${value}`,
    ]);
    const ok = await auth.relay(req, SOURCE);
    expect(ok).toEqual({ ok: true, user: "alice", consumed: 1 });
    removeConsumed(req, 1);
    expect(req.headerLines("proxy-authorization")).toEqual(['Digest realm="other", username="a"']);
  });

  it("--trusted (IPv4, IPv4-mapped IPv6, a subnet) and --open skip everything", async () => {
    const { auth } = make({ trusted: ["192.0.2.0/24", "2001:db8::1"] });
    const uri = "sip:carol@example.org";
    const req = request("INVITE", uri, "<sip:eve@evil.example>", `<${uri}>`);
    expect(await auth.relay(req, SOURCE)).toEqual({ ok: true });
    expect(await auth.relay(req, { ...SOURCE, address: "::ffff:192.0.2.9" } as Source)).toEqual({ ok: true });
    expect(await auth.relay(req, { ...SOURCE, address: "2001:db8::1" } as Source)).toEqual({ ok: true });
    expect(await auth.relay(req, { ...SOURCE, address: "198.51.100.1" } as Source)).toMatchObject({
      status: 403,
    });
    const open = make({ usersFile: undefined, open: true }).auth;
    expect(await open.relay(req, SOURCE)).toEqual({ ok: true });
    expect(open.registerElsewhere(req, SOURCE)).toEqual({ ok: true });
  });

  it("a broken users file: a UsageError naming its lines; a reload with one keeps the users", async () => {
    const bad = join(dir, "bad");
    writeFileSync(bad, `${line("alice", "x")}\nnope\n`);
    expect(() => loadUsersFile(bad)).toThrow(UsageError);
    expect(() => loadUsersFile(bad)).toThrow(/line 2: expected user:realm:HA1/);
    expect(() => loadUsersFile(join(dir, "missing"))).toThrow(/cannot read --users .*ENOENT/);
    const file = join(dir, "reload");
    writeFileSync(file, `${line("alice", "x")}\n`);
    const { auth } = make({ usersFile: file });
    writeFileSync(file, "broken\n");
    expect(() => auth.reload()).toThrow(/line 1/);
    expect(auth.userCount).toBe(1);
  });
});

describe("config: --users, --realm, --domain, --trusted, --open", () => {
  const parse = (args: string[]) => {
    const r = parseServeArgs(args, {}, dir);
    if (r.help) throw new Error("help");
    return r.config;
  };
  it("defaults: no users, the realm is the first listen address, nothing trusted", () => {
    expect(parse([]).auth).toEqual({
      usersFile: undefined,
      realm: "127.0.0.1",
      domains: [],
      trusted: [],
      open: false,
    });
    expect(parse(["--advertise", "sip.example.com"]).auth.realm).toBe("sip.example.com");
  });
  it("flags: the users file resolved, --domain also an alias, --trusted checked", () => {
    const c = parse([
      "--users",
      "users",
      "--realm",
      "Example",
      "--domain",
      "example.com",
      "--domain",
      "example.org",
      "--trusted",
      "10.0.0.0/8",
    ]);
    expect(c.auth).toEqual({
      usersFile: join(dir, "users"),
      realm: "Example",
      domains: ["example.com", "example.org"],
      trusted: ["10.0.0.0/8"],
      open: false,
    });
    expect(c.aliases).toEqual(["example.com", "example.org"]);
    expect(() => parse(["--trusted", "10.0.0.0/33"])).toThrow(/--trusted/);
    expect(() => parse(["--domain", "bad domain"])).toThrow(/--domain/);
    expect(() => parse(["--realm", 'a"b'])).toThrow(/--realm/);
    expect(() => parse(["--open", "--users", "u"])).toThrow(/exclude/);
  });
  it("safe by default: off loopback only with --users or --open", () => {
    expect(() => parse(["--listen", "udp:0.0.0.0:5060"])).toThrow(/refusing to serve SIP on 0\.0\.0\.0:5060/);
    expect(() => parse(["--listen", "udp:[2001:db8::1]:5060"])).toThrow(UsageError);
    expect(parse(["--listen", "udp:0.0.0.0:5060", "--users", "u"]).auth.usersFile).toBe(join(dir, "u"));
    expect(parse(["--listen", "udp:0.0.0.0:5060", "--open"]).auth.open).toBe(true);
    expect(parse(["--listen", "udp:[::1]:5060"]).auth.open).toBe(false);
  });
});
