/**
 * Prometheus metrics (prom-client) on GET /metrics. The tm counters are read
 * from `engine.snapshot()` at scrape time (one object copy per scrape, nothing
 * on the SIP path); the two histograms are fed by engine observers. With the
 * sharded engine the counters are its merged `stats()`, read once per scrape
 * (one control call per shard), with each shard's queue depth and live
 * transactions; the histograms stay empty there (their observers would run in
 * the shards).
 */
import type { Engine, Observers, StatsSnapshot, Transaction } from "@siptm/core";
import type { EngineStats } from "@siptm/workers";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

const GAUGES = new Set(["current", "waiting"]);
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
  private readonly txDuration: Histogram<"kind">;
  private readonly firstResponse: Histogram<"method">;
  private readonly answered = new WeakSet<Transaction>();
  private readonly engine: Engine | undefined;
  private readonly sharded: ShardedStatsSource | undefined;
  /** The sharded engine's stats of the scrape in progress. */
  private last: EngineStats | undefined;

  constructor(source: Engine | ShardedStatsSource, opts: MetricsOptions = {}) {
    const registers = [this.registry];
    const engine = "initial" in source ? undefined : source;
    const sharded = "initial" in source ? source : undefined;
    this.engine = engine;
    this.sharded = sharded;
    if (sharded) this.last = sharded.initial;
    const snap = (): StatsSnapshot => (engine ? engine.snapshot() : this.last!);
    const sample = snap();
    for (const key of Object.keys(sample).filter((k) => !NOT_TM.has(k)) as Array<keyof StatsSnapshot>) {
      if (CLASSES.includes(key as (typeof CLASSES)[number])) continue;
      if (GAUGES.has(key)) {
        new Gauge({
          name: `siptm_tm_${key}`,
          help:
            key === "current" ? "live transactions (tm.stats current)" : "transactions in a waiting state",
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
    new Gauge({
      name: "siptm_shard_queue_depth",
      help: "messages handed to a shard and not yet processed (0 in one thread)",
      labelNames: ["shard"],
      registers,
      collect() {
        const list = shardList();
        if (list) for (const s of list) this.set({ shard: String(s.shard) }, s.inFlight);
        else for (let i = 0; i < shards; i++) this.set({ shard: String(i) }, 0);
      },
    });
    new Gauge({
      name: "siptm_shard_transactions",
      help: "live transactions per shard",
      labelNames: ["shard"],
      registers,
      collect() {
        const list = shardList();
        if (list) for (const s of list) this.set({ shard: String(s.shard) }, s.current);
        else this.set({ shard: "0" }, engine!.table.size);
      },
    });
    this.txDuration = new Histogram({
      name: "siptm_tm_transaction_duration_seconds",
      help: "life of a transaction, creation to free (waiting states included)",
      labelNames: ["kind"],
      buckets: [0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 32, 64, 180],
      registers,
    });
    this.firstResponse = new Histogram({
      name: "siptm_tm_client_first_response_seconds",
      help: "client transactions: time from the request to the first response",
      labelNames: ["method"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 32],
      registers,
    });
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: "siptm_" });
    if (engine) this.observe(engine.observers);
  }

  private observe(observers: Observers): void {
    const prevDestroyed = observers.destroyed;
    observers.destroyed = (tx) => {
      this.txDuration.observe({ kind: tx.kind }, (this.engine!.now() - tx.createdAt) / 1000);
      this.answered.delete(tx);
      if (prevDestroyed) prevDestroyed(tx);
    };
    const prevResponseIn = observers.responseIn;
    observers.responseIn = (tx, res) => {
      if (!this.answered.has(tx)) {
        this.answered.add(tx);
        this.firstResponse.observe(
          { method: tx.method === "INVITE" ? "INVITE" : "other" },
          (this.engine!.now() - tx.createdAt) / 1000,
        );
      }
      if (prevResponseIn) prevResponseIn(tx, res);
    };
  }

  async render(): Promise<{ contentType: string; body: string }> {
    if (this.sharded) this.last = await this.sharded.stats();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
