// SIP.js and JsSIP in headless Chromium over WSS through `siptm serve --route default` (the
// stateful proxy with its registrar), one thread and 2 shards, and over plain WS (one thread):
// the browser suite (browser-suite.ts) with siptm's own checks — what its --trace log saw of
// each call, and every transaction freed.
import { expect } from "vitest";
import { browserSuite, topBranch } from "./browser-suite.js";
import { freeSipPort } from "./peers.js";
import { HOST } from "./sipp.js";
import { expectServerDrained, SERVER_TIMERS, startServer } from "./siptm-server.js";

/** An answered call through siptm as its trace shows it: each message in and out, ACK and BYE included. */
const ANSWERED_CALL = [
  "in INVITE",
  "out INVITE",
  "in 200 INVITE",
  "out 200 INVITE",
  "in ACK",
  "out ACK",
  "in BYE",
  "out BYE",
  "in 200 BYE",
  "out 200 BYE",
];

const RUNS: Array<{ scheme: "wss" | "ws"; workers: string }> = [
  { scheme: "wss", workers: "0" },
  { scheme: "wss", workers: "2" },
  { scheme: "ws", workers: "0" },
];

for (const { scheme, workers } of RUNS)
  browserSuite(
    `browsers over ${scheme.toUpperCase()} to siptm serve --route default --workers ${workers}`,
    async (cert) => {
      const port = await freeSipPort(1);
      const tls = scheme === "wss" ? ["--tls-cert", cert.cert, "--tls-key", cert.key] : [];
      const server = await startServer([
        "--listen",
        `udp:${HOST}:0`,
        "--listen",
        `${scheme}:${HOST}:${port}`,
        ...tls,
        "--route",
        "default",
        "--workers",
        workers,
        ...SERVER_TIMERS,
      ]);
      return {
        server,
        scheme,
        name: "siptm",
        udp: server.udp,
        wsUrl: `${scheme}://${HOST}:${port}`,
        report: () => server.report(),
        stop: () => server.kill(),
      };
    },
    async ({ server, scheme }, calls) => {
      // The browser's requests passed through siptm both ways: in from the WebSocket, out to SIPp
      // over UDP, and the answers back. A stateful proxy ACKs the 487 itself, hop by hop (§16.7
      // item 5 → §17.1.1.3): the client's ACK of it ends at siptm's server transaction.
      const of = (callId: string) =>
        server
          .trace()
          .filter((t) => t.callId === callId)
          .map((t) => `${t.dir} ${t.method ?? `${t.status} ${t.cseqMethod}`}`);
      const cancelled = of(calls.cancelled);
      expect(cancelled, `${cancelled.join("\n")}\n${server.report()}`).toEqual(
        expect.arrayContaining([
          "in INVITE",
          "out INVITE",
          "in 180 INVITE",
          "out 180 INVITE",
          "in CANCEL",
          "out 200 CANCEL",
          "out CANCEL",
          "in 200 CANCEL",
          "in 487 INVITE",
          "out ACK",
          "out 487 INVITE",
          "in ACK",
        ]),
      );
      // The ACK that went to SIPp is siptm's own, in its INVITE's transaction (same branch, one Via):
      // not the client's forwarded.
      const mine = server.trace().filter((t) => t.callId === calls.cancelled && t.dir === "out");
      const outInvite = mine.find((t) => t.method === "INVITE")!;
      for (const ack of mine.filter((t) => t.method === "ACK")) {
        expect(ack.vias, ack.text).toBe(1);
        expect(topBranch(ack.text), ack.text).toBe(topBranch(outInvite.text));
      }
      const answered = of(calls.answered);
      expect(answered, `${answered.join("\n")}\n${server.report()}`).toEqual(
        expect.arrayContaining(ANSWERED_CALL),
      );
      // The INVITE to SIPp is record-routed, so the ACK and the BYE come back through siptm.
      const invite = server
        .trace()
        .find((t) => t.callId === calls.answered && t.dir === "out" && t.method === "INVITE");
      // Two of them (RFC 5658: in over the WebSocket, out over UDP), the WebSocket one naming its transport.
      const rr = (invite?.text.split("\r\n\r\n")[0] ?? "")
        .split("\r\n")
        .filter((l) => /^Record-Route\s*:/i.test(l))
        .flatMap((l) => l.slice(l.indexOf(":") + 1).split(","))
        .map((v) => v.trim());
      expect(rr, invite?.text).toHaveLength(2);
      expect(
        rr.filter((v) => v.includes(`transport=${scheme}`)),
        invite?.text,
      ).toHaveLength(1);
      // The call to the browser: SIPp's INVITE found the browser's binding and went down its
      // WebSocket; SIPp's ACK and BYE, to the browser's .invalid Contact, followed siptm's
      // Record-Route and went down the same connection; the answers came back.
      const incoming = calls.incoming === undefined ? undefined : of(calls.incoming);
      if (incoming)
        expect(incoming, `${incoming.join("\n")}\n${server.report()}`).toEqual(
          expect.arrayContaining(ANSWERED_CALL),
        );
      // Then every transaction it made is freed (the WebSocket closed with the browser).
      await expectServerDrained(server, 15_000);
    },
    // (c), a call *to* the browser: SIPp's ACK and BYE, sent to the browser's Contact
    // (sip:…@….invalid;transport=ws) along siptm's Record-Route, reach the browser's WebSocket by
    // the flow token in that Record-Route (RFC 5626 §5.3), as Kamailio's do (browser.test.ts).
    { incoming: true },
  );
