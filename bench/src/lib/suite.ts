/**
 * A thin layer over tinybench shared by every benchmark entry point: a case
 * runs `batch` operations per timed call (a single parse takes about a
 * microsecond, close to the timer's own cost, so one sample per operation
 * would mostly measure the timer), optional untimed per-call preparation, and
 * results converted to operations per second.
 */
import { Bench } from "tinybench";

export interface BenchCase {
  /** Group the case belongs to (for the micro benchmark: the message name). */
  readonly group: string;
  /** What is measured, e.g. "parse (txn fields)". */
  readonly operation: string;
  /** Which implementation ("siptm", "sip"). */
  readonly impl: string;
  /** Bytes processed by one operation, for MB/s (0 when not meaningful). */
  readonly bytes: number;
  /** Operations performed by one call of `run`. */
  readonly batch: number;
  /** Timed: performs `batch` operations. */
  readonly run: () => void;
  /** Untimed, before every timed call (e.g. parse the messages an edit benchmark then edits). */
  readonly prepare?: () => void;
}

export interface CaseResult {
  readonly group: string;
  readonly operation: string;
  readonly impl: string;
  readonly bytes: number;
  /** Mean operations per second (batch × calls / total time). */
  readonly opsPerSec: number;
  /** Megabytes (10^6 bytes) per second at that rate. */
  readonly mbPerSec: number;
  /** Relative margin of error of the mean latency, percent. */
  readonly rme: number;
  /** Timed calls (samples). */
  readonly samples: number;
}

export interface SuiteOptions {
  /** Time budget per case, ms. */
  readonly time: number;
  /** Warm-up budget per case, ms. */
  readonly warmupTime: number;
  /** Calls of every case, round-robin, before the first measurement. */
  readonly preWarmCalls: number;
  /** Called after each case finishes, for progress output. */
  readonly onResult?: (result: CaseResult) => void;
}

/** A value the optimiser cannot prove unused: every case folds its results into it. */
let sinkValue = 0;
export function sink(n: number): void {
  sinkValue = (sinkValue + n) | 0;
}
export function sinkChecksum(): number {
  return sinkValue;
}

/**
 * Call every case a few times before measuring any, so the code shared by
 * several cases is already optimised when the first one is measured.
 */
function preWarm(cases: readonly BenchCase[], calls: number): void {
  for (let i = 0; i < calls; i++) {
    for (const c of cases) {
      c.prepare?.();
      c.run();
    }
  }
}

export function runSuite(cases: readonly BenchCase[], options: SuiteOptions): CaseResult[] {
  preWarm(cases, options.preWarmCalls);
  const results: CaseResult[] = [];
  // One Bench per case so each case is warmed up right before it is measured
  // and a failure names its case.
  for (const c of cases) {
    const bench = new Bench({
      name: `${c.group} / ${c.operation}`,
      time: options.time,
      warmupTime: options.warmupTime,
      iterations: 16,
      warmupIterations: 16,
      throws: true,
    });
    bench.add(c.operation, c.run, c.prepare ? { beforeEach: c.prepare } : {});
    bench.runSync();
    const task = bench.tasks[0];
    const r = task?.result;
    if (!r || (r.state !== "completed" && r.state !== "aborted-with-statistics")) {
      throw new Error(`benchmark ${c.group} / ${c.operation} did not complete (${r?.state ?? "no result"})`);
    }
    const meanMs = r.latency.mean;
    const opsPerSec = meanMs > 0 ? (c.batch * 1000) / meanMs : 0;
    const result: CaseResult = {
      group: c.group,
      operation: c.operation,
      impl: c.impl,
      bytes: c.bytes,
      opsPerSec,
      mbPerSec: (opsPerSec * c.bytes) / 1e6,
      rme: r.latency.rme,
      samples: r.latency.samplesCount,
    };
    results.push(result);
    options.onResult?.(result);
  }
  return results;
}
