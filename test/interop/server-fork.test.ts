// Forking through `siptm serve --route default`: two SIPp UAS on their own
// ports of 127.0.0.1 register the same address of record (the REGISTERs come
// from an in-test engine, as each UA would send them), a SIPp UAC calls that
// AOR through the server. Both ring; A answers after a pause
// (scenarios/uas-call.xml, -d), B keeps ringing, gets the proxy's CANCEL with
// Reason "Call completed elsewhere", answers 200 + 487 and requires the
// proxy's ACK (scenarios/uas-fork-cancelled.xml); the UAC gets the 200,
// requires the proxy's Record-Route, and sends ACK and BYE through the proxy
// by its route set (scenarios/uac-fork.xml).
import { describe, expect, it } from "vitest";
import { expectSippClean, FAST_TIMERS, type SiptmSide, startSiptm } from "./harness.js";
import { HOST, killedAfterAll, requireSipp, type SippOptions, SippProcess, startSipp } from "./sipp.js";
import {
  expectNo2xxRetransmissions,
  expectServerDrained,
  register,
  SERVER_TIMERS,
  type SiptmServer,
  sippResults,
  startServer,
} from "./siptm-server.js";

const running = killedAfterAll<{ kill(): Promise<void> }>();

const sipp = (opts: Omit<SippOptions, "port" | "rate"> & { listen?: boolean }) => startSipp(running, opts);

interface Contact {
  uri: string;
  expires: number;
}

for (const workers of ["0", "2"])
  describe(`siptm serve --route default --workers ${workers} forks to two registered SIPp UAS`, () => {
    it("both ring, A answers, B gets CANCEL (Reason: Call completed elsewhere) and the ACK of its 487; the UAC's ACK and BYE go through the proxy; 0 failed calls everywhere, created == freed", async () => {
      requireSipp();
      let server: SiptmServer | undefined;
      let ua: SiptmSide | undefined;
      try {
        server = await startServer(["--route", "default", "--workers", workers, ...SERVER_TIMERS]);
        running.add(server);
        const srv = server;
        ua = await startSiptm({ timers: FAST_TIMERS });

        // A answers 1 s after its 180 (the <pause/> of uas-call.xml is -d): B is ringing by then.
        const a = await sipp({
          scenario: "uas-call.xml",
          calls: 1,
          listen: true,
          extra: ["-d", "1000", "-s", "bob"],
        });
        const b = await sipp({
          scenario: "uas-fork-cancelled.xml",
          calls: 1,
          listen: true,
          extra: ["-s", "bob"],
        });

        const aor = `sip:bob@${HOST}`;
        const regA = await register(ua.engine, srv, aor, `sip:bob@${HOST}:${a.port}`);
        const regB = await register(ua.engine, srv, aor, `sip:bob@${HOST}:${b.port}`);
        expect([regA.status, regB.status]).toEqual([200, 200]);
        const bound = await srv.call<Contact[]>("ul.lookup", [aor]);
        expect(bound.map((c) => c.uri).sort()).toEqual(
          [`sip:bob@${HOST}:${a.port}`, `sip:bob@${HOST}:${b.port}`].sort(),
        );

        const before = await srv.stats();
        const uac = await sipp({
          scenario: "uac-fork.xml",
          calls: 1,
          remote: `${HOST}:${srv.udp}`,
          extra: ["-s", "bob"],
        });

        const [u, ra, rb] = await sippResults(srv, uac, a, b);
        expectSippClean(u!, 1);
        expectSippClean(ra!, 1);
        expectSippClean(rb!, 1);

        const after = await expectServerDrained(srv, 15_000);
        // Stateful relays: the INVITE (one context, two branches) and the BYE; the ACK of the 2xx is stateless.
        expect(after.relayed - before.relayed).toBe(2);
        // INVITE server + 2 INVITE branches + B's CANCEL, BYE server + BYE branch.
        expect(after.created - before.created).toBe(6);
        expect(after.timeouts - before.timeouts).toBe(0);
        expectNo2xxRetransmissions(srv, [a.port, b.port], uac.port);
      } finally {
        await Promise.all([...running].filter((c) => c instanceof SippProcess).map((c) => c.kill()));
        await ua?.engine.close();
        await server?.kill();
      }
    });
  });
