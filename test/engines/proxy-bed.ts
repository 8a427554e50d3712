// What the proxy suites (relay, failover) share: the relaying route, the
// proxy's address, a bed's UAC and proxy, and one request sent through it.
import { fileURLToPath } from "node:url";
import type { RequestOptions } from "@siptm/core";
import type { ClientTransactionLike } from "../../packages/workers/src/api.js";
import type { BedEngine, EngineBed } from "../setup/engines.js";

/** The proxy's route: relay() with the options of the request's X-Relay header. */
export const ROUTE = fileURLToPath(new URL("./fixtures/relay-route.mjs", import.meta.url));
export const PROXY = { protocol: "UDP" as const, address: "127.0.0.5", port: 5060 };

/** The UAC (127.0.0.1) and the relaying proxy (127.0.0.5) of a bed. */
export async function uacAndProxy(bed: EngineBed): Promise<{ uac: BedEngine; proxy: BedEngine }> {
  const uac = await bed.engine({ address: "127.0.0.1" });
  const proxy = await bed.engine({ address: "127.0.0.5", route: ROUTE });
  return { uac, proxy };
}

/**
 * A request from `uac` to the proxy (an OPTIONS from <sip:a@x> to <sip:b@y>
 * unless `opts` says otherwise), and the bed flushed.
 */
export async function viaProxy(
  bed: EngineBed,
  uac: BedEngine,
  opts: Partial<RequestOptions> & { uri: string },
): Promise<ClientTransactionLike> {
  const h = await uac.request({
    method: "OPTIONS",
    from: "<sip:a@x>",
    to: "<sip:b@y>",
    nextHop: "udp:127.0.0.5:5060",
    ...opts,
  });
  await bed.flush();
  return h;
}
