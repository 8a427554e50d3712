/**
 * The route adapter that `ShardedEngine` loads in EACH shard (worker thread):
 * `siptm serve --workers N` (N ≥ 1) passes the URL of this module as the
 * sharded engine's `route`. It builds the server's `RouteContext` inside the
 * shard, on the shard's own core Engine, and installs the server's route there
 * (the built-in `uas`/`default`, or a user's module by path).
 *
 * What the route needs from the main thread (its name or path and the
 * resolved `ServerConfig`) cannot be handed over by `ShardedEngine`, which
 * only passes a module URL: it travels in that URL's
 * query string, `…/shard-route.js?cfg=<base64url JSON>` (`import()` accepts
 * it, and the module reads it back from `import.meta.url`). No environment
 * variable, no shared file. The bound sockets (real ports, also for port 0)
 * come from the shard's context (`listeners`).
 *
 * Besides the route, what the server produces where the messages are:
 * - --trace: the wire log of this shard (a tap on its engine's messages in and
 *   out, `ctx.tap`), the same lines as in one thread plus `shard`;
 * - the /metrics histograms: observers on this shard's engine count into plain
 *   buckets, which the main thread reads at scrape time
 *   (`ctx.provide(SHARD_HISTOGRAMS)`, histograms.ts);
 * - on shutdown (`ShardedEngine.close()`, after the drain) the route's
 *   `close()`, then the shard's timers and registrar (`ctx.onClose`).
 */
import { randomBytes } from "node:crypto";
import type { Engine, Resolver } from "@siptm/core";
import type { ShardRouteContext } from "@siptm/workers";
import { AUTH_RELOAD } from "./auth.js";
import type { ServerConfig } from "./config.js";
import { traceMessage } from "./gate.js";
import { SHARD_HISTOGRAMS, type ShardHistograms, TxHistograms } from "./histograms.js";
import type { BoundSocket } from "./local.js";
import { createLogger } from "./log.js";
import { Registrar } from "./registrar.js";
import { makeResolver } from "./resolver.js";
import {
  checkHandlers,
  closeRoute,
  installRoute,
  loadRoute,
  type RouteKeys,
  type RouteParts,
  routeContext,
} from "./route.js";
import { Scheduler } from "./scheduler.js";
import { subscribeReplica } from "./shared-registrar.js";

/** What the main thread tells every shard about the route. */
export interface ShardRouteConfig {
  /** Built-in name or module path as configured. */
  readonly route: string;
  readonly routeBase: string;
  readonly config: ServerConfig;
  /** Route `default`: the BroadcastChannel of the main thread's registrar (shared-registrar.ts). */
  readonly registrarChannel?: string;
}

/** The module URL to give `ShardedEngine.create({ route })`, with `cfg` in its query string. */
export function shardRouteUrl(cfg: ShardRouteConfig): string {
  const url = new URL("./shard-route.js", import.meta.url);
  // Not the secret: a module URL shows in stack traces and logs, and the shards do not need it.
  const shared = { ...cfg, config: { ...cfg.config, secret: undefined } };
  url.searchParams.set("cfg", Buffer.from(JSON.stringify(shared), "utf8").toString("base64url"));
  return url.href;
}

function readConfig(): ShardRouteConfig {
  const text = new URL(import.meta.url).searchParams.get("cfg");
  if (!text) throw new Error("shard-route: no cfg in the module URL (load it through shardRouteUrl)");
  return JSON.parse(Buffer.from(text, "base64url").toString("utf8")) as ShardRouteConfig;
}

/** The shard's route module: build the RouteContext on this shard's engine and install the server's route. */
export default async function shardRoute(engine: Engine, info: ShardRouteContext): Promise<void> {
  const { route, routeBase, config, registrarChannel } = readConfig();
  const sockets: BoundSocket[] = info.listeners.map((l) => ({
    protocol: l.protocol === "TCP" ? "TCP" : "UDP",
    address: l.address,
    port: l.port,
  }));
  const logger = createLogger(config.logLevel, config.trace).child({ shard: info.shard });
  const routeLogger = logger.child({ component: "route" });
  if (config.trace) {
    const sip = logger.child({ component: "sip" });
    info.tap({
      in: (data, s) => traceMessage(sip, "in", data, s.protocol, s.address, s.port),
      out: (data, d) => traceMessage(sip, "out", data, d.protocol, d.address, d.port),
    });
  }
  const histograms = new TxHistograms(engine);
  info.provide(
    SHARD_HISTOGRAMS,
    (): ShardHistograms => ({ incarnation: info.incarnation, data: histograms.data }),
  );

  // The shard's engine is built by the shard from plain-data options: a Resolver (an object with
  // caches and DNS handles) cannot be cloned into it, so the shard gets its own here, before any
  // request arrives (relay and resolveAll read `engine.resolver`).
  (engine as { resolver: Resolver | undefined }).resolver = makeResolver(config);

  const loaded = await loadRoute(route, routeBase);
  const scheduler = new Scheduler(engine.clock, (err) =>
    routeLogger.warn({ err }, "route timer callback threw"),
  );
  // Route `default`: a read-only replica of the main thread's registrar, REGISTER handed over to the
  // main thread (shared-registrar.ts: the seam for the later shared store). Other routes: a
  // registrar of this shard's own.
  const registrar = new Registrar({ now: () => engine.now(), minExpires: config.minExpires });
  const shared = registrarChannel !== undefined && info.forward !== undefined;
  const unsubscribe = shared ? subscribeReplica(registrarChannel, registrar) : undefined;
  // The route's keys came with the shard's task (never in this module's URL).
  const keys: RouteKeys = {
    flowToken: info.keys.flowToken ?? new Uint8Array(randomBytes(32)),
    digestNonce: info.keys.digestNonce ?? new Uint8Array(randomBytes(32)),
  };
  const parts: RouteParts = { engine, config, keys, logger: routeLogger, registrar, scheduler, sockets };
  const ctx = routeContext(parts);
  // SIGHUP: this shard reads the users file again (the main thread checked it first); a broken
  // one keeps the users loaded before, and says why.
  info.provide(AUTH_RELOAD, () => ctx.auth.reload());
  const handlers = checkHandlers(loaded.name, await loaded.factory(ctx));
  const forward = info.forward;
  // The shared registrar: a REGISTER for us goes to the main thread; one for another domain stays
  // with the route, which relays it (RFC 3261 §10.3 step 1, routes/default.ts).
  installRoute(engine, handlers, routeLogger, (tx) => {
    if (shared && forward && tx.method === "REGISTER" && ctx.isLocal(tx.request.uri)) {
      forward(tx);
      return true;
    }
    return false;
  });
  registrar.start();
  // Shutdown, after the drain (as in one thread): the route's close(), then our timers and registrar.
  info.onClose(async () => {
    await closeRoute(handlers, parts);
    unsubscribe?.();
  });
  logger.debug({ shard: info.shard, route: loaded.name }, "route installed in shard");
}
