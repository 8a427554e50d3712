/**
 * `siptm rpc METHOD [ARGS...]`: a kamcmd-like client. Positional arguments
 * become the JSON-RPC params array; the result is printed as JSON.
 */

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_RPC, hostPort, parseHostPort, readConfigFile, UsageError } from "./config.js";
import { parseArgsOptions, RPC_CLIENT_OPTIONS, rpcHelp } from "./options.js";

export interface RpcCallOptions {
  host: string;
  port: number;
  token?: string | undefined;
  timeoutMs?: number | undefined;
}

/** A failed call: the server's JSON-RPC error or why it could not be reached. */
export class RpcCallError extends Error {
  override readonly name = "RpcCallError";
  constructor(
    message: string,
    readonly code?: number,
  ) {
    super(message);
  }
}

/** One JSON-RPC call over HTTP. Resolves with the result; rejects with RpcCallError. */
export async function rpcCall(
  opts: RpcCallOptions,
  method: string,
  params: unknown[] | object = [],
): Promise<unknown> {
  const url = `http://${hostPort(opts.host, opts.port)}/rpc`;
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (opts.token !== undefined) headers.Authorization = `Bearer ${opts.token}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
      signal: opts.timeoutMs ? AbortSignal.timeout(opts.timeoutMs) : undefined,
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    const why = cause?.code ?? (err instanceof Error ? err.message : String(err));
    throw new RpcCallError(`cannot reach ${url}: ${why}`);
  }
  const text = await res.text();
  let body: { result?: unknown; error?: { code?: number; message?: string } };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new RpcCallError(`HTTP ${res.status} from ${url}: not a JSON-RPC answer`);
  }
  if (body.error) throw new RpcCallError(`error ${body.error.code}: ${body.error.message}`, body.error.code);
  if (!("result" in body)) throw new RpcCallError(`HTTP ${res.status} from ${url}: no result`);
  return body.result;
}

/**
 * Where the options end: at METHOD (the first argument that is neither an
 * option nor an option's value) or at "--". Everything after is ARGS, as
 * typed — a Call-ID, a header or a reason may well start with "-".
 */
export function splitRpcArgs(args: readonly string[]): { options: string[]; positionals: string[] } {
  const takesValue = new Set(
    RPC_CLIENT_OPTIONS.filter((o) => o.type === "string").flatMap((o) =>
      o.short === undefined ? [`--${o.name}`] : [`--${o.name}`, `-${o.short}`],
    ),
  );
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") return { options: args.slice(0, i), positionals: args.slice(i + 1) };
    if (!a.startsWith("-") || a === "-") return { options: args.slice(0, i), positionals: args.slice(i) };
    if (takesValue.has(a)) i++;
  }
  return { options: [...args], positionals: [] };
}

/** The CLI: returns the exit status. */
export async function rpcMain(args: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const split = splitRpcArgs(args);
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: split.options,
      options: parseArgsOptions(RPC_CLIENT_OPTIONS),
      strict: true,
      allowPositionals: false,
    }) as { values: Record<string, string | boolean | undefined> });
  } catch (err) {
    throw new UsageError((err instanceof Error ? err.message : String(err)).split(/\.\s/)[0]!);
  }
  const positionals = split.positionals;
  if (values.help) {
    process.stdout.write(rpcHelp());
    return 0;
  }
  const [method, ...rest] = positionals;
  if (!method) throw new UsageError("siptm rpc needs a METHOD (try: siptm rpc system.listMethods)");
  // --rpc, else the server's config file (--config), else SIPTM_RPC, else the default; the token likewise.
  const file = typeof values.config === "string" ? readConfigFile(resolve(values.config)) : {};
  const fileRpc = typeof file.rpc === "string" ? file.rpc : undefined;
  if (fileRpc === "off")
    throw new UsageError(`${values.config}: the control interface is off ("rpc": "off")`);
  const where =
    typeof values.rpc === "string"
      ? parseHostPort(values.rpc, "--rpc")
      : fileRpc !== undefined
        ? reachable(parseHostPort(fileRpc, `${values.config}: rpc`))
        : env.SIPTM_RPC
          ? parseHostPort(env.SIPTM_RPC, "SIPTM_RPC")
          : DEFAULT_RPC;
  const timeoutText = values.timeout;
  let timeoutMs: number | undefined;
  if (typeof timeoutText === "string") {
    if (!/^\d+$/.test(timeoutText))
      throw new UsageError(`--timeout needs milliseconds, got "${timeoutText}"`);
    timeoutMs = Number(timeoutText);
  }
  const fileToken = file["rpc-token"];
  const token =
    typeof values["rpc-token"] === "string"
      ? values["rpc-token"]
      : typeof fileToken === "string"
        ? fileToken
        : env.SIPTM_RPC_TOKEN || undefined;
  // "\r\n" and "\n" typed as two characters stand for line breaks (header text on a command line).
  const params = rest.map((a) => a.replace(/\\r\\n|\\n/g, "\r\n"));
  try {
    const result = await rpcCall({ host: where.host, port: where.port, token, timeoutMs }, method, params);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`siptm rpc: ${oneLine(err instanceof Error ? err.message : String(err))}\n`);
    return 1;
  }
}

/** A server listening on a wildcard address is reached on loopback of that family. */
function reachable(where: { host: string; port: number }): { host: string; port: number } {
  if (where.host === "0.0.0.0") return { ...where, host: "127.0.0.1" };
  if (where.host === "::") return { ...where, host: "::1" };
  return where;
}

export function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, " ").trim();
}
