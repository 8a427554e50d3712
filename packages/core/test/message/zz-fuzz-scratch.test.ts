import { readdirSync, readFileSync } from "node:fs";
import { expect, test } from "vitest";
import { SipParseError } from "../../src/message/errors.js";
import { parseMessage } from "../../src/message/parser.js";
import { fullParse } from "../../src/message/validate.js";
import { StreamFramer } from "../../src/message/stream.js";

let seed = 12345;
function rnd(n: number): number {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
}

test("mutations throw only SipParseError", () => {
  const files: Buffer[] = [];
  for (const dir of ["/work/shared/torture/rfc4475", "/work/shared/torture/rfc5118/wire"]) {
    for (const f of readdirSync(dir)) {
      if (f.endsWith(".tsv") || f.includes("SUMS") || f.endsWith(".txt")) continue;
      files.push(readFileSync(`${dir}/${f}`));
    }
  }
  const specials = [0, 10, 13, 32, 9, 34, 44, 58, 59, 60, 62, 64, 91, 93, 92, 37, 0xff, 47, 61];
  let ok = 0;
  let bad = 0;
  for (let iter = 0; iter < 20000; iter++) {
    const src = files[rnd(files.length)]!;
    const b = Buffer.from(src);
    const nm = 1 + rnd(4);
    let data: Buffer = b;
    for (let k = 0; k < nm; k++) {
      const op = rnd(4);
      const pos = rnd(data.length);
      if (op === 0) data[pos] = specials[rnd(specials.length)]!;
      else if (op === 1) data = data.subarray(0, pos);
      else if (op === 2) data = Buffer.concat([data.subarray(0, pos), data.subarray(pos + 1 + rnd(5))]);
      else data = Buffer.concat([data.subarray(0, pos), Buffer.from([specials[rnd(specials.length)]!]), data.subarray(pos)]);
    }
    try {
      const m = parseMessage(data);
      ok++;
      m.headers();
      m.headerValues("contact");
      try {
        fullParse(m);
      } catch (e) {
        if (!(e instanceof SipParseError)) throw e;
      }
      const out = m.toBuffer();
      expect(out).toBe(m.raw);
    } catch (e) {
      if (!(e instanceof SipParseError)) {
        console.log(JSON.stringify(data.toString("latin1")));
        throw e;
      }
      bad++;
    }
    // stream framer
    const fr = new StreamFramer();
    try {
      for (let p = 0; p < data.length; p += 1 + rnd(50)) fr.push(data.subarray(p, p + 1 + rnd(50)), () => {});
    } catch (e) {
      if (!(e instanceof SipParseError)) throw e;
    }
  }
  console.log({ ok, bad });
});
