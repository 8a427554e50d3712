// `openssl s_client` — a TLS client nobody here wrote — sends an OPTIONS to
// `siptm serve --listen tls:…` (one thread and 2 shards) and gets its 200 on the
// same connection, its Via stamped with rport; the peer certificate it checks is
// the fixture chain (packages/core/test/fixtures/tls), verification errors fatal.
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { FIXTURE, requireOpenssl, TLS_LISTENERS, tlsPortOf } from "./kamailio-tls.js";
import { HOST, killedAfterAll, waitUntil } from "./sipp.js";
import { expectServerDrained, type SiptmServer, startServer } from "./siptm-server.js";

const servers = killedAfterAll<SiptmServer>();

function options(port: number, tag: string): string {
  return (
    `OPTIONS sip:${HOST}:${port};transport=tls SIP/2.0\r\n` +
    `Via: SIP/2.0/TLS ${HOST}:1;branch=z9hG4bK-s-client-${tag};rport\r\n` +
    `From: <sip:probe@${HOST}>;tag=sc${tag}\r\n` +
    `To: <sip:${HOST}:${port}>\r\n` +
    `Call-ID: s-client-${tag}@${HOST}\r\n` +
    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
  );
}

for (const workers of ["0", "2"])
  describe(`siptm serve --workers ${workers} over TLS, openssl s_client as the client`, () => {
    it("answers an OPTIONS 200 on the connection, the client verifying the server's certificate", async () => {
      const openssl = requireOpenssl();
      const server = await startServer(["--workers", workers, "--route", "uas", ...TLS_LISTENERS]);
      servers.add(server);
      const port = tlsPortOf(server);
      const client = spawn(
        openssl,
        [
          "s_client",
          "-connect",
          `${HOST}:${port}`,
          "-servername",
          "sip.example.test",
          "-CAfile",
          FIXTURE.ca,
          "-verify_return_error",
          "-quiet",
        ],
        { stdio: ["pipe", "pipe", "pipe"] },
      );
      let out = "";
      let err = "";
      client.stdout.on("data", (d: Buffer) => {
        out += d.toString("latin1");
      });
      client.stderr.on("data", (d: Buffer) => {
        err += d.toString("latin1");
      });
      try {
        client.stdin.write(options(port, workers));
        const answered = await waitUntil(() => out.includes("SIP/2.0 200 OK"), 15_000);
        expect(answered, `${out}\n${err}\n${server.report()}`).toBe(true);
        expect(out).toMatch(
          new RegExp(
            `Via: SIP/2\\.0/TLS ${HOST.replaceAll(".", "\\.")}:1;branch=z9hG4bK-s-client-${workers};rport=\\d+`,
          ),
        );
      } finally {
        client.kill();
      }
      await expectServerDrained(server, 15_000);
    });
  });
