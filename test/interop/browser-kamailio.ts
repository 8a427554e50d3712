// Kamailio 5.6 (Debian's `kamailio` with `kamailio-tls-modules` and `kamailio-websocket-modules`)
// as a WebRTC gateway on 127.0.0.1, for the browser interop tests: SIP over WSS (RFC 7118) on one
// port, SIP over UDP on another, a registrar in memory, a stateful proxy that record-routes.
// It is the reference peer the browser tests were first proven against: the same clients and the
// same SIPp UAS as in front of `siptm serve`, so a difference between the two is siptm's.
//
// The kamailio.cfg is written per test (a fresh temp dir with the test's certificate):
//  - event_route[xhttp:request] upgrades a GET with `Upgrade: websocket` (ws_handle_handshake)
//    and answers anything else 404; tcp_accept_no_cl because an HTTP request has no Content-Length.
//  - A request from a WebSocket client (nat_uac_test 64): force_rport, fix_nated_register for its
//    REGISTER (its Contact is a `.invalid` host: usrloc keeps where it came from), and a Contact
//    alias on an INVITE (so in-dialog requests could reach it back over its connection).
//  - REGISTER → save("location"); an initial request → record_route (a double one when it
//    changes transport) + lookup("location") + t_relay; in-dialog → loose_route; CANCEL and ACK
//    via tm. A WebSocket client's reply gets a Contact alias (onreply_route), and an in-dialog
//    request to such a Contact goes to the alias (handle_ruri_alias): back down its connection.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Child } from "../../bench/src/lib/children.js";
import { freeSipPort, KAMAILIO_CFG_HEAD, KAMAILIO_CORE_MODULES, kamailioArgs } from "./peers.js";
import { HOST, sleep, waitUntil } from "./sipp.js";

const MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/** The kamailio binary with its TLS and WebSocket modules, or a thrown Error saying how to install them. */
export function requireKamailioWss(): string {
  const bin = process.env.KAMAILIO_BIN ?? "kamailio";
  const probe = spawnSync(bin, ["-v"], { encoding: "utf8", timeout: 10_000 });
  const missing = probe.error
    ? [`kamailio (${probe.error.message})`]
    : ["tls.so", "websocket.so", "xhttp.so", "nathelper.so"].filter((m) => {
        const dir = process.env.KAMAILIO_MODULES ?? MODULES;
        return spawnSync("test", ["-f", join(dir, m)]).status !== 0;
      });
  if (missing.length > 0)
    throw new Error(
      `Kamailio with TLS and WebSocket is not installed (missing: ${missing.join(", ")}). Install it with ` +
        "`apt-get install -y kamailio kamailio-tls-modules kamailio-websocket-modules`; .ci/run installs them.",
    );
  return bin;
}

/** True when a TCP connection to 127.0.0.1:port is accepted (then closed at once). */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.setTimeout(1_000, () => {
      s.destroy();
      resolve(false);
    });
  });
}

export class KamailioWss {
  private constructor(
    private readonly child: Child,
    readonly dir: string,
    /** SIP over UDP on 127.0.0.1. */
    readonly udp: number,
    /** SIP over WSS on 127.0.0.1. */
    readonly wss: number,
  ) {}

  /** Its log (stderr: -E), then anything on stdout. */
  get output(): string {
    return `${this.child.stderr}${this.child.stdout}`;
  }

  get wsUrl(): string {
    return `wss://${HOST}:${this.wss}`;
  }

  /** Start it with this certificate and wait until its processes are up. */
  static async start(tls: { cert: string; key: string }): Promise<KamailioWss> {
    const bin = requireKamailioWss();
    const dir = mkdtempSync(join(tmpdir(), "siptm-kamailio-wss-"));
    const udp = await freeSipPort(1);
    let wss = await freeSipPort(1);
    while (wss === udp) wss = await freeSipPort(1);
    writeFileSync(
      join(dir, "tls.cfg"),
      [
        "[server:default]",
        "method = TLSv1.2+",
        "verify_certificate = no",
        "require_certificate = no",
        `private_key = ${tls.key}`,
        `certificate = ${tls.cert}`,
        "",
        "[client:default]",
        "method = TLSv1.2+",
        "verify_certificate = no",
        "require_certificate = no",
        "",
      ].join("\n"),
    );
    const cfg = join(dir, "kamailio.cfg");
    const mod = (m: string) => `loadmodule "${m}.so"`;
    writeFileSync(
      cfg,
      [
        ...KAMAILIO_CFG_HEAD,
        "enable_tls=yes",
        "tcp_accept_no_cl=yes",
        `listen=udp:${HOST}:${udp}`,
        `listen=tls:${HOST}:${wss}`,
        `alias="${HOST}:${udp}"`,
        `alias="${HOST}:${wss}"`,
        `mpath="${process.env.KAMAILIO_MODULES ?? MODULES}/"`,
        ...KAMAILIO_CORE_MODULES,
        ...["usrloc", "registrar", "nathelper", "tls", "xhttp", "websocket"].map(mod),
        `modparam("tls", "config", "${join(dir, "tls.cfg")}")`,
        'modparam("usrloc", "db_mode", 0)',
        'modparam("registrar", "max_expires", 3600)',
        // Where a WebSocket client's REGISTER came from, kept with its binding (fix_nated_register).
        'modparam("nathelper|registrar", "received_avp", "$avp(RECEIVED)")',
        // No NAT keep-alives of its own: the test owns every message.
        'modparam("nathelper", "natping_interval", 0)',
        "",
        "event_route[xhttp:request] {",
        '  if ($hdr(Upgrade) =~ "websocket" && $hdr(Connection) =~ "Upgrade" && $rm == "GET") {',
        "    if (ws_handle_handshake()) exit;",
        "  }",
        '  xhttp_reply("404", "Not Found", "", "");',
        "}",
        "",
        // This Kamailio's own request_route (WebSocket aliases, the NAT fix-ups), alike in its first lines with
        // peers.ts's KAMAILIO_ROUTE_HEAD but not the same: written out so the script reads whole.
        "request_route {",
        '  xlog("L_INFO", "kamailio in: $rm $ru from $si:$sp/$pr ci=$ci\\n");',
        '  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }',
        '  if (nat_uac_test("64")) {',
        "    force_rport();",
        '    if (is_method("REGISTER")) fix_nated_register();',
        '    else if (is_method("INVITE")) add_contact_alias();',
        "  }",
        "  if (has_totag()) {",
        "    if (loose_route()) {",
        "      if (!isdsturiset()) handle_ruri_alias();",
        "      t_relay();",
        "      exit;",
        "    }",
        '    if (is_method("ACK")) { if (t_check_trans()) t_relay(); exit; }',
        '    sl_send_reply("404", "Not Here"); exit;',
        "  }",
        '  if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }',
        "  t_check_trans();",
        '  if (is_method("REGISTER")) { save("location"); exit; }',
        "  record_route();",
        '  if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }',
        '  t_on_reply("WS_REPLY");',
        "  t_relay();",
        "}",
        "",
        // A WebSocket client's answer: its Contact (a .invalid host) gets an alias of where it
        // is, so the caller's in-dialog requests reach it back (handle_ruri_alias above).
        "onreply_route[WS_REPLY] {",
        '  if (nat_uac_test("64")) add_contact_alias();',
        "}",
        "",
      ].join("\n"),
    );
    const child = new Child(
      "kamailio (WSS)",
      bin,
      kamailioArgs(cfg, dir, 16),
      {},
      { keep: "first", max: 2_000_000 },
    );
    const k = new KamailioWss(child, dir, udp, wss);
    const ok = await waitUntil(() => !child.running || /main\(\): processes/.test(k.output), 10_000);
    if (!ok || !child.running) {
      const report = k.report();
      await k.stop();
      throw new Error(`kamailio (WSS) did not start:\n${report}`);
    }
    // Up once its WSS port accepts a connection (polled, bounded).
    const end = Date.now() + 10_000;
    while (!(await accepts(wss))) {
      if (!child.running || Date.now() > end) {
        const report = k.report();
        await k.stop();
        throw new Error(`kamailio (WSS) not accepting on ${wss}:\n${report}`);
      }
      await sleep(50);
    }
    // Its worker processes (tcp, udp, timers…), so that the kill reaches any left behind.
    child.recordDescendants();
    return k;
  }

  report(): string {
    return `--- kamailio (udp ${this.udp}, wss ${this.wss}): ${this.child.commandLine}\n${this.output.slice(-8000)}`;
  }

  /** SIGTERM, then SIGKILL after 3 s, to it and its recorded workers (by pid). Safe any number of times. */
  async stop(): Promise<void> {
    await this.child.kill(3_000);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
