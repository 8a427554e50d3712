// Route `default` against a real `siptm serve`, in one thread and with 2 shards: what is ours to
// answer from the registrar (RFC 3261 §10.3 step 1, §16.5: the Request-URI is ours, port
// included), which Contacts a REGISTER may bind (§10.3 step 7), and Record-Route on relayed
// dialog-creating requests (§16.6 item 4, --record-route). In-test engines play the phones and
// "another server" on this host; the server is a child process, killed in afterAll.
import type { Engine, ServerTransactionHandle } from "@siptm/core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { forEachEngine, workersFlag } from "../../../test/setup/engines.js";
import {
  call,
  killAll,
  register,
  type Served,
  serveDefault,
  testEngine,
  toServer,
  until,
} from "./helpers.js";

afterAll(killAll);

interface Seen {
  method: string;
  uri: string;
  rr: string[];
  protocol: string;
}

/** The engines a test made, closed after it whatever its outcome. */
const open: Engine[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.close()));
});

/** An in-test engine (a phone), closed after the test. */
async function phone(): Promise<Engine> {
  const engine = await testEngine();
  open.push(engine);
  return engine;
}

/** An engine that records what reaches it and answers 200 (INVITE: with a Contact); closed after the test. */
async function peer(): Promise<{ engine: Engine; seen: Seen[]; port: number }> {
  const seen: Seen[] = [];
  let port = 0;
  const engine = await testEngine({
    onRequest: (tx: ServerTransactionHandle) => {
      seen.push({
        method: tx.method,
        uri: tx.request.uri,
        rr: tx.request.headerValues("record-route"),
        protocol: tx.source.protocol,
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

/** REGISTER `aor` at the server for `p`, its contact that user at the peer's port (200 expected). */
async function bindPeer(p: { engine: Engine; port: number }, server: Served, aor: string, uri?: string) {
  const user = aor.slice("sip:".length, aor.indexOf("@"));
  const reg = await register(p.engine, server, aor, `<sip:${user}@127.0.0.1:${p.port}>`, uri ? { uri } : {});
  expect(reg.status).toBe(200);
}

forEachEngine((_bed, _kind, engine) => {
  const workers = workersFlag(engine);
  describe(`route default, --workers ${workers}`, () => {
    const start = (extra: string[] = []) => serveDefault(workers, extra);

    it("a request for another server on this host (other port) goes there, not to a local binding of the same user", async () => {
      const server = await start();
      const [decoy, other, caller] = await Promise.all([peer(), peer(), phone()]);
      // bob@127.0.0.1 registered here …
      await bindPeer(decoy, server, "sip:bob@127.0.0.1", `sip:127.0.0.1:${server.udp}`);
      // … and a call for bob at the server on `other.port`: that server is the only target (§16.5).
      const invite = toServer(caller, server, "INVITE", {
        uri: `sip:bob@127.0.0.1:${other.port}`,
        to: `<sip:bob@127.0.0.1:${other.port}>`,
      });
      const answer = await invite.final;
      expect(answer.status).toBe(200);
      expect(other.seen.map((s) => `${s.method} ${s.uri}`)).toEqual([
        `INVITE sip:bob@127.0.0.1:${other.port}`,
      ]);
      expect(decoy.seen).toEqual([]);
      caller.ack2xx(invite, answer.response!);
    }, 30_000);

    it("a REGISTER for another domain is relayed there (§10.3 step 1), not bound here", async () => {
      const server = await start();
      const [other, ua] = await Promise.all([peer(), phone()]);
      const reg = await register(
        ua,
        server,
        "sip:bob@127.0.0.1",
        `<sip:bob@127.0.0.1:${ua.transportFor("UDP")!.localPort}>`,
        {
          uri: `sip:127.0.0.1:${other.port}`,
        },
      );
      expect(reg.status).toBe(200);
      expect(other.seen).toEqual([
        { method: "REGISTER", uri: `sip:127.0.0.1:${other.port}`, rr: [], protocol: "UDP" },
      ]);
      expect(await call<unknown[]>(server.rpc, "ul.dump")).toEqual([]);
    }, 30_000);

    it("a request for an unregistered user here, with only our own Route (an outbound proxy setting), gets 404", async () => {
      const server = await start();
      const ua = await phone();
      const res = await toServer(ua, server, "INVITE", {
        uri: "sip:nobody@127.0.0.1",
        to: "<sip:nobody@127.0.0.1>",
        headers: [["Route", `<sip:127.0.0.1:${server.udp};lr>`]],
      }).final;
      expect(res.status).toBe(404);
      expect((await call<{ relayed: number }>(server.rpc, "tm.stats")).relayed).toBe(0);
    }, 30_000);

    it("--alias names a domain of ours: its REGISTER is bound here and a call to its AOR reaches the contact", async () => {
      const server = await start(["--alias", "example.invalid"]);
      const [callee, caller] = await Promise.all([peer(), phone()]);
      await bindPeer(callee, server, "sip:bob@example.invalid", "sip:example.invalid");
      const dump = await call<Array<{ aor: string }>>(server.rpc, "ul.dump");
      expect(dump.map((a) => a.aor)).toEqual(["sip:bob@example.invalid"]);
      const invite = toServer(caller, server, "INVITE", {
        uri: "sip:bob@example.invalid",
        to: "<sip:bob@example.invalid>",
      });
      const answer = await invite.final;
      expect(answer.status).toBe(200);
      expect(callee.seen.map((s) => s.uri)).toEqual([`sip:bob@127.0.0.1:${callee.port}`]);
      caller.ack2xx(invite, answer.response!);
    }, 30_000);

    it("a REGISTER whose Contact is not a SIP URI gets 400 and binds nothing", async () => {
      const server = await start();
      const ua = await phone();
      const reg = await register(ua, server, "sip:bob@127.0.0.1", "<http://example.invalid/x>", {
        uri: `sip:127.0.0.1:${server.udp}`,
      });
      expect(reg.status).toBe(400);
      expect(reg.reason).toBe("Unsupported Contact URI Scheme");
      expect(await call<unknown[]>(server.rpc, "ul.dump")).toEqual([]);
    }, 30_000);

    it("as an outbound proxy to another domain it record-routes (the callee and the 200 carry its Record-Route), and the BYE along that route set gets through", async () => {
      const server = await start();
      const [other, caller] = await Promise.all([peer(), phone()]);
      const invite = toServer(caller, server, "INVITE", {
        uri: `sip:carol@127.0.0.1:${other.port}`,
        to: `<sip:carol@127.0.0.1:${other.port}>`,
      });
      const answer = await invite.final;
      expect(answer.status).toBe(200);
      const rr = [`<sip:127.0.0.1:${server.udp};lr>`];
      expect(other.seen[0]!.rr).toEqual(rr);
      expect(answer.response!.headerValues("record-route")).toEqual(rr);
      // ackAndBye sends along the route set: to the server, which loose-routes to the callee.
      const bye = caller.ackAndBye(invite, answer.response!);
      expect((await bye.final).status).toBe(200);
      await until("the BYE at the callee", () => other.seen.some((s) => s.method === "BYE"));
      // The BYE (in-dialog: no new Record-Route) was loose-routed by the server.
      expect(other.seen.find((s) => s.method === "BYE")!.rr).toEqual([]);
      expect(server.stderr()).not.toContain('"level":50');
    }, 30_000);

    it("--record-route off: nothing record-routes, to a registered AOR or another domain", async () => {
      const server = await start(["--record-route", "off"]);
      const [callee, other, caller] = await Promise.all([peer(), peer(), phone()]);
      await bindPeer(callee, server, "sip:dave@127.0.0.1");
      for (const uri of ["sip:dave@127.0.0.1", `sip:carol@127.0.0.1:${other.port}`]) {
        const invite = toServer(caller, server, "INVITE", { uri, to: `<${uri}>` });
        const answer = await invite.final;
        expect(answer.status).toBe(200);
        expect(answer.response!.headerValues("record-route")).toEqual([]);
        caller.ack2xx(invite, answer.response!);
      }
      expect(callee.seen.map((s) => s.rr)).toEqual([[]]);
      expect(other.seen.map((s) => s.rr)).toEqual([[]]);
    }, 30_000);
  });
});
