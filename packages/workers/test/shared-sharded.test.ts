// The shared flows against the ShardedEngine, with 1 and 2 shards (worker threads).
import { ShardedEngine } from "../src/coordinator.js";
import { runSuite } from "./shared-suite.js";

for (const shards of [1, 2]) {
  runSuite(`ShardedEngine, ${shards} shard(s)`, async ({ timers, onRequest }) => {
    const engine = await ShardedEngine.create({
      shards,
      listen: [{ protocol: "UDP", address: "127.0.0.1", port: 0 }],
      engine: { timers, refFaults: "throw" },
      onRequest,
    });
    return { engine, port: engine.addresses[0]!.port };
  });
}
