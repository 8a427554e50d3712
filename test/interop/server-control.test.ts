// The seed scenario (a cancelled INVITE) driven entirely through siptm's
// control interface: `siptm serve --route default` as a child process, SIPp
// as the UAS (scenarios/uas-cancel.xml: INVITE → 100 → 180 → CANCEL → 200 →
// 487 → ACK, the ACK mandatory), the INVITE sent by `tm.t_uac_start`, its
// ringing seen in `tm.list`, the CANCEL sent by `tm.cancel` (Kamailio's
// names), the table checked by `tm.stats`. One call over HTTP JSON-RPC, one
// through the `siptm rpc` command-line client.
import { describe, expect, it } from "vitest";
import { expectSippClean } from "./harness.js";
import { discardFilesIfPassed, freeUdpPort, HOST, killedAfterAll, requireSipp, SippProcess } from "./sipp.js";
import {
  expectServerDrained,
  type Listed,
  pollUntil,
  rpcCliResult,
  SERVER_TIMERS,
  type SiptmServer,
  startServer,
} from "./siptm-server.js";

const running = killedAfterAll<{ kill(): Promise<void> }>();

interface Started {
  callid: string;
  cseq: number;
  tid: string;
}

/** Headers of the INVITE (tm.t_uac_start's 5th parameter): From with a tag, To, Contact. */
const headers = (tag: string) =>
  `From: <sip:rpc@${HOST}>;tag=${tag}\r\nTo: <sip:service@${HOST}>\r\nContact: <sip:rpc@${HOST}>`;

/** The transaction `tid` is listed in state `state`. */
const listed = (list: Listed[], tid: string, state: string) =>
  list.some((t) => t.id === tid && t.state === state);

describe("siptm serve --route default, driven through JSON-RPC, against SIPp as UAS (uas-cancel.xml)", () => {
  it("tm.t_uac_start INVITE → 180 seen in tm.list → tm.cancel 'sent' → SIPp: 200, 487, ACK; once over HTTP, once by `siptm rpc`; 0 failed calls, created == freed", async () => {
    const bin = requireSipp();
    let server: SiptmServer | undefined;
    let sipp: SippProcess | undefined;
    try {
      server = await startServer(["--route", "default", ...SERVER_TIMERS]);
      running.add(server);
      const port = await freeUdpPort();
      sipp = new SippProcess(bin, { scenario: "uas-cancel.xml", port, calls: 2, rate: 10 });
      running.add(sipp);
      discardFilesIfPassed(sipp);
      await sipp.listening();
      const ruri = `sip:service@${HOST}:${sipp.port}`;
      const srv = server;

      // Call 1: JSON-RPC over HTTP.
      const first = await srv.call<Started>("tm.t_uac_start", ["INVITE", ruri, ".", ".", headers("x")]);
      expect(first.callid).toBeTruthy();
      expect(first.cseq).toBeGreaterThan(0);
      expect(first.tid).toBeTruthy();
      const ringing1 = await pollUntil(async () => listed(await srv.list(), first.tid, "proceeding"), 15_000);
      expect(ringing1, `INVITE ${first.tid} never reached proceeding\n${srv.report()}`).toBe(true);
      const cancel1 = await srv.call<{ result: string }>("tm.cancel", [first.callid, String(first.cseq)]);
      expect(cancel1).toEqual({ result: "sent" });

      // Call 2: the same through the command-line client (`siptm rpc`, \r\n typed as text).
      const second = await rpcCliResult<Started>(srv.rpc, [
        "tm.t_uac_start",
        "INVITE",
        ruri,
        ".",
        ".",
        headers("y").replaceAll("\r\n", "\\r\\n"),
      ]);
      expect(second.callid).toBeTruthy();
      expect(second.callid).not.toBe(first.callid);
      const ringing2 = await pollUntil(
        async () => listed(await rpcCliResult<Listed[]>(srv.rpc, ["tm.list"]), second.tid, "proceeding"),
        15_000,
        100,
      );
      expect(ringing2, `INVITE ${second.tid} never reached proceeding\n${srv.report()}`).toBe(true);
      const cancel2 = await rpcCliResult<{ result: string }>(srv.rpc, [
        "tm.cancel",
        second.callid,
        String(second.cseq),
      ]);
      expect(cancel2).toEqual({ result: "sent" });

      // SIPp requires the ACK of each 487: 0 failed calls means both CANCELs matched their INVITEs.
      const result = await sipp.wait(60_000);
      expectSippClean(result, 2);

      const stats = await expectServerDrained(srv, 15_000);
      // Two local INVITE client transactions and their CANCELs, nothing else; no timer fired.
      expect(stats.created).toBe(4);
      expect(stats.timeouts).toBe(0);
      const viaCli = await rpcCliResult<{ created: number; freed: number; current: number }>(srv.rpc, [
        "tm.stats",
      ]);
      expect(viaCli).toMatchObject({ created: 4, freed: 4, current: 0 });
    } finally {
      await sipp?.kill();
      await server?.kill();
    }
  });
});
