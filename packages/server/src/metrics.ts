/**
 * Prometheus metrics (prom-client) on GET /metrics. The tm counters are read
 * from `engine.snapshot()` at scrape time (one object copy per scrape, nothing
 * on the SIP path); the two histograms are fed by engine observers into plain
 * bucket counts (histograms.ts). With the sharded engine the counters are its
 * merged `stats()`, read once per scrape (one control call per shard), with
 * each shard's queue depth and live transactions; the histogram observers run
 * in the shards (on each shard's engine, installed by shard-route.ts), and each
 * scrape fetches every shard's bucket counts over the control plane
 * (`ShardedEngine.routeCall`, one call per shard) and adds them up here — never
 * a message per observation across threads.
 */
import type { Engine, StatsSnapshot } from "@siptm/core";
import { internals } from "@siptm/core/internal";
import type { EngineStats } from "@siptm/workers";
import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from "prom-client";
import {
  DURATION_BUCKETS,
  FIRST_RESPONSE_BUCKETS,
  type HistogramData,
  ShardHistogramMerge,
  type TxHistogramData,
  TxHistograms,
} from "./histograms.js";

const GAUGES = new Set([
  "current",
  "waiting",
  "settled",
  "tcp_connections",
  "tls_connections",
  "ws_connections",
]);
const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"] as const;

/** Prometheus names of the other counters of tm.stats (key → name, help). */
const COUNTER_NAMES: Record<string, [string, string]> = {
  total: ["siptm_tm_transactions_total", "transactions started (tm.stats total)"],
  total_local: ["siptm_tm_transactions_local_total", "transactions started locally (tm.stats total_local)"],
  created: ["siptm_tm_created_total", "transaction actors created"],
  freed: ["siptm_tm_freed_total", "transaction actors freed"],
  rpl_received: ["siptm_tm_replies_received_total", "responses received"],
  rpl_generated: ["siptm_tm_replies_generated_total", "responses generated locally"],
  rpl_sent: ["siptm_tm_replies_sent_total", "responses sent"],
  retransmissions: ["siptm_tm_retransmissions_total", "retransmissions sent"],
  table_full: [
    "siptm_tm_table_full_total",
    "new requests answered 503 at the live-transaction cap (--max-transactions, whole server)",
  ],
  rate_limited: [
    "siptm_tm_rate_limited_total",
    "new requests dropped by the per-source rate limit (--rate-limit), before any shard",
  ],
  rate_sources_evicted: [
    "siptm_tm_rate_sources_evicted_total",
    "sources the rate limit forgot to stay within --rate-sources",
  ],
  // The TCP transport's limits (packages/server/README.md, "TCP limits").
  tcp_conn_rejected: ["siptm_tcp_conn_rejected_total", "inbound TCP connections closed at once: total cap"],
  tcp_conn_rejected_ip: [
    "siptm_tcp_conn_rejected_ip_total",
    "inbound TCP connections closed at once: per-IP cap",
  ],
  tcp_pings: ["siptm_tcp_pings_total", "RFC 5626 keep-alive pings received"],
  tcp_pongs_suppressed: [
    "siptm_tcp_pongs_suppressed_total",
    "pings not answered (a pong pending or unsent bytes)",
  ],
  tcp_ping_flood_closed: [
    "siptm_tcp_ping_flood_closed_total",
    "TCP connections closed for pinging beyond --tcp-max-pings",
  ],
  tcp_backlog_closed: [
    "siptm_tcp_backlog_closed_total",
    "TCP connections closed because the peer did not read (write queue full)",
  ],
  tcp_msg_timeout_closed: [
    "siptm_tcp_msg_timeout_closed_total",
    "TCP connections closed for a message not complete within --tcp-msg-timeout",
  ],
  tcp_send_errors: ["siptm_tcp_send_errors_total", "TCP sends that failed"],
  tls_handshake_failed: [
    "siptm_tls_handshake_failed_total",
    "TLS handshakes that failed (bad certificate, not TLS, protocol error)",
  ],
  tls_handshake_timeout: [
    "siptm_tls_handshake_timeout_total",
    "TLS handshakes not done within --tls-handshake-timeout",
  ],
  tls_verify_failed: [
    "siptm_tls_verify_failed_total",
    "outbound TLS connections refused: the peer's certificate did not verify (chain, RFC 5922 name, pin)",
  ],
  ws_handshake_rejected: [
    "siptm_ws_handshake_rejected_total",
    "WebSocket upgrades refused (no sip subprotocol, not a WebSocket handshake, over a cap)",
  ],
  ws_handshake_timeout: [
    "siptm_ws_handshake_timeout_total",
    "connections whose WebSocket handshake was not done in time",
  ],
  ws_message_too_big: [
    "siptm_ws_message_too_big_total",
    "WebSocket messages over --ws-max-message (connection closed with 1009)",
  ],
  ws_dead_closed: ["siptm_ws_dead_closed_total", "WebSocket peers closed for not answering a ping"],
};

const GAUGE_HELP: Record<string, [string, string]> = {
  current: ["siptm_tm_current", "live transactions (tm.stats current)"],
  waiting: ["siptm_tm_waiting", "transactions in a waiting state"],
  settled: [
    "siptm_tm_settled",
    "transactions only absorbing retransmissions until a timer ends them (hold no drain)",
  ],
  tcp_connections: ["siptm_tcp_connections", "TCP connections open (inbound and outbound)"],
  tls_connections: ["siptm_tls_connections", "TLS connections open (inbound and outbound)"],
  ws_connections: ["siptm_ws_connections", "WebSocket connections open (WS and WSS)"],
};

export interface MetricsOptions {
  /** Node process metrics (CPU, memory, event loop lag). Default true. */
  processMetrics?: boolean;
  /** Shards of the engine (1 until the sharded engine). */
  shards?: number;
}

/** The sharded engine's stats: read at each scrape; `initial` gives the counter names. */
export interface ShardedStatsSource {
  stats(): Promise<EngineStats>;
  initial: EngineStats;
  /** Each shard's histogram counts (histograms.ts `ShardHistograms`, one entry per shard), read at each scrape. */
  histograms?(): Promise<readonly unknown[]>;
}

/** Keys of EngineStats that are not per-engine counters (the coordinator's own, and the shard list). */
const NOT_TM = new Set([
  "shards",
  "lost",
  "restarts",
  "overload_rejected",
  "overload_dropped",
  "overload_passed",
  "in_messages",
  "out_messages",
  "in_batches",
  "out_batches",
]);

export class Metrics {
  readonly registry = new Registry();
  private readonly sharded: ShardedStatsSource | undefined;
  /** One thread: the engine's histograms. */
  private readonly local: TxHistograms | undefined;
  /** Sharded: the shards' histograms, merged. */
  private readonly merged = new ShardHistogramMerge();
  /** The sharded engine's stats of the scrape in progress. */
  private last: EngineStats | undefined;
  /** The histogram counts of the scrape in progress (read once for both histograms). */
  private scrape: TxHistogramData | undefined;

  constructor(source: Engine | ShardedStatsSource, opts: MetricsOptions = {}) {
    const registers = [this.registry];
    const engine = "initial" in source ? undefined : source;
    const sharded = "initial" in source ? source : undefined;
    this.sharded = sharded;
    if (sharded) this.last = sharded.initial;
    const snap = (): StatsSnapshot => (engine ? engine.snapshot() : this.last!);
    const sample = snap();
    for (const key of Object.keys(sample).filter((k) => !NOT_TM.has(k)) as Array<keyof StatsSnapshot>) {
      if (CLASSES.includes(key as (typeof CLASSES)[number])) continue;
      if (GAUGES.has(key)) {
        const [name, help] = GAUGE_HELP[key]!;
        new Gauge({
          name,
          help,
          registers,
          collect() {
            this.set(snap()[key]);
          },
        });
        continue;
      }
      const [name, help] = COUNTER_NAMES[key] ?? [`siptm_tm_${key}_total`, `tm.stats ${key}`];
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(snap()[key]);
        },
      });
    }
    new Counter({
      name: "siptm_tm_final_replies_total",
      help: "final responses by class (tm.stats 1xx..6xx)",
      labelNames: ["class"],
      registers,
      collect() {
        const s = snap();
        this.reset();
        for (const c of CLASSES) this.inc({ class: c }, s[c]);
      },
    });
    const shards = opts.shards ?? 1;
    const shardList = () => (engine ? undefined : this.last!.shards);
    type Shard = EngineStats["shards"][number];
    type SetShard = (shard: number, value: number) => void;
    /** A gauge per shard: `of` each shard's stats with shards, `alone` in one thread. */
    const shardGauge = (
      name: string,
      help: string,
      of: (s: Shard) => number,
      alone: (set: SetShard) => void,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ["shard"],
        registers,
        collect() {
          const set: SetShard = (shard, value) => this.set({ shard: String(shard) }, value);
          const list = shardList();
          if (list) for (const s of list) set(s.shard, of(s));
          else alone(set);
        },
      });
    shardGauge(
      "siptm_shard_queue_depth",
      "messages handed to a shard and not yet processed (0 in one thread)",
      (s) => s.inFlight,
      (set) => {
        for (let i = 0; i < shards; i++) set(i, 0);
      },
    );
    shardGauge(
      "siptm_shard_transactions",
      "live transactions per shard",
      (s) => s.current,
      (set) => set(0, internals(engine!).table.size),
    );
    this.local = engine ? new TxHistograms(engine) : undefined;
    const data = () => this.histogramData();
    this.registry.registerMetric(
      histogramMetric(
        "siptm_tm_transaction_duration_seconds",
        "life of a transaction, creation to free (waiting states included)",
        "kind",
        DURATION_BUCKETS,
        () => data().duration,
      ),
    );
    this.registry.registerMetric(
      histogramMetric(
        "siptm_tm_client_first_response_seconds",
        "client transactions: time from the request to the first response",
        "method",
        FIRST_RESPONSE_BUCKETS,
        () => data().firstResponse,
      ),
    );
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: "siptm_" });
  }

  private histogramData(): TxHistogramData {
    if (!this.scrape) this.scrape = this.local ? this.local.data : this.merged.total();
    return this.scrape;
  }

  async render(): Promise<{ contentType: string; body: string }> {
    if (this.sharded) {
      const [stats, shards] = await Promise.all([
        this.sharded.stats(),
        // A failed read leaves the last counts in place: the scrape still answers.
        this.sharded.histograms?.().catch(() => undefined),
      ]);
      this.last = stats;
      if (shards) this.merged.update(shards);
    }
    this.scrape = undefined;
    try {
      return { contentType: this.registry.contentType, body: await this.registry.metrics() };
    } finally {
      this.scrape = undefined;
    }
  }
}

/**
 * A Prometheus histogram rendered from plain bucket counts, in prom-client's
 * own text layout (`_bucket{le,…}` cumulative, `+Inf`, `_sum`, `_count`).
 * prom-client's `Histogram` cannot be set from counts kept elsewhere (it only
 * observes), so this is a collector object of the shape the registry reads —
 * name, help, type and `get()` — as prom-client's own AggregatorRegistry
 * registers for merged cluster metrics.
 */
function histogramMetric(
  name: string,
  help: string,
  labelName: string,
  bounds: readonly number[],
  read: () => HistogramData,
): Metric {
  const type = "histogram";
  const get = async () => {
    const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
    for (const [label, s] of Object.entries(read())) {
      let acc = 0;
      bounds.forEach((le, i) => {
        acc += s.counts[i] ?? 0;
        values.push({ metricName: `${name}_bucket`, labels: { le, [labelName]: label }, value: acc });
      });
      values.push({
        metricName: `${name}_bucket`,
        labels: { le: "+Inf", [labelName]: label },
        value: s.count,
      });
      values.push({ metricName: `${name}_sum`, labels: { [labelName]: label }, value: s.sum });
      values.push({ metricName: `${name}_count`, labels: { [labelName]: label }, value: s.count });
    }
    return { name, help, type, aggregator: "sum", values };
  };
  const reset = () => {};
  return { name, help, type, aggregator: "sum", get, reset } as unknown as Metric;
}
