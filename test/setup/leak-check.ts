// After every test: every engine made through a test bed — core's Testbed, or
// the beds of @siptm/workers/testing that run a test on the core Engine and on
// the ShardedEngine — is run past its longest timer on its virtual clock and
// must show created == freed, an empty table, no armed timer and no reference
// fault (a sharded engine also: no lost transaction, no restart, no main-thread
// handle left); then the bed is closed. One check for every kind of bed (each
// bed's constructor tracks it), so no test can forget it. And no stream
// transport of this process (TCP, TLS, WS, WSS) may keep a connection open.
import { afterEach, expect } from "vitest";
import { checkAllBeds, checkOpenConnections } from "../../packages/core/src/testing.js";

afterEach(async () => {
  const problems = await checkAllBeds();
  expect(problems, "transaction leak check").toEqual([]);
  expect(await checkOpenConnections(), "connection leak check").toEqual([]);
});
