// Vitest global setup: the tests never run against a stale build. Tests import @siptm/core and
// @siptm/workers through their package exports, which name dist/; the shards of a ShardedEngine
// run packages/workers/dist/shard.js in worker threads, and the server tests spawn
// packages/server/dist/cli.js. So before any test runs, a package whose sources (src/**,
// tsconfig.json, package.json: turbo's inputs for its build) are newer than its build gets
// built — the same build as `npm run build` (turbo), limited to the packages tests load. When
// everything is fresh (as after `npm test`'s own build, or a second run) this costs one walk of
// the source and dist trees, a few milliseconds.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** The packages tests load from their build, in build order. */
const BUILT = ["packages/core", "packages/workers", "packages/server"];
/**
 * When this setup last built: a build whose outputs turbo found unchanged (a cache hit) may
 * leave dist's times as they were, so the build's start time is kept here too.
 */
const STAMP = join(ROOT, "node_modules", ".cache", "siptm", "fresh-build");

/** The newest modification time (ms) of `path` and everything under it; 0 when it does not exist. */
function newest(path: string): number {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = 0;
  for (const e of readdirSync(path, { withFileTypes: true })) {
    const m = newest(join(path, e.name));
    if (m > t) t = m;
  }
  return t;
}

/** Packages (their directories, from the repository root) whose build is older than their sources. */
export function staleBuilds(): string[] {
  const built = existsSync(STAMP) ? statSync(STAMP).mtimeMs : 0;
  return BUILT.filter((pkg) => {
    const dir = join(ROOT, pkg);
    const dist = newest(join(dir, "dist"));
    if (dist === 0) return true;
    const src = Math.max(
      newest(join(dir, "src")),
      newest(join(dir, "tsconfig.json")),
      newest(join(dir, "package.json")),
    );
    return src > Math.max(dist, built);
  });
}

export default function setup(): void {
  const stale = staleBuilds();
  if (stale.length === 0) return;
  console.log(`fresh-build: sources newer than their build in ${stale.join(", ")}: building`);
  const started = new Date();
  try {
    execFileSync(
      join(ROOT, "node_modules", ".bin", "turbo"),
      ["run", "build", "--filter=@siptm/server...", "--continue", "--output-logs=errors-only"],
      { cwd: ROOT, stdio: "inherit", env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1" } },
    );
  } catch {
    // tsc writes its output even with type errors: the tests run on it; the errors are above.
    console.warn("fresh-build: the build reported errors (see above); testing what it emitted");
  }
  mkdirSync(dirname(STAMP), { recursive: true });
  writeFileSync(STAMP, "");
  utimesSync(STAMP, started, started);
}
