/**
 * `npm run bench` at the repository root: the micro, transaction, sharded
 * engine and load benchmarks one after the other, each in its own Node process, with a
 * progress line before each and a summary at the end. Exit status 1 when one
 * of them failed (the others still run).
 *
 *   node dist/lib/run-all.js [--quick] [--only=micro,transactions,workers,load] [options of the benchmarks]
 *
 * Options go to the benchmarks that know them: --time=MS to micro; --count=,
 * --concurrency=, --rounds=, --generators=, --warmup=, --no-crossing to workers; --shards= to workers and load; --step=,
 * --rates=, --scenarios=, --systems=, --memory=, --cost-rate=, --no-install,
 * --keep-files, --interleaved, --sequential to load; --quick to all.
 */
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const DIST = join(dirname(fileURLToPath(import.meta.url)), "..");

interface Bench {
  name: string;
  file: string;
  what: string;
  owns: (arg: string) => boolean;
}

const BENCHES: readonly Bench[] = [
  {
    name: "micro",
    file: "micro.js",
    what: "message parse/serialise vs npm sip",
    owns: (a) => a.startsWith("--time="),
  },
  {
    name: "transactions",
    file: "transactions.js",
    what: "complete transactions/s in one process vs npm sip",
    owns: () => false,
  },
  {
    name: "workers",
    file: "workers.js",
    what: "the sharded engine (1, 2, 4 shards) vs one thread, in-process load generator",
    owns: (a) =>
      ["--count=", "--concurrency=", "--rounds=", "--shards=", "--generators=", "--warmup="].some((p) =>
        a.startsWith(p),
      ) || a === "--no-crossing",
  },
  {
    name: "load",
    file: "load.js",
    what: "SIPp against siptm, Kamailio and npm sip (RFC 7501/7502 style)",
    owns: (a) =>
      ["--step=", "--rates=", "--scenarios=", "--systems=", "--memory=", "--cost-rate=", "--shards="].some(
        (p) => a.startsWith(p),
      ) || ["--no-install", "--keep-files", "--sequential", "--interleaved"].includes(a),
  },
];

function run(file: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(DIST, file), ...args], { stdio: "inherit" });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.once("SIGINT", forward);
    process.once("SIGTERM", forward);
    child.once("error", (err) => {
      console.error(`bench: ${file}: ${err.message}`);
      resolve(1);
    });
    child.once("exit", (code, signal) => {
      process.off("SIGINT", forward);
      process.off("SIGTERM", forward);
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const quick = argv.includes("--quick");
  let only = BENCHES.map((b) => b.name);
  const rest: string[] = [];
  for (const a of argv) {
    if (a === "--quick") continue;
    if (a.startsWith("--only=")) only = a.slice("--only=".length).split(",");
    else if (a === "--help" || a === "-h") {
      console.log(
        "usage: npm run bench -- [--quick] [--only=micro,transactions,workers,load] [--time=MS] [workers and load options, see node bench/dist/{workers,load}.js --help]",
      );
      return 0;
    } else if (BENCHES.some((b) => b.owns(a))) rest.push(a);
    else {
      console.error(`bench: unknown argument ${a} (see --help)`);
      return 2;
    }
  }
  for (const name of only)
    if (!BENCHES.some((b) => b.name === name)) {
      console.error(`bench: unknown benchmark ${name} in --only`);
      return 2;
    }
  const chosen = BENCHES.filter((b) => only.includes(b.name));
  const summary: string[] = [];
  let failed = 0;
  const t0 = Date.now();
  for (const [i, b] of chosen.entries()) {
    const args = [...(quick ? ["--quick"] : []), ...rest.filter((a) => b.owns(a))];
    console.log(`\n=== [${i + 1}/${chosen.length}] ${b.name}: ${b.what}${quick ? " (--quick)" : ""} ===\n`);
    const start = Date.now();
    const code = await run(b.file, args);
    const secs = ((Date.now() - start) / 1000).toFixed(0);
    summary.push(`  ${b.name.padEnd(13)} ${code === 0 ? "ok" : `FAILED (exit ${code})`}  ${secs} s`);
    if (code !== 0) failed++;
  }
  console.log(
    `\n=== benchmarks done in ${((Date.now() - t0) / 1000).toFixed(0)} s ===\n${summary.join("\n")}`,
  );
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
