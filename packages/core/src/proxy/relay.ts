/**
 * Stateful proxying (RFC 3261 §16), Kamailio's t_relay(): a server
 * transaction forwarded through one or more client transactions, responses
 * relayed back. (Being built: the signature is stable.)
 */
import type { Engine } from "../engine.js";
import type { SipRequest, SipResponse } from "../message/types.js";
import { TransactionError } from "../transaction/errors.js";
import type { ServerTransactionHandle } from "../transaction/handles.js";
import type { Destination } from "../transport/types.js";

export interface RelayTarget {
  /** The Request-URI of the branch. */
  uri: string;
  /** q-value (RFC 3261 §16.6 / §20.10): higher first; equal q-values are forked in parallel. Default 1.0. */
  q?: number;
  /** Bypass next-hop resolution. */
  nextHop?: Destination | string;
}

export interface RelayOptions {
  /** Targets; default the Request-URI (§16.5). */
  targets?: RelayTarget[];
  /** Insert Record-Route (§16.6 item 4): true for our own URI, or a URI string. */
  recordRoute?: boolean | string;
  /** Kamailio fr_timer (no response at all on a branch), ms. */
  frTimer?: number;
  /** Kamailio fr_inv_timer (after a provisional), ms. */
  frInvTimer?: number;
  /** §16.6 item 11 Timer C for INVITE, refreshed by provisionals, ms. Default 180 s. */
  timerC?: number;
  /** Called for each branch request before it is sent (header edits). */
  onBranch?: (branch: { index: number; target: RelayTarget; request: SipRequest }) => void;
  /** Called for each response received on a branch before it is considered for relaying. */
  onResponse?: (response: SipResponse, branch: number) => void;
  /**
   * Kamailio failure_route: all branches failed; return new targets to try,
   * or nothing to send the best response upstream.
   */
  onFailure?: (best: SipResponse | { status: number; reason: string }) => RelayTarget[] | undefined;
}

export interface RelayContext {
  readonly branches: number;
  /** Status relayed upstream as the final response, once it was. */
  readonly finalStatus: number;
}

export function relay(_engine: Engine, _tx: ServerTransactionHandle, _opts: RelayOptions = {}): RelayContext {
  throw new TransactionError("not-allowed", "stateful proxying is not implemented yet");
}
