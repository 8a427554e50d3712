/**
 * The npm `sip` package (kirm/sip.js) as the comparison server of the load
 * benchmark: a minimal program doing the same work as `siptm serve` and the
 * Kamailio configurations, on the package's own UDP transport and
 * transaction layer (one process, one thread).
 *
 *   node dist/sip-uas.js --port PORT [--mode uas|ring|proxy|registrar]
 *
 * Modes:
 *  - uas (default): INVITE → 180 Ringing and 200 OK (both with a To tag and a
 *    Contact); the ACK of the 2xx is absorbed; any other request → 200 OK.
 *  - ring: INVITE → 180 only, ringing until a CANCEL comes: the CANCEL gets
 *    200 and the INVITE 487 (the package's INVITE server transaction absorbs
 *    the ACK of the 487). Other requests → 200.
 *  - proxy: every request relayed by its Request-URI, statefully (a client
 *    transaction of the package per request, a Via pushed, Max-Forwards
 *    decremented, responses relayed back through the server transaction);
 *    the ACK of a 2xx relayed statelessly with a Via of its own. CANCEL is
 *    not relayed (the proxy scenario sends none): it gets 481.
 *  - registrar: REGISTER → bindings kept in a Map by address-of-record, 200
 *    listing them with their expires; other requests → 404.
 *
 * Prints `ready udp:127.0.0.1:PORT` once the socket is bound. Stops on
 * SIGTERM/SIGINT.
 */

import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
// biome-ignore lint/suspicious/noExplicitAny: the `sip` package is untyped; every value from it is one of these
type SipAny = any;
const sip: SipAny = require("sip");

type Mode = "uas" | "ring" | "proxy" | "registrar";

function parseArgs(argv: readonly string[]): { port: number; mode: Mode } {
  let port = 5060;
  let mode: Mode = "uas";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--port") port = Number(value());
    else if (a === "--mode") {
      const m = value();
      if (m !== "uas" && m !== "ring" && m !== "proxy" && m !== "registrar")
        throw new Error(`unknown mode ${m}`);
      mode = m;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error("bad --port");
  return { port, mode };
}

const { port, mode } = parseArgs(process.argv.slice(2));
const HOST = "127.0.0.1";
const contact = [{ uri: `sip:uas@${HOST}:${port}` }];
let errors = 0;

const newTag = () => randomBytes(6).toString("hex");

/** A response to `rq` with our To tag (set once per request) and, when asked, our Contact. */
function response(rq: SipAny, status: number, reason: string, withContact: boolean): SipAny {
  if (rq.headers.to.params.tag === undefined) rq.headers.to.params.tag = newTag();
  const rs = sip.makeResponse(rq, status, reason);
  if (withContact) rs.headers.contact = contact;
  return rs;
}

/** The INVITEs still ringing (mode ring), by Call-ID and branch: what a CANCEL refers to. */
const ringing = new Map<string, SipAny>();
const ringKey = (m: SipAny) => `${m.headers["call-id"]}\n${m.headers.via[0].params.branch}`;

interface Binding {
  uri: string;
  expiresAt: number;
  callId: string;
  cseq: number;
}
const bindings = new Map<string, Binding[]>();

function aorOf(uri: SipAny): string | undefined {
  const u = typeof uri === "string" ? sip.parseUri(uri) : uri;
  if (!u?.host) return undefined;
  return `sip:${u.user ?? ""}@${String(u.host).toLowerCase()}`;
}

function register(rq: SipAny): SipAny {
  const aor = aorOf(rq.headers.to.uri);
  if (aor === undefined) return response(rq, 400, "Bad Request", false);
  const now = Date.now();
  const headerExpires = rq.headers.expires !== undefined ? Number(rq.headers.expires) : 3600;
  const list = (bindings.get(aor) ?? []).filter((b) => b.expiresAt > now);
  const contacts: SipAny[] = Array.isArray(rq.headers.contact) ? rq.headers.contact : [];
  for (const c of contacts) {
    const uri = typeof c.uri === "string" ? c.uri : sip.stringifyUri(c.uri);
    const expires = c.params?.expires !== undefined ? Number(c.params.expires) : headerExpires;
    const i = list.findIndex((b) => b.uri === uri);
    if (expires === 0) {
      if (i >= 0) list.splice(i, 1);
      continue;
    }
    const b: Binding = {
      uri,
      expiresAt: now + Math.min(expires, 86400) * 1000,
      callId: rq.headers["call-id"],
      cseq: rq.headers.cseq.seq,
    };
    if (i >= 0) list[i] = b;
    else list.push(b);
  }
  if (list.length > 0) bindings.set(aor, list);
  else bindings.delete(aor);
  const rs = response(rq, 200, "OK", false);
  rs.headers.contact = list.map((b) => ({
    uri: b.uri,
    params: { expires: String(Math.round((b.expiresAt - now) / 1000)) },
  }));
  return rs;
}

// The package opens its UDP socket itself with the kernel's default buffers (rmem_default,
// about 208 KB here). Every other system in the benchmark gets 4 MB (SIPp -buff_size, siptm's
// transport, Kamailio maxbuffer), so the socket the package creates below gets them too.
const SOCKET_BUFFER = 4 * 1024 * 1024;
const createSocket = dgram.createSocket;
(dgram as { createSocket: typeof dgram.createSocket }).createSocket = ((
  ...a: Parameters<typeof dgram.createSocket>
) => {
  const socket = createSocket(...a);
  socket.once("listening", () => {
    try {
      socket.setRecvBufferSize(SOCKET_BUFFER);
      socket.setSendBufferSize(SOCKET_BUFFER);
    } catch (e) {
      process.stderr.write(
        `sip-uas: socket buffers not enlarged: ${e instanceof Error ? e.message : String(e)}\n`,
      );
    }
  });
  return socket;
}) as typeof dgram.createSocket;

// In proxy mode the package must not take the Request-URI sip:service@127.0.0.1:OTHERPORT for
// itself: it compares only the host with its own name (the port is ignored), so the proxy
// calls itself "localhost" (its Via host) while its socket stays on 127.0.0.1.
const stack: SipAny = sip.create(
  {
    udp: true,
    tcp: false,
    address: HOST,
    port,
    ...(mode === "proxy" ? { publicAddress: "localhost" } : {}),
    logger: {
      error(e: unknown) {
        if (errors++ < 5) process.stderr.write(`sip-uas: ${e instanceof Error ? e.message : String(e)}\n`);
      },
    },
  },
  (rq: SipAny) => {
    const method: string = rq.method;
    if (mode === "proxy") {
      proxy(rq);
      return;
    }
    if (method === "ACK") return; // the ACK of a 2xx: no transaction, nothing to do
    if (mode === "registrar") {
      stack.send(method === "REGISTER" ? register(rq) : response(rq, 404, "Not Found", false));
      return;
    }
    if (method === "INVITE") {
      stack.send(response(rq, 180, "Ringing", true));
      if (mode === "ring") ringing.set(ringKey(rq), rq);
      else stack.send(response(rq, 200, "OK", true));
      return;
    }
    if (method === "CANCEL") {
      const invite = ringing.get(ringKey(rq));
      if (invite === undefined) {
        stack.send(response(rq, 481, "Call/Transaction Does Not Exist", false));
        return;
      }
      ringing.delete(ringKey(rq));
      stack.send(response(rq, 200, "OK", false));
      stack.send(response(invite, 487, "Request Terminated", false));
      return;
    }
    stack.send(response(rq, 200, "OK", false));
  },
);

function proxy(rq: SipAny): void {
  const method: string = rq.method;
  const maxForwards = rq.headers["max-forwards"] !== undefined ? Number(rq.headers["max-forwards"]) : 70;
  if (method === "ACK") {
    if (maxForwards <= 0) return;
    const ack = sip.copyMessage(rq);
    ack.headers["max-forwards"] = maxForwards - 1;
    ack.headers.via.unshift({ params: { branch: sip.generateBranch() } });
    stack.send(ack);
    return;
  }
  if (method === "CANCEL") {
    stack.send(response(rq, 481, "Call/Transaction Does Not Exist", false));
    return;
  }
  if (maxForwards <= 0) {
    stack.send(response(rq, 483, "Too Many Hops", false));
    return;
  }
  const fwd = sip.copyMessage(rq);
  fwd.headers["max-forwards"] = maxForwards - 1;
  stack.send(fwd, (rs: SipAny) => {
    if (rs.status === 100) return; // hop by hop
    rs.headers.via.shift();
    stack.send(rs);
  });
}

(dgram as { createSocket: typeof dgram.createSocket }).createSocket = createSocket;

process.stdout.write(`ready udp:${HOST}:${port} (npm sip, mode ${mode}, pid ${process.pid})\n`);

const stop = () => {
  stack.destroy();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
