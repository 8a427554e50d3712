// The shared flows over real UDP against the one-thread core Engine, through wrapEngine.
import { BED_KINDS, forEachEngine } from "../../../test/setup/engines.js";
import { runSuite } from "./shared-suite.js";

forEachEngine(
  (_bed, _kind, engine) => runSuite(engine),
  BED_KINDS.filter((k) => k.kind === "core"),
);
