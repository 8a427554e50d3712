// The shared flows against the one-thread core Engine, through wrapEngine.
import { createUdpTransport, Engine } from "@siptm/core";
import { wrapEngine } from "../src/api.js";
import { runSuite } from "./shared-suite.js";

runSuite("core Engine (wrapEngine)", async ({ timers, onRequest }) => {
  const engine = new Engine({ timers, refFaults: "throw", onRequest });
  engine.addTransport(await createUdpTransport({ address: "127.0.0.1", port: 0, sink: engine }));
  return { engine: wrapEngine(engine), port: engine.transportFor("UDP")!.localPort };
});
