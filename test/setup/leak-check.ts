// After every test: every engine made through the Testbed is run past its
// longest timer on its virtual clock and must show created == freed, an empty
// table, no armed timer and no reference fault. Automatic, so no test can
// forget it.
import { afterEach, expect } from "vitest";
import { checkAllTestbeds } from "../../packages/core/src/testing.js";

afterEach(() => {
  const problems = checkAllTestbeds();
  expect(problems, "transaction leak check").toEqual([]);
});
