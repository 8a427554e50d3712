/**
 * The load generator of the connections benchmark (src/connections.ts): SIP
 * clients on Node's own sockets, run as a child process of the benchmark so
 * its CPU and file descriptors are not the server's. SIPp here has no TLS or
 * WebSocket, so this one speaks UDP, TCP, TLS (node:tls) and WebSocket (the
 * `ws` package, subprotocol "sip", RFC 7118) alike.
 *
 *   node dist/lib/stream-uac.js hold --transport tls|ws|tcp --port P --count N [--concurrency 50] [--ca FILE]
 *       open N idle connections (handshake, then one CRLFCRLF keep-alive, RFC 5626 §3.5.1),
 *       print {"event":"held",…}, keep them until a line "close" (or EOF) on stdin.
 *   node dist/lib/stream-uac.js calls --transport udp|tcp|tls|ws --port P --rate R --seconds S
 *       [--connections 4] [--scenario invite|options] [--timeout 8000] [--ca FILE]
 *       open the connections, print {"event":"connected"}, wait for a line "go" on stdin,
 *       then start R calls/s for S seconds (INVITE→final, ACK, BYE→200; or OPTIONS→200),
 *       and print {"event":"result",…} with the completed and failed calls.
 *   node dist/lib/stream-uac.js handshakes --port P --count N [--concurrency 50] [--ca FILE]
 *       N full TLS handshakes (a new connection each, no session resumption), closed at once;
 *       prints {"event":"result",…}.
 *
 * Every line on stdout is one JSON object. 127.0.0.1 only; every run is
 * bounded by its count and a wall-clock limit.
 */
import * as dgram from "node:dgram";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { createInterface } from "node:readline";
import * as tls from "node:tls";
import WebSocket from "ws";

const HOST = "127.0.0.1";
/** The SNI name and the name checked in the server certificate (the test certificate holds DNS:localhost). */
const SERVERNAME = "localhost";
const CRLF2 = "\r\n\r\n";

export type StreamTransport = "tcp" | "tls" | "ws";
export type CallTransport = "udp" | StreamTransport;

interface Options {
  readonly mode: "hold" | "calls" | "handshakes";
  readonly transport: CallTransport;
  readonly port: number;
  readonly count: number;
  readonly concurrency: number;
  readonly rate: number;
  readonly seconds: number;
  readonly connections: number;
  readonly scenario: "invite" | "options";
  readonly timeoutMs: number;
  readonly ca: Buffer | undefined;
}

function parseOptions(argv: readonly string[]): Options {
  const [mode, ...rest] = argv;
  if (mode !== "hold" && mode !== "calls" && mode !== "handshakes")
    throw new Error(
      "usage: stream-uac.js hold|calls|handshakes [--options] (see the header of src/lib/stream-uac.ts)",
    );
  const v = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) {
    const k = rest[i] as string;
    const val = rest[i + 1];
    if (!k.startsWith("--") || val === undefined) throw new Error(`bad argument ${k}`);
    v.set(k.slice(2), val);
  }
  const num = (k: string, d: number) => {
    const s = v.get(k);
    const n = s === undefined ? d : Number(s);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} must be a number ≥ 0`);
    return n;
  };
  const transport = (v.get("transport") ?? "tls") as CallTransport;
  if (!["udp", "tcp", "tls", "ws"].includes(transport)) throw new Error(`unknown --transport ${transport}`);
  const scenario = (v.get("scenario") ?? "invite") as "invite" | "options";
  if (scenario !== "invite" && scenario !== "options") throw new Error(`unknown --scenario ${scenario}`);
  const caFile = v.get("ca");
  return {
    mode,
    transport,
    port: num("port", 0),
    count: Math.min(num("count", 100), 100_000),
    concurrency: Math.max(1, num("concurrency", 50)),
    rate: num("rate", 100),
    seconds: Math.min(num("seconds", 3), 600),
    connections: Math.max(1, Math.min(num("connections", 4), 64)),
    scenario,
    timeoutMs: num("timeout", 8000),
    ca: caFile === undefined ? undefined : readFileSync(caFile),
  };
}

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

// ------------------------------------------------------------------ connections

/** One client connection (or UDP socket) that sends SIP text and hands every received message to `onMessage`. */
interface Conn {
  readonly transport: CallTransport;
  /** Local address for Via/Contact (TCP/TLS/UDP); WebSocket clients use a *.invalid host (RFC 7118 §5.2). */
  readonly local: string;
  send(text: string): void;
  onMessage: (msg: string) => void;
  onClose: () => void;
  close(): void;
}

/** Splits a byte stream into SIP messages (RFC 3261 §18.3: Content-Length frames the body); bare CRLFs are keep-alive pongs. */
class StreamFramer {
  private buf = "";
  constructor(private readonly deliver: (msg: string) => void) {}

  push(chunk: string): void {
    this.buf += chunk;
    for (;;) {
      let start = 0;
      while (this.buf.startsWith("\r\n", start)) start += 2;
      if (start > 0) this.buf = this.buf.slice(start);
      const end = this.buf.indexOf(CRLF2);
      if (end < 0) return;
      const head = this.buf.slice(0, end);
      const len = contentLength(head);
      const total = end + 4 + len;
      if (this.buf.length < total) return;
      this.deliver(this.buf.slice(0, total));
      this.buf = this.buf.slice(total);
    }
  }
}

function contentLength(head: string): number {
  for (const line of head.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (name === "content-length" || name === "l") return Number(line.slice(colon + 1).trim()) || 0;
  }
  return 0;
}

/**
 * One client SecureContext for every connection: given `ca` itself, tls.connect would parse the CA
 * file and build a context per connection, and the generator would spend more on that than on the
 * handshake (it would measure itself, not the server).
 */
let clientContext: tls.SecureContext | undefined;
const tlsOptions = (port: number, ca: Buffer | undefined): tls.ConnectionOptions => {
  if (ca && !clientContext) clientContext = tls.createSecureContext({ ca });
  return {
    host: HOST,
    port,
    servername: SERVERNAME,
    ...(clientContext ? { secureContext: clientContext } : { rejectUnauthorized: false }),
  };
};

function openStream(transport: StreamTransport, port: number, ca: Buffer | undefined): Promise<Conn> {
  return new Promise<Conn>((resolve, reject) => {
    let settled = false;
    const fail = (err: Error) => {
      if (!settled) {
        settled = true;
        reject(err);
      }
    };
    if (transport === "ws") {
      const ws = new WebSocket(`ws://${HOST}:${port}/`, ["sip"], {
        perMessageDeflate: false,
        handshakeTimeout: 20_000,
      });
      const conn: Conn = {
        transport,
        local: `${Math.random().toString(36).slice(2, 10)}.invalid`,
        send: (text) => ws.send(text),
        onMessage: () => {},
        onClose: () => {},
        close: () => ws.terminate(),
      };
      ws.on("message", (data: Buffer) => {
        const text = data.toString("utf8");
        if (text.trim().length > 0) conn.onMessage(text);
        else conn.onMessage("");
      });
      ws.once("open", () => {
        if (ws.protocol !== "sip") {
          ws.terminate();
          fail(new Error(`server chose subprotocol "${ws.protocol}"`));
          return;
        }
        settled = true;
        resolve(conn);
      });
      ws.on("error", (err) => fail(err));
      ws.once("close", () => {
        fail(new Error("closed during the handshake"));
        conn.onClose();
      });
      return;
    }
    const socket: net.Socket =
      transport === "tls" ? tls.connect(tlsOptions(port, ca)) : net.connect({ host: HOST, port });
    socket.setNoDelay(true);
    socket.setEncoding("utf8");
    const conn: Conn = {
      transport,
      local: "",
      send: (text) => {
        socket.write(text);
      },
      onMessage: () => {},
      onClose: () => {},
      close: () => socket.destroy(),
    };
    const framer = new StreamFramer((m) => conn.onMessage(m));
    socket.on("data", (chunk: string) => {
      if (chunk === "\r\n") conn.onMessage("");
      else framer.push(chunk);
    });
    socket.once(transport === "tls" ? "secureConnect" : "connect", () => {
      (conn as { local: string }).local = `${socket.localAddress}:${socket.localPort}`;
      settled = true;
      resolve(conn);
    });
    socket.on("error", (err) => fail(err));
    socket.once("close", () => {
      fail(new Error("closed during connect"));
      conn.onClose();
    });
    socket.setTimeout(20_000, () => {
      if (!settled) socket.destroy(new Error("connect timeout"));
    });
  });
}

function openUdp(port: number): Promise<Conn> {
  return new Promise<Conn>((resolve, reject) => {
    const sock = dgram.createSocket("udp4");
    const conn: Conn = {
      transport: "udp",
      local: "",
      send: (text) => sock.send(text),
      onMessage: () => {},
      onClose: () => {},
      close: () => sock.close(),
    };
    sock.on("message", (m) => conn.onMessage(m.toString("utf8")));
    sock.once("error", reject);
    sock.connect(port, HOST, () => {
      const a = sock.address();
      (conn as { local: string }).local = `${a.address}:${a.port}`;
      resolve(conn);
    });
  });
}

/** Open `count` connections, at most `concurrency` handshakes at once. */
async function openMany(
  count: number,
  concurrency: number,
  open: () => Promise<Conn>,
): Promise<{ conns: Conn[]; errors: Map<string, number> }> {
  const conns: Conn[] = [];
  const errors = new Map<string, number>();
  let next = 0;
  const lane = async () => {
    while (next < count) {
      next++;
      try {
        conns.push(await open());
      } catch (err) {
        const key = err instanceof Error ? err.message : String(err);
        errors.set(key, (errors.get(key) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return { conns, errors };
}

// ------------------------------------------------------------------ hold

async function hold(o: Options): Promise<void> {
  if (o.transport === "udp") throw new Error("hold: udp has no connections");
  const t0 = performance.now();
  let closedByServer = 0;
  let pongs = 0;
  const { conns, errors } = await openMany(o.count, o.concurrency, async () => {
    const c = await openStream(o.transport as StreamTransport, o.port, o.ca);
    c.onMessage = (m) => {
      if (m === "") pongs++;
    };
    c.onClose = () => {
      closedByServer++;
    };
    c.send(CRLF2);
    return c;
  });
  const openSeconds = (performance.now() - t0) / 1000;
  // Let the pongs of the last keep-alives arrive.
  await new Promise((r) => setTimeout(r, 1000));
  emit({
    event: "held",
    opened: conns.length,
    failed: o.count - conns.length,
    errors: Object.fromEntries(errors),
    pongs,
    closedByServer,
    openSeconds,
  });
  // RFC 5626 §4.4.1 style keep-alive while held, well inside the servers' 120 s idle timeouts.
  const keepAlive = setInterval(() => {
    for (const c of conns) c.send(CRLF2);
  }, 45_000);
  // Bounded: at most 15 minutes held, whatever the parent does.
  const limit = setTimeout(() => finish(), 15 * 60_000);
  const rl = createInterface({ input: process.stdin });
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearInterval(keepAlive);
    clearTimeout(limit);
    rl.close();
    const stillOpen = conns.length - closedByServer;
    for (const c of conns) c.close();
    emit({ event: "closed", stillOpen, closedByServer, pongs });
    setTimeout(() => process.exit(0), 200);
  };
  rl.on("line", (line) => {
    if (line.trim() === "close") finish();
  });
  rl.on("close", finish);
}

// ------------------------------------------------------------------ calls

interface Call {
  readonly id: number;
  readonly callId: string;
  readonly conn: Conn;
  readonly fromTag: string;
  readonly startedAt: number;
  phase: "invite" | "bye" | "options";
  toTag: string;
}

function header(msg: string, long: string, short: string): string | undefined {
  const end = msg.indexOf(CRLF2);
  const head = end < 0 ? msg : msg.slice(0, end);
  for (const line of head.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (name === long || name === short) return line.slice(colon + 1).trim();
  }
  return undefined;
}

function viaProto(t: CallTransport): string {
  return t.toUpperCase();
}

function uriParam(t: CallTransport): string {
  return t === "udp" ? "" : `;transport=${t}`;
}

async function calls(o: Options): Promise<void> {
  const open = () =>
    o.transport === "udp" ? openUdp(o.port) : openStream(o.transport as StreamTransport, o.port, o.ca);
  const { conns, errors } = await openMany(o.connections, o.connections, open);
  if (conns.length === 0) throw new Error(`no connection: ${[...errors.keys()].join("; ")}`);
  const live = new Map<string, Call>();
  const failures = { timeout: 0, status: 0, closed: 0, notConnected: o.connections - conns.length };
  const statuses: Record<string, number> = {};
  let started = 0;
  let completed = 0;
  const latencies: number[] = [];
  const target = `sip:uas@${HOST}:${o.port}${uriParam(o.transport)}`;
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  let branchSeq = 0;
  const branch = () => `z9hG4bK-${tag}-${(branchSeq++).toString(36)}`;

  const request = (c: Call, method: string, cseq: number, uri: string, withTo: boolean): string => {
    const via = `SIP/2.0/${viaProto(o.transport)} ${c.conn.local};branch=${branch()};rport`;
    return (
      `${method} ${uri} SIP/2.0\r\n` +
      `Via: ${via}\r\n` +
      "Max-Forwards: 70\r\n" +
      `From: <sip:uac@bench.invalid>;tag=${c.fromTag}\r\n` +
      `To: <sip:uas@${HOST}>${withTo && c.toTag ? `;tag=${c.toTag}` : ""}\r\n` +
      `Call-ID: ${c.callId}\r\n` +
      `CSeq: ${cseq} ${method}\r\n` +
      (method === "INVITE" ? `Contact: <sip:uac@${c.conn.local}${uriParam(o.transport)}>\r\n` : "") +
      "Content-Length: 0\r\n\r\n"
    );
  };

  const finishCall = (c: Call, ok: boolean, why?: keyof typeof failures) => {
    live.delete(c.callId);
    if (ok) {
      completed++;
      if (latencies.length < 200_000) latencies.push(performance.now() - c.startedAt);
    } else if (why) failures[why]++;
  };

  const onMessage = (conn: Conn, msg: string) => {
    if (msg === "" || !msg.startsWith("SIP/2.0 ")) return;
    const status = Number(msg.slice(8, 11));
    const callId = header(msg, "call-id", "i");
    const c = callId === undefined ? undefined : live.get(callId);
    if (!c || c.conn !== conn) return;
    const cseq = header(msg, "cseq", "") ?? "";
    const method = cseq.split(/\s+/)[1];
    if (status < 200) return;
    if (c.phase === "options" && method === "OPTIONS") {
      finishCall(c, status < 300, "status");
      if (status >= 300) statuses[status] = (statuses[status] ?? 0) + 1;
      return;
    }
    if (c.phase === "invite" && method === "INVITE") {
      if (status >= 300) {
        // A negative final: the ACK is hop-by-hop (RFC 3261 §17.1.1.3); the call failed.
        statuses[status] = (statuses[status] ?? 0) + 1;
        finishCall(c, false, "status");
        return;
      }
      const to = header(msg, "to", "t") ?? "";
      const m = /;\s*tag=([^;>\s]+)/.exec(to);
      c.toTag = m?.[1] ?? "";
      const contact = header(msg, "contact", "m") ?? "";
      const cm = /<([^>]+)>/.exec(contact);
      const remote = cm?.[1] ?? target;
      c.phase = "bye";
      // ACK of the 2xx (its own transaction, RFC 3261 §13.2.2.4), then BYE in the dialog.
      conn.send(request(c, "ACK", 1, remote, true));
      conn.send(request(c, "BYE", 2, remote, true));
      return;
    }
    if (c.phase === "bye" && method === "BYE") {
      if (status >= 300) statuses[status] = (statuses[status] ?? 0) + 1;
      finishCall(c, status < 300, "status");
    }
  };
  for (const conn of conns) {
    conn.onMessage = (m) => onMessage(conn, m);
    conn.onClose = () => {
      for (const c of [...live.values()]) if (c.conn === conn) finishCall(c, false, "closed");
    };
  }

  emit({ event: "connected", connections: conns.length, errors: Object.fromEntries(errors) });
  await new Promise<void>((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on("line", (l) => {
      if (l.trim() === "go") {
        rl.close();
        resolve();
      }
    });
    rl.on("close", () => resolve());
  });

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const total = Math.round(o.rate * o.seconds);
  const startCall = () => {
    const id = started++;
    const conn = conns[id % conns.length] as Conn;
    const c: Call = {
      id,
      callId: `${tag}-${id}@bench.invalid`,
      conn,
      fromTag: `f${id.toString(36)}`,
      startedAt: performance.now(),
      phase: o.scenario === "options" ? "options" : "invite",
      toTag: "",
    };
    live.set(c.callId, c);
    conn.send(request(c, o.scenario === "options" ? "OPTIONS" : "INVITE", 1, target, false));
  };
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - t0) / 1000) * o.rate));
      while (started < due) startCall();
      // Calls older than the timeout have failed.
      for (const c of live.values()) {
        if (now - c.startedAt < o.timeoutMs) break; // insertion order: the rest are younger
        finishCall(c, false, "timeout");
      }
      if (started >= total && live.size === 0) {
        clearInterval(tick);
        resolve();
      }
    }, 5);
  });
  const wallSeconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  emit({
    event: "result",
    transport: o.transport,
    scenario: o.scenario,
    connections: conns.length,
    started,
    completed,
    failed: started - completed,
    failures,
    statuses,
    wallSeconds,
    achievedRate: completed / Math.max(o.seconds, 1e-9),
    latencyMs: { p50: q(0.5), p99: q(0.99), max: latencies.at(-1) ?? 0 },
    generatorCpuSeconds: (cpu.user + cpu.system) / 1e6,
  });
  for (const c of conns) c.close();
  setTimeout(() => process.exit(0), 200);
}

// ------------------------------------------------------------------ handshakes

async function handshakes(o: Options): Promise<void> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let ok = 0;
  const errors = new Map<string, number>();
  let next = 0;
  let resumed = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const s = tls.connect(tlsOptions(o.port, o.ca));
      const timer = setTimeout(() => s.destroy(new Error("handshake timeout")), 20_000);
      s.once("secureConnect", () => {
        clearTimeout(timer);
        ok++;
        if (s.isSessionReused()) resumed++;
        s.destroy();
        resolve();
      });
      s.once("error", (err) => {
        clearTimeout(timer);
        errors.set(err.message, (errors.get(err.message) ?? 0) + 1);
        s.destroy();
        resolve();
      });
    });
  const lane = async () => {
    while (next < o.count) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, o.count) }, lane));
  const wallSeconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  emit({
    event: "result",
    ok,
    failed: o.count - ok,
    resumed,
    errors: Object.fromEntries(errors),
    wallSeconds,
    perSecond: ok / wallSeconds,
    generatorCpuSeconds: (cpu.user + cpu.system) / 1e6,
  });
  setTimeout(() => process.exit(0), 100);
}

// ------------------------------------------------------------------ main

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const o = parseOptions(process.argv.slice(2));
  const run = o.mode === "hold" ? hold(o) : o.mode === "calls" ? calls(o) : handshakes(o);
  run.catch((err) => {
    emit({ event: "error", message: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  });
}
