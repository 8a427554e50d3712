// Real phones through `siptm serve --route default`: two headless baresip 1.0 (peers.ts) register
// at the server (its registrar, as outbound proxy), one calls the other, the callee answers, the
// caller hangs up. Each call must establish and end within seconds: the ACK of the 200 and the BYE
// follow the route set built from the server's Record-Route (RFC 3261 §12.1.2, §16.6 item 4), so
// a Record-Route naming a socket the phones cannot reach — UDP when the server listens on TCP
// only — leaves the callee retransmitting its 200 and never seeing the BYE.
import { afterAll, describe, expect, it } from "vitest";
import { Baresip, freeSipPort, requireBaresip } from "./peers.js";
import { HOST } from "./sipp.js";
import {
  callTrace,
  expectServerDrained,
  SERVER_TIMERS,
  type SiptmServer,
  startServer,
  type Traced,
} from "./siptm-server.js";

const running = new Set<{ kill(): Promise<void> } | Baresip>();
afterAll(async () => {
  await Promise.all([...running].map((c) => (c instanceof Baresip ? c.stop() : c.kill())));
});

/** Messages of one call in the server's trace, as "in ACK" / "out 200 INVITE" with their transport. */
function callFlow(trace: Traced[], callId: string): string[] {
  return trace
    .filter((t) => t.callId === callId)
    .map((t) => {
      const via = /\r\nVia: SIP\/2\.0\/(UDP|TCP)/i.exec(t.text)?.[1] ?? "?";
      return `${t.dir} ${t.method ?? `${t.status} ${t.cseqMethod}`} ${via}`;
    });
}

/** Call bob from alice; bob answers; `hangsUp` hangs up. Returns the Call-ID. */
async function callAnswerHangUp(
  alice: Baresip,
  bob: Baresip,
  hangsUp: "alice" | "bob" = "alice",
): Promise<string> {
  const a0 = alice.events.length;
  const b0 = bob.events.length;
  expect((await alice.command("dial", `sip:bob@${HOST}`)).ok).toBe(true);
  const incoming = await bob.waitFor("CALL_INCOMING", () => true, 10_000, b0);
  expect((await bob.command("accept")).ok).toBe(true);
  const established = await alice
    .waitFor("CALL_ESTABLISHED", () => true, 10_000, a0)
    .catch((err: Error) => Promise.reject(new Error(`${err.message}\n${bob.report()}`)));
  await bob.waitFor("CALL_ESTABLISHED", () => true, 10_000, b0);
  const [caller, other, c0] = hangsUp === "alice" ? [alice, bob, b0] : [bob, alice, a0];
  expect((await caller.command("hangup")).ok).toBe(true);
  // The BYE reached the other side through the proxy: it closes the call at once, not by a timeout.
  const closed = await other.waitFor("CALL_CLOSED", () => true, 10_000, c0);
  expect(closed.param ?? "").not.toMatch(/timeout|timed out|408/i);
  await caller.waitFor("CALL_CLOSED", () => true, 10_000, caller === alice ? a0 : b0);
  const callId = String(established.id ?? incoming.id ?? "");
  expect(callId).not.toBe("");
  return callId;
}

/**
 * `siptm serve --route default --workers N` listening on `listen`, alice and bob registered at its
 * `proxyPort` over their transports, and a call from alice that `hangsUp` ends. The call's flow
 * through the proxy must contain the lines of `flow`; `check` gets the server, the call's trace,
 * its flow, and the 200 to the INVITE the proxy sent (it must have sent one); then the phones stop
 * and the server must drain. Everything stops whatever happens.
 */
async function phoneCall(opts: {
  workers: string;
  listen: string;
  proxyPort: (server: SiptmServer) => number;
  transports: { alice: "udp" | "tcp"; bob: "udp" | "tcp" };
  hangsUp?: "alice" | "bob";
  flow: string[];
  check: (server: SiptmServer, trace: Traced[], flow: string[], answer: Traced) => void;
}): Promise<void> {
  requireBaresip();
  let server: SiptmServer | undefined;
  const phones: Baresip[] = [];
  try {
    server = await startServer([
      "--listen",
      opts.listen,
      "--route",
      "default",
      "--workers",
      opts.workers,
      ...SERVER_TIMERS,
    ]);
    running.add(server);
    for (const user of ["alice", "bob"] as const) {
      const p = await Baresip.start({
        user,
        proxyPort: opts.proxyPort(server),
        transport: opts.transports[user],
      });
      running.add(p);
      phones.push(p);
    }
    const [alice, bob] = phones as [Baresip, Baresip];
    const callId = await callAnswerHangUp(alice, bob, opts.hangsUp);
    const trace = await callTrace(server, callId);
    const answer = trace.find((t) => t.dir === "out" && t.status === 200 && t.cseqMethod === "INVITE");
    expect(answer, server.report()).toBeDefined();
    const flow = callFlow(trace, callId);
    expect(flow, server.report()).toEqual(expect.arrayContaining(opts.flow));
    opts.check(server, trace, flow, answer!);
    await Promise.all(phones.map((p) => p.stop()));
    await expectServerDrained(server, 15_000);
  } finally {
    await Promise.all(phones.map((p) => p.stop()));
    await server?.kill();
  }
}

for (const workers of ["0", "2"])
  describe(`baresip phones through siptm serve --route default --workers ${workers}`, () => {
    it("listening on TCP only: REGISTER, INVITE, 200, ACK and BYE all over TCP; the Record-Route says transport=tcp", async () => {
      await phoneCall({
        workers,
        listen: `tcp:${HOST}:0`,
        proxyPort: (server) => server.tcp,
        transports: { alice: "tcp", bob: "tcp" },
        // The ACK and the BYE come to the proxy and are forwarded, each over TCP.
        flow: ["in ACK TCP", "out ACK TCP", "in BYE TCP", "out BYE TCP", "in 200 BYE TCP"],
        check: (server, _trace, flow, answer) => {
          // Both phones are on their own TCP flows: each side of the Record-Route carries a flow
          // token (RFC 5626 §5.3), so in-dialog requests reach each phone over its connection.
          const side = `<sip:[A-Za-z0-9_-]+@${HOST.replaceAll(".", "\\.")}:${server.tcp};transport=tcp;ob;lr>`;
          expect(answer.text).toMatch(new RegExp(`Record-Route: ${side}(\r\nRecord-Route: |, )${side}\r\n`));
          expect(flow.every((f) => f.endsWith("TCP"))).toBe(true);
        },
      });
    });

    it("caller on UDP, callee on TCP: double Record-Route (RFC 5658), the ACK goes UDP in, TCP out, the callee's BYE TCP in, UDP out", async () => {
      const port = await freeSipPort();
      await phoneCall({
        workers,
        listen: `${HOST}:${port}`,
        proxyPort: () => port,
        transports: { alice: "udp", bob: "tcp" },
        hangsUp: "bob",
        flow: ["in ACK UDP", "out ACK TCP", "in BYE TCP", "out BYE UDP", "in 200 BYE UDP"],
        check: (_server, trace, _flow, answer) => {
          // Top: the side facing the callee (TCP, on its own flow: a flow token, RFC 5626 §5.3);
          // below: the side facing the caller (UDP). baresip may fold the two into one line when it
          // copies them into its 200.
          const host = HOST.replaceAll(".", "\\.");
          const rr = new RegExp(
            `Record-Route: <sip:[A-Za-z0-9_-]+@${host}:${port};transport=tcp;ob;lr>(\r\nRecord-Route: |, )<sip:${host}:${port};lr>\r\n`,
          );
          expect(answer.text, answer.text).toMatch(rr);
          // Each BYE leaves with no Route of ours left.
          const byeOut = trace.find((t) => t.dir === "out" && t.method === "BYE");
          expect(byeOut!.text).not.toMatch(/\r\nRoute:/i);
        },
      });
    });
  });
