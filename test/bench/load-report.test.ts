// The load benchmark's sharding goals (bench/src/lib/load-report.ts): computed from the SER of each
// `siptm serve --workers N` series against the one-thread server's, per scenario.

import { describe, expect, it } from "vitest";
import { type LoadReport, type SeriesResult, shardingGoals } from "../../bench/src/lib/load-report.js";

function series(
  scenario: "uas" | "cancel",
  system: string,
  ser: number | null,
  reachedTop = false,
): SeriesResult {
  return { scenario, system, ser, reachedTop, generatorBoundAtSer: false, steps: [] };
}

function report(...s: SeriesResult[]): LoadReport {
  return { series: s } as unknown as LoadReport;
}

const statuses = (r: LoadReport) => shardingGoals(r, [1, 2, 4]).map((g) => g.status);

describe("load benchmark: sharding goals", () => {
  it("met when every shard count is at or above one thread and 2 shards above it", () => {
    const r = report(
      series("uas", "siptm", 5500),
      series("uas", "siptm-w1", 5500),
      series("uas", "siptm-w2", 7000),
      series("uas", "siptm-w4", 6000),
      series("cancel", "siptm", 6000),
      series("cancel", "siptm-w1", 7500, true),
      series("cancel", "siptm-w2", 6500),
      series("cancel", "siptm-w4", 6000),
    );
    expect(statuses(r)).toEqual(["met", "met"]);
    expect(shardingGoals(r, [1, 2, 4])[0]!.detail).toBe(
      "uas: one thread 5500, shards 1: 5500, 2: 7000, 4: 6000 → met; cancel: one thread 6000, shards 1: ≥ 7500, 2: 6500, 4: 6000 → met",
    );
  });

  it("not met when one shard count is below one thread in one scenario", () => {
    const r = report(
      series("uas", "siptm", 5000),
      series("uas", "siptm-w1", 5500),
      series("uas", "siptm-w2", 7000),
      series("cancel", "siptm", 5500),
      series("cancel", "siptm-w1", 5000),
      series("cancel", "siptm-w2", 6000),
    );
    expect(statuses(r)).toEqual(["not met", "met"]);
  });

  it("2 shards equal to one thread is not higher; a sharded series that held no step is lower", () => {
    expect(statuses(report(series("uas", "siptm", 6000), series("uas", "siptm-w2", 6000)))).toEqual([
      "met",
      "not met",
    ]);
    expect(statuses(report(series("uas", "siptm", 2000), series("uas", "siptm-w2", null)))).toEqual([
      "not met",
      "not met",
    ]);
  });

  it("both at the top of the rate list: 2 shards inconclusive; nothing sharded: n/a", () => {
    expect(
      statuses(report(series("uas", "siptm", 8000, true), series("uas", "siptm-w2", 8000, true))),
    ).toEqual(["met", "inconclusive"]);
    expect(statuses(report(series("uas", "siptm", 8000)))).toEqual(["n/a", "n/a"]);
  });
});
