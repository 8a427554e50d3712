/**
 * The two transaction histograms of /metrics as plain bucket counts: the
 * transaction duration (creation to free) and the client transactions' time
 * to the first response. They are fed by observers on an engine — the one
 * engine in one thread, each shard's engine with --workers N (installed by
 * shard-route.ts) — and hold nothing but numbers, so a shard's counts cross
 * to the main thread as they are, over the control plane at scrape time
 * (`ShardedEngine.routeCall(SHARD_HISTOGRAMS)`), never per message.
 * metrics.ts renders them in the Prometheus histogram format.
 */
import type { Engine } from "@siptm/core";
import { internals, type Observers, type Transaction } from "@siptm/core/internal";

export const DURATION_BUCKETS: readonly number[] = [
  0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 32, 64, 180,
];
export const FIRST_RESPONSE_BUCKETS: readonly number[] = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 32,
];

/** The name of the control function each shard provides (shard-route.ts). */
export const SHARD_HISTOGRAMS = "siptm.histograms";

/** One label value's observations: a count per bucket (not cumulative; the last one is above every bound), sum, count. */
export interface Series {
  counts: number[];
  sum: number;
  count: number;
}

/** Label value → its series. Plain data (structured-cloneable). */
export type HistogramData = Record<string, Series>;

export interface TxHistogramData {
  /** By transaction kind (ist, nist, ict, nict). */
  duration: HistogramData;
  /** By method: INVITE or other. */
  firstResponse: HistogramData;
}

/** What a shard answers to SHARD_HISTOGRAMS. */
export interface ShardHistograms {
  incarnation: number;
  data: TxHistogramData;
}

export function emptyData(): TxHistogramData {
  return { duration: {}, firstResponse: {} };
}

function observeInto(data: HistogramData, bounds: readonly number[], label: string, value: number): void {
  let s = data[label];
  if (!s) {
    s = { counts: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 };
    data[label] = s;
  }
  // The first bucket whose upper bound holds the value (le: less than or equal), as Prometheus counts.
  let i = 0;
  while (i < bounds.length && value > bounds[i]!) i++;
  s.counts[i]!++;
  s.sum += value;
  s.count++;
}

function addInto(into: HistogramData, from: HistogramData): void {
  for (const [label, s] of Object.entries(from)) {
    const t = into[label];
    if (!t) {
      into[label] = { counts: [...s.counts], sum: s.sum, count: s.count };
      continue;
    }
    for (let i = 0; i < s.counts.length; i++) t.counts[i] = (t.counts[i] ?? 0) + (s.counts[i] ?? 0);
    t.sum += s.sum;
    t.count += s.count;
  }
}

export function addData(into: TxHistogramData, from: TxHistogramData): void {
  addInto(into.duration, from.duration);
  addInto(into.firstResponse, from.firstResponse);
}

/** The histograms of one engine, fed by its observers. */
export class TxHistograms {
  readonly data: TxHistogramData = emptyData();
  private readonly answered = new WeakSet<Transaction>();

  /** Install the observers on `engine` (chained with any already there). */
  constructor(engine: Engine) {
    const observers: Observers = internals(engine).observers;
    const prevDestroyed = observers.destroyed;
    observers.destroyed = (tx) => {
      observeInto(this.data.duration, DURATION_BUCKETS, tx.kind, (engine.now() - tx.createdAt) / 1000);
      this.answered.delete(tx);
      if (prevDestroyed) prevDestroyed(tx);
    };
    const prevResponseIn = observers.responseIn;
    observers.responseIn = (tx, res) => {
      if (!this.answered.has(tx)) {
        this.answered.add(tx);
        observeInto(
          this.data.firstResponse,
          FIRST_RESPONSE_BUCKETS,
          tx.method === "INVITE" ? "INVITE" : "other",
          (engine.now() - tx.createdAt) / 1000,
        );
      }
      if (prevResponseIn) prevResponseIn(tx, res);
    };
  }
}

function isShardHistograms(v: unknown): v is ShardHistograms {
  const o = v as Partial<ShardHistograms> | null | undefined;
  return (
    typeof o === "object" &&
    o !== null &&
    typeof o.incarnation === "number" &&
    typeof o.data === "object" &&
    o.data !== null
  );
}

/**
 * The shards' histograms merged on the main thread. A shard's counts restart
 * from zero with a new incarnation (a restarted thread): what the dead one had
 * told last is kept, so the merged counts never go down.
 */
export class ShardHistogramMerge {
  private readonly latest = new Map<number, ShardHistograms>();
  private readonly retired = emptyData();

  /** One scrape's answers, one per shard (`undefined`: the shard is not running; its last counts stay). */
  update(results: readonly unknown[]): void {
    results.forEach((r, shard) => {
      if (!isShardHistograms(r)) return;
      const prev = this.latest.get(shard);
      if (prev && prev.incarnation !== r.incarnation) addData(this.retired, prev.data);
      this.latest.set(shard, r);
    });
  }

  total(): TxHistogramData {
    const t = emptyData();
    addData(t, this.retired);
    for (const s of this.latest.values()) addData(t, s.data);
    return t;
  }
}
