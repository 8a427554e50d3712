/** The load benchmark's results: types, derived tables (SER, cost, memory, goals) and Markdown. */
import type { BenchEnvironment } from "./env.js";
import type { ScenarioName } from "./systems.js";

export interface StepResult {
  readonly scenario: ScenarioName;
  readonly system: string;
  /** Offered calls/s (SIPp -r). */
  readonly rate: number;
  /** Calls offered (-m). */
  readonly calls: number;
  readonly stepSeconds: number;
  /** Place of this system in the step's alternation (0 = ran first). */
  readonly order: number;
  readonly pass: boolean;
  /** Why the step failed (empty when it passed). */
  readonly reasons: readonly string[];
  /** What ran out when it failed: "load generator", "server CPU", "machine CPU (every core busy)", "none seen". */
  readonly limit: string | undefined;
  readonly successful: number;
  readonly failed: number;
  readonly retransmissions: number;
  /** Retransmissions SIPp sent per 100 calls. */
  readonly retransPct: number;
  readonly failures: Readonly<Record<string, number>>;
  readonly strayMessages: number;
  /** UDP datagrams the kernel dropped at full socket buffers during the step (whole machine). */
  readonly udpDrops?: number;
  /** Seconds from SIPp's start to its exit. */
  readonly wallSeconds: number;
  readonly server: {
    readonly cpuSeconds: number;
    /** Share of one core, averaged over the step / busiest second. */
    readonly average: number;
    readonly peak: number;
    /** CPU µs per call (= CPU ms per 1000 calls). */
    readonly cpuUsPerCall: number;
    /** Memory after the step, bytes: VmRSS (one process) or ΣPss (Kamailio). */
    readonly memoryBytes: number;
    readonly rssBytes: number;
    readonly pssBytes: number;
    readonly processes: number;
  };
  readonly sipp: { readonly average: number; readonly peak: number; readonly exitCode: number | null };
  /** The whole machine (every process, other people's too), in cores busy: average and busiest second. */
  readonly machine: { readonly average: number; readonly peak: number; readonly cores: number };
  /** The SIPp UAS behind the proxy (scenario proxy). */
  readonly sippUas?: {
    readonly average: number;
    readonly peak: number;
    readonly exitCode: number | null;
    readonly failed: number;
  };
}

export interface SeriesResult {
  readonly scenario: ScenarioName;
  readonly system: string;
  /** Session Establishment Rate: the highest offered rate that held a full step (null: not even the first). */
  readonly ser: number | null;
  /** Every rate of the list held: the SER is at least the top rate. */
  readonly reachedTop: boolean;
  /** The first failing step. */
  readonly firstFailure?: {
    readonly rate: number;
    readonly reasons: readonly string[];
    readonly limit: string | undefined;
  };
  /** SIPp was at ≥ 90 % of a core on the last step that held: the generator, not the server, limits the SER. */
  readonly generatorBoundAtSer: boolean;
  readonly steps: readonly StepResult[];
  readonly skipped?: string;
}

export interface MemoryPoint {
  /** Ringing INVITE transactions held open beyond the baseline. */
  readonly held: number;
  /** tm.stats current at the moment of measurement. */
  readonly current: number;
  readonly rssBytes: number;
  readonly heapUsedBytes: number | undefined;
  /** (RSS_n − RSS_0) / n */
  readonly perTxnBytes: number;
  /** (RSS_n − RSS_previous point) / (n − previous n): the slope, free of one-off growth. */
  readonly marginalBytes: number;
  /** Heap used (V8) per transaction, same formula. */
  readonly heapPerTxnBytes: number | undefined;
}

export interface MemoryResult {
  readonly system: string;
  readonly baseline: {
    readonly held: number;
    readonly rssBytes: number;
    readonly heapUsedBytes: number | undefined;
  };
  readonly points: readonly MemoryPoint[];
  readonly skipped?: string;
}

export interface SystemInfo {
  readonly id: string;
  readonly label: string;
  readonly version: string;
  readonly processes: string;
  readonly command: string;
}

export interface GoalResult {
  readonly name: string;
  readonly status: "met" | "not met" | "inconclusive" | "n/a";
  readonly detail: string;
}

export interface LoadReport {
  readonly benchmark: "load";
  readonly environment: BenchEnvironment;
  readonly settings: {
    readonly quick: boolean;
    readonly stepSeconds: number;
    readonly rates: readonly number[];
    readonly costRate: number;
    readonly goalRate: number;
    readonly memoryTargets: readonly number[];
    readonly sipp: string;
    readonly notes: readonly string[];
  };
  readonly systems: readonly SystemInfo[];
  readonly skipped: readonly string[];
  readonly series: readonly SeriesResult[];
  readonly memory: MemoryResult | undefined;
  readonly goals: readonly GoalResult[];
}

export const pct = (share: number) => `${Math.round(share * 100)}%`;
const mb = (bytes: number) => (bytes / 1_048_576).toFixed(1);
const us = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));

function table(
  header: readonly string[],
  align: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const out = [`| ${header.join(" | ")} |`, `| ${align.join(" | ")} |`];
  for (const r of rows) out.push(`| ${r.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`);
  return out.join("\n");
}

/** Plain-text table for the terminal. */
export function textTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (c: readonly string[]) => c.map((v, i) => v.padEnd(widths[i] ?? 0)).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function labelOf(report: LoadReport, id: string): string {
  return report.systems.find((s) => s.id === id)?.label ?? id;
}

export function stepAt(series: SeriesResult | undefined, rate: number): StepResult | undefined {
  return series?.steps.find((s) => s.rate === rate);
}

export function findSeries(
  report: LoadReport,
  scenario: ScenarioName,
  system: string,
): SeriesResult | undefined {
  return report.series.find((s) => s.scenario === scenario && s.system === system);
}

/** SER rows: scenario, system, SER, what limited it. */
export function serRows(report: LoadReport): string[][] {
  return report.series.map((s) => {
    const last = s.steps.filter((st) => st.pass).at(-1);
    const ser = s.skipped
      ? "skipped"
      : s.ser === null
        ? `< ${s.steps[0]?.rate ?? "?"}`
        : s.reachedTop
          ? `≥ ${s.ser}`
          : String(s.ser);
    const why = s.skipped
      ? s.skipped
      : s.firstFailure
        ? `${s.firstFailure.rate}/s failed: ${s.firstFailure.reasons.join("; ")}`
        : "every step held";
    const limit =
      s.firstFailure?.limit ?? (s.generatorBoundAtSer ? "load generator" : s.reachedTop ? "rate list" : "");
    return [
      s.scenario,
      labelOf(report, s.system),
      ser,
      last ? `${pct(last.server.average)} / ${pct(last.sipp.average)}` : "",
      why,
      limit ?? "",
    ];
  });
}

export const SER_HEADER = [
  "scenario",
  "system",
  "SER (calls/s)",
  "CPU at SER: server / SIPp",
  "first failing step",
  "limit",
];

/** Cost rows at one rate: CPU µs per call (= ms per 1000 calls), CPU share, memory. */
export function costRows(report: LoadReport, rate: number): string[][] {
  const rows: string[][] = [];
  for (const s of report.series) {
    const st = stepAt(s, rate);
    if (!st) continue;
    const base = stepAt(findSeries(report, s.scenario, "siptm"), rate);
    const ratio =
      s.system !== "siptm" && base && base.pass && st.pass && st.server.cpuUsPerCall > 0
        ? `${(base.server.cpuUsPerCall / st.server.cpuUsPerCall).toFixed(2)}`
        : "";
    rows.push([
      s.scenario,
      labelOf(report, s.system),
      st.pass ? "held" : "FAILED",
      us(st.server.cpuUsPerCall),
      pct(st.server.average),
      mb(st.server.memoryBytes),
      String(st.server.processes),
      pct(st.sipp.average) + (st.sippUas ? ` + UAS ${pct(st.sippUas.average)}` : ""),
      ratio,
    ]);
  }
  return rows;
}

export const COST_HEADER = [
  "scenario",
  "system",
  "step",
  "CPU µs/call (= ms per 1000 calls)",
  "server CPU (of a core)",
  "memory MB",
  "processes",
  "SIPp CPU",
  "CPU of siptm (1 thread) ÷ this",
];

export function stepRows(report: LoadReport): string[][] {
  const rows: string[][] = [];
  for (const s of report.series)
    for (const st of s.steps)
      rows.push([
        st.scenario,
        labelOf(report, st.system),
        String(st.rate),
        st.pass ? "held" : `FAILED: ${st.reasons.join("; ")}`,
        `${st.successful}/${st.calls}`,
        `${st.retransPct.toFixed(2)}%`,
        st.wallSeconds.toFixed(1),
        `${pct(st.server.average)} (${pct(st.server.peak)})`,
        `${pct(st.sipp.average)} (${pct(st.sipp.peak)})${st.sippUas ? ` + UAS ${pct(st.sippUas.average)}` : ""}`,
        `${st.machine.average.toFixed(2)} (${st.machine.peak.toFixed(2)})`,
        us(st.server.cpuUsPerCall),
        mb(st.server.memoryBytes),
      ]);
  return rows;
}

export const STEP_HEADER = [
  "scenario",
  "system",
  "calls/s",
  "result",
  "successful",
  "retrans",
  "wall s",
  "server CPU avg (peak)",
  "SIPp CPU avg (peak)",
  "machine cores busy avg (peak)",
  "µs/call",
  "mem MB",
];

export function memoryRows(m: MemoryResult): string[][] {
  return m.points.map((p) => [
    String(p.held),
    String(p.current),
    mb(p.rssBytes),
    p.perTxnBytes.toFixed(0),
    p.marginalBytes.toFixed(0),
    p.heapUsedBytes === undefined ? "" : mb(p.heapUsedBytes),
    p.heapPerTxnBytes === undefined ? "" : p.heapPerTxnBytes.toFixed(0),
  ]);
}

export const MEMORY_HEADER = [
  "ringing INVITEs held",
  "tm current",
  "RSS MB",
  "RSS bytes per transaction",
  "RSS bytes per transaction since the previous row",
  "V8 heap used MB",
  "heap bytes per transaction",
];

export function goalsMarkdown(goals: readonly GoalResult[]): string {
  return goals.map((g) => `- ${g.name}: **${g.status}** — ${g.detail}`).join("\n");
}

export function markdownReport(report: LoadReport, chartFile: string | undefined): string {
  const env = report.environment;
  const st = report.settings;
  const versions = Object.entries(env.versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  const parts = [
    "# Load benchmark (SIPp against siptm, Kamailio and npm sip)",
    "",
    `- date: ${env.date}${env.commit ? `, commit ${env.commit}` : ""}${st.quick ? " — **--quick run: indicative only**" : ""}`,
    `- Node ${env.node} (V8 ${env.v8}), ${env.platform} ${env.arch}`,
    `- CPU: ${env.cpu} × ${env.cpus}`,
    `- versions: ${versions}`,
    `- load generator: ${st.sipp}, UDP on 127.0.0.1, -buff_size 4194304`,
    `- steps: ${st.rates.join(", ")} calls/s, ${st.stepSeconds} s each; a step holds when every call succeeds, SIPp retransmits ≤ 1 % and the step ends on time; systems alternate within each step`,
    "",
    "Systems:",
    "",
    table(
      ["system", "version", "processes", "command"],
      ["---", "---", "---", "---"],
      report.systems.map((s) => [s.label, s.version, s.processes, `\`${s.command}\``]),
    ),
    "",
  ];
  if (report.skipped.length > 0) parts.push("Skipped:", "", ...report.skipped.map((s) => `- ${s}`), "");
  parts.push(
    "## Session Establishment Rate",
    "",
    table(SER_HEADER, ["---", "---", "---:", "---:", "---", "---"], serRows(report)),
    "",
    `## Cost at ${st.costRate} calls/s (every system sustains it)`,
    "",
    "CPU seconds of the server's processes (utime + stime from /proc, every thread; Kamailio: all its processes) per call; memory after the step (VmRSS; Kamailio ΣPss, since its processes share one segment).",
    "",
    table(
      COST_HEADER,
      ["---", "---", "---", "---:", "---:", "---:", "---:", "---:", "---:"],
      costRows(report, st.costRate),
    ),
    "",
  );
  const goalCost = costRows(report, st.goalRate);
  if (st.goalRate !== st.costRate && goalCost.length > 0)
    parts.push(
      `## Cost at ${st.goalRate} calls/s`,
      "",
      table(COST_HEADER, ["---", "---", "---", "---:", "---:", "---:", "---:", "---:", "---:"], goalCost),
      "",
    );
  if (report.memory) {
    const m = report.memory;
    parts.push("## Memory per ringing INVITE transaction (siptm, one thread)", "");
    if (m.skipped) parts.push(`Skipped: ${m.skipped}`, "");
    else
      parts.push(
        `Baseline after a warm-up of ${m.baseline.held} ringing INVITEs: RSS ${mb(m.baseline.rssBytes)} MB${
          m.baseline.heapUsedBytes !== undefined ? `, V8 heap used ${mb(m.baseline.heapUsedBytes)} MB` : ""
        }. Per transaction = (value at n − baseline) / n.`,
        "",
        table(MEMORY_HEADER, ["---:", "---:", "---:", "---:", "---:", "---:", "---:"], memoryRows(m)),
        "",
      );
  }
  if (chartFile) parts.push(`![SER and CPU per call](${chartFile})`, "");
  parts.push("## Goals", "", goalsMarkdown(report.goals), "");
  parts.push(
    "## Every step",
    "",
    "CPU columns are shares of one core (server: every thread and, for Kamailio, every process). Machine cores busy: the whole machine from /proc/stat, every process including other people's on a shared machine; approximate (on this VM it can read below the sum of the benchmark's own processes).",
    "",
    table(
      STEP_HEADER,
      ["---", "---", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"],
      stepRows(report),
    ),
    "",
  );
  if (st.notes.length > 0) parts.push("Notes:", "", ...st.notes.map((n) => `- ${n}`), "");
  return parts.join("\n");
}

const STATUS_RANK = { "n/a": 0, met: 1, inconclusive: 2, "not met": 3 } as const;

/** The worse of two goal statuses (not met > inconclusive > met > n/a): what a goal over several parts reads. */
export function worseStatus(a: GoalResult["status"], b: GoalResult["status"]): GoalResult["status"] {
  return STATUS_RANK[b] > STATUS_RANK[a] ? b : a;
}

/** The SER of a series as a comparable number: -1 when not even the first step held. */
function serValue(s: SeriesResult): number {
  return s.ser === null ? -1 : s.ser;
}

/**
 * The sharding goals of `siptm serve --workers N` against the one-thread
 * server, per scenario: never a lower SER at any shard count, and with 2
 * shards a higher one. A sharded series that held every step against a
 * one-thread series that failed one is above it; two series that both held
 * every step cannot be told apart ("inconclusive": raise the rate list).
 */
export function shardingGoals(report: LoadReport, shards: readonly number[]): GoalResult[] {
  const never: string[] = [];
  const two: string[] = [];
  let neverStatus: GoalResult["status"] = "n/a";
  let twoStatus: GoalResult["status"] = "n/a";
  const fmt = (s: SeriesResult) => (s.ser === null ? "none" : `${s.reachedTop ? "≥ " : ""}${s.ser}`);
  for (const scenario of new Set(report.series.map((s) => s.scenario))) {
    const one = findSeries(report, scenario, "siptm");
    if (!one || one.skipped) continue;
    const parts: string[] = [];
    let lowest: GoalResult["status"] = "n/a";
    for (const w of shards) {
      const s = findSeries(report, scenario, `siptm-w${w}`);
      if (!s || s.skipped) continue;
      parts.push(`${w}: ${fmt(s)}`);
      const a = serValue(one);
      const b = serValue(s);
      // Not lower: b ≥ a (two series that held every step are equal, at the top of the list).
      lowest = worseStatus(lowest, b >= a ? "met" : "not met");
      if (w === 2) {
        let higher: GoalResult["status"];
        if (b > a) higher = "met";
        else if (s.reachedTop && one.reachedTop) higher = "inconclusive";
        else higher = "not met";
        twoStatus = worseStatus(twoStatus, higher);
        two.push(`${scenario} ${fmt(s)} vs ${fmt(one)} → ${higher}`);
      }
    }
    if (parts.length === 0) continue;
    neverStatus = worseStatus(neverStatus, lowest);
    never.push(`${scenario}: one thread ${fmt(one)}, shards ${parts.join(", ")} → ${lowest}`);
  }
  return [
    {
      name: "SER of siptm --workers N no lower than one thread's, at every shard count",
      status: neverStatus,
      detail: never.join("; ") || "no sharded series",
    },
    {
      name: "SER of siptm --workers 2 higher than one thread's",
      status: twoStatus,
      detail: two.join("; ") || "no 2-shard series",
    },
  ];
}
