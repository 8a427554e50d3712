/** Where a benchmark ran: recorded with every result so numbers can be compared honestly. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";

export interface BenchEnvironment {
  readonly date: string;
  readonly node: string;
  readonly v8: string;
  readonly platform: string;
  readonly arch: string;
  readonly cpu: string;
  readonly cpus: number;
  readonly commit: string | undefined;
  readonly versions: Record<string, string>;
}

function gitCommit(cwd: string): string | undefined {
  try {
    const out = execFileSync("git", ["rev-parse", "--short", "HEAD"], {
      cwd,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    return out || undefined;
  } catch {
    return undefined;
  }
}

/** Version of an installed package, read from its package.json (undefined when unknown). */
export function packageVersion(packageJsonUrl: URL): string | undefined {
  try {
    const json = JSON.parse(readFileSync(packageJsonUrl, "utf8")) as { version?: unknown };
    return typeof json.version === "string" ? json.version : undefined;
  } catch {
    return undefined;
  }
}

export function environment(repoDir: string, versions: Record<string, string | undefined>): BenchEnvironment {
  const cpus = os.cpus();
  const known: Record<string, string> = {};
  for (const [k, v] of Object.entries(versions)) if (v !== undefined) known[k] = v;
  return {
    date: new Date().toISOString(),
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.type()} ${os.release()}`,
    arch: process.arch,
    cpu: cpus[0]?.model.trim() ?? "unknown",
    cpus: cpus.length,
    commit: gitCommit(repoDir),
    versions: known,
  };
}
