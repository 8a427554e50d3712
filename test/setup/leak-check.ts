// After every test: every engine made through a test bed — core's Testbed, or
// the beds of @siptm/workers/testing that run a test on the core Engine and on
// the ShardedEngine — is run past its longest timer on its virtual clock and
// must show created == freed, an empty table, no armed timer and no reference
// fault (a sharded engine also: no lost transaction, no restart, no main-thread
// handle left); then the bed is closed. One check for every kind of bed (each
// bed's constructor tracks it), so no test can forget it. And no stream
// transport (TCP, TLS, WS, WSS) the test made may keep a connection open; those
// a file made for all its tests are checked once the file is done.
import { afterAll, afterEach, beforeEach, expect } from "vitest";
import { checkAllBeds, checkOpenConnections, openStreamTransports } from "../../packages/core/src/testing.js";

let before: ReadonlySet<object> = new Set();

beforeEach(() => {
  before = openStreamTransports();
});

afterEach(async () => {
  const problems = await checkAllBeds();
  expect(problems, "transaction leak check").toEqual([]);
  expect(await checkOpenConnections(before), "connection leak check").toEqual([]);
});

afterAll(async () => {
  expect(await checkOpenConnections(), "connection leak check (the file's own transports)").toEqual([]);
});
