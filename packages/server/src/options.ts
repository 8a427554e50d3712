/**
 * The command-line surface in one table: what `parseArgs` accepts, what a
 * `--config` file may hold and what `siptm --help` prints all come from here,
 * so the three cannot drift apart.
 */

export interface OptionSpec {
  /** Long flag name without the dashes ("timer-d"); the config-file key too (or its camelCase form). */
  readonly name: string;
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
  /** Placeholder shown in help ("MS", "HOST:PORT"). */
  readonly arg?: string;
  readonly help: string;
  /** Not accepted in a config file (--config, --help). */
  readonly cliOnly?: boolean;
}

// One row per flag, alike on purpose (the table is the flags' one definition: parseArgs, --config, help).
export const SERVE_OPTIONS: readonly OptionSpec[] = [
  {
    name: "listen",
    type: "string",
    multiple: true,
    short: "l",
    arg: "[PROTO:]HOST:PORT",
    help: "SIP socket: PROTO:HOST:PORT with PROTO udp, tcp, tls, ws or wss (tls and wss need --tls-cert and --tls-key), IPv6 as udp:[::1]:5060; no PROTO = udp and tcp. Repeatable. Default udp+tcp 127.0.0.1:5060",
  },
  {
    name: "tls-cert",
    type: "string",
    arg: "FILE",
    help: "TLS and WSS listeners, outbound TLS: our certificate chain (PEM); reloaded on SIGHUP, live connections kept",
  },
  {
    name: "tls-key",
    type: "string",
    arg: "FILE",
    help: "the private key of --tls-cert (PEM); reloaded on SIGHUP",
  },
  {
    name: "tls-ca",
    type: "string",
    arg: "FILE",
    help: "CAs that peer certificates must chain to (PEM; default: the system's roots as Node ships them); reloaded on SIGHUP",
  },
  {
    name: "tls-client-cert",
    type: "string",
    arg: "required|optional|off",
    help: "ask TLS/WSS clients for a certificate (required: none or an untrusted one fails the handshake). Default off",
  },
  {
    name: "tls-verify",
    type: "string",
    arg: "on|off",
    help: "outbound TLS: check the peer's certificate chain and SIP domain (RFC 5922). off is for labs only. Default on",
  },
  {
    name: "tls-pin",
    type: "string",
    multiple: true,
    arg: "SHA256",
    help: "outbound TLS: accept a peer certificate with this SHA-256 fingerprint whatever its chain and name. Repeatable",
  },
  {
    name: "tls-handshake-timeout",
    type: "string",
    arg: "MS",
    help: "a TLS handshake not done after this is abandoned, counted (default 10000)",
  },
  {
    name: "ws-trusted-proxy",
    type: "string",
    multiple: true,
    arg: "CIDR",
    help: "a reverse proxy in front of the WS/WSS listeners whose X-Forwarded-For is believed (otherwise ignored). Repeatable",
  },
  {
    name: "ws-max-message",
    type: "string",
    arg: "BYTES",
    help: "largest WebSocket message; a larger one closes the connection with 1009 (default 65535)",
  },
  {
    name: "ws-ping-interval",
    type: "string",
    arg: "MS",
    help: "WebSocket ping to a connection idle this long (default 30000; 0 = off)",
  },
  {
    name: "ws-pong-timeout",
    type: "string",
    arg: "MS",
    help: "a WebSocket peer that has not answered a ping within this is closed as dead (default 10000)",
  },
  {
    name: "rpc",
    type: "string",
    arg: "HOST:PORT|off",
    help: "control HTTP server (JSON-RPC on POST /rpc, Prometheus on GET /metrics). Default 127.0.0.1:5080",
  },
  {
    name: "rpc-token",
    type: "string",
    arg: "TOKEN",
    help: "require 'Authorization: Bearer TOKEN' on every control request (env SIPTM_RPC_TOKEN); mandatory off loopback",
  },
  {
    name: "rpc-host",
    type: "string",
    multiple: true,
    arg: "NAME",
    help: "a Host the control server answers to besides loopback and its own address (others get 421: DNS rebinding). Repeatable",
  },
  {
    name: "rpc-request-timeout",
    type: "string",
    arg: "MS",
    help: "time to receive a whole control request, headers and body (default 10000; not the wait of tm.t_uac_wait)",
  },
  {
    name: "rpc-max-connections",
    type: "string",
    arg: "N",
    help: "open control connections at most; more are closed at once (default 64)",
  },
  {
    name: "rpc-max-body",
    type: "string",
    arg: "BYTES",
    help: "control request body at most (default 65536; 413)",
  },
  {
    name: "rpc-max-batch",
    type: "string",
    arg: "N",
    help: "calls in one JSON-RPC batch at most (default 16); they run one after another",
  },
  {
    name: "rpc-max-response",
    type: "string",
    arg: "BYTES",
    help: "control answer at most, a batch's included (default 4194304); past it a call gets -32011 (page tm.list / ul.dump)",
  },
  {
    name: "rpc-max-page",
    type: "string",
    arg: "N",
    help: "largest limit of a paged tm.list / ul.dump, and the page unpaged ones are built in (default 1000)",
  },
  {
    name: "workers",
    type: "string",
    short: "w",
    arg: "N",
    help: "shards (worker threads) to spread transactions across by Call-ID (default: CPU count; 0 = one thread)",
  },
  {
    name: "route",
    type: "string",
    short: "r",
    arg: "NAME|PATH",
    help: "request routing: built-in 'default' (proxy + registrar) or 'uas' (answers everything), or a module path (./my-route.js). Default 'default'",
  },
  { name: "t1", type: "string", arg: "MS", help: "RFC 3261 T1, RTT estimate (default 500)" },
  { name: "t2", type: "string", arg: "MS", help: "RFC 3261 T2, longest retransmit interval (default 4000)" },
  {
    name: "t4",
    type: "string",
    arg: "MS",
    help: "RFC 3261 T4, message lifetime in the network (default 5000)",
  },
  {
    name: "timer-d",
    type: "string",
    arg: "MS",
    help: "Timer D, INVITE client wait for response retransmissions (default 32000)",
  },
  {
    name: "fr-timer",
    type: "string",
    arg: "MS",
    help: "proxy: wait for any response on a branch (Kamailio fr_timer; default 64·T1)",
  },
  {
    name: "fr-inv-timer",
    type: "string",
    arg: "MS",
    help: "INVITE final response wait after a provisional (Kamailio fr_inv_timer): local INVITEs (default 120000) and, unless --timer-c is given, proxied ones",
  },
  {
    name: "timer-c",
    type: "string",
    arg: "MS",
    help: "proxy: RFC 3261 Timer C of INVITE branches, restarted by each provisional (default 180000)",
  },
  {
    name: "max-transactions",
    type: "string",
    arg: "N",
    help: "live transaction cap of the whole server; past it new requests get 503 + Retry-After (default 1000000). With --workers N the main thread counts every shard's transactions against it",
  },
  {
    name: "rate-limit",
    type: "string",
    arg: "N[/s]",
    help: "new requests per second from one source IP (token bucket; ACK, CANCEL and responses not counted); over it they are dropped silently, counted in rate_limited. Default 1000; 0 = off",
  },
  {
    name: "rate-burst",
    type: "string",
    arg: "N",
    help: "requests one source IP may send at once above --rate-limit (the bucket's size; default 2 × the rate)",
  },
  {
    name: "rate-sources",
    type: "string",
    arg: "N",
    help: "source IPs the rate limit remembers; past it the oldest is forgotten (default 65536)",
  },
  {
    name: "secret",
    type: "string",
    arg: "TEXT",
    help: "shared secret of a cluster's nodes, 16+ characters (env SIPTM_SECRET; prefer it or the config file to the command line): keys derived from it make every node hash a Call-ID to the same shard. Default: a random key per process",
  },
  {
    name: "tcp-max-connections",
    type: "string",
    arg: "N",
    help: "TCP connections at most, inbound and outbound; more inbound ones are closed at once (default 4096, at most the open-file limit minus 256)",
  },
  {
    name: "tcp-max-per-ip",
    type: "string",
    arg: "N",
    help: "inbound TCP connections at most from one IP address (default 64; 0 = no cap)",
  },
  {
    name: "tcp-msg-timeout",
    type: "string",
    arg: "MS",
    help: "close a TCP connection whose message is not complete this long after its first byte (default 20000; 0 = off)",
  },
  {
    name: "tcp-max-pings",
    type: "string",
    arg: "N",
    help: "RFC 5626 keep-alive pings a TCP connection may send per 10 s; one more closes it (default 20; 0 = no cap)",
  },
  {
    name: "min-expires",
    type: "string",
    arg: "S",
    help: "route default, registrar: shortest registration accepted; shorter gets 423 with Min-Expires (RFC 3261 §10.3; default 60, 0 = none)",
  },
  {
    name: "answer-code",
    type: "string",
    arg: "CODE",
    help: "route uas: final status for INVITE (default 200)",
  },
  {
    name: "answer-after",
    type: "string",
    arg: "MS|never",
    help: "route uas: ring this long before the final response (default 0; 'never' rings until cancelled)",
  },
  {
    name: "record-route",
    type: "string",
    arg: "on|off",
    help: "route default: insert Record-Route in relayed dialog-creating requests, to stay in the dialog (default on)",
  },
  {
    name: "users",
    type: "string",
    arg: "FILE",
    help: "route default: digest authentication (RFC 3261 §22) against this users file, one user:realm:HA1[:HA1-SHA-256] a line (htdigest's format); reloaded on SIGHUP",
  },
  {
    name: "realm",
    type: "string",
    arg: "REALM",
    help: "route default: the realm of the digest challenges (default: --advertise, else the first listen address)",
  },
  {
    name: "domain",
    type: "string",
    multiple: true,
    arg: "NAME",
    help: "route default: a SIP domain we serve (its AORs register here, its users are ours; also an --alias). Repeatable",
  },
  {
    name: "trusted",
    type: "string",
    multiple: true,
    arg: "CIDR",
    help: "route default: peers (a carrier, an upstream proxy) whose requests skip authentication and relay checks. Repeatable",
  },
  {
    name: "open",
    type: "boolean",
    help: "route default: no authentication and no relay checks at all (an open registrar and relay: labs only). Needed off loopback without --users",
  },
  {
    name: "alias",
    type: "string",
    multiple: true,
    arg: "HOST",
    help: "another name of this server (a domain it serves, Kamailio alias): Request-URIs and Routes with it are ours. Repeatable",
  },
  {
    name: "advertise",
    type: "string",
    arg: "HOST",
    help: "host to put in Via/Contact/Record-Route instead of the socket address (when listening on 0.0.0.0)",
  },
  {
    name: "log-level",
    type: "string",
    arg: "LEVEL",
    help: "fatal|error|warn|info|debug|trace|silent, JSON lines on stderr (default warn)",
  },
  {
    name: "trace",
    type: "boolean",
    help: "log every SIP message in and out at info level (with --workers N, logged by the shard that handles it, with its number)",
  },
  {
    name: "status-interval",
    type: "string",
    arg: "S",
    help: "seconds between live counter lines when stdout is a terminal (default 5; 0 = off)",
  },
  {
    name: "drain-timeout",
    type: "string",
    arg: "MS",
    help: "on SIGINT/SIGTERM, longest wait for live transactions to end (default 5000)",
  },
  {
    name: "config",
    type: "string",
    short: "c",
    arg: "FILE",
    help: "JSON file of these options; flags override it",
    cliOnly: true,
  },
  { name: "help", type: "boolean", short: "h", help: "show this help", cliOnly: true },
];

// Entries of the same form as SERVE_OPTIONS' on purpose: one table row per flag. The rpc client's
// --rpc, --config and --help are its own (their help says what they mean for the client).
export const RPC_CLIENT_OPTIONS: readonly OptionSpec[] = [
  {
    name: "rpc",
    type: "string",
    arg: "HOST:PORT",
    help: "the server's control address (env SIPTM_RPC; default 127.0.0.1:5080)",
  },
  { name: "rpc-token", type: "string", arg: "TOKEN", help: "bearer token (env SIPTM_RPC_TOKEN)" },
  {
    name: "config",
    type: "string",
    short: "c",
    arg: "FILE",
    help: "the server's JSON config file: its rpc and rpc-token are used unless given here (flags, then the file, then the environment)",
  },
  { name: "timeout", type: "string", arg: "MS", help: "give up after this long (default: wait)" },
  { name: "help", type: "boolean", short: "h", help: "show this help" },
];

/** The `options` argument of node:util parseArgs. */
export function parseArgsOptions(
  specs: readonly OptionSpec[],
): Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> {
  const out: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const s of specs) {
    out[s.name] = { type: s.type };
    if (s.multiple) out[s.name]!.multiple = true;
    if (s.short) out[s.name]!.short = s.short;
  }
  return out;
}

function optionLines(specs: readonly OptionSpec[]): string {
  const heads = specs.map((s) => {
    const flag = `${s.short ? `-${s.short}, ` : "    "}--${s.name}${s.arg ? ` ${s.arg}` : ""}`;
    return flag;
  });
  const width = Math.max(...heads.map((h) => h.length)) + 2;
  return specs.map((s, i) => `  ${heads[i]!.padEnd(width)}${s.help}`).join("\n");
}

export const RPC_METHOD_SUMMARY: ReadonlyArray<readonly [string, string]> = [
  ["tm.t_uac_start METHOD RURI NEXTHOP SOCKET HEADERS [BODY]", "send a request; → {callid, cseq, tid}"],
  [
    "tm.t_uac_wait METHOD RURI NEXTHOP SOCKET HEADERS [BODY]",
    "send and wait; → {code, reason, headers, body}",
  ],
  ["tm.cancel CALLID CSEQ", "cancel a local INVITE; → {result: sent|pending|none}"],
  ["tm.reply CODE REASON TID TO_TAG HEADERS [BODY]", "answer a pending server transaction by id"],
  ["tm.reply_callid CODE REASON CALLID CSEQ TO_TAG HEADERS [BODY]", "answer one by Call-ID and CSeq"],
  ["tm.list [LIMIT [CURSOR]]", "live transactions (one page with LIMIT/CURSOR → {items, next})"],
  ["tm.stats", "transaction counters (+ per shard)"],
  ["tm.hash_stats", "transaction table occupancy"],
  ["ul.dump [LIMIT [CURSOR]]", "registrar bindings (one page with LIMIT/CURSOR → {items, next})"],
  ["ul.lookup AOR", "bindings of one address-of-record"],
  ["core.uptime", "uptime in seconds"],
  ["core.version", "versions"],
  ["system.listMethods", "method names"],
  ["system.methodHelp METHOD", "one method's parameters"],
];

export function mainHelp(): string {
  return `siptm — a SIP transaction server (RFC 3261 transaction layer, Kamailio tm semantics)

Usage:
  siptm serve [OPTIONS]                 run the server (the default command of npm start)
  siptm rpc [OPTIONS] METHOD [ARGS...]  call a control method, print the JSON result (exit 1 on error)
  siptm help [serve|rpc]                this help, or one command's
  siptm version                         print the version (also --version, -V)

siptm serve options:
${optionLines(SERVE_OPTIONS)}

siptm rpc options:
${optionLines(RPC_CLIENT_OPTIONS)}
  OPTIONS come before METHOD: every argument after METHOD (or after --) is an ARG as
  typed, even one that starts with "-" (a Call-ID may). In ARGS, "." or "" means
  "none" (no next hop, default socket, no To tag), and the two-character sequences
  \\r\\n and \\n are sent as line breaks (for HEADERS).

Control methods (JSON-RPC 2.0 over HTTP POST /rpc; positional or named params):
${RPC_METHOD_SUMMARY.map(([m, h]) => `  ${m.padEnd(62)}${h}`).join("\n")}

Routes: 'default' = stateful proxy with an in-memory registrar; 'uas' = answers every
request itself (INVITE: 180 then --answer-code after --answer-after). A module path
loads a custom route: export default function route(ctx) { return { onRequest(tx) {...} } }.

Examples:
  siptm serve --route uas --listen udp:127.0.0.1:5060
  siptm serve --listen udp:[::1]:5060 --rpc 127.0.0.1:5080 --log-level info --trace
  siptm rpc tm.stats
  siptm rpc tm.t_uac_start OPTIONS sip:127.0.0.1:5070 . . 'From: <sip:a@127.0.0.1>\\r\\nTo: <sip:b@127.0.0.1>'
`;
}

export function serveHelp(): string {
  return `Usage: siptm serve [OPTIONS]

${optionLines(SERVE_OPTIONS)}
`;
}

export function rpcHelp(): string {
  return `Usage: siptm rpc [OPTIONS] METHOD [ARGS...]

${optionLines(RPC_CLIENT_OPTIONS)}

Methods:
${RPC_METHOD_SUMMARY.map(([m, h]) => `  ${m.padEnd(62)}${h}`).join("\n")}
`;
}
