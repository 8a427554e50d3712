import { readFileSync } from "node:fs";
import { test } from "vitest";
import { parseMessage } from "../../src/message/parser.js";
import { fullParse } from "../../src/message/validate.js";
const T = "/work/main/packages/core/test/fixtures/torture/";
test("x", () => {
  for (const [dir, fileDir] of [["rfc4475", "rfc4475/"], ["rfc5118", "rfc5118/wire/"]] as const) {
    const rows = readFileSync(`${T}${dir}/INDEX.tsv`, "utf8").split("\n").slice(1);
    for (const row of rows) {
      const [file, , validity] = row.split("\t");
      if (!file || !validity?.startsWith("valid") || file === "insuf.dat" || file === "multi01.dat") continue;
      try { const m = parseMessage(readFileSync(`${T}${fileDir}${file}`)); fullParse(m); } catch (e) { console.log(file, String(e)); }
    }
  }
});
