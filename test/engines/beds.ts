// The transaction and CANCEL suites run every test on both engines: the
// one-thread core Engine and the ShardedEngine (2 shards, real worker
// threads), both on a virtual clock (@siptm/workers/testing). The automatic
// leak check (test/setup/leak-check.ts) covers every bed made here.
import { describe } from "vitest";
import {
  BED_KINDS,
  type BedKind,
  type BedOptions,
  type EngineBed,
} from "../../packages/workers/src/testing.js";

export type { BedEngine, BedKind, EngineBed } from "../../packages/workers/src/testing.js";

/** `describe` the suite once per engine; `bed()` makes a test bed of that engine. */
export function forEachEngine(fn: (bed: (opts?: BedOptions) => EngineBed, kind: BedKind) => void): void {
  for (const k of BED_KINDS) describe(k.name, () => fn(k.make, k.kind));
}
