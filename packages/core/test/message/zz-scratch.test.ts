import { readdirSync, readFileSync } from "node:fs";
import { test } from "vitest";
import { parseMessage } from "../../src/message/parser.js";
import { fullParse } from "../../src/message/validate.js";

test("scratch", () => {
  const out: string[] = [];
  for (const dir of ["/work/shared/torture/rfc4475", "/work/shared/torture/rfc5118/wire"]) {
    for (const f of readdirSync(dir).sort()) {
      if (f.endsWith(".tsv") || f.includes("SUMS") || f.endsWith(".txt")) continue;
      const data = readFileSync(`${dir}/${f}`);
      try {
        const m = parseMessage(data);
        let extra = "";
        try {
          fullParse(m);
        } catch (e) {
          extra = ` full:${(e as { status: number }).status} ${(e as Error).message}`;
        }
        out.push(
          `${f}\tOK ${m.isRequest ? m.method : m.status} via=${m.via.transport} ${m.via.host}:${m.via.port} br=${m.via.branch} n=${m.viaCount} cid=${m.callId} cseq=${m.cseq.seq} ${m.cseq.method} ft=${m.fromTag} tt=${m.toTag} mf=${m.maxForwards} cl=${m.contentLength} body=${m.body.length} raw=${m.raw.length}/${data.length}${extra}`,
        );
      } catch (e) {
        const pe = e as { name: string; status: number; code: string; kind: string; message: string };
        out.push(`${f}\tERR ${pe.name} ${pe.status} ${pe.code} ${pe.kind} ${pe.message}`);
      }
    }
  }
  console.log(out.join("\n"));
});
