// The one way to run a suite on every engine: `forEachEngine` describes it
// once per engine kind (`BED_KINDS` of @siptm/workers/testing: the one-thread
// core Engine and the ShardedEngine with 2 shards, real worker threads). The
// transaction, CANCEL and proxy suites (test/engines) make virtual-clock beds
// of each kind (`bed()`, checked by test/setup/leak-check.ts); the real-UDP
// suite of @siptm/workers makes the same engines on real sockets from the
// kind, with other shard counts (`engineKind`); the server's tests run
// `siptm serve` with `--workers` set from the kind (`workersFlag`).
import { describe } from "vitest";
import {
  BED_KINDS,
  type BedEngine,
  type BedKind,
  type BedOptions,
  type EngineBed,
  type EngineKind,
} from "../../packages/workers/src/testing.js";

export type { BedEngine, BedKind, EngineBed, EngineKind } from "../../packages/workers/src/testing.js";
export { BED_KINDS, engineKind } from "../../packages/workers/src/testing.js";

/** `describe` the suite once per engine kind; `bed()` makes a test bed of that engine. */
export function forEachEngine(
  fn: (bed: (opts?: BedOptions) => EngineBed, kind: BedKind, engine: EngineKind) => void,
  kinds: readonly EngineKind[] = BED_KINDS,
): void {
  for (const k of kinds) describe(k.name, () => fn((opts) => k.make(opts), k.kind, k));
}

/** The `siptm serve --workers` value of an engine kind: 0 for the core engine, else its shard count. */
export function workersFlag(engine: EngineKind): string {
  return String(engine.shards);
}

/** Transactions alive in an engine of a bed (core's `engine.table.size` at rest). */
export async function live(engine: BedEngine): Promise<number> {
  return (await engine.stats()).current;
}
