// siptm's `default` route (a stateful proxy) between SIPp peers: a SIPp UAC
// sends to `siptm serve` with a Request-URI naming a SIPp UAS (SIPp's -rsa:
// the remote host of the scenario is the UAS, the datagrams go to the
// server), or naming the server itself. Every SIPp instance must end with 0
// failed calls, and the server must free every transaction it made.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectSippClean, FAST_TIMERS, type SiptmSide, startSiptm } from "./harness.js";
import { freeUdpPort, HOST, requireSipp, type SippOptions, type SippProcess, startSipp } from "./sipp.js";
import {
  expectNo2xxRetransmissions,
  expectServerDrained,
  register,
  SERVER_TIMERS,
  type ServerStats,
  type SiptmServer,
  sippResults,
  startServer,
} from "./siptm-server.js";

let server: SiptmServer;
/** An in-test engine that registers contacts with the server (as their UAs would). */
let registrar: SiptmSide;
const running = new Set<SippProcess>();

beforeAll(async () => {
  requireSipp();
  registrar = await startSiptm({ timers: FAST_TIMERS });
});

afterAll(async () => {
  await Promise.all([...running].map((s) => s.kill()));
  await registrar?.engine.close();
  await server?.kill();
});

/** Start one SIPp (its files removed if the test passes); a UAS is awaited until it holds its port. */
const sipp = (opts: Omit<SippOptions, "port" | "rate"> & { listen?: boolean }) => startSipp(running, opts);

/** -rsa: the scenario's remote host (the Request-URI) is the UAS; every datagram goes to the server. */
const viaServer = () => ["-rsa", `${HOST}:${server.udp}`];

/** SIPp's results; the server's trace ends each failure message. */
const finish = (uac: SippProcess, ...others: SippProcess[]) => sippResults(server, uac, ...others);

/** The counters' change over one test. */
function delta(before: ServerStats, after: ServerStats, key: string): number {
  return (after[key] as number) - (before[key] as number);
}

/** Each counter named in `expected` changed by the amount given there over one test. */
function expectDeltas(before: ServerStats, after: ServerStats, expected: Record<string, number>): void {
  for (const [key, change] of Object.entries(expected)) expect(delta(before, after, key), key).toBe(change);
}

/**
 * One call of a SIPp UAC (`uac`, sent to `remote` by -rsa through the server
 * when `viaProxy`, else straight to the server) with user `user`, and of the
 * SIPp UAS `uas` when given: every SIPp clean after one call, the server
 * drained. The server's counters before and after.
 */
async function call(
  uac: Pick<SippOptions, "scenario" | "builtin">,
  user: string,
  opts: { uas?: SippProcess; remote?: string; viaProxy?: boolean } = {},
): Promise<{ before: ServerStats; after: ServerStats; uac: SippProcess }> {
  const before = await server.stats();
  const c = await sipp({
    ...uac,
    calls: 1,
    remote: opts.remote ?? `${HOST}:${opts.uas?.port ?? server.udp}`,
    extra: [...(opts.viaProxy ? viaServer() : []), "-s", user],
  });
  const results = await finish(c, ...(opts.uas ? [opts.uas] : []));
  for (const r of results) expectSippClean(r!, 1);
  const after = await expectServerDrained(server, 15_000);
  return { before, after, uac: c };
}

/** A call through the proxy from a SIPp UAC to a SIPp UAS running scenario `uas` (-rsa to the server). */
async function proxiedCall(uac: Pick<SippOptions, "scenario" | "builtin">, uas: string) {
  const s = await sipp({ scenario: uas, calls: 1, listen: true });
  return { ...(await call(uac, "service", { uas: s, viaProxy: true })), uas: s };
}

// The proxy on the core engine in one thread, and on the sharded engine with two shards.
for (const workers of ["0", "2"]) {
  describe(`siptm serve --route default --workers ${workers} as a stateful proxy between SIPp UAC and UAS`, () => {
    beforeAll(async () => {
      server = await startServer(["--route", "default", "--workers", workers, ...SERVER_TIMERS]);
    });
    afterAll(async () => {
      await server?.kill();
    });

    it("(a) a call through the proxy: INVITE–180–200–ACK–BYE–200 (SIPp built-in uac, -rsa to the server; uas-call.xml)", async () => {
      const { before, after, uas, uac } = await proxiedCall({ builtin: "uac" }, "uas-call.xml");
      // Relayed statefully: the INVITE and the BYE (the ACK of the 2xx is forwarded statelessly, §16.11).
      expectDeltas(before, after, { relayed: 2, timeouts: 0 });
      // The wire trace (from the shards with --workers 2) shows each 2xx relayed once, never resent by us.
      expectNo2xxRetransmissions(server, uas.port, uac.port);
      expect(delta(before, after, "retransmissions")).toBe(0);
    });

    it("(b) the UAS answers 486: the UAC gets the 486 and the proxy ACKs it toward the UAS with its INVITE's branch (uac-busy.xml, uas-busy.xml)", async () => {
      const { before, after } = await proxiedCall({ scenario: "uac-busy.xml" }, "uas-busy.xml");
      // One server transaction (the UAC's INVITE) and one client transaction (the branch).
      expectDeltas(before, after, { created: 2, relayed: 1, "4xx": 1, timeouts: 0 });
    });

    it("(c) the UAC cancels while the UAS rings: the UAS gets the CANCEL, answers 200 and 487, gets the proxy's ACK; the UAC gets 200 (CANCEL) and 487 (uac-cancel.xml, uas-proxied-cancel.xml)", async () => {
      const { before, after } = await proxiedCall({ scenario: "uac-cancel.xml" }, "uas-proxied-cancel.xml");
      // INVITE server + client, CANCEL server (answered 200 by the proxy) + the branch's CANCEL client transaction.
      expectDeltas(before, after, { created: 4, unmatched_cancels: 0, timeouts: 0 });
    });

    it("(d) Max-Forwards: 0 on a request the proxy would forward → 483 Too Many Hops, not relayed (uac-max-forwards-0.xml)", async () => {
      // The Request-URI names a UAS that is not there: relaying would end in a 408, not the 483 the scenario requires.
      const nobody = await freeUdpPort();
      const { before, after } = await call({ scenario: "uac-max-forwards-0.xml" }, "service", {
        remote: `${HOST}:${nobody}`,
        viaProxy: true,
      });
      expectDeltas(before, after, { created: 1, relayed: 0 });
    });

    it("(d) a Request-URI naming the proxy itself with an unregistered user → 404, not relayed to itself (uac-not-found.xml)", async () => {
      const { before, after } = await call({ scenario: "uac-not-found.xml" }, "nobody");
      expectDeltas(before, after, { created: 1, relayed: 0 });
    });

    it("(d) a lone ACK addressed to the proxy itself (no Route, no transaction) ends there: it is not forwarded to the proxy again and again (uac-stray-ack.xml)", async () => {
      const seen = server.trace().length;
      await call({ scenario: "uac-stray-ack.xml" }, "nobody");
      const sent = server
        .trace()
        .slice(seen)
        .filter((m) => m.dir === "out" && m.method === "ACK");
      expect(
        sent.map((m) => `${m.peer} Max-Forwards ${/^Max-Forwards:\s*(\d+)/im.exec(m.text)?.[1]}`),
        "ACKs the proxy sent",
      ).toEqual([]);
    });

    it("(d) a loop: an address of record whose contact is the proxy itself → the request comes back unchanged → 482 Loop Detected (uac-loop.xml)", async () => {
      const aor = `sip:loop@${HOST}`;
      const reg = await register(registrar.engine, server, aor, `sip:loop@${HOST}:${server.udp}`);
      expect(reg.status).toBe(200);
      const { before, after } = await call({ scenario: "uac-loop.xml" }, "loop");
      expect(delta(before, after, "timeouts")).toBe(0);
      // The proxy's own hop-by-hop ACK of the 482 it got back is addressed to itself and ends there: it is
      // not forwarded (statelessly, §16.11) to itself again and again until Max-Forwards runs out.
      const self = `${HOST}:${server.udp}`;
      const looped = server
        .trace()
        .filter((m) => m.dir === "out" && m.method === "ACK" && m.peer === self && m.vias > 1);
      expect(
        looped.length,
        `ACKs the proxy forwarded to itself (Max-Forwards ${looped.map((m) => /^Max-Forwards:\s*(\d+)/im.exec(m.text)?.[1]).join(",")})`,
      ).toBe(0);
    });

    it("(d) a spiral is not a loop: an address of record whose contact is another name at the proxy, registered to a SIPp UAS, reaches the UAS (uac-busy.xml, uas-busy.xml)", async () => {
      const uas = await sipp({ scenario: "uas-busy.xml", calls: 1, listen: true });
      // alias@ → carol@<the proxy> (back to the proxy, another Request-URI: §16.3 item 4 calls that a spiral) → carol@<the UAS>.
      const alias = await register(
        registrar.engine,
        server,
        `sip:alias@${HOST}`,
        `sip:carol@${HOST}:${server.udp}`,
      );
      const carol = await register(
        registrar.engine,
        server,
        `sip:carol@${HOST}`,
        `sip:carol@${HOST}:${uas.port}`,
      );
      expect([alias.status, carol.status]).toEqual([200, 200]);
      const { before, after } = await call({ scenario: "uac-busy.xml" }, "alias", {
        uas,
        remote: `${HOST}:${server.udp}`,
      });
      expectDeltas(before, after, { relayed: 2, merged_requests: 0 });
    });
  });
}

describe("siptm serve --route default: a relayed non-INVITE that is never answered", () => {
  it("(e) OPTIONS relayed to a next hop that never answers: no 408 upstream (RFC 4320 §4.1), the server keeps running and frees everything (uac-options-unanswered.xml)", async () => {
    // A server of its own: this test must not take the others down with it.
    const own = await startServer(["--route", "default", ...SERVER_TIMERS]);
    try {
      const nobody = await freeUdpPort();
      const uac = await sipp({
        scenario: "uac-options-unanswered.xml",
        calls: 1,
        remote: `${HOST}:${nobody}`,
        extra: ["-rsa", `${HOST}:${own.udp}`, "-s", "service"],
      });
      const [u] = await sippResults(own, uac);
      expectSippClean(u!, 1);
      // The branch ended by its Timer F: the server is still there, and drained.
      const after = await expectServerDrained(own, 15_000);
      expect(after.timeouts, "the branch's Timer F").toBeGreaterThan(0);
      expect(
        own.trace().filter((m) => m.dir === "out" && m.status === 408),
        "408 responses sent",
      ).toEqual([]);
    } finally {
      await own.kill();
    }
  });
});
