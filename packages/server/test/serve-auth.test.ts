// Route `default` with digest authentication (--users), against a real `siptm serve` in one thread
// and with 2 shards: REGISTER challenged (RFC 3261 §22.2, §10.3 steps 2–3), relays of our users
// challenged (407, §22.3) and their credentials consumed, strangers refused (403: no open relay),
// calls to registered users let in, --trusted peers let through, SIGHUP reloading the users file.
// In-test engines play the phones and the other servers; the server is a child process.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  digestHa1,
  type Engine,
  type FinalOutcome,
  newCallId,
  type RequestOptions,
  type ServerTransactionHandle,
} from "@siptm/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { forEachEngine, workersFlag } from "../../../test/setup/engines.js";
import { authorize, readChallenge } from "../../core/test/auth/client.js";
import { call, killAll, runCli, SERVER_TIMERS, type Served, serve, testEngine, until } from "./helpers.js";

const REALM = "siptm.test";
const DOMAIN = "siptm.test";

function userLine(user: string, password: string, sha = true): string {
  const md5 = digestHa1("MD5", user, REALM, password);
  return sha
    ? `${user}:${REALM}:${md5}:${digestHa1("SHA-256", user, REALM, password)}`
    : `${user}:${REALM}:${md5}`;
}

const dir = mkdtempSync(join(tmpdir(), "siptm-auth-"));
const USERS = join(dir, "users");
writeFileSync(USERS, `# test users\n${userLine("alice", "wonderland")}\n${userLine("bob", "builder")}\n`);

afterAll(killAll);

const open: Engine[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.close()));
});

async function phone(): Promise<Engine> {
  const e = await testEngine();
  open.push(e);
  return e;
}

interface Seen {
  method: string;
  uri: string;
  proxyAuthorization: string[];
}

/** An engine that records what reaches it and answers 200 (INVITE: with a Contact). */
async function peer(): Promise<{ engine: Engine; seen: Seen[]; port: number }> {
  const seen: Seen[] = [];
  let port = 0;
  const engine = await testEngine({
    onRequest: (tx: ServerTransactionHandle) => {
      seen.push({
        method: tx.method,
        uri: tx.request.uri,
        proxyAuthorization: tx.request.headerLines("proxy-authorization"),
      });
      tx.reply(200, {
        headers: tx.method === "INVITE" ? [["Contact", `<sip:peer@127.0.0.1:${port}>`]] : undefined,
      });
    },
  });
  open.push(engine);
  port = engine.transportFor("UDP")!.localPort;
  return { engine, seen, port };
}

/** A request to the server (UDP), one Call-ID for the first try and the retry. */
function send(
  ua: Engine,
  server: Pick<Served, "udp">,
  o: Omit<RequestOptions, "nextHop">,
): Promise<FinalOutcome> {
  return ua.request({ ...o, nextHop: `udp:127.0.0.1:${server.udp}` }).final;
}

/**
 * Send, expect the challenge (401 or 407), answer it as `user` with `password` (the challenge's
 * `which`-th algorithm) in a new request of the same Call-ID and the next CSeq (§22.2); its outcome.
 */
async function withCredentials(
  ua: Engine,
  server: Pick<Served, "udp">,
  o: Omit<RequestOptions, "nextHop">,
  creds: { user: string; password: string; which?: number },
): Promise<{ first: FinalOutcome; second: FinalOutcome }> {
  const callId = o.callId ?? newCallId();
  const first = await send(ua, server, { ...o, callId, cseq: 1 });
  expect([401, 407]).toContain(first.status);
  const proxy = first.status === 407;
  const values = first.response!.headerLines(proxy ? "proxy-authenticate" : "www-authenticate");
  const c = readChallenge(values[creds.which ?? 0]!);
  const value = authorize(c, { user: creds.user, password: creds.password, method: o.method, uri: o.uri });
  const second = await send(ua, server, {
    ...o,
    callId,
    cseq: 2,
    headers: [...(o.headers ?? []), [proxy ? "Proxy-Authorization" : "Authorization", value]],
  });
  return { first, second };
}

function registerOf(user: string, contact: string, extra: Partial<RequestOptions> = {}): RequestOptions {
  return {
    method: "REGISTER",
    uri: `sip:${DOMAIN}`,
    from: `<sip:${user}@${DOMAIN}>`,
    to: `<sip:${user}@${DOMAIN}>`,
    ...extra,
    headers: [["Contact", contact], ...(extra.headers ?? [])],
  };
}

async function bindings(server: Served, aor: string): Promise<string[]> {
  return (await call<Array<{ uri: string }>>(server.rpc, "ul.lookup", [aor])).map((b) => b.uri);
}

/** The challenge values without their nonces (two answers compared). */
function shape(o: FinalOutcome): string {
  const h = o.response!.headerLines("www-authenticate");
  return `${o.status} ${o.response!.reason} ${h.map((v) => v.replace(/nonce="[^"]*"/, "nonce=X")).join(" | ")}`;
}

forEachEngine((_bed, _kind, engine) => {
  const workers = workersFlag(engine);
  const start = (extra: string[]) =>
    serve(["--route", "default", "--workers", workers, "--drain-timeout", "500", ...SERVER_TIMERS, ...extra]);

  describe(`--users, --workers ${workers}`, () => {
    let server: Served;
    beforeAll(async () => {
      server = await start(["--users", USERS, "--realm", REALM, "--domain", DOMAIN]);
    }, 30_000);

    it("a REGISTER without credentials gets 401 with an SHA-256 then an MD5 challenge (RFC 8760 §2); none is bound", async () => {
      const ua = await phone();
      const res = await send(ua, server, registerOf("alice", "<sip:alice@127.0.0.1:5999>"));
      expect(res.status).toBe(401);
      const values = res.response!.headerLines("www-authenticate");
      expect(values).toHaveLength(2);
      expect(values.map((v) => readChallenge(v).algorithm)).toEqual(["SHA-256", "MD5"]);
      expect(values.every((v) => readChallenge(v).realm === REALM && readChallenge(v).qop === "auth")).toBe(
        true,
      );
      expect(await bindings(server, `sip:alice@${DOMAIN}`)).toEqual([]);
    }, 30_000);

    it("with the AOR user's credentials (SHA-256, MD5) the REGISTER gets 200 and the binding exists", async () => {
      const ua = await phone();
      const a = await withCredentials(ua, server, registerOf("alice", "<sip:alice@127.0.0.1:5998>"), {
        user: "alice",
        password: "wonderland",
      });
      expect(a.second.status).toBe(200);
      expect(await bindings(server, `sip:alice@${DOMAIN}`)).toEqual(["sip:alice@127.0.0.1:5998"]);
      const b = await withCredentials(ua, server, registerOf("bob", "<sip:bob@127.0.0.1:5997>"), {
        user: "bob",
        password: "builder",
        which: 1,
      });
      expect(b.second.status).toBe(200);
      expect(await bindings(server, `sip:bob@${DOMAIN}`)).toContain("sip:bob@127.0.0.1:5997");
    }, 30_000);

    it("a wrong password and an unknown user get the same answer (a new 401), and nothing is bound", async () => {
      const ua = await phone();
      const wrong = await withCredentials(ua, server, registerOf("alice", "<sip:x@127.0.0.1:1>"), {
        user: "alice",
        password: "guess",
      });
      const unknown = await withCredentials(ua, server, registerOf("mallory", "<sip:x@127.0.0.1:1>"), {
        user: "mallory",
        password: "guess",
      });
      expect(wrong.second.status).toBe(401);
      expect(shape(wrong.second)).toBe(shape(unknown.second));
      expect(await bindings(server, `sip:mallory@${DOMAIN}`)).toEqual([]);
      expect(await bindings(server, `sip:alice@${DOMAIN}`)).not.toContain("sip:x@127.0.0.1:1");
    }, 30_000);

    it("valid credentials of alice for bob's AOR get 403; a REGISTER for another domain gets 403", async () => {
      const ua = await phone();
      const res = await withCredentials(ua, server, registerOf("bob", "<sip:eve@127.0.0.1:6666>"), {
        user: "alice",
        password: "wonderland",
      });
      expect(res.second.status).toBe(403);
      expect(await bindings(server, `sip:bob@${DOMAIN}`)).not.toContain("sip:eve@127.0.0.1:6666");
      const other = await send(
        ua,
        server,
        registerOf("ceo", "<sip:eve@127.0.0.1:6666>", {
          uri: "sip:127.0.0.1:1",
          from: "<sip:ceo@bank.example>",
          to: "<sip:ceo@bank.example>",
        }),
      );
      expect(other.status).toBe(403);
      // Ours as the Request-URI, but an AOR of another domain: 403 too.
      const foreign = await send(
        ua,
        server,
        registerOf("ceo", "<sip:eve@127.0.0.1:6666>", {
          from: "<sip:ceo@bank.example>",
          to: "<sip:ceo@bank.example>",
        }),
      );
      expect(foreign.status).toBe(403);
    }, 30_000);

    it("an unauthenticated `Contact: *` with Expires: 0 cannot remove bob's binding", async () => {
      const ua = await phone();
      const reg = await withCredentials(ua, server, registerOf("bob", "<sip:bob@127.0.0.1:5996>"), {
        user: "bob",
        password: "builder",
      });
      expect(reg.second.status).toBe(200);
      const attack = await send(ua, server, registerOf("bob", "*", { headers: [["Expires", "0"]] }));
      expect(attack.status).toBe(401);
      expect(await bindings(server, `sip:bob@${DOMAIN}`)).toContain("sip:bob@127.0.0.1:5996");
    }, 30_000);

    it("a stranger's call to a registered user is relayed to the binding, unauthenticated", async () => {
      const [callee, caller] = await Promise.all([peer(), phone()]);
      const reg = await withCredentials(
        callee.engine,
        server,
        registerOf("alice", `<sip:alice@127.0.0.1:${callee.port}>`),
        { user: "alice", password: "wonderland" },
      );
      expect(reg.second.status).toBe(200);
      const h = caller.request({
        method: "INVITE",
        uri: `sip:alice@${DOMAIN}`,
        from: "<sip:eve@evil.example>",
        to: `<sip:alice@${DOMAIN}>`,
        nextHop: `udp:127.0.0.1:${server.udp}`,
      });
      const answer = await h.final;
      expect(answer.status).toBe(200);
      expect(callee.seen.map((s) => `${s.method} ${s.uri}`)).toEqual([
        `INVITE sip:alice@127.0.0.1:${callee.port}`,
      ]);
      // The BYE of that dialog (To tag, our Route) goes through, from the stranger's side.
      const bye = caller.ackAndBye(h, answer.response!);
      expect((await bye.final).status).toBe(200);
    }, 30_000);

    it("a stranger's request to another domain gets 403 and goes nowhere (no open relay)", async () => {
      const [target, ua] = await Promise.all([peer(), phone()]);
      const res = await send(ua, server, {
        method: "OPTIONS",
        uri: `sip:carol@127.0.0.1:${target.port}`,
        from: "<sip:eve@evil.example>",
        to: `<sip:carol@127.0.0.1:${target.port}>`,
      });
      expect(res.status).toBe(403);
      const invite = await send(ua, server, {
        method: "INVITE",
        uri: "sip:x@unresolvable.invalid",
        from: "<sip:eve@evil.example>",
        to: "<sip:x@unresolvable.invalid>",
      });
      expect(invite.status).toBe(403);
      expect(target.seen).toEqual([]);
    }, 30_000);

    it("our user's request to another domain gets 407; with Proxy-Authorization it is relayed without our credentials", async () => {
      const [target, ua] = await Promise.all([peer(), phone()]);
      const uri = `sip:carol@127.0.0.1:${target.port}`;
      const other = 'Digest username="alice", realm="elsewhere", nonce="n", uri="x", response="r"';
      const res = await withCredentials(
        ua,
        server,
        {
          method: "OPTIONS",
          uri,
          from: `<sip:alice@${DOMAIN}>`,
          to: `<${uri}>`,
          headers: [["Proxy-Authorization", other]],
        },
        { user: "alice", password: "wonderland" },
      );
      expect(res.first.status).toBe(407);
      expect(res.first.response!.headerLines("proxy-authenticate")).toHaveLength(2);
      expect(res.second.status).toBe(200);
      // §22.3: ours consumed, the other realm's passed on.
      expect(target.seen).toEqual([{ method: "OPTIONS", uri, proxyAuthorization: [other] }]);
    }, 30_000);

    it("alice's proxy credentials on a request From bob get 403", async () => {
      const [target, ua] = await Promise.all([peer(), phone()]);
      const uri = `sip:carol@127.0.0.1:${target.port}`;
      const res = await withCredentials(
        ua,
        server,
        { method: "OPTIONS", uri, from: `<sip:bob@${DOMAIN}>`, to: `<${uri}>` },
        { user: "alice", password: "wonderland" },
      );
      expect(res.second.status).toBe(403);
      expect(target.seen).toEqual([]);
    }, 30_000);
  });

  describe(`--trusted and loopback without --users, --workers ${workers}`, () => {
    it("a --trusted peer relays to another domain without credentials", async () => {
      const server = await start(["--users", USERS, "--domain", DOMAIN, "--trusted", "127.0.0.0/8"]);
      const [target, ua] = await Promise.all([peer(), phone()]);
      const uri = `sip:carol@127.0.0.1:${target.port}`;
      const res = await send(ua, server, {
        method: "OPTIONS",
        uri,
        from: "<sip:carrier@trunk.example>",
        to: `<${uri}>`,
      });
      expect(res.status).toBe(200);
      expect(target.seen.map((s) => s.uri)).toEqual([uri]);
    }, 30_000);

    it("without --users on loopback: no authentication, but a stranger's relay gets 403 and our user's goes", async () => {
      const server = await start([]);
      const [target, ua] = await Promise.all([peer(), phone()]);
      const uri = `sip:carol@127.0.0.1:${target.port}`;
      const stranger = await send(ua, server, {
        method: "OPTIONS",
        uri,
        from: "<sip:eve@evil.example>",
        to: `<${uri}>`,
      });
      expect(stranger.status).toBe(403);
      const ours = await send(ua, server, {
        method: "OPTIONS",
        uri,
        from: "<sip:alice@127.0.0.1>",
        to: `<${uri}>`,
      });
      expect(ours.status).toBe(200);
      expect(target.seen.map((s) => s.uri)).toEqual([uri]);
    }, 30_000);

    it("--open: a stranger's relay goes through, as before", async () => {
      const server = await start(["--open"]);
      const [target, ua] = await Promise.all([peer(), phone()]);
      const uri = `sip:carol@127.0.0.1:${target.port}`;
      const res = await send(ua, server, {
        method: "OPTIONS",
        uri,
        from: "<sip:eve@evil.example>",
        to: `<${uri}>`,
      });
      expect(res.status).toBe(200);
    }, 30_000);
  });

  describe(`SIGHUP, --workers ${workers}`, () => {
    it("reloads the users file everywhere; a broken one keeps the old users and says why", async () => {
      const file = join(dir, `users-${workers}`);
      writeFileSync(file, `${userLine("alice", "wonderland")}\n`);
      const server = await start(["--users", file, "--realm", REALM, "--domain", DOMAIN]);
      const [target, ua] = await Promise.all([peer(), phone()]);
      const uri = `sip:carol@127.0.0.1:${target.port}`;
      const bobRegisters = async () =>
        (
          await withCredentials(ua, server, registerOf("bob", "<sip:bob@127.0.0.1:5995>"), {
            user: "bob",
            password: "builder",
          })
        ).second.status;
      const bobRelays = async () =>
        (
          await withCredentials(
            ua,
            server,
            { method: "OPTIONS", uri, from: `<sip:bob@${DOMAIN}>`, to: `<${uri}>` },
            { user: "bob", password: "builder" },
          )
        ).second.status;
      expect(await bobRegisters()).toBe(401);
      expect(await bobRelays()).toBe(407);

      // bob without an SHA-256 HA1: MD5 only is offered from now on.
      writeFileSync(file, `${userLine("alice", "wonderland")}\n${userLine("bob", "builder", false)}\n`);
      server.proc.kill("SIGHUP");
      await until("the reload", () => /reloaded/.test(server.stdout()));
      // The shards reload after the main thread (a control call each): wait for bob's relay.
      await until("bob relays", async () => (await bobRelays()) === 200);
      expect(await bobRegisters()).toBe(200);
      const ch = await send(ua, server, registerOf("alice", "<sip:alice@127.0.0.1:5994>"));
      expect(ch.response!.headerLines("www-authenticate").map((v) => readChallenge(v).algorithm)).toEqual([
        "MD5",
      ]);

      writeFileSync(file, `${userLine("alice", "wonderland")}\nbob:broken\n`);
      server.proc.kill("SIGHUP");
      await until("the refusal", () => /reload failed.*line 2/.test(server.stderr()));
      expect(await bobRegisters()).toBe(200);
      expect(await bobRelays()).toBe(200);
    }, 60_000);
  });
});

describe("start-up", () => {
  it("refuses SIP on a non-loopback address without --users or --open", async () => {
    const c = runCli(["serve", "--listen", "udp:0.0.0.0:0", "--rpc", "off", "--workers", "0"]);
    expect((await c.exited).code).toBe(2);
    expect(c.stderr()).toMatch(/refusing to serve SIP on 0\.0\.0\.0:0.*--users/);
  });

  it("a bad users file fails the start with its line numbers", async () => {
    const bad = join(dir, "bad");
    writeFileSync(bad, `${userLine("alice", "wonderland")}\nbob:${REALM}:nothex\n\nx\n`);
    const c = runCli([
      "serve",
      "--listen",
      "udp:127.0.0.1:0",
      "--rpc",
      "off",
      "--workers",
      "0",
      "--users",
      bad,
    ]);
    expect((await c.exited).code).toBe(2);
    expect(c.stderr()).toMatch(/line 2: .*line 4:/);
  });
});
