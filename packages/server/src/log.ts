/** Structured logs: pino JSON lines on stderr, quiet by default (warn). */
import pino, { type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger };

/**
 * A logger writing synchronously to stderr, so the last lines before an exit
 * are never lost. `--trace` needs info: it lowers a quieter level to info.
 */
export function createLogger(level: LogLevel, trace = false): Logger {
  const quieterThanInfo = level === "fatal" || level === "error" || level === "warn" || level === "silent";
  return pino(
    {
      level: trace && quieterThanInfo ? "info" : level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
