import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**", "test/interop/**"],
    // Builds the packages tests load from dist/ when their sources are newer (test/setup/fresh-build.ts).
    globalSetup: ["./test/setup/fresh-build.ts"],
    setupFiles: ["./test/setup/leak-check.ts"],
    testTimeout: 20_000,
    pool: "threads",
  },
});
