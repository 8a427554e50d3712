/**
 * A private copy of the built siptm packages for the length of a load run.
 *
 * A full load run takes half an hour; on a working tree shared with other
 * people, a `npm run build` in the meantime rewrites packages/*\/dist under
 * the running benchmark, and a server started during the rebuild fails to
 * load (or runs half-old code). The benchmark therefore copies each
 * package's package.json and dist/ once, at the start, into a temporary
 * folder with a node_modules of its own: @siptm/* point at the copies, every
 * other dependency is a symbolic link into the repository's node_modules.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { releaseTempDir, trackTempDir } from "./children.js";

export interface Snapshot {
  /** Stands in for the repository root: packages/<name>/dist and node_modules/ are there. */
  readonly root: string;
  cleanup(): void;
}

export function snapshotPackages(repo: string, packages: readonly string[]): Snapshot {
  const root = trackTempDir(mkdtempSync(join(tmpdir(), "siptm-load-build-")));
  try {
    for (const name of packages) {
      const from = join(repo, "packages", name);
      const to = join(root, "packages", name);
      mkdirSync(to, { recursive: true });
      cpSync(join(from, "package.json"), join(to, "package.json"));
      cpSync(join(from, "dist"), join(to, "dist"), { recursive: true });
    }
    const modules = join(root, "node_modules");
    mkdirSync(join(modules, "@siptm"), { recursive: true });
    for (const entry of readdirSync(join(repo, "node_modules"))) {
      if (entry === "@siptm" || entry === ".bin" || entry.startsWith(".")) continue;
      symlinkSync(join(repo, "node_modules", entry), join(modules, entry));
    }
    for (const name of packages) symlinkSync(join(root, "packages", name), join(modules, "@siptm", name));
    for (const name of packages)
      if (!existsSync(join(root, "packages", name, "dist")))
        throw new Error(`snapshot: packages/${name}/dist missing`);
  } catch (err) {
    releaseTempDir(root, true);
    throw err;
  }
  return { root, cleanup: () => releaseTempDir(root, true) };
}
