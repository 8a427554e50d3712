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

const SYSTEMS = ["siptm", "siptm-w1", "siptm-w2", "siptm-w4"];

/** A scenario's series by SER: one thread, then 1, 2 and 4 shards (as many as given); those in `top` held the top rate. */
function scenario(name: "uas" | "cancel", sers: Array<number | null>, top: string[] = []): SeriesResult[] {
  return sers.map((ser, i) => series(name, SYSTEMS[i]!, ser, top.includes(SYSTEMS[i]!)));
}

function report(...s: SeriesResult[]): LoadReport {
  return { series: s } as unknown as LoadReport;
}

const statuses = (r: LoadReport) => shardingGoals(r, [1, 2, 4]).map((g) => g.status);

describe("load benchmark: sharding goals", () => {
  it("met when every shard count is at or above one thread and 2 shards above it", () => {
    const r = report(
      ...scenario("uas", [5500, 5500, 7000, 6000]),
      ...scenario("cancel", [6000, 7500, 6500, 6000], ["siptm-w1"]),
    );
    expect(statuses(r)).toEqual(["met", "met"]);
    expect(shardingGoals(r, [1, 2, 4])[0]!.detail).toBe(
      "uas: one thread 5500, shards 1: 5500, 2: 7000, 4: 6000 → met; cancel: one thread 6000, shards 1: ≥ 7500, 2: 6500, 4: 6000 → met",
    );
  });

  it("not met when one shard count is below one thread in one scenario", () => {
    const r = report(...scenario("uas", [5000, 5500, 7000]), ...scenario("cancel", [5500, 5000, 6000]));
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
