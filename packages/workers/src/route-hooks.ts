/**
 * What a route module can give its shard besides the engine's handlers
 * (`ShardRouteContext.provide`, `onClose`, `tap` in shard.ts):
 *
 * - named control functions, which the main thread calls on EVERY shard with
 *   `ShardedEngine.routeCall(name, ...args)` over the control plane (comlink:
 *   one call per shard, arguments and result structured-cloned). For what is
 *   read now and then — metrics at scrape time, a dump — never per message;
 * - hooks run when the shard shuts down (`ShardedEngine.close()`), after the
 *   drain and before the shard's engine closes: the route's own cleanup;
 * - taps on the shard's wire: every message its engine receives (before it is
 *   processed) and sends (as it joins the outgoing batch), e.g. a trace. A
 *   throw out of a tap is ignored: the SIP path goes on.
 *
 * One `RouteHooks` per shard incarnation; a restarted shard loads the route
 * again, which provides its functions again.
 */
import type { Destination, Source } from "@siptm/core";
import { failure, type Result } from "./protocol.js";

/** A function a route provides to the main thread; its arguments and result must be structured-cloneable. */
export type RouteFunction = (...args: never[]) => unknown;

/** A route's view of the shard's wire. */
export interface WireTap {
  /** A message the shard's engine is about to process (`source`: the peer). */
  in?(data: Buffer, source: Source): void;
  /** A message the shard's engine sends (`dest`: the peer). */
  out?(data: Buffer, dest: Destination): void;
}

export class RouteHooks {
  private readonly fns = new Map<string, RouteFunction>();
  private readonly closers: Array<() => unknown> = [];
  private readonly taps: WireTap[] = [];
  /** Any tap installed: the only check on the message path when there is none. */
  tapping = false;

  provide(name: string, fn: RouteFunction): void {
    if (typeof name !== "string" || name === "") throw new TypeError("provide: a name is required");
    if (typeof fn !== "function") throw new TypeError(`provide(${name}): not a function`);
    this.fns.set(name, fn);
  }

  onClose(fn: () => unknown): void {
    if (typeof fn !== "function") throw new TypeError("onClose: not a function");
    this.closers.push(fn);
  }

  tap(tap: WireTap): void {
    if (tap === null || typeof tap !== "object") throw new TypeError("tap: not an object");
    this.taps.push(tap);
    this.tapping = true;
  }

  // tapIn and tapOut stay two loops: each runs once per message, with no direction test in it.
  tapIn(data: Buffer, source: Source): void {
    for (const t of this.taps)
      if (t.in)
        try {
          t.in(data, source);
        } catch {
          // a tap must not disturb the SIP path
        }
  }

  tapOut(data: Buffer, dest: Destination): void {
    for (const t of this.taps)
      if (t.out)
        try {
          t.out(data, dest);
        } catch {
          // a tap must not disturb the SIP path
        }
  }

  /** The control-plane call: run the function provided as `name`; errors travel as data. */
  async call(name: string, args: readonly unknown[]): Promise<Result<unknown>> {
    const fn = this.fns.get(name) as ((...a: unknown[]) => unknown) | undefined;
    if (!fn) {
      const err = new Error(`the route provided no function "${name}"`);
      (err as { code?: string }).code = "ENOROUTEFN";
      return failure(err);
    }
    try {
      return { ok: true, value: await fn(...args) };
    } catch (err) {
      return failure(err);
    }
  }

  /** Run the close hooks, one after the other in the order they were added; a throw is reported and the next runs. */
  async close(): Promise<void> {
    const closers = this.closers.splice(0);
    for (const fn of closers) {
      try {
        await fn();
      } catch (err) {
        console.warn(
          `siptm/workers: a route close hook threw: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    }
  }
}
