// siptm's TLS transport against a real TLS peer: Kamailio 5.6 from Debian with its tls module
// (kamailio-tls.ts). Mutual TLS both ways: siptm presents packages/core/test/fixtures/tls/server.pem
// and trusts the fixture CA (--tls-ca); Kamailio presents a certificate the test signs with that
// CA, requires a certificate from whoever connects to it and verifies the ones it is shown.
// SIPp here has no TLS, so SIPp stays on UDP and Kamailio bridges UDP and TLS (RFC 3261 §26.3.1),
// record-routing with a double Record-Route (one entry per transport, RFC 5658).
//
//  1. SIPp UAC (UDP) → Kamailio → siptm `--route uas` over TLS (siptm requires Kamailio's client
//     certificate: --tls-client-cert required). INVITE/180/200 over the connection Kamailio
//     opened, the ACK and the BYE (routed by the 200's Record-Route) back to siptm over TLS.
//  2. siptm → Kamailio over TLS → SIPp UAS (UDP): an INVITE by tm.t_uac_wait to
//     `sip:uas@127.0.0.1:K;transport=tls`, its 180/200 back over siptm's own connection, siptm's
//     ACK of the 2xx and a BYE (tm.t_uac_wait with the route set) over the same connection.
//     And a `sips:` Request-URI (OPTIONS sips:ping@127.0.0.1:K, answered by Kamailio) goes over
//     TLS only (§26.2).
//  3. Kamailio presenting a self-signed certificate (not under --tls-ca): siptm's INVITE ends with
//     a local 503, `tls_verify_failed` counts it, nothing reaches the UAS.
//  4. Kamailio presenting a self-signed client certificate to siptm `--tls-client-cert required`:
//     the handshake fails, `tls_handshake_failed` counts it, no SIP message gets through, siptm
//     keeps serving.
//
// Each with `siptm serve --workers 0` and `--workers 2` (the coordinator owns the connections).
import * as dgram from "node:dgram";
import { afterAll, describe, expect, it } from "vitest";
import { expectSippClean } from "./harness.js";
import {
  FIXTURE,
  KamailioTls,
  requireKamailioTls,
  requireOpenssl,
  TLS_LISTENERS,
  type TracedTls,
  tlsPortOf,
  tracedWithProto,
} from "./kamailio-tls.js";
import { HOST, killedAfterAll, requireSipp, type SippProcess, sleep, startSipp } from "./sipp.js";
import {
  expectServerDrained,
  pollUntil,
  SERVER_TIMERS,
  type SiptmServer,
  startServer,
} from "./siptm-server.js";

const running = killedAfterAll<{ kill(): Promise<void> }>();
/** Stopped (killed, folder removed) after the file's tests, whatever happened. */
const kamailios = new Set<KamailioTls>();
afterAll(async () => {
  await Promise.all([...kamailios].map((k) => k.stop()));
});

/** `siptm serve` with a UDP and a TLS listener on ephemeral ports, the fixture certificate and CA. */
async function tlsServer(workers: string, extra: string[]): Promise<{ server: SiptmServer; tls: number }> {
  const server = await startServer([
    ...TLS_LISTENERS,
    "--tls-ca",
    FIXTURE.ca,
    "--workers",
    workers,
    // Over TLS nothing is retransmitted: T1 sets the Timer B/F waits (64·T1 = 6.4 s, so that a
    // loaded machine does not turn a slow answer into a 408) and Timer L (as long: the drains
    // below wait 15 s).
    ...SERVER_TIMERS.map((v, i, all) => (all[i - 1] === "--t1" ? "100" : v)),
    ...extra,
  ]);
  running.add(server);
  return { server, tls: tlsPortOf(server) };
}

async function startKamailio(opts: Parameters<typeof KamailioTls.start>[0]): Promise<KamailioTls> {
  const k = await KamailioTls.start(opts);
  kamailios.add(k);
  return k;
}

/** "dir proto what" of each message of one call in the server's trace, for comparisons and failure messages. */
function flow(trace: TracedTls[]): string[] {
  return trace.map((t) => `${t.dir} ${t.proto} ${t.what}`);
}

/** The value of a header field in CRLF-separated header text (first occurrence), compact form too. */
function header(text: string, ...names: string[]): string | undefined {
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    if (names.includes(line.slice(0, colon).trim().toLowerCase())) return line.slice(colon + 1).trim();
  }
  return undefined;
}

/** Every value of a header field (each line split at top-level commas, outside <>). */
function headerValues(text: string, name: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon < 0 || line.slice(0, colon).trim().toLowerCase() !== name) continue;
    let depth = 0;
    let cur = "";
    for (const ch of line.slice(colon + 1)) {
      if (ch === "<") depth++;
      if (ch === ">") depth--;
      if (ch === "," && depth === 0) {
        out.push(cur.trim());
        cur = "";
      } else cur += ch;
    }
    if (cur.trim()) out.push(cur.trim());
  }
  return out;
}

/** One request over UDP from a socket of our own to `port`; the first final response (or undefined after `timeoutMs`). */
async function udpRequest(
  port: number,
  request: (local: number) => string,
  timeoutMs: number,
): Promise<string | undefined> {
  const sock = dgram.createSocket("udp4");
  try {
    await new Promise<void>((resolve) => sock.bind(0, HOST, () => resolve()));
    const local = sock.address().port;
    const final = new Promise<string>((resolve) => {
      sock.on("message", (msg) => {
        const text = msg.toString("utf8");
        if (/^SIP\/2\.0 [2-6]\d\d /.test(text)) resolve(text);
      });
    });
    sock.send(request(local), port, HOST);
    return await Promise.race([final, sleep(timeoutMs).then(() => undefined)]);
  } finally {
    sock.close();
  }
}

const uriOf = (nameAddr: string) => /<([^>]*)>/.exec(nameAddr)?.[1] ?? nameAddr;

interface Final {
  code: number;
  reason: string;
  headers: string;
  body: string;
}

for (const workers of ["0", "2"])
  describe(`siptm serve --workers ${workers} and Kamailio with its tls module`, () => {
    it("SIPp (UDP) → Kamailio → siptm over TLS: INVITE/180/200/ACK/BYE complete, mutual TLS, the ACK and BYE back over TLS by Kamailio's Record-Route", async () => {
      requireSipp();
      requireOpenssl();
      requireKamailioTls();
      let server: SiptmServer | undefined;
      let kamailio: KamailioTls | undefined;
      let uac: SippProcess | undefined;
      try {
        const s = await tlsServer(workers, ["--route", "uas", "--tls-client-cert", "required"]);
        server = s.server;
        kamailio = await startKamailio({ cert: "ca", siptmTls: s.tls });
        uac = await startSipp(running, {
          scenario: "uac-call-routed.xml",
          calls: 1,
          remote: `${HOST}:${kamailio.udp}`,
          extra: ["-s", "siptm"],
        });
        const k = kamailio;
        const srv = server;
        const result = await uac.wait(60_000);
        const why = () => `${result.report()}\n--- siptm serve\n${srv.report()}\n${k.report()}`;
        expect(result.code, `SIPp exit code\n${why()}`).toBe(0);
        expectSippClean(result, 1);

        // siptm's side of the call: everything over TLS, from and to Kamailio's connection.
        await pollUntil(
          async () => tracedWithProto(srv).some((t) => t.dir === "out" && t.what === "200 BYE"),
          5_000,
        );
        const trace = tracedWithProto(srv).filter((t) => t.what !== "");
        const steps = flow(trace);
        expect(steps, `${steps.join("\n")}\n${why()}`).toEqual(
          expect.arrayContaining([
            "in TLS INVITE",
            "out TLS 180 INVITE",
            "out TLS 200 INVITE",
            "in TLS ACK",
            "in TLS BYE",
            "out TLS 200 BYE",
          ]),
        );
        expect(
          trace.every((t) => t.proto === "TLS"),
          steps.join("\n"),
        ).toBe(true);
        const peers = new Set(trace.map((t) => t.peer));
        expect([...peers], "one connection: Kamailio's").toHaveLength(1);
        const invite = trace.find((t) => t.dir === "in" && t.what === "INVITE")!;
        // Kamailio's Via says TLS (§18.2.1 stamped by siptm), its Record-Route names its TLS port.
        expect(header(invite.text, "via", "v")).toMatch(/^SIP\/2\.0\/TLS 127\.0\.0\.1:\d+/);
        const rr = headerValues(invite.text, "record-route").map(uriOf);
        expect(rr, invite.text).toEqual([
          expect.stringMatching(new RegExp(`^sip:${HOST}:${k.tls};transport=tls;r2=on;lr`)),
          expect.stringMatching(new RegExp(`^sip:${HOST}:${k.udp};r2=on;lr`)),
        ]);
        // The 200 copies the Record-Route (§12.1.1) and its Contact says TLS.
        const ok = trace.find((t) => t.dir === "out" && t.what === "200 INVITE")!;
        expect(headerValues(ok.text, "record-route").map(uriOf)).toEqual(rr);
        expect(uriOf(header(ok.text, "contact", "m") ?? "")).toBe(`sip:siptm@${HOST}:${s.tls};transport=tls`);

        // Kamailio took the INVITE over UDP and siptm's answers over TLS.
        expect(k.output).toMatch(new RegExp(`kamailio in: INVITE sip:siptm@${HOST}:${k.udp} from .*/udp`));
        expect(k.output).toMatch(/kamailio reply: 200 OK \(INVITE\) from 127\.0\.0\.1:\d+\/tls/);
        expect(k.output).toMatch(/kamailio in: BYE sip:siptm@127\.0\.0\.1:\d+;transport=tls from .*\/udp/);

        const stats = await expectServerDrained(srv, 15_000);
        expect(stats.tls_handshake_failed, "TLS handshakes failed").toBe(0);
        expect(stats.tls_verify_failed, "peer certificates refused").toBe(0);
        expect(stats.tls_connections, "TLS connections open now: Kamailio's").toBe(1);
      } finally {
        await uac?.kill();
        await server?.kill();
        await kamailio?.stop();
      }
    });

    it("siptm → Kamailio over TLS → SIPp UAS (UDP): tm.t_uac_wait INVITE gets its 200 over siptm's connection, siptm's ACK and a BYE go the same way", async () => {
      requireSipp();
      requireOpenssl();
      requireKamailioTls();
      let server: SiptmServer | undefined;
      let kamailio: KamailioTls | undefined;
      let uas: SippProcess | undefined;
      try {
        uas = await startSipp(running, { scenario: "uas-call.xml", calls: 1, listen: true });
        const s = await tlsServer(workers, ["--route", "default"]);
        server = s.server;
        kamailio = await startKamailio({ cert: "ca", uasUdp: uas.port });
        const k = kamailio;
        const srv = server;
        const why = () => `--- siptm serve\n${srv.report()}\n${k.report()}`;
        const ruri = `sip:uas@${HOST}:${k.tls};transport=tls`;
        const from = `<sip:siptm@${HOST}>;tag=tls${workers}`;
        const callId = `kamailio-tls-${workers}-${Date.now()}@${HOST}`;
        const invite = await srv.call<Final>("tm.t_uac_wait", [
          "INVITE",
          ruri,
          ".",
          ".",
          [
            `From: ${from}`,
            `To: <sip:uas@${HOST}>`,
            `Call-ID: ${callId}`,
            "CSeq: 1 INVITE",
            `Contact: <sip:siptm@${HOST}:${s.tls};transport=tls>`,
          ].join("\r\n"),
        ]);
        expect(invite.code, `${JSON.stringify(invite)}\n${why()}`).toBe(200);
        // The 200's Record-Route (Kamailio's two entries) reversed is the route set (§12.1.2);
        // its first entry is Kamailio's TLS side, where siptm's ACK (sent by the server itself)
        // and the BYE go.
        const rr = headerValues(invite.headers, "record-route").map(uriOf);
        expect(rr, invite.headers).toEqual([
          expect.stringMatching(new RegExp(`^sip:${HOST}:${k.udp};r2=on;lr`)),
          expect.stringMatching(new RegExp(`^sip:${HOST}:${k.tls};transport=tls;r2=on;lr`)),
        ]);
        const routeSet = [...rr].reverse();
        const to = header(invite.headers, "to", "t")!;
        expect(to).toMatch(/;tag=/);
        const contact = uriOf(header(invite.headers, "contact", "m")!);
        const bye = await srv.call<Final>("tm.t_uac_wait", [
          "BYE",
          contact,
          routeSet[0]!,
          ".",
          [
            `From: ${from}`,
            `To: ${to}`,
            `Call-ID: ${callId}`,
            "CSeq: 2 BYE",
            `Route: ${routeSet.map((r) => `<${r}>`).join(", ")}`,
          ].join("\r\n"),
        ]);
        expect(bye.code, `${JSON.stringify(bye)}\n${why()}`).toBe(200);

        const result = await uas.wait(60_000);
        expect(result.code, `SIPp exit code\n${result.report()}\n${why()}`).toBe(0);
        expectSippClean(result, 1);

        const trace = tracedWithProto(srv).filter((t) => t.callId === callId);
        const steps = flow(trace);
        expect(steps, `${steps.join("\n")}\n${why()}`).toEqual(
          expect.arrayContaining([
            "out TLS INVITE",
            "in TLS 180 INVITE",
            "in TLS 200 INVITE",
            "out TLS ACK",
            "out TLS BYE",
            "in TLS 200 BYE",
          ]),
        );
        expect(
          trace.every((t) => t.proto === "TLS" && t.peer === `${HOST}:${k.tls}`),
          steps.join("\n"),
        ).toBe(true);
        // Our Via says TLS; Kamailio forwarded the INVITE over UDP and got the 200 back over UDP.
        const sent = trace.find((t) => t.dir === "out" && t.what === "INVITE")!;
        expect(header(sent.text, "via", "v")).toMatch(/^SIP\/2\.0\/TLS /);
        expect(k.output).toMatch(/kamailio in: INVITE sip:uas@127\.0\.0\.1:\d+;transport=tls from .*\/tls/);
        expect(k.output).toMatch(/kamailio reply: 200 OK \(INVITE\) from 127\.0\.0\.1:\d+\/udp/);
        expect(k.output).toMatch(/kamailio in: ACK .* from .*\/tls/);

        const stats = await expectServerDrained(srv, 15_000);
        expect(stats.tls_verify_failed, "peer certificates refused").toBe(0);
        expect(stats.tls_connections, "TLS connections open now: siptm's one to Kamailio, reused").toBe(1);
      } finally {
        await uas?.kill();
        await server?.kill();
        await kamailio?.stop();
      }
    });

    // Each test starts and kills its own siptm and Kamailio in try/finally, alike in form on purpose:
    // each runs alone against fresh peers and shows its own logs when it fails.
    it("a sips: Request-URI goes over TLS only (RFC 3261 §26.2): OPTIONS sips:ping@127.0.0.1:K answered by Kamailio over siptm's connection", async () => {
      requireOpenssl();
      requireKamailioTls();
      let server: SiptmServer | undefined;
      let kamailio: KamailioTls | undefined;
      try {
        const s = await tlsServer(workers, ["--route", "default"]);
        server = s.server;
        kamailio = await startKamailio({ cert: "ca" });
        const k = kamailio;
        const srv = server;
        const callId = `kamailio-sips-${workers}-${Date.now()}@${HOST}`;
        const final = await srv.call<Final>("tm.t_uac_wait", [
          "OPTIONS",
          `sips:ping@${HOST}:${k.tls}`,
          ".",
          ".",
          [
            `From: <sips:siptm@${HOST}>;tag=sips${workers}`,
            `To: <sips:ping@${HOST}>`,
            `Call-ID: ${callId}`,
          ].join("\r\n"),
        ]);
        expect(final.code, `${JSON.stringify(final)}\n${srv.report()}\n${k.report()}`).toBe(200);
        expect(final.reason).toBe("Pong over tls");
        const trace = tracedWithProto(srv).filter((t) => t.callId === callId);
        expect(flow(trace)).toEqual(["out TLS OPTIONS", "in TLS 200 OPTIONS"]);
        expect(trace.every((t) => t.peer === `${HOST}:${k.tls}`)).toBe(true);
        expect(header(trace[0]!.text, "via", "v")).toMatch(/^SIP\/2\.0\/TLS /);
        expect(k.output).toMatch(new RegExp(`kamailio in: OPTIONS sips:ping@${HOST}:${k.tls} from .*/tls`));
        const stats = await expectServerDrained(srv, 15_000);
        expect(stats.tls_verify_failed).toBe(0);
      } finally {
        await server?.kill();
        await kamailio?.stop();
      }
    });

    it("Kamailio presenting a self-signed certificate (not under --tls-ca): siptm's INVITE ends with a local 503, counted in tls_verify_failed, nothing sent", async () => {
      requireOpenssl();
      requireKamailioTls();
      let server: SiptmServer | undefined;
      let kamailio: KamailioTls | undefined;
      try {
        const s = await tlsServer(workers, ["--route", "default"]);
        server = s.server;
        // A UAS port nobody holds: the request must never get that far.
        kamailio = await startKamailio({ cert: "self", uasUdp: 9 });
        const k = kamailio;
        const srv = server;
        const before = await srv.stats();
        const callId = `kamailio-tls-bad-${workers}-${Date.now()}@${HOST}`;
        const final = await srv.call<Final>("tm.t_uac_wait", [
          "INVITE",
          `sip:uas@${HOST}:${k.tls};transport=tls`,
          ".",
          ".",
          [
            `From: <sip:siptm@${HOST}>;tag=bad${workers}`,
            `To: <sip:uas@${HOST}>`,
            `Call-ID: ${callId}`,
            `Contact: <sip:siptm@${HOST}:${s.tls};transport=tls>`,
          ].join("\r\n"),
        ]);
        expect(final.code, `${JSON.stringify(final)}\n${srv.report()}\n${k.report()}`).toBe(503);
        expect(final.headers, "a local 503 has no headers").toBe("");
        const after = await srv.stats();
        expect(
          (after.tls_verify_failed as number) - (before.tls_verify_failed as number),
          "tls_verify_failed",
        ).toBe(1);
        expect(after.transport_errors as number).toBeGreaterThan(before.transport_errors as number);
        // The INVITE was never written to the connection, and Kamailio never saw a request.
        await sleep(200);
        expect(k.output).not.toContain("kamailio in:");
        expect(after.tls_connections, "the refused connection is closed").toBe(0);
        await expectServerDrained(srv, 15_000);
      } finally {
        await server?.kill();
        await kamailio?.stop();
      }
    });
    it("Kamailio refusing siptm's client certificate after the TLS 1.3 handshake: the request ends with a local 503 at once (not 408 at Timer F), counted in tls_handshake_failed", async () => {
      requireOpenssl();
      requireKamailioTls();
      let server: SiptmServer | undefined;
      let kamailio: KamailioTls | undefined;
      try {
        // siptm presents a certificate outside the CA Kamailio trusts; Kamailio requires a valid one.
        const s = await tlsServer(workers, [
          "--route",
          "default",
          "--tls-cert",
          FIXTURE.selfCert,
          "--tls-key",
          FIXTURE.selfKey,
        ]);
        server = s.server;
        kamailio = await startKamailio({ cert: "ca", uasUdp: 9 });
        const k = kamailio;
        const srv = server;
        const before = await srv.stats();
        const final = await srv.call<Final>("tm.t_uac_wait", [
          "OPTIONS",
          `sip:uas@${HOST}:${k.tls};transport=tls`,
          ".",
          ".",
          [`From: <sip:siptm@${HOST}>;tag=rc${workers}`, `To: <sip:uas@${HOST}>`].join("\r\n"),
        ]);
        expect(final.code, `${JSON.stringify(final)}\n${srv.report()}\n${k.report()}`).toBe(503);
        const after = await srv.stats();
        expect((after.tls_handshake_failed as number) - (before.tls_handshake_failed as number)).toBe(1);
        expect(after.transport_errors as number).toBeGreaterThan(before.transport_errors as number);
        await expectServerDrained(srv, 15_000);
      } finally {
        await server?.kill();
        await kamailio?.stop();
      }
    });

    it("Kamailio presenting a self-signed client certificate to siptm --tls-client-cert required: the handshake fails, tls_handshake_failed counts it, siptm keeps serving", async () => {
      requireOpenssl();
      requireKamailioTls();
      let server: SiptmServer | undefined;
      let kamailio: KamailioTls | undefined;
      try {
        const s = await tlsServer(workers, ["--route", "uas", "--tls-client-cert", "required"]);
        server = s.server;
        kamailio = await startKamailio({ cert: "self", siptmTls: s.tls, frTimerMs: 2000 });
        const k = kamailio;
        const srv = server;
        const options = (callId: string) => (local: number) =>
          [
            `OPTIONS sip:siptm@${HOST}:${k.udp} SIP/2.0`,
            `Via: SIP/2.0/UDP ${HOST}:${local};branch=z9hG4bK-${callId};rport`,
            `From: <sip:probe@${HOST}>;tag=${callId}`,
            `To: <sip:siptm@${HOST}>`,
            `Call-ID: ${callId}@${HOST}`,
            "CSeq: 1 OPTIONS",
            "Max-Forwards: 70",
            "Content-Length: 0",
            "",
            "",
          ].join("\r\n");
        const answer = await udpRequest(k.udp, options(`refused-${workers}`), 15_000);
        expect(answer, `no final response from Kamailio\n${srv.report()}\n${k.report()}`).toBeDefined();
        // Kamailio never got through: its own failure (408 after fr_timer, or 5xx), never siptm's 200.
        expect(answer!, answer).toMatch(/^SIP\/2\.0 (408|4\d\d|5\d\d) /);
        const stats = await srv.stats();
        expect(stats.tls_handshake_failed, "TLS handshakes failed: Kamailio's one attempt").toBe(1);
        expect(stats.tls_connections, "no TLS connection kept").toBe(0);
        expect(
          tracedWithProto(srv).filter((t) => t.what !== ""),
          "siptm never got a SIP message",
        ).toEqual([]);
        // Still serving: an OPTIONS over its UDP port is answered.
        const probe = await udpRequest(
          srv.udp,
          (local) =>
            options(`after-${workers}`)(local).replace(
              `OPTIONS sip:siptm@${HOST}:${k.udp}`,
              `OPTIONS sip:siptm@${HOST}:${srv.udp}`,
            ),
          5_000,
        );
        expect(probe, srv.report()).toMatch(/^SIP\/2\.0 200 /);
        await expectServerDrained(srv, 15_000);
      } finally {
        await server?.kill();
        await kamailio?.stop();
      }
    });
  });
