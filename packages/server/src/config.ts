/**
 * `siptm serve` configuration: flags (node:util parseArgs) over an optional
 * JSON file, validated into one `ServerConfig`. Every problem is a
 * `UsageError` with a one-line message.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { availableParallelism } from "node:os";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { TcpLimitOptions, TimerConfig } from "@siptm/core";
import { type OptionSpec, parseArgsOptions, SERVE_OPTIONS } from "./options.js";
import { MIN_SECRET_LENGTH } from "./secret.js";

/** A bad flag, config value or file: printed as one line, exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

export type ListenProtocol = "UDP" | "TCP" | "TLS" | "WS" | "WSS";

export interface ListenSpec {
  readonly protocol: ListenProtocol;
  /** IP literal without brackets. */
  readonly address: string;
  /** 0 = ephemeral (the banner shows the real port). */
  readonly port: number;
}

/**
 * The TLS material and policy of the TLS and WSS listeners (--tls-*): file
 * paths, read at start and again on SIGHUP.
 */
export interface TlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string | undefined;
  /** Ask inbound peers for a certificate. */
  readonly clientCert: "required" | "optional" | "off";
  /** Outbound: check the peer's certificate (RFC 5922); "insecure" only when asked for (lab use). */
  readonly verify: "verify" | "insecure";
  /** SHA-256 fingerprints accepted whatever the chain (pinning). */
  readonly pins: readonly string[];
  readonly handshakeTimeoutMs: number | undefined;
}

/** The WebSocket listeners' limits (--ws-*); undefined: the transport's defaults. */
export interface WsConfig {
  /** CIDRs whose X-Forwarded-For is believed (a reverse proxy in front). */
  readonly trustedProxies: readonly string[];
  readonly maxMessageBytes: number | undefined;
  readonly pingIntervalMs: number | undefined;
  readonly pongTimeoutMs: number | undefined;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Relay options from the timer flags: fr_timer, and Timer C (--timer-c, else --fr-inv-timer). */
export interface ProxyTimers {
  frTimer?: number;
  timerC?: number;
}

/** --max-transactions when not given (the core engine's own default). */
export const DEFAULT_MAX_TRANSACTIONS = 1_000_000;

/** --rate-limit, --rate-burst, --rate-sources when not given. */
export const DEFAULT_RATE_LIMIT = 1000;
export const DEFAULT_RATE_SOURCES = 65_536;

/** The per-source rate limit of new requests (off: undefined). */
export interface RateLimitConfig {
  /** Tokens (new requests) per second per source IP. */
  readonly rate: number;
  /** The bucket's size: requests a source may send at once. */
  readonly burst: number;
  /** Source IPs remembered; the oldest is forgotten past it. */
  readonly sources: number;
}

/** What the control server takes (the --rpc-* flags); undefined: the default. */
export interface ControlLimits {
  /** Host header values accepted besides loopback and the bound address. */
  readonly hosts: readonly string[];
  readonly requestTimeoutMs: number | undefined;
  readonly maxConnections: number | undefined;
  readonly maxBodyBytes: number | undefined;
  readonly maxBatch: number | undefined;
  readonly maxResponseBytes: number | undefined;
  readonly maxPage: number | undefined;
}

/** Route `default`: who may register and relay (--users, --realm, --domain, --trusted, --open). */
export interface AuthConfig {
  /** The users file (absolute path); undefined: no digest authentication. */
  readonly usersFile: string | undefined;
  /** The realm of the challenges (RFC 3261 §22.1). */
  readonly realm: string;
  /** --domain: SIP domains we serve besides our addresses and --alias (also in `aliases`). */
  readonly domains: readonly string[];
  /** --trusted CIDRs: peers whose requests skip authentication and relay checks. */
  readonly trusted: readonly string[];
  /** --open: no authentication and no relay checks (today's open registrar and relay). */
  readonly open: boolean;
}

export interface ServerConfig {
  readonly listen: readonly ListenSpec[];
  /** null: no control server. */
  readonly rpc: HostPort | null;
  readonly rpcToken: string | undefined;
  readonly control: ControlLimits;
  /** The registrar's shortest expiry in seconds (423 below it; 0 = none). */
  readonly minExpires: number;
  /** Worker threads asked for (0 = one thread). */
  readonly workers: number;
  /** Built-in route name or module path as given. */
  readonly route: string;
  /** Directory a relative route path is resolved from (cwd, or the config file's directory). */
  readonly routeBase: string;
  /** Engine timers given (t1, t2, t4, timerD, frInvTimer); the rest are the engine's defaults. */
  readonly timers: Partial<TimerConfig>;
  /** Proxy branch timers (relay options). */
  readonly proxy: ProxyTimers;
  /**
   * The live-transaction cap of the whole server (undefined: DEFAULT_MAX_TRANSACTIONS). With shards
   * the coordinator counts every shard's live transactions against it; each shard's engine has the
   * whole cap as a safety net.
   */
  readonly maxTransactions: number | undefined;
  /** Per-source rate limit of new requests; undefined = off (--rate-limit 0). */
  readonly rateLimit: RateLimitConfig | undefined;
  /** --secret / SIPTM_SECRET: keys are derived from it (secret.ts); undefined = random per process. */
  readonly secret: string | undefined;
  /** TCP limits given (--tcp-*); the rest are the TCP transport's defaults. They apply to TLS too. */
  readonly tcp: TcpLimitOptions;
  /** TLS material for the TLS and WSS listeners (and outbound TLS); undefined when none is given. */
  readonly tls: TlsConfig | undefined;
  readonly ws: WsConfig;
  readonly answerCode: number;
  /** ms, or "never". */
  readonly answerAfter: number | "never";
  /** Route `default`: Record-Route in relayed dialog-creating requests (--record-route on|off). */
  readonly recordRoute: boolean;
  readonly advertise: string | undefined;
  /** --alias: other host names that are ours (domains served; Kamailio alias). */
  readonly aliases: readonly string[];
  /** Route `default`: authentication and relay policy. */
  readonly auth: AuthConfig;
  readonly logLevel: LogLevel;
  readonly trace: boolean;
  /** Seconds; 0 = off. */
  readonly statusInterval: number;
  readonly drainTimeout: number;
  readonly configFile: string | undefined;
}

export const DEFAULT_SIP_PORT = 5060;
export const DEFAULT_RPC: HostPort = { host: "127.0.0.1", port: 5080 };

type Raw = Record<string, string | string[] | boolean | undefined>;

const BY_NAME = new Map<string, OptionSpec>(SERVE_OPTIONS.map((s) => [s.name, s]));

function camelToKebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Parse `siptm serve` arguments (after the command word) with the environment. */
export function parseServeArgs(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
): { config: ServerConfig; help: false } | { config: undefined; help: true } {
  let values: Raw;
  try {
    ({ values } = parseArgs({
      args: negativeValues(args),
      options: parseArgsOptions(SERVE_OPTIONS),
      strict: true,
      allowPositionals: false,
    }) as { values: Raw });
  } catch (err) {
    throw new UsageError(parseArgsMessage(err));
  }
  if (values.help) return { config: undefined, help: true };
  let fileRaw: Raw = {};
  let base = cwd;
  const configFile = typeof values.config === "string" ? resolve(cwd, values.config) : undefined;
  if (configFile) {
    fileRaw = readConfigFile(configFile);
    base = dirname(configFile);
  }
  // The route comes from the file only when no flag names one: resolve it from where it was written.
  const routeBase = values.route === undefined && fileRaw.route !== undefined ? base : cwd;
  const merged: Raw = { ...fileRaw };
  for (const [k, v] of Object.entries(values)) if (v !== undefined && k !== "config") merged[k] = v;
  return { config: resolveConfig(merged, env, routeBase, configFile), help: false };
}

/**
 * "--workers -1": a negative number after a flag that takes a value is that value (node's parseArgs
 * would call it ambiguous), so that the flag's own check says what a valid one is.
 */
function negativeValues(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const next = args[i + 1];
    const spec = a.startsWith("--")
      ? BY_NAME.get(a.slice(2))
      : SERVE_OPTIONS.find((s) => s.short !== undefined && a === `-${s.short}`);
    if (spec?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      out.push(`--${spec.name}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

function parseArgsMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  // Node's messages carry a second sentence about '--' positionals: keep the first.
  const first = msg.split(/\.\s/)[0]!.replace(/\.$/, "");
  if (/Unexpected argument/i.test(first)) return `${first} (serve takes only --flags)`;
  return first;
}

/** A `siptm serve` config file's options, checked (flag names, types); also read by `siptm rpc --config`. */
export function readConfigFile(path: string): Raw {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(
      `cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data))
    throw new UsageError(`config file ${path} must hold a JSON object of options`);
  const out: Raw = {};
  for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
    const name = BY_NAME.has(key) ? key : camelToKebab(key);
    const spec = BY_NAME.get(name);
    if (!spec || spec.cliOnly) throw new UsageError(`config file ${path}: unknown option "${key}"`);
    out[name] = fileValue(path, key, spec, value);
  }
  return out;
}

function fileValue(path: string, key: string, spec: OptionSpec, value: unknown): string | string[] | boolean {
  const bad = (): never => {
    throw new UsageError(`config file ${path}: "${key}" has the wrong type`);
  };
  if (spec.type === "boolean") return typeof value === "boolean" ? value : bad();
  const scalar = (v: unknown): string =>
    typeof v === "string" ? v : typeof v === "number" && Number.isFinite(v) ? String(v) : bad();
  if (spec.multiple) return Array.isArray(value) ? value.map(scalar) : [scalar(value)];
  return scalar(value);
}

function resolveConfig(
  raw: Raw,
  env: NodeJS.ProcessEnv,
  routeBase: string,
  configFile: string | undefined,
): ServerConfig {
  const str = (name: string): string | undefined => {
    const v = raw[name];
    return typeof v === "string" ? v : undefined;
  };
  const listenSpecs =
    raw.listen === undefined ? undefined : ([] as string[]).concat(raw.listen as string | string[]);
  const listen = listenSpecs?.length
    ? listenSpecs.flatMap((s) => parseListen(s))
    : [
        { protocol: "UDP" as const, address: "127.0.0.1", port: DEFAULT_SIP_PORT },
        { protocol: "TCP" as const, address: "127.0.0.1", port: DEFAULT_SIP_PORT },
      ];

  const rpcText = str("rpc");
  const rpc =
    rpcText === undefined ? DEFAULT_RPC : rpcText === "off" ? null : parseHostPort(rpcText, "--rpc");
  const token = str("rpc-token") ?? (env.SIPTM_RPC_TOKEN || undefined);
  if (token !== undefined && !/^[\x21-\x7e]{1,512}$/.test(token))
    throw new UsageError("--rpc-token must be 1 to 512 visible ASCII characters");
  if (rpc && !isLoopback(rpc.host) && token === undefined)
    throw new UsageError(
      `refusing to serve the control interface on ${hostPort(rpc.host, rpc.port)} without a token: give --rpc-token or SIPTM_RPC_TOKEN, or bind it to loopback`,
    );

  const controlInt = (name: string, min: number, max?: number): number | undefined => {
    const v = str(name);
    return v === undefined ? undefined : int(`--${name}`, v, min, max);
  };
  const hosts =
    raw["rpc-host"] === undefined ? [] : ([] as string[]).concat(raw["rpc-host"] as string | string[]);
  for (const h of hosts)
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.:-]+)$/.test(h))
      throw new UsageError(`--rpc-host: "${h}" is not a host name or IP address`);
  const control: ControlLimits = {
    hosts,
    requestTimeoutMs: controlInt("rpc-request-timeout", 100),
    maxConnections: controlInt("rpc-max-connections", 1),
    maxBodyBytes: controlInt("rpc-max-body", 1024),
    maxBatch: controlInt("rpc-max-batch", 1),
    maxResponseBytes: controlInt("rpc-max-response", 1024),
    maxPage: controlInt("rpc-max-page", 1),
  };
  const minExpiresText = str("min-expires");

  const workersText = str("workers");
  const workers = workersText === undefined ? availableParallelism() : int("--workers", workersText, 0, 1024);

  const timers: Partial<TimerConfig> = given({
    t1: optInt(str, "t1", 1),
    t2: optInt(str, "t2", 1),
    t4: optInt(str, "t4", 1),
    timerD: optInt(str, "timer-d", 0),
  });
  const proxy: ProxyTimers = {};
  const frInv = str("fr-inv-timer");
  if (frInv !== undefined) {
    timers.frInvTimer = int("--fr-inv-timer", frInv, 1);
    // In the core's proxy, Timer C is the fr_inv_timer of each branch.
    proxy.timerC = timers.frInvTimer;
  }
  const fr = str("fr-timer");
  if (fr !== undefined) proxy.frTimer = int("--fr-timer", fr, 1);
  const timerC = str("timer-c");
  if (timerC !== undefined) proxy.timerC = int("--timer-c", timerC, 1);

  const maxTx = str("max-transactions");
  const rateText = str("rate-limit");
  const rate =
    rateText === undefined ? DEFAULT_RATE_LIMIT : int("--rate-limit", rateText.replace(/\/s$/, ""), 0);
  const burstText = str("rate-burst");
  const sourcesText = str("rate-sources");
  const rateLimit: RateLimitConfig | undefined =
    rate === 0
      ? undefined
      : {
          rate,
          burst: burstText === undefined ? 2 * rate : int("--rate-burst", burstText, 1),
          sources:
            sourcesText === undefined ? DEFAULT_RATE_SOURCES : int("--rate-sources", sourcesText, 1, 1 << 24),
        };
  const secret = str("secret") ?? (env.SIPTM_SECRET || undefined);
  if (secret !== undefined && secret.length < MIN_SECRET_LENGTH)
    throw new UsageError(`--secret must have at least ${MIN_SECRET_LENGTH} characters`);
  const tls = tlsConfig(str, raw, listen, routeBase);
  const ws: WsConfig = {
    trustedProxies: list(raw["ws-trusted-proxy"]).map((c) => checkCidr(c, "--ws-trusted-proxy")),
    maxMessageBytes: optInt(str, "ws-max-message", 1024, 16 * 1024 * 1024),
    pingIntervalMs: optInt(str, "ws-ping-interval", 0),
    pongTimeoutMs: optInt(str, "ws-pong-timeout", 100),
  };
  const tcp: TcpLimitOptions = given({
    maxConnections: optInt(str, "tcp-max-connections", 1, 10_000_000),
    maxConnectionsPerIp: optInt(str, "tcp-max-per-ip", 0),
    msgTimeoutMs: optInt(str, "tcp-msg-timeout", 0),
    maxPingsPerWindow: optInt(str, "tcp-max-pings", 0),
  });
  const answerCodeText = str("answer-code");
  const answerCode = answerCodeText === undefined ? 200 : int("--answer-code", answerCodeText, 200, 699);
  const afterText = str("answer-after");
  const answerAfter: number | "never" =
    afterText === undefined ? 0 : afterText === "never" ? "never" : int("--answer-after", afterText, 0);

  const rrText = str("record-route") ?? "on";
  if (rrText !== "on" && rrText !== "off")
    throw new UsageError(`--record-route must be on or off, got "${rrText}"`);

  const advertise = str("advertise");
  if (advertise !== undefined && !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.:-]+)$/.test(advertise))
    throw new UsageError(`--advertise: "${advertise}" is not a host name or IP address`);

  const aliases = raw.alias === undefined ? [] : ([] as string[]).concat(raw.alias as string | string[]);
  for (const a of aliases)
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.:-]+)$/.test(a))
      throw new UsageError(`--alias: "${a}" is not a host name or IP address`);
  const auth = authConfig(str, raw, listen, advertise, routeBase);
  // A domain we serve is ours as an alias is: its Request-URIs and Routes are local.
  for (const d of auth.domains) if (!aliases.includes(d)) aliases.push(d);

  const levelText = str("log-level") ?? "warn";
  if (!(LOG_LEVELS as readonly string[]).includes(levelText))
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}, got "${levelText}"`);

  const statusText = str("status-interval");
  const drainText = str("drain-timeout");
  const route = str("route") ?? "default";
  if (route.length === 0) throw new UsageError("--route needs a name or a path");

  return {
    listen,
    rpc,
    rpcToken: token,
    control,
    minExpires: minExpiresText === undefined ? 60 : int("--min-expires", minExpiresText, 0, 86_400),
    workers,
    route,
    routeBase,
    timers,
    proxy,
    maxTransactions: maxTx === undefined ? undefined : int("--max-transactions", maxTx, 1),
    rateLimit,
    secret,
    tcp,
    tls,
    ws,
    answerCode,
    answerAfter,
    recordRoute: rrText === "on",
    advertise,
    aliases,
    auth,
    logLevel: levelText as LogLevel,
    trace: raw.trace === true,
    statusInterval: statusText === undefined ? 5 : int("--status-interval", statusText, 0, 86_400),
    drainTimeout: drainText === undefined ? 5000 : int("--drain-timeout", drainText, 0),
    configFile,
  };
}

function int(flag: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `in ${min}..${max}`;
  const n = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || n < min || n > max)
    throw new UsageError(`${flag} takes a whole number ${range}, got "${text}"`);
  return n;
}

/**
 * "udp:127.0.0.1:5060", "tcp:[::1]:5060", "tls:127.0.0.1:5061", "ws:127.0.0.1:8080",
 * "wss:127.0.0.1:8443", "127.0.0.1:5060" (UDP and TCP), "udp:127.0.0.1" (the
 * protocol's default port: 5060, 5061 for TLS, 80 / 443 for WS / WSS).
 */
export function parseListen(spec: string): ListenSpec[] {
  const m = /^(?:(udp|tcp|tls|wss|ws):)?(\[[^\]]*\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(spec.trim());
  if (!m)
    throw new UsageError(
      `--listen "${spec}": expected PROTO:HOST:PORT, PROTO one of udp, tcp, tls, ws, wss (IPv6 in brackets: udp:[::1]:5060)`,
    );
  const address = m[2]!.startsWith("[") ? m[2]!.slice(1, -1) : m[2]!;
  if (isIP(address) === 0) throw new UsageError(`--listen "${spec}": "${address}" is not an IP address`);
  if (m[2]!.startsWith("[") !== (isIP(address) === 6))
    throw new UsageError(`--listen "${spec}": write an IPv6 address in brackets, and only an IPv6 address`);
  const protos: ListenProtocol[] = m[1] ? [m[1].toUpperCase() as ListenProtocol] : ["UDP", "TCP"];
  const port = m[3] === undefined ? DEFAULT_PORTS[protos[0]!] : Number(m[3]);
  if (port > 65535) throw new UsageError(`--listen "${spec}": port ${port} is out of range`);
  return protos.map((protocol) => ({ protocol, address, port }));
}

/** RFC 3261 §19.1.2 (5060, 5061 for TLS); WebSocket: HTTP's own (RFC 7118 §7). */
const DEFAULT_PORTS: Record<ListenProtocol, number> = { UDP: 5060, TCP: 5060, TLS: 5061, WS: 80, WSS: 443 };

function list(v: string | string[] | boolean | undefined): string[] {
  return v === undefined || typeof v === "boolean" ? [] : ([] as string[]).concat(v);
}

function optInt(
  str: (name: string) => string | undefined,
  name: string,
  min: number,
  max?: number,
): number | undefined {
  const v = str(name);
  return v === undefined ? undefined : int(`--${name}`, v, min, max);
}

/** `o` without its undefined members: a flag not given leaves its key absent (so a spread keeps the default). */
function given<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/** "10.0.0.0/8", "2001:db8::/32", or a single address (a /32 or /128). */
export function checkCidr(text: string, flag: string): string {
  const [addr, bits, extra] = text.trim().split("/");
  const family = isIP(addr ?? "");
  const max = family === 6 ? 128 : 32;
  const ok =
    family !== 0 &&
    extra === undefined &&
    (bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max));
  if (!ok) throw new UsageError(`${flag} "${text}": expected an IP address or ADDRESS/BITS`);
  return text.trim();
}

/**
 * --users, --realm, --domain, --trusted, --open. Safe by default (as --rpc-token): a SIP listener
 * off loopback needs --users (digest authentication) or an explicit --open.
 */
function authConfig(
  str: (name: string) => string | undefined,
  raw: Raw,
  listen: readonly ListenSpec[],
  advertise: string | undefined,
  base: string,
): AuthConfig {
  const users = str("users");
  const open = raw.open === true;
  if (open && users !== undefined) throw new UsageError("--open and --users exclude each other");
  const exposed = listen.find((l) => !isLoopback(l.address));
  if (exposed && users === undefined && !open)
    throw new UsageError(
      `refusing to serve SIP on ${hostPort(exposed.address, exposed.port)} as an open registrar and relay: give --users FILE (digest authentication), or --open, or listen on loopback`,
    );
  const realm = str("realm") ?? advertise ?? listen[0]?.address ?? "127.0.0.1";
  if (realm === "" || !/^[\x20-\x7e]{1,256}$/.test(realm) || realm.includes('"') || realm.includes("\\"))
    throw new UsageError(`--realm "${realm}": 1 to 256 visible ASCII characters, no quote or backslash`);
  const domains = list(raw.domain).map((d) => {
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.:-]+)$/.test(d))
      throw new UsageError(`--domain: "${d}" is not a host name or IP address`);
    return d;
  });
  const trusted = list(raw.trusted).map((c) => checkCidr(c, "--trusted"));
  return {
    usersFile: users === undefined ? undefined : resolve(base, users),
    realm,
    domains,
    trusted,
    open,
  };
}

/** --tls-*: required by a TLS or WSS listener; files resolved against the config file's directory. */
function tlsConfig(
  str: (name: string) => string | undefined,
  raw: Raw,
  listen: readonly ListenSpec[],
  base: string,
): TlsConfig | undefined {
  const certFile = str("tls-cert");
  const keyFile = str("tls-key");
  const needs = listen.find((l) => l.protocol === "TLS" || l.protocol === "WSS");
  if (certFile === undefined || keyFile === undefined) {
    if (needs)
      throw new UsageError(
        `--listen ${needs.protocol.toLowerCase()}:… needs --tls-cert FILE and --tls-key FILE (PEM)`,
      );
    if (certFile !== undefined || keyFile !== undefined)
      throw new UsageError("--tls-cert and --tls-key go together");
    return undefined;
  }
  const clientCert = str("tls-client-cert") ?? "off";
  if (clientCert !== "required" && clientCert !== "optional" && clientCert !== "off")
    throw new UsageError(`--tls-client-cert must be required, optional or off, got "${clientCert}"`);
  const verify = str("tls-verify") ?? "on";
  if (verify !== "on" && verify !== "off")
    throw new UsageError(`--tls-verify must be on or off, got "${verify}"`);
  const pins = list(raw["tls-pin"]).map((p) => {
    const hex = p.replace(/:/g, "");
    if (!/^[0-9a-fA-F]{64}$/.test(hex))
      throw new UsageError(
        `--tls-pin "${p}": expected a SHA-256 fingerprint (64 hex digits, colons optional)`,
      );
    return p;
  });
  const ca = str("tls-ca");
  return {
    certFile: resolve(base, certFile),
    keyFile: resolve(base, keyFile),
    caFile: ca === undefined ? undefined : resolve(base, ca),
    clientCert,
    verify: verify === "on" ? "verify" : "insecure",
    pins,
    handshakeTimeoutMs: optInt(str, "tls-handshake-timeout", 100),
  };
}

/** "127.0.0.1:5080", "[::1]:5080", "localhost:5080". */
export function parseHostPort(text: string, flag: string): HostPort {
  const m = /^(\[[^\]]*\]|[^:[\]]+):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag} "${text}": expected HOST:PORT (IPv6 in brackets: [::1]:5080)`);
  const host = m[1]!.startsWith("[") ? m[1]!.slice(1, -1) : m[1]!;
  if (host !== "localhost" && isIP(host) === 0)
    throw new UsageError(`${flag} "${text}": "${host}" is not an IP address (or localhost)`);
  const port = Number(m[2]);
  if (port > 65535) throw new UsageError(`${flag} "${text}": port ${port} is out of range`);
  return { host, port };
}

export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === "localhost" || h === "::1") return true;
  if (h.startsWith("::ffff:")) return h.slice(7).startsWith("127.");
  return isIP(h) === 4 && h.startsWith("127.");
}

/** "127.0.0.1:5060", "[::1]:5060". */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
