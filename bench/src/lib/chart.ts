/**
 * The load benchmark's chart: a Vega-Lite specification rendered to SVG
 * headless in Node by Vega (no browser, no canvas): the Session
 * Establishment Rate and the CPU per call of every system in every scenario.
 */
import * as vega from "vega";
import * as vegaLite from "vega-lite";
import { findSeries, type LoadReport, labelOf, stepAt } from "./load-report.js";

interface SerDatum {
  scenario: string;
  system: string;
  ser: number;
  label: string;
}

interface CostDatum {
  scenario: string;
  system: string;
  us: number;
  label: string;
}

function costData(report: LoadReport, rate: number): CostDatum[] {
  const out: CostDatum[] = [];
  for (const s of report.series) {
    if (s.skipped) continue;
    const st = stepAt(findSeries(report, s.scenario, s.system), rate);
    if (st?.pass)
      out.push({
        scenario: s.scenario,
        system: labelOf(report, s.system),
        us: st.server.cpuUsPerCall,
        label: st.server.cpuUsPerCall.toFixed(0),
      });
  }
  return out;
}

export function chartSpec(report: LoadReport): vegaLite.TopLevelSpec {
  const ser: SerDatum[] = [];
  for (const s of report.series) {
    if (s.skipped) continue;
    const value = s.ser ?? 0;
    const gen = s.generatorBoundAtSer || s.firstFailure?.limit === "load generator" ? " (gen)" : "";
    const label = s.ser === null ? `<${s.steps[0]?.rate ?? "?"}` : `${s.reachedTop ? "≥" : ""}${value}${gen}`;
    ser.push({ scenario: s.scenario, system: labelOf(report, s.system), ser: value, label });
  }
  const systems = report.systems.map((s) => s.label);
  const scenarios = [...new Set(report.series.map((s) => s.scenario))];
  const color = { field: "system", type: "nominal", title: "system", scale: { domain: systems } } as const;
  const x = {
    field: "scenario",
    type: "nominal",
    title: null,
    sort: scenarios,
    axis: { labelAngle: 0 },
  } as const;
  const xOffset = { field: "system", scale: { domain: systems } } as const;
  const label = { type: "text", angle: 270, align: "left", baseline: "middle", dx: 3, fontSize: 9 } as const;
  const width = Math.max(240, 130 * scenarios.length);
  const quick = report.settings.quick ? " (--quick: indicative only)" : "";
  const bars = (values: object[], field: string, title: string, yTitle: string) => ({
    title,
    data: { values },
    width,
    height: 200,
    layer: [
      {
        mark: "bar",
        encoding: { x, xOffset, y: { field, type: "quantitative", title: yTitle }, color },
      },
      {
        mark: label,
        encoding: { x, xOffset, y: { field, type: "quantitative" }, text: { field: "label" } },
      },
    ],
  });
  const rates = [...new Set([report.settings.costRate, report.settings.goalRate])].filter((r) =>
    report.settings.rates.includes(r),
  );
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: {
      text: `siptm load benchmark${quick}`,
      subtitle: `${report.environment.date.slice(0, 10)}, ${report.environment.cpu} × ${report.environment.cpus}, SIPp over UDP on 127.0.0.1`,
    },
    config: { font: "sans-serif", view: { stroke: null } },
    vconcat: [
      bars(ser, "ser", "Session Establishment Rate (calls/s; gen = SIPp was the limit)", "calls/s"),
      ...rates.map((rate) =>
        bars(
          costData(report, rate),
          "us",
          `Server CPU per call at ${rate} calls/s, steps that held (µs = ms per 1000 calls)`,
          "CPU µs per call",
        ),
      ),
    ],
  } as vegaLite.TopLevelSpec;
}

/** The chart as an SVG document. */
export async function renderChartSvg(report: LoadReport): Promise<string> {
  const compiled = vegaLite.compile(chartSpec(report)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
