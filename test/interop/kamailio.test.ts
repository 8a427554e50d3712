// siptm as the outbound proxy of a phone calling into another server's domain on the same host:
// Kamailio 5.6 on 127.0.0.1:K is the registrar of that domain (peers.ts), with a baresip "bob"
// registered there; another baresip registers as bob@127.0.0.1 at siptm itself. alice (baresip,
// outbound proxy siptm) calls sip:bob@127.0.0.1:K.
//
//  - RFC 3261 §16.5: the Request-URI is not ours (port K is not one of our ports), so it is the
//    only target: the call reaches Kamailio and the bob registered there, never the local bob.
//  - §16.6 item 4: siptm record-routes the call (route default, --record-route on), so it stays
//    in the dialog: alice's ACK and bob's BYE come through it (Kamailio does not record-route).
import { afterAll, describe, expect, it } from "vitest";
import { Baresip, Kamailio, requireBaresip, requireKamailio } from "./peers.js";
import { HOST, sleep } from "./sipp.js";
import {
  callTrace,
  expectServerDrained,
  SERVER_TIMERS,
  type SiptmServer,
  startServer,
} from "./siptm-server.js";

const running = new Set<{ stop(): Promise<void> } | SiptmServer>();
afterAll(async () => {
  await Promise.all([...running].map((c) => ("stop" in c ? c.stop() : c.kill())));
});

for (const workers of ["0", "2"])
  describe(`siptm serve --route default --workers ${workers} in front of Kamailio`, () => {
    it("a call for bob at Kamailio's port goes to Kamailio's bob, not siptm's; siptm record-routes it, so the ACK and the callee's BYE come through it", async () => {
      requireBaresip();
      requireKamailio();
      let server: SiptmServer | undefined;
      let kamailio: Kamailio | undefined;
      const phones: Baresip[] = [];
      const phone = async (opts: Parameters<typeof Baresip.start>[0]) => {
        const p = await Baresip.start(opts);
        running.add(p);
        phones.push(p);
        return p;
      };
      try {
        kamailio = await Kamailio.start();
        running.add(kamailio);
        server = await startServer(["--route", "default", "--workers", workers, ...SERVER_TIMERS]);
        running.add(server);
        const bob = await phone({
          user: "bob",
          proxyPort: kamailio.port,
          transport: "udp",
          registrarIsProxyDomain: true,
        });
        const localBob = await phone({ user: "bob", proxyPort: server.udp, transport: "udp" });
        const alice = await phone({ user: "alice", proxyPort: server.udp, transport: "udp" });
        const dump = await server.call<Array<{ aor: string }>>("ul.dump");
        expect(dump.map((a) => a.aor).sort()).toEqual([`sip:alice@${HOST}`, `sip:bob@${HOST}`]);

        expect((await alice.command("dial", `sip:bob@${HOST}:${kamailio.port}`)).ok).toBe(true);
        const incoming = await bob
          .waitFor("CALL_INCOMING", () => true, 10_000)
          .catch((err: Error) =>
            Promise.reject(new Error(`${err.message}\n${server!.report()}\n${kamailio!.report()}`)),
          );
        expect((await bob.command("accept")).ok).toBe(true);
        const established = await alice.waitFor("CALL_ESTABLISHED", () => true, 10_000);
        await bob.waitFor("CALL_ESTABLISHED", () => true, 10_000);
        expect((await bob.command("hangup")).ok).toBe(true);
        await alice.waitFor("CALL_CLOSED", () => true, 10_000);
        await bob.waitFor("CALL_CLOSED", () => true, 10_000);

        // Never offered to the bob registered at siptm.
        await sleep(200);
        expect(localBob.types()).not.toContain("CALL_INCOMING");

        const callId = String(established.id ?? incoming.id);
        const trace = await callTrace(server, callId);
        const flow = trace.map((t) => `${t.dir} ${t.method ?? `${t.status} ${t.cseqMethod}`} ${t.peer}`);
        const k = `${HOST}:${kamailio.port}`;
        // The INVITE went to Kamailio, with our Record-Route.
        const invite = trace.find((t) => t.dir === "out" && t.method === "INVITE");
        expect(invite?.peer, flow.join("\n")).toBe(k);
        expect(invite!.text).toContain(`Record-Route: <sip:${HOST}:${server.udp};lr>\r\n`);
        // The 200 alice got carries it; her ACK and bob's BYE (and its 200) pass through us.
        const answer = trace.find((t) => t.dir === "out" && t.status === 200 && t.cseqMethod === "INVITE");
        expect(answer!.text).toContain(`Record-Route: <sip:${HOST}:${server.udp};lr>\r\n`);
        const methods = trace.map((t) => `${t.dir} ${t.method ?? `${t.status} ${t.cseqMethod}`}`);
        expect(methods, flow.join("\n")).toEqual(
          expect.arrayContaining(["in ACK", "out ACK", "in BYE", "out BYE", "in 200 BYE", "out 200 BYE"]),
        );
        expect(kamailio.output).toContain(`kamailio in: INVITE sip:bob@${HOST}:${kamailio.port}`);

        await Promise.all(phones.map((p) => p.stop()));
        await expectServerDrained(server, 15_000);
      } finally {
        await Promise.all(phones.map((p) => p.stop()));
        await server?.kill();
        await kamailio?.stop();
      }
    });
  });
