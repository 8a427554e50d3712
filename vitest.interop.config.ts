import { defineConfig } from "vitest/config";

// Interop tests against a real SIPp on 127.0.0.1 (`npm run test:interop`):
// kept out of the main run (vitest.config.ts excludes test/interop/**) since
// they need the sipp binary and real time. One file at a time: each spawns
// SIPp and the machine has 2 cores.
export default defineConfig({
  test: {
    include: ["test/interop/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    testTimeout: 120_000,
    hookTimeout: 30_000,
    fileParallelism: false,
    pool: "forks",
  },
});
