/**
 * The stateful proxy entry point, Kamailio's t_relay(), from @siptm/core.
 * The core's `relay` (packages/core/src/proxy/relay.ts) is not exported from
 * the package root yet, so it is looked up at run time: when the core exports
 * it, the server uses it as is; until then calling it throws, as the core's
 * own stub does. The types mirror the core's signature.
 */
import * as core from "@siptm/core";
import { type Destination, type Engine, type SipRequest, type SipResponse, type ServerTransactionHandle, TransactionError } from "@siptm/core";

export interface RelayTarget {
  /** The Request-URI of the branch. */
  uri: string;
  /** q-value: higher first; equal q-values are forked in parallel. Default 1.0. */
  q?: number;
  /** Bypass next-hop resolution. */
  nextHop?: Destination | string;
}

export interface RelayOptions {
  targets?: RelayTarget[];
  recordRoute?: boolean | string;
  frTimer?: number;
  frInvTimer?: number;
  timerC?: number;
  onBranch?: (branch: { index: number; target: RelayTarget; request: SipRequest }) => void;
  onResponse?: (response: SipResponse, branch: number) => void;
  onFailure?: (best: SipResponse | { status: number; reason: string }) => RelayTarget[] | undefined;
}

export interface RelayContext {
  readonly branches: number;
  readonly finalStatus: number;
}

export type RelayFunction = (engine: Engine, tx: ServerTransactionHandle, opts?: RelayOptions) => RelayContext;

const exported = (core as unknown as { relay?: unknown }).relay;

/** True when @siptm/core exports `relay`. */
export const relayExported = typeof exported === "function";

export const relay: RelayFunction = relayExported
  ? (exported as RelayFunction)
  : () => {
      throw new TransactionError("not-allowed", "stateful proxying is not implemented yet (@siptm/core has no relay)");
    };
