#!/usr/bin/env node
/**
 * The `siptm` command: serve, rpc, help, version. Every failure is one line
 * on stderr and a non-zero exit status: 2 for a usage error, 1 otherwise.
 */
import { parseServeArgs, UsageError } from "./config.js";
import { mainHelp, rpcHelp, serveHelp } from "./options.js";
import { oneLine, rpcMain } from "./rpc-client.js";
import { startServer, versions } from "./server.js";
import { banner, startStatusLine } from "./ui.js";

async function serve(args: readonly string[]): Promise<number | undefined> {
  const parsed = parseServeArgs(args);
  if (parsed.help) {
    process.stdout.write(serveHelp());
    return 0;
  }
  const config = parsed.config;
  const server = await startServer(config);
  let stopStatus: (() => void) | undefined;

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`siptm: ${signal} again, exiting without draining\n`);
      process.exit(130);
    }
    stopStatus?.();
    const stopping = server.shutdown(signal);
    void server
      .live()
      .catch(() => 0)
      .then((live) =>
        process.stdout.write(
          `stopping (${signal}): ${live > 0 ? `draining ${live} transaction(s), up to ${config.drainTimeout} ms` : "nothing to drain"}\n`,
        ),
      );
    stopping.then(
      ({ left }) => {
        process.stdout.write(left > 0 ? `stopped (${left} transaction(s) cut short)\n` : "stopped\n");
        process.exit(0);
      },
      (err: unknown) => {
        process.stderr.write(
          `siptm: shutdown failed: ${oneLine(err instanceof Error ? err.message : String(err))}\n`,
        );
        process.exit(1);
      },
    );
  };
  // The handlers go in before the banner: whoever reads the banner (a supervisor, a test) may signal
  // at once, and a SIGTERM before them would kill the process without draining.
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // SIGHUP: reload what can change while running (the --tls-* files); on failure keep the old.
  process.on("SIGHUP", () => {
    try {
      server.reload();
      server.logger.info("SIGHUP: reloaded");
      process.stdout.write("reloaded (SIGHUP)\n");
    } catch (err) {
      const msg = oneLine(err instanceof Error ? err.message : String(err));
      server.logger.warn({ err: msg }, "SIGHUP: reload failed; keeping what was loaded");
      process.stderr.write(`siptm: reload failed, keeping what was loaded: ${msg}\n`);
    }
  });
  // A crash after start-up: log it (with its stack, on stderr) and leave with status 1.
  process.on("uncaughtException", (err) => {
    server.logger.fatal({ err }, "uncaught exception");
    process.stderr.write(`siptm: fatal: ${oneLine(err.message)}\n`);
    process.exit(1);
  });
  process.stdout.write(banner(server.info, config, server.timers));
  stopStatus =
    process.stdout.isTTY && config.statusInterval > 0
      ? startStatusLine(
          () => server.tm.stats(),
          config.statusInterval,
          (l) => process.stdout.write(l),
          server.info.workers.shards,
        )
      : undefined;
  return undefined; // keep running
}

async function main(argv: readonly string[]): Promise<number | undefined> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "help":
    case "--help":
    case "-h":
      if (command === "help" && rest[0] === "serve") process.stdout.write(serveHelp());
      else if (command === "help" && rest[0] === "rpc") process.stdout.write(rpcHelp());
      else process.stdout.write(mainHelp());
      return 0;
    case "version":
    case "--version":
    case "-V": {
      const v = versions();
      process.stdout.write(`siptm ${v.version} (@siptm/core ${v.coreVersion}, node ${process.version})\n`);
      return 0;
    }
    case "serve":
      return serve(rest);
    case "rpc":
      return rpcMain(rest, process.env);
    default:
      throw new UsageError(
        command.startsWith("-")
          ? `unknown option ${command} before a command (siptm serve ${command} …?)`
          : `unknown command "${command}" (commands: serve, rpc, help, version)`,
      );
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (err: unknown) => {
    const usage = err instanceof UsageError;
    const msg = oneLine(err instanceof Error ? err.message : String(err));
    process.stderr.write(`siptm: ${msg}${usage ? " (see siptm --help)" : ""}\n`);
    process.exit(usage ? 2 : 1);
  },
);
