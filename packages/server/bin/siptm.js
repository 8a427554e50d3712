#!/usr/bin/env node
// The `siptm` command. This launcher is committed (not built) on purpose:
// npm links a package's bin only if its file exists at install time, and
// dist/ is built by the root `prepare` script after the links are made — a
// bin pointing into dist/ would be missing after `npm ci` on a fresh clone.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const cli = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  process.stderr.write("siptm: not built yet: run `npm run build` at the repository root\n");
  process.exit(1);
}
await import(cli.href);
