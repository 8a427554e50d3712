// Real SIP peers other than SIPp for the interop tests, each a child process on 127.0.0.1 that is
// always stopped (by its own pid) however the test ends:
//
//  - baresip (Debian package `baresip`, 1.0.0), headless: a config directory with only the modules
//    a call needs (G.711, a sine-wave audio source and player, account, ctrl_tcp), every socket on
//    127.0.0.1 (net_interface), driven through ctrl_tcp (netstring JSON commands, events back).
//  - Kamailio (Debian package `kamailio`, 5.6), with a kamailio.cfg written for the test: a
//    registrar with usrloc in memory (no database) and t_relay, in the foreground.
//
// A missing binary fails the test with how to install it; nothing is skipped.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as dgram from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HOST, sleep, stopChild, waitUntil } from "./sipp.js";

const MAX_OUTPUT = 2_000_000;

function requireBinary(bin: string, pkg: string, probeArgs: string[]): string {
  const probe = spawnSync(bin, probeArgs, { encoding: "utf8", timeout: 10_000 });
  if (probe.error)
    throw new Error(
      `${bin} is not installed (${probe.error.message}). Install it with \`apt-get install -y ${pkg}\`; ` +
        ".ci/run installs it before `npm run test:interop`.",
    );
  return bin;
}

async function portFree(port: number): Promise<boolean> {
  const udp = await new Promise<boolean>((resolve) => {
    const s = dgram.createSocket("udp4");
    s.once("error", () => {
      s.close();
      resolve(false);
    });
    s.bind({ address: HOST, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
  if (!udp) return false;
  return new Promise<boolean>((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ host: HOST, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A port free a moment ago on 127.0.0.1 for both UDP and TCP, with the next `span - 1` ports free too. */
export async function freeSipPort(span = 1): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const probe = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen({ host: HOST, port: 0 }, () => resolve((probe.address() as net.AddressInfo).port));
    });
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    if (port + span > 65535) continue;
    let ok = true;
    for (let p = port; p < port + span && ok; p++) ok = await portFree(p);
    if (ok) return port;
  }
  throw new Error("no free port pair on 127.0.0.1");
}

/** One child process with its output kept (bounded) for failure messages. */
export class Child {
  protected readonly child: ChildProcess;
  protected out = "";
  gone = false;
  readonly exited: Promise<void>;
  constructor(
    readonly name: string,
    readonly bin: string,
    readonly args: string[],
  ) {
    this.child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    const keep = (d: string) => {
      if (this.out.length < MAX_OUTPUT) this.out += d;
    };
    this.child.stdout?.setEncoding("utf8").on("data", keep);
    this.child.stderr?.setEncoding("utf8").on("data", keep);
    this.exited = new Promise((resolve) => {
      this.child.once("error", (e) => {
        this.out += `\nspawn error: ${e.message}`;
        this.gone = true;
        resolve();
      });
      this.child.once("exit", () => {
        this.gone = true;
        setImmediate(resolve);
      });
    });
  }
  get output(): string {
    return this.out;
  }
  /** SIGTERM, then SIGKILL after 3 s: only this child, by its pid. Safe any number of times. */
  kill(): Promise<void> {
    return stopChild(this.child, () => this.gone, this.exited, 3_000);
  }
  report(): string {
    return `--- ${this.name}: ${this.bin} ${this.args.join(" ")}\n${this.out.slice(-6000)}`;
  }
}

export interface BaresipEvent {
  type: string;
  param?: string;
  peeruri?: string;
  direction?: string;
  id?: string;
  [key: string]: unknown;
}

export interface BaresipOptions {
  /** The user part of the account (the AOR is sip:USER@127.0.0.1, or @127.0.0.1:registrarPort). */
  user: string;
  /** Where it registers and sends everything (outbound proxy): a port on 127.0.0.1. */
  proxyPort: number;
  transport: "udp" | "tcp";
  /** Register at this port's domain (AOR sip:USER@127.0.0.1:PORT) without an outbound proxy. */
  registrarIsProxyDomain?: boolean;
}

/** The baresip binary, or a thrown Error saying how to install it. */
export function requireBaresip(): string {
  return requireBinary(process.env.BARESIP_BIN ?? "baresip", "baresip", ["-h"]);
}

/** One headless baresip phone. */
export class Baresip extends Child {
  readonly events: BaresipEvent[] = [];
  private ctrl: net.Socket | undefined;
  private buf = Buffer.alloc(0);
  private readonly pending = new Map<string, (r: { ok: boolean; data: string }) => void>();
  private token = 0;

  private constructor(
    readonly opts: BaresipOptions,
    readonly dir: string,
    readonly sipPort: number,
    readonly ctrlPort: number,
    bin: string,
  ) {
    super(`baresip ${opts.user}`, bin, ["-f", dir, "-v"]);
  }

  /** Start a phone and wait until it is registered (REGISTER_OK). */
  static async start(opts: BaresipOptions): Promise<Baresip> {
    const bin = requireBaresip();
    const dir = mkdtempSync(join(tmpdir(), `siptm-baresip-${opts.user}-`));
    // baresip binds its SIP port for UDP and TCP, and the next one for TLS.
    const sipPort = await freeSipPort(2);
    const ctrlPort = await freeSipPort(1);
    writeFileSync(
      join(dir, "config"),
      [
        "poll_method epoll",
        `sip_listen ${HOST}:${sipPort}`,
        `sip_trans_def ${opts.transport}`,
        `net_interface ${HOST}`,
        "audio_player ausine,",
        "audio_source ausine,440",
        "audio_alert ausine,",
        "ausrc_srate 48000",
        "auplay_srate 48000",
        "ausrc_channels 2",
        "auplay_channels 2",
        "module_path /usr/lib/baresip/modules",
        "module g711.so",
        "module ausine.so",
        "module_app account.so",
        "module_app menu.so",
        "module ctrl_tcp.so",
        `ctrl_tcp_listen ${HOST}:${ctrlPort}`,
        "",
      ].join("\n"),
    );
    const tp = opts.transport === "tcp" ? ";transport=tcp" : "";
    const proxy = `sip:${HOST}:${opts.proxyPort}${tp}`;
    const aor = opts.registrarIsProxyDomain
      ? `<sip:${opts.user}@${HOST}:${opts.proxyPort}${tp}>`
      : `<sip:${opts.user}@${HOST}>`;
    const outbound = opts.registrarIsProxyDomain ? "" : `;outbound="${proxy}"`;
    writeFileSync(
      join(dir, "accounts"),
      `${aor};regint=600${outbound};answermode=manual;audio_codecs=PCMU\n`,
    );
    const phone = new Baresip(opts, dir, sipPort, ctrlPort, bin);
    try {
      await phone.connect();
      // Registered: its console says "USER@HOST: {0/TCP/v4} 200 OK" (the REGISTER_OK event may
      // have come before ctrl_tcp was connected).
      const ok = await waitUntil(() => phone.gone || /\} 200 OK/.test(phone.output), 10_000);
      if (!ok || phone.gone) throw new Error(`baresip ${opts.user} did not register:\n${phone.report()}`);
    } catch (err) {
      await phone.stop();
      throw err;
    }
    return phone;
  }

  /** The contact it registers: an AOR's user with baresip's own suffix, at its SIP port. */
  private async connect(): Promise<void> {
    const end = Date.now() + 10_000;
    for (;;) {
      if (this.gone) throw new Error(`baresip exited at start:\n${this.report()}`);
      try {
        this.ctrl = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(this.ctrlPort, HOST, () => resolve(s));
          s.once("error", reject);
        });
        break;
      } catch {
        if (Date.now() > end) throw new Error(`no ctrl_tcp on ${this.ctrlPort}:\n${this.report()}`);
        await sleep(50);
      }
    }
    this.ctrl.on("data", (d: Buffer) => this.onData(d));
    this.ctrl.on("error", () => {});
  }

  /** ctrl_tcp speaks netstrings: LENGTH ":" JSON ",". */
  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      const colon = this.buf.indexOf(0x3a);
      if (colon < 0) return;
      const len = Number(this.buf.subarray(0, colon).toString("latin1"));
      if (!Number.isInteger(len) || this.buf.length < colon + 1 + len + 1) return;
      const json = this.buf.subarray(colon + 1, colon + 1 + len).toString("utf8");
      this.buf = this.buf.subarray(colon + 2 + len);
      let msg: { event?: boolean; response?: boolean; token?: string; ok?: boolean; data?: string };
      try {
        msg = JSON.parse(json) as typeof msg;
      } catch {
        continue;
      }
      if (msg.event) this.events.push(msg as unknown as BaresipEvent);
      else if (msg.response && msg.token) {
        this.pending.get(msg.token)?.({ ok: msg.ok === true, data: msg.data ?? "" });
        this.pending.delete(msg.token);
      }
    }
  }

  /** A ctrl_tcp command (dial, accept, hangup, …); resolves with baresip's answer. */
  command(command: string, params?: string): Promise<{ ok: boolean; data: string }> {
    const token = String(++this.token);
    const body = JSON.stringify({ command, params, token });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(new Error(`baresip ${this.opts.user}: no answer to ${command}\n${this.report()}`));
      }, 5_000);
      this.pending.set(token, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.ctrl?.write(`${Buffer.byteLength(body)}:${body},`);
    });
  }

  /** Wait for an event of this type (matching `pred`) that came after the first `from` events. */
  async waitFor(
    type: string,
    pred: (e: BaresipEvent) => boolean = () => true,
    timeoutMs = 10_000,
    from = 0,
  ): Promise<BaresipEvent> {
    const find = () => this.events.slice(from).find((e) => e.type === type && pred(e));
    if (!(await waitUntil(() => find() !== undefined || this.gone, timeoutMs)) || !find())
      throw new Error(
        `baresip ${this.opts.user}: no ${type} within ${timeoutMs} ms; events: ${this.events
          .map((e) => `${e.type}${e.param ? `(${e.param})` : ""}`)
          .join(", ")}\n${this.report()}`,
      );
    return find()!;
  }

  /** The event types so far, in order. */
  types(): string[] {
    return this.events.map((e) => e.type);
  }

  async stop(): Promise<void> {
    if (!this.gone && this.ctrl) await this.command("quit").catch(() => undefined);
    await Promise.race([this.exited, sleep(2_000)]);
    this.ctrl?.destroy();
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The kamailio binary, or a thrown Error saying how to install it. */
export function requireKamailio(): string {
  return requireBinary(process.env.KAMAILIO_BIN ?? "kamailio", "kamailio", ["-v"]);
}

/**
 * The start of a test Kamailio's request_route: a trace line, Max-Forwards, in-dialog requests by
 * their Route (ACK and CANCEL in their transaction), the transaction of an initial request.
 */
export const KAMAILIO_ROUTE_HEAD = [
  "request_route {",
  '  xlog("L_INFO", "kamailio in: $rm $ru from $si:$sp/$pr\\n");',
  '  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }',
  "  if (has_totag()) {",
  "    if (loose_route()) { t_relay(); exit; }",
  '    if (is_method("ACK")) { if (t_check_trans()) t_relay(); exit; }',
  '    sl_send_reply("404", "Not Here"); exit;',
  "  }",
  '  if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }',
  "  t_check_trans();",
];

/** A test Kamailio's command line: `cfg`, in the foreground, logs on stderr, its runtime files in `dir`, 64 MB shared and `pkgMb` private memory. */
export function kamailioArgs(cfg: string, dir: string, pkgMb: number): string[] {
  return [
    "-f",
    cfg,
    "-DD",
    "-E",
    "-Y",
    dir,
    "-P",
    join(dir, "kamailio.pid"),
    "-m",
    "64",
    "-M",
    String(pkgMb),
  ];
}

/** The head of every test Kamailio's config: one process of each kind, logs on stderr, no DNS. */
export const KAMAILIO_CFG_HEAD = [
  "#!KAMAILIO",
  "debug=2",
  "log_stderror=yes",
  "children=1",
  "tcp_children=1",
  "auto_aliases=no",
  "dns=no",
  "rev_dns=no",
];

/** The modules every test Kamailio loads (tm and sl, Record-Route, the xlog trace), as loadmodule lines. */
export const KAMAILIO_CORE_MODULES = [
  "kex",
  "xlog",
  "tm",
  "sl",
  "rr",
  "pv",
  "maxfwd",
  "siputils",
  "textops",
].map((m) => `loadmodule "${m}.so"`);

/**
 * Kamailio 5.6 as a registrar and stateful proxy on 127.0.0.1 (UDP and TCP on one port): REGISTER →
 * save("location") in memory; an initial request → lookup("location") and t_relay (404 when
 * nobody is registered); in-dialog requests → loose_route and t_relay. No Record-Route of its own
 * unless `recordRoute`.
 */
export class Kamailio extends Child {
  private constructor(
    readonly port: number,
    readonly dir: string,
    bin: string,
    cfg: string,
  ) {
    super("kamailio", bin, kamailioArgs(cfg, dir, 8));
  }

  static async start(opts: { recordRoute?: boolean } = {}): Promise<Kamailio> {
    const bin = requireKamailio();
    const dir = mkdtempSync(join(tmpdir(), "siptm-kamailio-"));
    const port = await freeSipPort(1);
    const cfg = join(dir, "kamailio.cfg");
    writeFileSync(
      cfg,
      [
        ...KAMAILIO_CFG_HEAD,
        `listen=udp:${HOST}:${port}`,
        `listen=tcp:${HOST}:${port}`,
        `alias="${HOST}:${port}"`,
        'mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"',
        ...KAMAILIO_CORE_MODULES,
        'loadmodule "usrloc.so"',
        'loadmodule "registrar.so"',
        'modparam("usrloc", "db_mode", 0)',
        'modparam("registrar", "max_expires", 3600)',
        ...KAMAILIO_ROUTE_HEAD,
        '  if (is_method("REGISTER")) { save("location"); exit; }',
        opts.recordRoute ? "  record_route();" : "",
        '  if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }',
        "  t_relay();",
        "}",
        "",
      ].join("\n"),
    );
    const k = new Kamailio(port, dir, bin, cfg);
    // Ready once it answers an OPTIONS (404: nobody registered) on its UDP port.
    const ok = await waitUntil(() => k.gone || /main\(\): processes/.test(k.output), 10_000);
    if (!ok || k.gone) {
      await k.stop();
      throw new Error(`kamailio did not start:\n${k.report()}`);
    }
    await sleep(300);
    return k;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
