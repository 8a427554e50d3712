/**
 * `siptm serve`: one engine, its SIP sockets, the route, the registrar, the
 * control HTTP server and the metrics, started and stopped together.
 * `startServer` is what the CLI runs; it can be embedded as is.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { networkInterfaces } from "node:os";
import { pathToFileURL } from "node:url";
import {
  createTcpTransport,
  createUdpTransport,
  Engine,
  normalizeAddress,
  parseUri,
  type RelayOptions,
  Resolver,
  relay,
  type ServerTransactionHandle,
  type Source,
  type Transport,
} from "@siptm/core";
import { hostPort, type ServerConfig } from "./config.js";
import { Gate, TracedTransport } from "./gate.js";
import { type ControlServer, startControl } from "./http.js";
import { createLogger, type Logger } from "./log.js";
import { Metrics } from "./metrics.js";
import { Registrar } from "./registrar.js";
import {
  type BoundSocket,
  checkHandlers,
  loadRoute,
  type RouteContext,
  type RouteHandlers,
} from "./route.js";
import { RpcServer } from "./rpc.js";
import { Scheduler } from "./scheduler.js";

export interface ServerInfo {
  readonly version: string;
  readonly coreVersion: string;
  readonly sockets: readonly BoundSocket[];
  readonly control: { host: string; port: number } | null;
  readonly route: string;
  readonly routeDescription: string | undefined;
  readonly workers: { requested: number; threads: number; note: string | undefined };
}

export interface RunningServer {
  readonly engine: Engine;
  readonly config: ServerConfig;
  readonly logger: Logger;
  readonly registrar: Registrar;
  readonly info: ServerInfo;
  /** Stop accepting, drain (bounded by config.drainTimeout), close. Resolves once everything is closed. */
  shutdown(reason?: string): Promise<{ drained: boolean; left: number }>;
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

/** Is `ShardedEngine` exported by @siptm/workers (the sharding work)? */
async function shardingExported(): Promise<boolean> {
  try {
    const mod = (await import("@siptm/workers")) as Record<string, unknown>;
    return typeof mod.ShardedEngine === "function";
  } catch {
    return false;
  }
}

export async function startServer(config: ServerConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger(config.logLevel, config.trace);
  const { version, coreVersion } = versions();
  const startedAt = Date.now();

  // Load the route first: a bad route fails before any socket is bound.
  const loaded = await loadRoute(config.route, config.routeBase);

  const requested = config.workers;
  const sharding = await shardingExported();
  const workers = {
    requested,
    threads: 1,
    note:
      requested > 1
        ? sharding
          ? "the server does not drive the sharded engine yet"
          : "sharding not available yet"
        : undefined,
  };

  // RFC 3263 next hops for host names (proxy branches, tm.t_uac_*), on the transports and families we listen on.
  const protocols = [...new Set(config.listen.map((l) => l.protocol))];
  const families = [...new Set(config.listen.map((l): 4 | 6 => (l.address.includes(":") ? 6 : 4)))].sort();
  const resolver = new Resolver({ transports: protocols, families });
  const engine = new Engine({
    timers: config.timers,
    maxTransactions: config.maxTransactions,
    advertisedHost: config.advertise,
    logger: logger.child({ component: "engine" }),
    resolver,
  });
  const gate = new Gate(engine, logger.child({ component: "sip" }), config.trace);

  const transports: Transport[] = [];
  const sockets: BoundSocket[] = [];
  const closeTransports = () => Promise.allSettled(transports.map((t) => t.close()));
  for (const spec of config.listen) {
    let t: Transport;
    const onSocketError = (err: Error) => logger.debug({ err: err.message }, "socket error");
    try {
      t =
        spec.protocol === "UDP"
          ? await createUdpTransport({ address: spec.address, port: spec.port, sink: gate, onSocketError })
          : await createTcpTransport({ address: spec.address, port: spec.port, sink: gate, onSocketError });
    } catch (err) {
      await closeTransports();
      throw err;
    }
    transports.push(t);
    sockets.push({ protocol: spec.protocol, address: t.localAddress, port: t.localPort });
    engine.addTransport(config.trace ? new TracedTransport(t, logger.child({ component: "sip" })) : t);
  }

  const registrar = new Registrar({ now: () => engine.now() });
  const metrics = new Metrics(engine);
  const scheduler = new Scheduler(engine.clock, (err) => logger.warn({ err }, "route timer callback threw"));
  let draining = false;

  const rpc = new RpcServer({
    engine,
    registrar,
    sockets,
    logger: logger.child({ component: "rpc" }),
    version,
    coreVersion,
    startedAt,
    draining: () => draining,
  });
  let control: ControlServer | undefined;
  if (config.rpc) {
    try {
      control = await startControl({
        host: config.rpc.host,
        port: config.rpc.port,
        token: config.rpcToken,
        rpc,
        metrics,
        logger: logger.child({ component: "http" }),
      });
    } catch (err) {
      await closeTransports();
      throw err;
    }
  }

  const isLocal = makeIsLocal(sockets, config.advertise);
  const routeLogger = logger.child({ component: "route" });
  const ctx: RouteContext = {
    engine,
    config,
    logger: routeLogger,
    registrar,
    relay: (tx: ServerTransactionHandle, o?: RelayOptions) => relay(engine, tx, { ...config.proxy, ...o }),
    after: (ms, fn) => scheduler.after(ms, fn),
    isLocal,
    sockets,
    contactFor: (source: Source) => contactFor(source, config.advertise),
  };
  let handlers: RouteHandlers;
  try {
    handlers = checkHandlers(loaded.name, await loaded.factory(ctx));
  } catch (err) {
    await control?.close();
    await closeTransports();
    throw err;
  }
  const onRequest = handlers.onRequest.bind(handlers);
  engine.onRequest = (tx) => {
    try {
      onRequest(tx);
    } catch (err) {
      routeLogger.warn({ err, tx: tx.id, method: tx.method }, "route threw");
      if (!tx.finalStatus && !tx.terminated)
        try {
          tx.reply(500);
        } catch {
          // already ended
        }
    }
  };
  if (handlers.onStrayAck) engine.onStrayAck = handlers.onStrayAck.bind(handlers);
  if (handlers.onStrayResponse) engine.onStrayResponse = handlers.onStrayResponse.bind(handlers);
  registrar.start();
  gate.state = "open";

  let stopping: Promise<{ drained: boolean; left: number }> | undefined;
  const shutdown = (reason?: string) => {
    if (!stopping)
      stopping = (async () => {
        logger.info({ reason }, "shutting down");
        draining = true;
        gate.state = "draining";
        control?.stopListening();
        const deadline = Date.now() + config.drainTimeout;
        while (engine.table.size > 0 && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
        const left = engine.table.size;
        if (left > 0) {
          logger.warn({ left }, "drain timeout: closing with live transactions");
          // Requests still unanswered (a route left them ringing) get a final response before the sockets close.
          let answered = 0;
          for (const a of engine.audit())
            if ((a.kind === "ist" || a.kind === "nist") && (a.state === "trying" || a.state === "proceeding"))
              try {
                engine.replyById(a.id, 503, "Shutting Down");
                answered++;
              } catch {
                // ended in the meantime
              }
          // Datagram sends complete asynchronously: let them leave before the sockets close.
          if (answered > 0) await new Promise((r) => setTimeout(r, 50));
        }
        try {
          await handlers.close?.();
        } catch (err) {
          logger.warn({ err }, "route close failed");
        }
        scheduler.close();
        registrar.stop();
        await control?.close();
        await engine.close();
        return { drained: left === 0, left };
      })();
    return stopping;
  };

  return {
    engine,
    config,
    logger,
    registrar,
    info: {
      version,
      coreVersion,
      sockets,
      control: control ? { host: control.host, port: control.port } : null,
      route: loaded.name,
      routeDescription: handlers.description,
      workers,
    },
    shutdown,
  };
}

/** Kamailio's "myself": a URI whose host is one of our addresses (port one of ours when given). */
export function makeIsLocal(
  sockets: readonly BoundSocket[],
  advertise: string | undefined,
): (uri: string) => boolean {
  const hosts = new Set<string>();
  const ports = new Set<number>(sockets.map((s) => s.port));
  const unbracket = (h: string) => (h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h);
  for (const s of sockets) {
    if (s.address === "0.0.0.0" || s.address === "::") {
      for (const list of Object.values(networkInterfaces()))
        for (const ni of list ?? []) hosts.add(normalizeAddress(ni.address.toLowerCase()));
    } else hosts.add(normalizeAddress(s.address.toLowerCase()));
  }
  if (advertise) hosts.add(normalizeAddress(unbracket(advertise).toLowerCase()));
  return (uri: string): boolean => {
    try {
      const u = parseUri(uri);
      if (u.type !== "sip") return false;
      if (!hosts.has(normalizeAddress(unbracket(u.host).toLowerCase()))) return false;
      return u.port === undefined || ports.has(u.port);
    } catch {
      return false;
    }
  };
}

function contactFor(source: Source, advertise: string | undefined): string {
  const host = advertise ?? source.localAddress;
  const hp = hostPort(host.startsWith("[") ? host.slice(1, -1) : host, source.localPort);
  return `<sip:siptm@${hp}${source.protocol === "UDP" ? "" : `;transport=${source.protocol.toLowerCase()}`}>`;
}
