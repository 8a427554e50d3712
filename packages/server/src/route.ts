/**
 * Routes are modules: `export default function route(ctx: RouteContext): RouteHandlers`.
 * The server builds the context once, calls the factory once, and hands every
 * new server transaction to `onRequest`. Built-in routes are loaded by name,
 * anything else by path (resolved from the working directory, or from the
 * config file's directory when the route came from the file).
 */
import { access } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import {
  type Engine,
  type RelayOptions,
  type RelayOutcome,
  relay,
  type ServerTransactionHandle,
  type SipRequest,
  type SipResponse,
  type Source,
} from "@siptm/core";
import { ServerAuth } from "./auth.js";
import type { ServerConfig } from "./config.js";
import { type BoundSocket, contactFor, makeIsLocal } from "./local.js";
import type { Logger } from "./log.js";
import type { Registrar } from "./registrar.js";
import type { Scheduler } from "./scheduler.js";

/**
 * The methods our routes accept, for the Allow header of their OPTIONS answers (RFC 3261 §11.2,
 * §20.5): the one list, whichever route answers.
 */
export const ALLOW =
  "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, MESSAGE, NOTIFY, SUBSCRIBE, REFER";

export interface RouteContext {
  readonly engine: Engine;
  readonly config: Readonly<ServerConfig>;
  /**
   * The route's keys (`flowToken`: the MAC key of RFC 5626 flow tokens),
   * derived from --secret, else random per server process: the same in one
   * thread, in every shard and across shard restarts.
   */
  readonly keys: RouteKeys;
  /** A child logger ({ component: "route" }). */
  readonly logger: Logger;
  /** The in-memory registrar (RFC 3261 §10.3), shared by every route. */
  readonly registrar: Registrar;
  /**
   * Relay statefully (@siptm/core `relay`, Kamailio t_relay) with the
   * server's --fr-timer and --timer-c (else --fr-inv-timer) as the defaults
   * of `opts`. Host names are resolved by RFC 3263 (the engine's resolver).
   */
  relay(tx: ServerTransactionHandle, opts?: RelayOptions): Promise<RelayOutcome>;
  /** Run `fn` after `ms` on the one shared timer wheel (engine clock). Returns a cancel function. */
  after(ms: number, fn: () => void): () => boolean;
  /** Kamailio's "myself": the URI's host is one of our socket addresses (or the advertised host), and its port one of ours when given. */
  isLocal(uri: string): boolean;
  /** The sockets the server listens on (real ports, also for port 0). */
  readonly sockets: readonly BoundSocket[];
  /** A Contact URI (in <>) for answers to a request that came in on `source`'s local socket. */
  contactFor(source: Source): string;
  /**
   * Who may register and relay (--users, --realm, --domain, --trusted, --open; auth.ts): the digest
   * challenges and checks of route `default`, for any route that wants them.
   */
  readonly auth: ServerAuth;
}

export interface RouteHandlers {
  /** Every new server transaction (not ACK, not CANCEL: the engine handles those). Answer it, relay it, or leave it pending for tm.reply. */
  onRequest(tx: ServerTransactionHandle): void;
  /** An ACK that matched no transaction (the ACK of a 2xx, §13.2.2.4). */
  onStrayAck?(ack: SipRequest, source: Source): void;
  /** A response that matched no client transaction (a 2xx retransmission after its transaction ended). */
  onStrayResponse?(res: SipResponse, source: Source): void;
  /** Called once on shutdown, after the drain. */
  close?(): void | Promise<void>;
  /** One line for the start-up banner. */
  readonly description?: string;
}

export type RouteFactory = (ctx: RouteContext) => RouteHandlers | Promise<RouteHandlers>;

/** What a route's context is made of: the same in one thread and in each shard. */
/** Keys a route gets (RouteContext.keys). */
export interface RouteKeys {
  readonly flowToken: Uint8Array;
  /** The HMAC key of digest nonces (auth.ts): a nonce made in one thread or shard verifies in any. */
  readonly digestNonce: Uint8Array;
}

export interface RouteParts {
  engine: Engine;
  config: ServerConfig;
  keys: RouteKeys;
  /** The route's logger ({ component: "route" }). */
  logger: Logger;
  registrar: Registrar;
  scheduler: Scheduler;
  sockets: readonly BoundSocket[];
  /** Made from the config when not given (the server gives its own to reload it on SIGHUP). */
  auth?: ServerAuth;
}

export function routeContext(p: RouteParts): RouteContext {
  const { engine, config, scheduler } = p;
  const isLocal = makeIsLocal(p.sockets, config.advertise, config.aliases);
  p.auth ??= new ServerAuth({ config: config.auth, key: p.keys.digestNonce, isLocal });
  return {
    engine,
    config,
    keys: p.keys,
    logger: p.logger,
    registrar: p.registrar,
    relay: (tx: ServerTransactionHandle, o?: RelayOptions) => relay(engine, tx, { ...config.proxy, ...o }),
    after: (ms, fn) => scheduler.after(ms, fn),
    isLocal,
    sockets: p.sockets,
    contactFor: (source: Source) => contactFor(source, config.advertise),
    auth: p.auth,
  };
}

/** Shutdown, after the drain: the route's close() (a throw is logged), then its timers and registrar. */
export async function closeRoute(handlers: RouteHandlers, p: RouteParts): Promise<void> {
  try {
    await handlers.close?.();
  } catch (err) {
    p.logger.warn({ err }, "route close failed");
  }
  p.scheduler.close();
  p.registrar.stop();
}

/** A route that cannot be found, loaded or used: one line, exit 1. */
export class RouteLoadError extends Error {
  override readonly name = "RouteLoadError";
}

export const BUILTIN_ROUTE_NAMES = ["default", "uas"] as const;

export interface LoadedRoute {
  /** "uas", "default", or the resolved path. */
  readonly name: string;
  readonly factory: RouteFactory;
}

export async function loadRoute(spec: string, base: string): Promise<LoadedRoute> {
  if ((BUILTIN_ROUTE_NAMES as readonly string[]).includes(spec)) {
    const mod = (await import(`./routes/${spec}.js`)) as { default: RouteFactory };
    return { name: spec, factory: mod.default };
  }
  const looksLikePath = /[/\\]/.test(spec) || /\.(m?js|cjs|ts)$/.test(spec);
  if (!looksLikePath)
    throw new RouteLoadError(
      `unknown route "${spec}": built-in routes are ${BUILTIN_ROUTE_NAMES.join(", ")}; give a module as a path (./${spec}.js)`,
    );
  const path = isAbsolute(spec) ? spec : resolve(base, spec);
  try {
    await access(path);
  } catch (err) {
    throw new RouteLoadError(
      `cannot read route ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new RouteLoadError(`cannot load route ${path}: ${why.split("\n")[0]}`);
  }
  if (typeof mod.default !== "function")
    throw new RouteLoadError(`route ${path} has no default export function route(ctx)`);
  return { name: path, factory: mod.default as RouteFactory };
}

/** Check what a route factory returned. */
export function checkHandlers(name: string, handlers: unknown): RouteHandlers {
  if (
    handlers === null ||
    typeof handlers !== "object" ||
    typeof (handlers as RouteHandlers).onRequest !== "function"
  )
    throw new RouteLoadError(`route ${name} did not return { onRequest(tx) { ... } }`);
  return handlers as RouteHandlers;
}

/**
 * Install a route's handlers on an engine: a handler that throws is logged and
 * its request answered 500 (when nothing final went out yet). `intercept` sees
 * each request first and returns true when it took it (the sharded registrar).
 */
export function installRoute(
  engine: Engine,
  handlers: RouteHandlers,
  routeLogger: { warn(obj: object, msg: string): void },
  intercept?: (tx: ServerTransactionHandle) => boolean,
): void {
  const onRequest = handlers.onRequest.bind(handlers);
  engine.onRequest = (tx) => {
    if (intercept?.(tx)) return;
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
}
