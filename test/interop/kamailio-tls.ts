// Kamailio (Debian packages `kamailio` and `kamailio-tls-modules`, 5.6) as a TLS peer of siptm, for
// kamailio-tls.test.ts: a certificate made for it in its temp folder with openssl (signed by the
// test CA of packages/core/test/fixtures/tls, or self-signed for the negative test), a tls.cfg
// with one server and one client profile (each verifying the peer against that CA and requiring
// its certificate: mutual TLS both ways), and a kamailio.cfg written for the test: a stateful
// proxy on one UDP and one TLS port that answers user "ping" itself, record-routes, and sends
// user "siptm" to siptm's TLS port and user "uas" to a UAS over UDP. In the foreground (-DD -E),
// stopped by its own pid.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  Child,
  freeSipPort,
  KAMAILIO_CFG_HEAD,
  KAMAILIO_CORE_MODULES,
  KAMAILIO_ROUTE_HEAD,
  kamailioArgs,
  requireKamailio,
} from "./peers.js";
import { HOST, sipSummary, sleep, waitUntil } from "./sipp.js";
import type { SiptmServer } from "./siptm-server.js";

/** The test-only CA, server and client certificates of the core's TLS tests (make.sh there). */
export const TLS_FIXTURES = join(
  dirname(fileURLToPath(import.meta.url)),
  "../../packages/core/test/fixtures/tls",
);
export const FIXTURE = {
  ca: join(TLS_FIXTURES, "ca.pem"),
  caKey: join(TLS_FIXTURES, "ca.key"),
  /** CN sip.example.test; SAN URI sip:sip.example.test, DNS sip.example.test and localhost, IP 127.0.0.1. */
  serverCert: join(TLS_FIXTURES, "server.pem"),
  serverKey: join(TLS_FIXTURES, "server.key"),
  /** Self-signed, outside the CA: a certificate Kamailio refuses. */
  selfCert: join(TLS_FIXTURES, "selfsigned.pem"),
  selfKey: join(TLS_FIXTURES, "selfsigned.key"),
};

/** `siptm serve` flags: a UDP and a TLS listener on ephemeral ports, the fixture server certificate. */
export const TLS_LISTENERS = [
  "--listen",
  `udp:${HOST}:0`,
  "--listen",
  `tls:${HOST}:0`,
  "--tls-cert",
  FIXTURE.serverCert,
  "--tls-key",
  FIXTURE.serverKey,
];

const MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/** The openssl binary, or a thrown Error saying how to install it. */
export function requireOpenssl(): string {
  const bin = process.env.OPENSSL_BIN ?? "openssl";
  const probe = spawnSync(bin, ["version"], { encoding: "utf8", timeout: 10_000 });
  if (probe.error || probe.status !== 0)
    throw new Error(
      `${bin} is not installed (${probe.error?.message ?? probe.stderr}). Install it with \`apt-get install -y openssl\`; ` +
        ".ci/run installs it before `npm run test:interop`.",
    );
  return bin;
}

/** Kamailio's tls module, or a thrown Error saying how to install it. */
export function requireKamailioTls(): string {
  const bin = requireKamailio();
  if (!existsSync(join(MODULES, "tls.so")))
    throw new Error(
      `Kamailio's tls module (${MODULES}/tls.so) is not installed. Install it with ` +
        "`apt-get install -y kamailio-tls-modules`; .ci/run installs it before `npm run test:interop`.",
    );
  return bin;
}

function openssl(bin: string, args: string[]): void {
  const r = spawnSync(bin, args, { encoding: "utf8", timeout: 30_000 });
  if (r.error || r.status !== 0)
    throw new Error(`openssl ${args.join(" ")} failed: ${r.error?.message ?? ""}${r.stderr}`);
}

/**
 * A key and certificate for Kamailio in `dir` (EC P-256, valid a week): "ca" is signed by the
 * fixture CA (trusted by siptm's --tls-ca), "self" is self-signed (trusted by nobody). Both name
 * kamailio.example.test and 127.0.0.1 (the address siptm connects to, checked as an IP SAN).
 */
export function makeKamailioCertificate(dir: string, kind: "ca" | "self"): { cert: string; key: string } {
  const bin = requireOpenssl();
  const key = join(dir, "kamailio.key");
  const cert = join(dir, "kamailio.pem");
  const subject = "/CN=kamailio.example.test";
  const san = "subjectAltName=URI:sip:kamailio.example.test,DNS:kamailio.example.test,IP:127.0.0.1";
  openssl(bin, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", key]);
  if (kind === "self") {
    openssl(bin, [
      "req",
      "-x509",
      "-new",
      "-key",
      key,
      "-days",
      "7",
      "-subj",
      subject,
      "-addext",
      san,
      "-out",
      cert,
    ]);
  } else {
    const csr = join(dir, "kamailio.csr");
    const ext = join(dir, "kamailio.ext");
    openssl(bin, ["req", "-new", "-key", key, "-subj", subject, "-out", csr]);
    writeFileSync(ext, `${san}\nbasicConstraints=CA:FALSE\n`);
    // -set_serial: no serial file written next to the fixture CA.
    const serial = `0x${Date.now().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`;
    openssl(bin, [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      FIXTURE.ca,
      "-CAkey",
      FIXTURE.caKey,
      "-set_serial",
      serial,
      "-days",
      "7",
      "-extfile",
      ext,
      "-out",
      cert,
    ]);
  }
  return { cert, key };
}

export interface KamailioTlsOptions {
  /** The certificate Kamailio presents (as server and as client): signed by the test CA, or self-signed. */
  cert: "ca" | "self";
  /** siptm's TLS port: requests for user "siptm" are relayed there over TLS. */
  siptmTls?: number;
  /** A UAS's UDP port: requests for user "uas" are relayed there over UDP. */
  uasUdp?: number;
  /** tm's fr_timer (ms): how long Kamailio waits for a reply on a branch (its default 30000). */
  frTimerMs?: number;
}

/** Kamailio 5.6 with its tls module on 127.0.0.1: one UDP port, one TLS port. */
export class KamailioTls extends Child {
  private constructor(
    readonly udp: number,
    readonly tls: number,
    readonly dir: string,
    bin: string,
    cfg: string,
  ) {
    super("kamailio (tls)", bin, kamailioArgs(cfg, dir, 16));
  }

  static async start(opts: KamailioTlsOptions): Promise<KamailioTls> {
    const bin = requireKamailioTls();
    const dir = mkdtempSync(join(tmpdir(), "siptm-kamailio-tls-"));
    try {
      const { cert, key } = makeKamailioCertificate(dir, opts.cert);
      const udp = await freeSipPort(2);
      const tls = udp + 1;
      // Both profiles verify the peer against the test CA and require its certificate: Kamailio,
      // as server, takes siptm's outbound connection only with siptm's (CA-signed) certificate;
      // as client, it connects to siptm only if siptm's server certificate chains to the CA.
      const profile = [
        "method = TLSv1.2+",
        "verify_certificate = yes",
        "require_certificate = yes",
        `certificate = ${cert}`,
        `private_key = ${key}`,
        `ca_list = ${FIXTURE.ca}`,
      ];
      const tlsCfg = join(dir, "tls.cfg");
      writeFileSync(
        tlsCfg,
        ["[server:default]", ...profile, "", "[client:default]", ...profile, ""].join("\n"),
      );
      const relay = (user: string, to: string) =>
        `  if ($rU == "${user}") { $du = "${to}"; if (!t_relay()) sl_reply_error(); exit; }`;
      const cfg = join(dir, "kamailio.cfg");
      writeFileSync(
        cfg,
        [
          ...KAMAILIO_CFG_HEAD,
          "enable_tls=yes",
          `listen=udp:${HOST}:${udp}`,
          `listen=tls:${HOST}:${tls}`,
          `mpath="${MODULES}/"`,
          // The tls module first (it initialises OpenSSL for the others).
          'loadmodule "tls.so"',
          ...KAMAILIO_CORE_MODULES,
          `modparam("tls", "config", "${tlsCfg}")`,
          // Double Record-Route when the request changes transport (UDP in, TLS out): the default, stated.
          'modparam("rr", "enable_double_rr", 1)',
          opts.frTimerMs ? `modparam("tm", "fr_timer", ${opts.frTimerMs})` : "",
          ...KAMAILIO_ROUTE_HEAD,
          // User "ping": answered by Kamailio itself (statelessly, over the connection it came on).
          '  if ($rU == "ping") { sl_send_reply("200", "Pong over $pr"); exit; }',
          "  record_route();",
          opts.siptmTls ? relay("siptm", `sip:${HOST}:${opts.siptmTls};transport=tls`) : "",
          opts.uasUdp ? relay("uas", `sip:${HOST}:${opts.uasUdp}`) : "",
          '  sl_send_reply("404", "Not Found");',
          "}",
          "onreply_route {",
          '  xlog("L_INFO", "kamailio reply: $rs $rr ($rm) from $si:$sp/$pr\\n");',
          "}",
          "",
        ].join("\n"),
      );
      const k = new KamailioTls(udp, tls, dir, bin, cfg);
      const ok = await waitUntil(() => k.gone || /main\(\): processes/.test(k.output), 10_000);
      if (!ok || k.gone) {
        await k.stop();
        throw new Error(`kamailio (tls) did not start:\n${k.report()}`);
      }
      await sleep(300);
      return k;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One SIP message of siptm's `--trace` log, with the protocol it went over. */
export interface TracedTls {
  dir: "in" | "out";
  /** UDP, TCP, TLS… as the server logged it. */
  proto: string;
  peer: string;
  /** "INVITE", "ACK"… for a request, "200 INVITE", "180 INVITE"… for a response. */
  what: string;
  callId: string;
  text: string;
}

/** The server's `--trace` log (one thread or every shard), protocol included. */
export function tracedWithProto(server: SiptmServer): TracedTls[] {
  const out: TracedTls[] = [];
  for (const line of server.stderr.split("\n")) {
    if (!line.startsWith("{")) continue;
    let o: { dir?: string; proto?: string; peer?: string; sip?: string };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      continue;
    }
    if (typeof o.sip !== "string" || (o.dir !== "in" && o.dir !== "out")) continue;
    const m = sipSummary(o.sip);
    out.push({
      dir: o.dir,
      proto: o.proto ?? "",
      peer: o.peer ?? "",
      what: m.status !== undefined ? `${m.status} ${m.cseqMethod}` : (m.method ?? ""),
      callId: m.callId,
      text: o.sip,
    });
  }
  return out;
}

/** The TLS port of the server's banner (`listen: tls 127.0.0.1:PORT`). */
export function tlsPortOf(server: SiptmServer): number {
  const m = /listen:\s+tls 127\.0\.0\.1:(\d+)/.exec(server.stdout);
  if (!m) throw new Error(`no TLS listener in the banner:\n${server.stdout}`);
  return Number(m[1]);
}
