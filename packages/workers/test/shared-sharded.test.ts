// The shared flows over real UDP against the ShardedEngine (worker threads): with 1 shard, and
// with the shards of BED_KINDS (2).
import { BED_KINDS, engineKind, forEachEngine } from "../../../test/setup/engines.js";
import { runSuite } from "./shared-suite.js";

forEachEngine(
  (_bed, _kind, engine) => runSuite(engine),
  [engineKind("sharded", 1), ...BED_KINDS.filter((k) => k.kind === "sharded")],
);
