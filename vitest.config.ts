import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**", "test/interop/**"],
    setupFiles: ["./test/setup/leak-check.ts"],
    testTimeout: 20_000,
    pool: "threads",
  },
});
