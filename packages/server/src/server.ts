/**
 * `siptm serve`: one engine, its SIP sockets, the route, the registrar, the
 * control HTTP server and the metrics, started and stopped together.
 * `startServer` is what the CLI runs; it can be embedded as is.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Engine, type TimerConfig, type Transport } from "@siptm/core";
import { ShardedEngine, type ShardServerHandle, type TransactionEngine, wrapEngine } from "@siptm/workers";
import { AUTH_RELOAD, loadUsersFile, ServerAuth } from "./auth.js";
import { DEFAULT_MAX_TRANSACTIONS, type ServerConfig } from "./config.js";
import { Gate, TracedTransport } from "./gate.js";
import { SHARD_HISTOGRAMS } from "./histograms.js";
import { type ControlServer, startControl } from "./http.js";
import { loadTls, openListener, type Reloadable, reloadTls, wsLimits } from "./listeners.js";
import { type BoundSocket, contactFor, makeIsLocal } from "./local.js";
import { createLogger, type Logger } from "./log.js";
import { Metrics } from "./metrics.js";
import { Registrar } from "./registrar.js";
import { makeResolver } from "./resolver.js";
import {
  checkHandlers,
  closeRoute,
  installRoute,
  type LoadedRoute,
  loadRoute,
  type RouteHandlers,
  type RouteKeys,
  RouteLoadError,
  type RouteParts,
  routeContext,
} from "./route.js";
import { type RpcDeps, type RpcLimits, RpcServer } from "./rpc.js";
import { Scheduler } from "./scheduler.js";
import {
  BRANCH_COOKIE_LABEL,
  DIGEST_NONCE_LABEL,
  deriveKey,
  FLOW_TOKEN_LABEL,
  SHARD_HASH_LABEL,
  secretOf,
} from "./secret.js";
import { shardRouteUrl } from "./shard-route.js";
import { RegistrarPublisher, registrarChannelName } from "./shared-registrar.js";

export interface ServerInfo {
  readonly version: string;
  readonly coreVersion: string;
  readonly sockets: readonly BoundSocket[];
  readonly control: { host: string; port: number } | null;
  readonly route: string;
  readonly routeDescription: string | undefined;
  /**
   * `requested`: --workers. `shards`: worker threads the sharded engine runs (0 = the one-thread
   * core engine). `note`: why the server runs in one thread although workers were asked for (no
   * option forces that at present: always undefined).
   */
  readonly workers: { requested: number; threads: number; shards: number; note: string | undefined };
}

/** The ServerInfo of a running server (both modes): the versions, and what `parts` says. */
function serverInfo(
  parts: Omit<ServerInfo, "version" | "coreVersion" | "control">,
  control: ControlServer | undefined,
): ServerInfo {
  return {
    ...versions(),
    ...parts,
    control: control ? { host: control.host, port: control.port } : null,
  };
}

export interface RunningServer {
  /** The one-thread core engine (--workers 0); undefined when sharded. */
  readonly engine: Engine | undefined;
  /** The sharded engine (--workers N ≥ 1); undefined in one thread. */
  readonly sharded: ShardedEngine | undefined;
  /** Whichever runs, through the common (async) API of @siptm/workers. */
  readonly tm: TransactionEngine;
  /** The engine timers in effect. */
  readonly timers: TimerConfig;
  readonly config: ServerConfig;
  readonly logger: Logger;
  /** The main thread's registrar (what the `default` route uses, and ul.dump / ul.lookup read). */
  readonly registrar: Registrar;
  readonly info: ServerInfo;
  /** Live transactions a drain waits for (all shards): those not merely waiting on Timer J, K, D… */
  live(): Promise<number>;
  /** Stop accepting, drain (bounded by config.drainTimeout), close. Resolves once everything is closed. */
  shutdown(reason?: string): Promise<{ drained: boolean; left: number }>;
  /**
   * SIGHUP: read the --tls-* files again; new TLS/WSS handshakes use them,
   * live connections are kept. Throws (and changes nothing) when they do not load.
   */
  reload(): void;
}

export interface StartOptions {
  logger?: Logger;
}

/** Versions from the package files (no JSON import: rootDir is src). */
export function versions(): { version: string; coreVersion: string } {
  const read = (url: URL | string): string => {
    try {
      return (JSON.parse(readFileSync(url, "utf8")) as { version?: string }).version ?? "unknown";
    } catch {
      return "unknown";
    }
  };
  const version = read(new URL("../package.json", import.meta.url));
  let coreVersion = "unknown";
  try {
    const entry = createRequire(import.meta.url).resolve("@siptm/core");
    coreVersion = read(new URL("../package.json", pathToFileURL(entry)));
  } catch {
    // not resolvable: leave unknown
  }
  return { version, coreVersion };
}

export async function startServer(config: ServerConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger(config.logLevel, config.trace);
  // Load the route first: a bad route fails before any socket is bound.
  const loaded = await loadRoute(config.route, config.routeBase);
  // And a bad users file (a UsageError naming its lines), before any socket too.
  if (config.auth.usersFile !== undefined && !config.auth.open) loadUsersFile(config.auth.usersFile);
  if (config.workers > 0) return startSharded(config, logger, loaded);
  return startOneThread(config, logger, loaded);
}

/** The --rpc-max-* limits of the JSON-RPC layer (the defaults where not given). */
function rpcLimits(config: ServerConfig): Partial<RpcLimits> {
  const c = config.control;
  const out: { -readonly [K in keyof RpcLimits]?: number } = {};
  if (c.maxBatch !== undefined) out.maxBatch = c.maxBatch;
  if (c.maxResponseBytes !== undefined) out.maxResponseBytes = c.maxResponseBytes;
  if (c.maxPage !== undefined) out.maxPage = c.maxPage;
  return out;
}

/** What every engine of the server takes from the config: the one thread's, each shard's, the main-thread helper of --workers N. */
function engineOptions(config: ServerConfig) {
  return {
    timers: config.timers,
    maxTransactions: config.maxTransactions,
    advertisedHost: config.advertise,
    aliases: [...config.aliases],
  };
}

/** What an engine that runs the route (the one thread's, each shard's) takes besides: proxying, the branch cookie. */
function routeEngineOptions(config: ServerConfig) {
  return {
    ...engineOptions(config),
    proxy: isProxy(config),
    cookieKey: config.secret ? deriveKey(config.secret, BRANCH_COOKIE_LABEL) : undefined,
  };
}

/** The keys of the route (RouteContext.keys): the same in one thread and in every shard. */
export function routeKeys(config: ServerConfig): RouteKeys {
  const secret = secretOf(config.secret);
  return {
    flowToken: deriveKey(secret, FLOW_TOKEN_LABEL, 32),
    digestNonce: deriveKey(secret, DIGEST_NONCE_LABEL, 32),
  };
}

// Field-by-field object literals (here and in shard.ts's health()) look alike but map different records.
/** The --rpc-* limits of the HTTP server. */
function controlOptions(config: ServerConfig) {
  const c = config.control;
  return {
    hosts: c.hosts,
    maxBodyBytes: c.maxBodyBytes,
    requestTimeoutMs: c.requestTimeoutMs,
    maxConnections: c.maxConnections,
  };
}

interface Control {
  rpc: RpcServer;
  control: ControlServer | undefined;
}

/** What the RPC layer gets from the mode that runs (the rest is the same in both). */
type ControlDeps = Pick<RpcDeps, "tm" | "resolveAll" | "registrar" | "sockets">;

/**
 * The control interface, the same for both engines: the JSON-RPC methods over `deps`, and the
 * HTTP server on --rpc (none with `--rpc off`). New `tm.t_uac_*` calls are refused once
 * `life.draining` is set (the shutdown).
 */
async function startRpc(
  config: ServerConfig,
  logger: Logger,
  deps: ControlDeps,
  metrics: Metrics,
  life: Lifecycle,
  startedAt: number,
): Promise<Control> {
  const { version, coreVersion } = versions();
  const rpc = new RpcServer({
    ...deps,
    logger: logger.child({ component: "rpc" }),
    version,
    coreVersion,
    startedAt,
    draining: () => life.draining,
    limits: rpcLimits(config),
  });
  const control = config.rpc
    ? await startControl({
        ...controlOptions(config),
        host: config.rpc.host,
        port: config.rpc.port,
        token: config.rpcToken,
        rpc,
        metrics,
        logger: logger.child({ component: "http" }),
      })
    : undefined;
  return { rpc, control };
}

/** Where a server is in its life: draining once shutdown began (the control interface asks). */
interface Lifecycle {
  draining: boolean;
  stopping: Promise<{ drained: boolean; left: number }> | undefined;
}

/** What the one shutdown path needs of the engine mode it stops. */
interface EngineStop {
  /**
   * Refuse new requests from now on, by the engine's own drain: a stateless 503 with Retry-After
   * (the engine's, as for a full table), while retransmissions, ACK, CANCEL and responses of the
   * live transactions still pass.
   */
  refuseNew(): void;
  /** After the drain: close the route, the engine and its sockets. */
  close(): Promise<void>;
}

/** Live transactions a drain waits for, over all shards: those not merely waiting on Timer J, K, D… (`Engine.unsettled`). */
async function unsettled(tm: TransactionEngine): Promise<number> {
  const st = await tm.stats();
  return st.current - st.settled;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The shutdown of `siptm serve`, one path for both engines: stop taking control calls and new
 * requests, wait until no transaction has work left (or --drain-timeout), answer 503 to what is
 * still unanswered then (a route left it ringing), close the engine and the control server.
 * Called once per server (`life.stopping` keeps the first call's promise).
 */
function shutdownServer(
  s: {
    config: ServerConfig;
    logger: Logger;
    tm: TransactionEngine;
    control: ControlServer | undefined;
    life: Lifecycle;
    stop: EngineStop;
  },
  reason: string | undefined,
): Promise<{ drained: boolean; left: number }> {
  const { config, logger, tm, control, life, stop } = s;
  life.stopping ??= (async () => {
    logger.info({ reason }, "shutting down");
    life.draining = true;
    control?.stopListening();
    stop.refuseNew();
    const deadline = Date.now() + config.drainTimeout;
    let left = await unsettled(tm).catch(() => 0);
    while (left > 0 && Date.now() < deadline) {
      await sleep(Math.min(50, Math.max(1, deadline - Date.now())));
      left = await unsettled(tm).catch(() => 0);
    }
    if (left > 0) {
      logger.warn({ left }, "drain timeout: closing with live transactions");
      // Requests still unanswered (a route left them ringing) get a final response before the sockets close.
      const list = await Promise.resolve(tm.audit()).catch(() => []);
      const answers = await Promise.all(
        list
          .filter(
            (a) =>
              (a.kind === "ist" || a.kind === "nist") && (a.state === "trying" || a.state === "proceeding"),
          )
          .map((a) =>
            Promise.resolve()
              .then(() => tm.replyById(a.id, 503, { reason: "Shutting Down" }))
              .then(
                () => true,
                () => false, // ended in the meantime
              ),
          ),
      );
      // Datagram sends complete asynchronously: let them leave before the sockets close.
      if (answers.includes(true)) await sleep(50);
    }
    await stop.close();
    await control?.close();
    return { drained: left === 0, left };
  })();
  return life.stopping;
}

/**
 * --workers N ≥ 1: the sharded engine of @siptm/workers. It owns the sockets; each shard (a worker
 * thread with its own core Engine) loads shard-route.js, which installs the server's route there.
 */
async function startSharded(
  config: ServerConfig,
  logger: Logger,
  loaded: LoadedRoute,
): Promise<RunningServer> {
  // Main-thread helper engine: no transports, no transactions; it only resolves next hops for
  // tm.t_uac_* (RFC 3263, the same rules as the shards) and tells the timers in effect.
  const local = new Engine({ ...engineOptions(config), resolver: makeResolver(config) });
  // Route `default`: the registrar stays here, shared by the shards (shared-registrar.ts).
  const registrar = new Registrar({ now: () => local.now(), minExpires: config.minExpires });
  const publisher =
    loaded.name === "default" ? new RegistrarPublisher(registrarChannelName(), registrar) : undefined;
  // The REGISTERs for us come here: authenticated here (auth.ts), with the nonce key every shard
  // has, on our own sockets' "myself" (set once they are bound).
  let auth: ServerAuth | undefined;
  const keys = routeKeys(config);
  const onRegister = (tx: ShardServerHandle) => {
    if (tx.method !== "REGISTER" || !auth) {
      tx.reply(500).catch(() => {});
      return;
    }
    auth.register(tx.request, tx.source).then(
      (v) => {
        if (v.ok) registerHere(tx);
        else
          tx.reply(v.status, { reason: v.reason, headers: v.headers }).catch((err: unknown) =>
            logger.debug({ err }, "REGISTER answer not sent"),
          );
      },
      (err: unknown) => {
        logger.warn({ err }, "REGISTER authentication failed");
        tx.reply(500).catch(() => {});
      },
    );
  };
  const registerHere = (tx: ShardServerHandle) => {
    const out = registrar.register(tx.request, tx.source);
    logger.debug({ aor: out.aor, status: out.status }, "REGISTER");
    // The shards learn the new bindings before the UA learns it is registered.
    if (out.status === 200 && out.aor) publisher?.publish(out.aor);
    tx.reply(out.status, { reason: out.reason, headers: out.headers }).catch((err: unknown) =>
      logger.debug({ err }, "REGISTER answer not sent"),
    );
  };
  const sharded = await ShardedEngine.create({
    shards: config.workers,
    listen: config.listen.map((l) => ({ protocol: l.protocol, address: l.address, port: l.port })),
    tcp: config.tcp,
    tls: loadTls(config.tls),
    ws: wsLimits(config),
    routeKeys: { ...keys },
    engine: {
      ...routeEngineOptions(config),
      // The coordinator holds the whole server to the cap (below); each shard's own cap is the
      // same number, a safety net for what the coordinator does not see (a route's own requests).
      maxTransactions: config.maxTransactions ?? DEFAULT_MAX_TRANSACTIONS,
    },
    route: shardRouteUrl({
      route: config.route,
      routeBase: config.routeBase,
      config,
      registrarChannel: publisher?.name,
    }),
    onRequest: publisher ? onRegister : undefined,
    maxTransactions: config.maxTransactions ?? DEFAULT_MAX_TRANSACTIONS,
    rateLimit: config.rateLimit,
    hashKey: config.secret ? deriveKey(config.secret, SHARD_HASH_LABEL) : undefined,
    // shutdownServer() answers what is still ringing at config.drainTimeout; the shards wait a
    // little longer so that those 503s still leave through the coordinator's sockets.
    drainTimeoutMs: config.drainTimeout + SHARD_DRAIN_MARGIN_MS,
    logger: { warn: (obj, msg) => logger.warn(obj, msg) },
  }).catch(async (err: unknown) => {
    publisher?.close();
    await local.close();
    // A socket error (EADDRINUSE…) has a code and says what it is; anything else failed in a shard's route.
    if (err instanceof Error && typeof (err as { code?: unknown }).code === "string") throw err;
    throw new RouteLoadError(
      `route ${loaded.name} failed to start in a shard: ${err instanceof Error ? err.message : String(err)}`,
    );
  });
  // RFC 5626: a connection closed in the coordinator drops its bindings, here and in the replicas.
  if (publisher) sharded.onFlowClosed = (source) => publisher.flowClosed(source);
  const sockets: BoundSocket[] = sharded.addresses.map((a) => ({
    protocol: a.protocol,
    address: a.address,
    port: a.port,
  }));
  try {
    auth = new ServerAuth({
      config: config.auth,
      key: keys.digestNonce,
      isLocal: makeIsLocal(sockets, config.advertise, config.aliases),
    });
  } catch (err) {
    await sharded.close();
    publisher?.close();
    await local.close();
    throw err;
  }
  const mainAuth = auth;
  registrar.start();
  const metrics = new Metrics({
    stats: () => sharded.stats(),
    initial: await sharded.stats(),
    // The histograms are counted in the shards (shard-route.ts); read at each scrape.
    histograms: () => sharded.routeCall(SHARD_HISTOGRAMS),
  });
  const life: Lifecycle = { draining: false, stopping: undefined };
  let ctl: Control;
  try {
    ctl = await startRpc(
      config,
      logger,
      { tm: sharded, resolveAll: (hop) => local.resolveAll(hop), registrar, sockets },
      metrics,
      life,
      Date.now(),
    );
  } catch (err) {
    await sharded.close();
    publisher?.close();
    await local.close();
    throw err;
  }
  const { control } = ctl;
  let closing: Promise<void> | undefined;
  const stop: EngineStop = {
    // The coordinator answers new requests 503 at once, and each shard's engine drains (core's
    // drain()) until the shards close after the drain below (SHARD_DRAIN_MARGIN_MS).
    refuseNew: () => {
      closing = sharded.close();
    },
    close: async () => {
      await (closing ?? sharded.close());
      registrar.stop();
      publisher?.close();
      await local.close();
    },
  };
  const shutdown = (reason?: string) =>
    shutdownServer({ config, logger, tm: sharded, control, life, stop }, reason);

  return {
    engine: undefined,
    sharded,
    tm: sharded,
    reload: () => {
      reloadTls(config.tls, [sharded]);
      // The users file: checked here first (a broken one throws, and nobody changes), then every
      // shard reads it again itself (route `default` provides AUTH_RELOAD).
      if (mainAuth.authenticating && loaded.name === "default") {
        mainAuth.reload();
        sharded
          .routeCall(AUTH_RELOAD)
          .catch((err: unknown) =>
            logger.warn(
              { err: err instanceof Error ? err.message : String(err) },
              "users reload in a shard failed",
            ),
          );
      }
    },
    timers: local.timerConfig,
    config,
    logger,
    registrar,
    live: () => unsettled(sharded),
    info: serverInfo(
      {
        sockets,
        route: loaded.name,
        routeDescription: await describeRoute(loaded, config, sockets),
        workers: {
          requested: config.workers,
          threads: config.workers,
          shards: config.workers,
          note: undefined,
        },
      },
      control,
    ),
    shutdown,
  };
}

/** The route's banner line, from a throwaway instance on the main thread (its factory is called once more, nothing else). */
async function describeRoute(
  loaded: LoadedRoute,
  config: ServerConfig,
  sockets: readonly BoundSocket[],
): Promise<string | undefined> {
  const engine = new Engine({ timers: config.timers });
  const scheduler = new Scheduler(engine.clock, () => {});
  try {
    const ctx = routeContext({
      engine,
      config,
      keys: routeKeys(config),
      logger: createLogger("silent"),
      registrar: new Registrar({ now: () => engine.now() }),
      scheduler,
      sockets,
    });
    const handlers = checkHandlers(loaded.name, await loaded.factory(ctx));
    await handlers.close?.();
    return handlers.description;
  } catch {
    return undefined;
  } finally {
    scheduler.close();
    await engine.close();
  }
}

const SHARD_DRAIN_MARGIN_MS = 1_000;

/** --workers 0: the core Engine and its transports on the main thread. */
async function startOneThread(
  config: ServerConfig,
  logger: Logger,
  loaded: LoadedRoute,
): Promise<RunningServer> {
  const startedAt = Date.now();
  const workers = { requested: config.workers, threads: 1, shards: 0, note: undefined };
  // RFC 3263 next hops for host names (proxy branches, tm.t_uac_*), on the transports and families we listen on.
  const resolver = makeResolver(config);
  const engine = new Engine({
    ...routeEngineOptions(config),
    rateLimit: config.rateLimit,
    logger: logger.child({ component: "engine" }),
    resolver,
  });
  const gate = new Gate(engine, logger.child({ component: "sip" }), config.trace);

  const transports: Transport[] = [];
  const sockets: BoundSocket[] = [];
  const closeTransports = () => Promise.allSettled(transports.map((t) => t.close()));
  const tls = loadTls(config.tls);
  const onSocketError = (err: Error) => logger.debug({ err: err.message }, "socket error");
  for (const spec of config.listen) {
    let t: Transport;
    try {
      t = await openListener(spec, gate, config, tls, onSocketError);
    } catch (err) {
      await closeTransports();
      throw err;
    }
    transports.push(t);
    sockets.push({ protocol: spec.protocol, address: t.localAddress, port: t.localPort });
    engine.addTransport(config.trace ? new TracedTransport(t, logger.child({ component: "sip" })) : t);
  }

  const registrar = new Registrar({ now: () => engine.now(), minExpires: config.minExpires });
  // RFC 5626: a connection that closes drops the bindings that lived on it.
  engine.onFlowClosed = (source) => registrar.flowClosed(source);
  const metrics = new Metrics(engine);
  const scheduler = new Scheduler(engine.clock, (err) => logger.warn({ err }, "route timer callback threw"));
  const life: Lifecycle = { draining: false, stopping: undefined };

  const tm = wrapEngine(engine);
  let control: ControlServer | undefined;
  try {
    ({ control } = await startRpc(
      config,
      logger,
      { tm, resolveAll: (hop) => engine.resolveAll(hop), registrar, sockets },
      metrics,
      life,
      startedAt,
    ));
  } catch (err) {
    await closeTransports();
    throw err;
  }

  const parts: RouteParts = {
    engine,
    config,
    keys: routeKeys(config),
    logger: logger.child({ component: "route" }),
    registrar,
    scheduler,
    sockets,
  };
  const ctx = routeContext(parts);
  let handlers: RouteHandlers;
  try {
    handlers = checkHandlers(loaded.name, await loaded.factory(ctx));
  } catch (err) {
    await control?.close();
    await closeTransports();
    throw err;
  }
  installRoute(engine, handlers, parts.logger);
  registrar.start();
  gate.open();

  const stop: EngineStop = {
    refuseNew: () => engine.drain(),
    close: async () => {
      await closeRoute(handlers, parts);
      await engine.close();
    },
  };
  const shutdown = (reason?: string) => shutdownServer({ config, logger, tm, control, life, stop }, reason);
  const reloadable = transports.filter(
    (t): t is Transport & Reloadable =>
      (t.protocol === "TLS" || t.protocol === "WSS") && "reloadCertificates" in t,
  );

  return {
    engine,
    sharded: undefined,
    reload: () => {
      reloadTls(config.tls, reloadable);
      parts.auth?.reload();
    },
    tm,
    timers: engine.timerConfig,
    live: () => unsettled(tm),
    config,
    logger,
    registrar,
    info: serverInfo(
      { sockets, route: loaded.name, routeDescription: handlers.description, workers },
      control,
    ),
    shutdown,
  };
}

export { contactFor, makeIsLocal };

/**
 * The `default` route is a stateful proxy: the engine's `proxy` preset (no
 * merged-request 482, a UAS rule; stray ACKs and late 2xx forwarded where
 * allowed — the route's own handlers, which log refusals, take their place).
 */
function isProxy(config: ServerConfig): boolean {
  return config.route === "default";
}
