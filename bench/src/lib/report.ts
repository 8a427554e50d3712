/** Result tables: plain text for the terminal, Markdown and JSON for bench/results/. */
import type { BenchEnvironment } from "./env.js";
import type { CaseResult } from "./suite.js";

export interface ReportRow {
  readonly result: CaseResult;
  /** Throughput divided by the comparison case's (undefined for the comparison cases themselves). */
  readonly ratio: number | undefined;
  /** Which case the ratio is against, e.g. "sip.parse". */
  readonly versus: string | undefined;
}

export interface Goal {
  readonly name: string;
  /** Required ratio. */
  readonly target: number;
  /** Lowest ratio over the messages. */
  readonly worst: number;
  /** Highest ratio over the messages. */
  readonly best: number;
  readonly met: boolean;
}

export function formatRate(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return n.toFixed(0);
}

function formatRatio(r: number | undefined, versus: string | undefined): string {
  if (r === undefined || versus === undefined) return "(baseline)";
  return `${r.toFixed(2)}× ${versus}`;
}

const COLUMNS = ["message", "operation", "msgs/s", "MB/s", "±", "vs sip"] as const;

function cells(row: ReportRow): string[] {
  const r = row.result;
  return [
    r.group,
    r.operation,
    formatRate(r.opsPerSec),
    r.mbPerSec.toFixed(1),
    `${r.rme.toFixed(1)}%`,
    formatRatio(row.ratio, row.versus),
  ];
}

export function textTable(rows: readonly ReportRow[]): string {
  const body = rows.map(cells);
  const widths = COLUMNS.map((h, i) => Math.max(h.length, ...body.map((c) => c[i]?.length ?? 0)));
  const line = (c: readonly string[]): string =>
    c.map((v, i) => (i >= 2 && i <= 4 ? v.padStart(widths[i] ?? 0) : v.padEnd(widths[i] ?? 0))).join("  ");
  return [line(COLUMNS), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}

export function markdownTable(rows: readonly ReportRow[]): string {
  const align = ["---", "---", "---:", "---:", "---:", "---"];
  const out = [`| ${COLUMNS.join(" | ")} |`, `| ${align.join(" | ")} |`];
  for (const row of rows) out.push(`| ${cells(row).join(" | ")} |`);
  return out.join("\n");
}

export function goalsText(goals: readonly Goal[]): string {
  return goals
    .map(
      (g) =>
        `- ${g.name}: target ≥ ${g.target}×, measured ${g.worst.toFixed(2)}×–${g.best.toFixed(2)}× ` +
        `(worst–best message) → ${g.met ? "met" : "NOT met"}`,
    )
    .join("\n");
}

export function markdownReport(
  title: string,
  env: BenchEnvironment,
  settings: string,
  rows: readonly ReportRow[],
  goals: readonly Goal[],
): string {
  const versions = Object.entries(env.versions)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return [
    `# ${title}`,
    "",
    `- date: ${env.date}${env.commit ? `, commit ${env.commit}` : ""}`,
    `- Node ${env.node} (V8 ${env.v8}), ${env.platform} ${env.arch}`,
    `- CPU: ${env.cpu} × ${env.cpus}`,
    `- packages: ${versions}`,
    `- settings: ${settings}`,
    "",
    markdownTable(rows),
    "",
    "Goals (ratio of msgs/s against `sip.parse`):",
    "",
    goalsText(goals),
    "",
  ].join("\n");
}

export function jsonReport(
  env: BenchEnvironment,
  settings: Record<string, unknown>,
  rows: readonly ReportRow[],
  goals: readonly Goal[],
): string {
  return `${JSON.stringify(
    {
      benchmark: "micro",
      environment: env,
      settings,
      results: rows.map((r) => ({ ...r.result, ratio: r.ratio ?? null, versus: r.versus ?? null })),
      goals,
    },
    null,
    2,
  )}\n`;
}

/** A padded Markdown pipe table (header, separator, rows) for console output that pastes into docs. */
export function pipeTable(head: readonly string[], body: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]?.length ?? 0)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}
