// `siptm serve --listen tls:…` in one thread and sharded (the coordinator owns the
// connections): OPTIONS over TLS answered on the connection, the TLS counters in
// tm.stats, garbage on the port survived, and SIGHUP reloading the certificate
// without dropping a live connection (a broken file changes nothing).
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { afterAll, describe, expect, it } from "vitest";
import { forEachEngine, workersFlag } from "../../../test/setup/engines.js";
import { call, killAll, type Served, serve, until } from "./helpers.js";

const HOST = "127.0.0.1";
const FIXTURES = new URL("../../core/test/fixtures/tls/", import.meta.url).pathname;
const sockets: net.Socket[] = [];

afterAll(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await killAll();
});

/** The fixture certificates copied where a test may overwrite them. */
function certDir(): { dir: string; use(name: string): void } {
  const dir = mkdtempSync(join(tmpdir(), "siptm-serve-tls-"));
  const use = (name: string) => {
    copyFileSync(join(FIXTURES, `${name}.pem`), join(dir, "cert.pem"));
    copyFileSync(join(FIXTURES, `${name}.key`), join(dir, "key.pem"));
  };
  copyFileSync(join(FIXTURES, "ca.pem"), join(dir, "ca.pem"));
  use("server");
  return { dir, use };
}

async function tlsServe(workers: string, dir: string): Promise<Served & { tls: number }> {
  const s = await serve([
    "--workers",
    workers,
    "--route",
    "uas",
    "--listen",
    "tls:127.0.0.1:0",
    "--tls-cert",
    join(dir, "cert.pem"),
    "--tls-key",
    join(dir, "key.pem"),
    "--tls-ca",
    join(dir, "ca.pem"),
  ]);
  const port = Number(/listen:\s+tls 127\.0\.0\.1:(\d+)/.exec(s.stdout())?.[1]);
  return { ...s, tls: port };
}

interface TlsClient {
  socket: tls.TLSSocket;
  read(): string;
}

function tlsClient(port: number, dir: string, servername: string): Promise<TlsClient> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: HOST, port, servername, ca: [readFileSync(join(dir, "ca.pem"))] });
    sockets.push(socket);
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.once("secureConnect", () =>
      resolve({ socket, read: () => Buffer.concat(chunks).toString("latin1") }),
    );
    socket.once("error", reject);
  });
}

function options(port: number, callId: string, clientPort: number): string {
  return (
    `OPTIONS sip:127.0.0.1:${port};transport=tls SIP/2.0\r\n` +
    `Via: SIP/2.0/TLS 127.0.0.1:${clientPort};branch=z9hG4bK-${callId};rport\r\n` +
    "From: <sip:probe@127.0.0.1>;tag=t1\r\n" +
    `To: <sip:127.0.0.1:${port}>\r\n` +
    `Call-ID: ${callId}\r\n` +
    "CSeq: 1 OPTIONS\r\n" +
    "Max-Forwards: 70\r\n" +
    "Content-Length: 0\r\n\r\n"
  );
}

type Stats = Record<string, number>;

forEachEngine((_bed, _kind, engine) => {
  const workers = workersFlag(engine);
  describe(`siptm serve --workers ${workers}: TLS`, () => {
    it("answers OPTIONS over TLS on the same connection; tm.stats counts the TLS connection", async () => {
      const { dir } = certDir();
      const s = await tlsServe(workers, dir);
      const c = await tlsClient(s.tls, dir, "sip.example.test");
      c.socket.write(options(s.tls, `tls-opt-${workers}`, c.socket.localPort!));
      await until("the 200", () => c.read().includes("SIP/2.0 200"));
      expect(c.read()).toMatch(/Via: SIP\/2\.0\/TLS 127\.0\.0\.1:\d+;branch=z9hG4bK-tls-opt-\d;rport=\d+/);
      const stats = await call<Stats>(s.rpc, "tm.stats");
      expect(stats.tls_connections).toBe(1);
    });

    it("survives garbage on the TLS port: counted, and the next client is served", async () => {
      const { dir } = certDir();
      const s = await tlsServe(workers, dir);
      const raw = net.connect({ host: HOST, port: s.tls });
      sockets.push(raw);
      raw.on("error", () => {});
      raw.write(options(s.tls, "plain", 1));
      await new Promise((r) => raw.once("close", r));
      await until(
        "the failed handshake counted",
        async () => (await call<Stats>(s.rpc, "tm.stats")).tls_handshake_failed === 1,
      );
      const c = await tlsClient(s.tls, dir, "sip.example.test");
      c.socket.write(options(s.tls, `after-garbage-${workers}`, c.socket.localPort!));
      await until("the 200", () => c.read().includes("SIP/2.0 200"));
    });

    it("SIGHUP reloads the certificate: new handshakes see it, a live connection stays; a broken file changes nothing", async () => {
      const { dir, use } = certDir();
      const s = await tlsServe(workers, dir);
      const old = await tlsClient(s.tls, dir, "sip.example.test");
      expect(old.socket.getPeerCertificate().subject.CN).toBe("sip.example.test");
      use("dnsonly");
      s.proc.kill("SIGHUP");
      await until("reloaded", () => s.stdout().includes("reloaded (SIGHUP)"));
      const fresh = await tlsClient(s.tls, dir, "dns.example.test");
      expect(fresh.socket.getPeerCertificate().subject.CN).toBe("ignored.test");
      old.socket.write(options(s.tls, `old-conn-${workers}`, old.socket.localPort!));
      await until("the 200 on the old connection", () => old.read().includes("SIP/2.0 200"));

      writeFileSync(join(dir, "cert.pem"), "not a certificate\n");
      s.proc.kill("SIGHUP");
      await until("the failure said", () => s.stderr().includes("reload failed"));
      const after = await tlsClient(s.tls, dir, "dns.example.test");
      expect(after.socket.getPeerCertificate().subject.CN).toBe("ignored.test");
    });
  });
});
