/** What a person sees on stdout: the start-up banner and the live counter line. */

import type { StatsSnapshot, TimerConfig } from "@siptm/core";
import type { ServerConfig } from "./config.js";
import { DEFAULT_MAX_TRANSACTIONS, hostPort } from "./config.js";
import { MAX_BODY_BYTES, MAX_CONNECTIONS, REQUEST_TIMEOUT_MS } from "./http.js";
import { DEFAULT_RPC_LIMITS } from "./rpc.js";
import type { ServerInfo } from "./server.js";

export function banner(info: ServerInfo, config: ServerConfig, t: TimerConfig): string {
  const lines = [
    `siptm ${info.version} (@siptm/core ${info.coreVersion}, node ${process.version}, pid ${process.pid})`,
  ];
  for (const s of info.sockets)
    lines.push(`  listen:   ${s.protocol.toLowerCase()} ${hostPort(s.address, s.port)}`);
  if (info.control) {
    const base = `http://${hostPort(info.control.host, info.control.port)}`;
    lines.push(
      `  control:  ${base}/rpc  metrics ${base}/metrics  (token ${config.rpcToken !== undefined ? "required" : "off: loopback only"})`,
    );
    const c = config.control;
    lines.push(
      `            Host loopback${c.hosts.length > 0 ? ` or ${c.hosts.join(", ")}` : ""}; batch <= ${c.maxBatch ?? DEFAULT_RPC_LIMITS.maxBatch}, answer <= ${c.maxResponseBytes ?? DEFAULT_RPC_LIMITS.maxResponseBytes} B, page <= ${c.maxPage ?? DEFAULT_RPC_LIMITS.maxPage}, body <= ${c.maxBodyBytes ?? MAX_BODY_BYTES} B, ${c.maxConnections ?? MAX_CONNECTIONS} connections, request timeout ${c.requestTimeoutMs ?? REQUEST_TIMEOUT_MS} ms`,
    );
  } else lines.push("  control:  off");
  lines.push(
    `  route:    ${info.routeDescription ?? info.route}${info.route.includes("/") ? ` (${info.route})` : ""}`,
  );
  const w = info.workers;
  lines.push(
    w.shards > 0
      ? `  workers:  ${w.shards} shard${w.shards === 1 ? "" : "s"} (worker threads; SIP sockets on the main thread)`
      : w.note
        ? `  workers:  ${w.requested} requested; ${w.note}`
        : `  workers:  1 thread${w.requested === 0 ? " (--workers 0)" : ""}`,
  );
  lines.push(
    `  timers:   t1=${t.t1} t2=${t.t2} t4=${t.t4} timer_d=${t.timerD} fr_inv=${t.frInvTimer}${
      config.proxy.frTimer !== undefined ? ` fr=${config.proxy.frTimer}` : ""
    }${config.proxy.timerC !== undefined ? ` timer_c=${config.proxy.timerC}` : ""} ms`,
  );
  const cap = config.maxTransactions ?? DEFAULT_MAX_TRANSACTIONS;
  const rl = config.rateLimit;
  lines.push(
    `  limits:   ${cap} transactions${w.shards > 0 ? " (all shards together)" : ""}, ${
      rl ? `${rl.rate} new requests/s per source IP (burst ${rl.burst})` : "no rate limit"
    }`,
  );
  if (w.shards > 0)
    lines.push(
      `  hashing:  Call-ID → shard keyed ${config.secret ? "by --secret" : "at random (this process only)"}`,
    );
  const quiet = ["fatal", "error", "warn", "silent"].includes(config.logLevel);
  const level = config.trace && quiet ? "info (raised by --trace)" : config.logLevel;
  lines.push(
    `  logs:     ${config.trace ? "every SIP message in and out, " : ""}level ${level}, JSON on stderr`,
  );
  if (!config.advertise && info.sockets.some((s) => s.address === "0.0.0.0" || s.address === "::"))
    lines.push(
      "  warning:  listening on a wildcard address without --advertise: Via and Contact will carry it",
    );
  lines.push("ready (Ctrl-C to stop)");
  return `${lines.join("\n")}\n`;
}

/**
 * Every `seconds`, one line of live counters (transactions/s, current, waiting, retransmissions,
 * 4xx/5xx/6xx), and `workers: N shards` when sharded.
 */
export function startStatusLine(
  stats: () => StatsSnapshot | Promise<StatsSnapshot>,
  seconds: number,
  write: (line: string) => void,
  shards = 0,
): () => void {
  let last: StatsSnapshot | undefined;
  let lastAt = Date.now();
  let busy = false;
  const suffix = shards > 0 ? `  workers: ${shards} shard${shards === 1 ? "" : "s"}` : "";
  void Promise.resolve(stats()).then((s) => {
    last ??= s;
  });
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    let s: StatsSnapshot;
    try {
      s = await stats();
    } catch {
      return;
    } finally {
      busy = false;
    }
    const now = Date.now();
    if (!last) {
      last = s;
      lastAt = now;
      return;
    }
    const rate = ((s.total - last.total) * 1000) / Math.max(1, now - lastAt);
    write(
      `[${new Date(now).toISOString().slice(11, 19)}] tx/s ${rate.toFixed(1)}  current ${s.current}  waiting ${s.waiting}  retrans ${s.retransmissions}  4xx ${s["4xx"]}  5xx ${s["5xx"]}  6xx ${s["6xx"]}${suffix}\n`,
    );
    last = s;
    lastAt = now;
  }, seconds * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
