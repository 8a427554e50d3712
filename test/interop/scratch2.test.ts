import { it } from "vitest";
import { Engine, createUdpTransport } from "../../packages/core/src/index.js";
import { lossy } from "../../packages/core/src/transport/lossy.js";
import { SippProcess, freeUdpPort, requireSipp, HOST, waitUntil } from "./sipp.js";

it("scratch uac", async () => {
  const bin = requireSipp();
  const port = await freeUdpPort();
  const causes: string[] = [];
  const engine = new Engine({ timers: { t1: 50, t2: 400, t4: 500, timerD: 500 }, onRequest(tx) {
    if (tx.method === "INVITE") { tx.events.onTerminated = (c) => causes.push(c); tx.reply(180); }
  } });
  let n200 = 0;
  const filt = process.env.FILTER;
  const link = lossy({ loss: 0, filter: (data, dir) => {
    const s = data.toString("latin1");
    if (filt === "200" && dir === "send" && s.startsWith("SIP/2.0 200") && n200++ === 0) return true;
    if (filt === "ack" && dir === "receive" && s.startsWith("ACK") && n200++ === 0) return true;
    if (filt === "180" && dir === "send" && s.startsWith("SIP/2.0 180") && n200++ === 0) return true;
    if (filt === "cancel" && dir === "receive" && s.startsWith("CANCEL") && n200++ === 0) return true;
    return undefined;
  } });
  const udp = await createUdpTransport({ address: HOST, port: 0, sink: link.sink(engine) });
  engine.addTransport(link.wrap(udp));
  const sipp = new SippProcess(bin, { scenario: "uac-cancel.xml", port, calls: 1, rate: 10, remote: `${HOST}:${udp.localPort}`, extra: ["-trace_msg", "-message_file", "/tmp/scratch2_msgs.log"] });
  try {
    const r = await sipp.wait(30000);
    console.log(r.report());
    console.log(await waitUntil(() => engine.stats.created === engine.stats.freed, 5000), engine.stats.created, engine.stats.freed, causes, link.counters);
  } finally {
    await engine.close();
    await sipp.kill();
  }
});
