import { it } from "vitest";
import { dropFirst, startSiptm, LOSSY_TIMERS } from "./harness.js";
import { SippProcess, freeUdpPort, requireSipp, HOST, waitUntil } from "./sipp.js";

it("scratch", async () => {
  const port = await freeUdpPort();
  const sipp = new SippProcess(requireSipp(), { scenario: "uas-cancel.xml", port, calls: 1, rate: 10, extra: ["-trace_msg", "-message_file", "/tmp/scr_msgs.log", "-trace_calldebug", "-calldebug_file", "/tmp/scr_cd.log"] });
  const plan = [[{ direction: "receive" as const, kind: "100 INVITE" }, { direction: "receive" as const, kind: "180 INVITE" }]];
  const d = dropFirst(plan, (c) => c === "scratch-1" ? 0 : undefined);
  const side = await startSiptm({ timers: LOSSY_TIMERS, loss: { loss: 0, filter: d.filter } });
  try {
    await sipp.listening();
    const h = side.engine.request({ method: "INVITE", callId: "scratch-1", uri: `sip:svc@${HOST}:${port}`, from: `<sip:siptm@${HOST}>`, to: `<sip:svc@${HOST}:${port}>`, onProvisional: () => h.cancel() });
    console.log((await h.final).status, d.hits);
    const r = await sipp.wait(30000);
    console.log(r.code, r.failed);
  } finally {
    await side.engine.close();
    await sipp.kill();
  }
});
