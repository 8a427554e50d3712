// The requests of the engine suites: those the scripted peers send, written out whole (from
// alice at 127.0.0.9 to bob at 127.0.0.1, the UAS under test, unless said otherwise), and those
// an engine of a bed starts from <sip:a@x> to <sip:b@y>.
import type { RequestOptions, SipRequest } from "@siptm/core";
import { expect } from "vitest";
import type { ClientTransactionLike } from "../../packages/workers/src/api.js";
import type { BedEngine, EngineBed } from "../setup/engines.js";

/** Where the peers send: the UAS under test, bob at 127.0.0.1. */
export const UAS = { protocol: "UDP" as const, address: "127.0.0.1", port: 5060 };

/** A request `engine` starts, from <sip:a@x> to <sip:b@y> unless `opts` says otherwise. */
export function requestAB(
  engine: BedEngine,
  opts: Partial<RequestOptions> & { method: string; uri: string },
): Promise<ClientTransactionLike> {
  return Promise.resolve(engine.request({ from: "<sip:a@x>", to: "<sip:b@y>", ...opts }));
}

export interface RawRequest {
  method: string;
  /** Default sip:bob@127.0.0.1. */
  uri?: string;
  branch: string;
  callId: string;
  fromTag: string;
  /** The To header's address, default <sip:bob@127.0.0.1>; `toTag` is added to it. */
  to?: string;
  toTag?: string;
  /** CSeq number, default 1; its method is the request's. */
  cseq?: number;
  /** A Contact <sip:alice@127.0.0.9> after the CSeq. */
  contact?: boolean;
  /** Header lines (each ending in CRLF) before the Content-Length. */
  extra?: string;
}

export function rawRequest(r: RawRequest): string {
  return (
    `${r.method} ${r.uri ?? "sip:bob@127.0.0.1"} SIP/2.0\r\n` +
    `Via: SIP/2.0/UDP 127.0.0.9:5060;branch=${r.branch}\r\n` +
    "Max-Forwards: 70\r\n" +
    `From: <sip:alice@127.0.0.9>;tag=${r.fromTag}\r\n` +
    `To: ${r.to ?? "<sip:bob@127.0.0.1>"}${r.toTag ? `;tag=${r.toTag}` : ""}\r\n` +
    `Call-ID: ${r.callId}\r\n` +
    `CSeq: ${r.cseq ?? 1} ${r.method}\r\n` +
    (r.contact ? "Contact: <sip:alice@127.0.0.9>\r\n" : "") +
    (r.extra ?? "") +
    "Content-Length: 0\r\n\r\n"
  );
}

/**
 * A request the UAC sends inside its INVITE's transaction (the CANCEL, §9.1; the ACK of a
 * non-2xx final, §17.1.1.3): the same Request-URI, Call-ID, From and CSeq number (its own
 * method), one Via, with the INVITE's branch.
 */
export function expectInInviteTransaction(req: SipRequest, inv: SipRequest): void {
  expect(req.uri).toBe(inv.uri);
  expect(req.callId).toBe(inv.callId);
  expect(req.header("from")).toBe(inv.header("from"));
  expect(req.cseq).toEqual({ seq: inv.cseq.seq, method: req.method });
  expect(req.viaCount).toBe(1);
  expect(req.via.branch).toBe(inv.via.branch);
}

/** The one request of `method` a peer got (asserted: exactly one). */
export function onlyRequest(peer: { requests(method: string): SipRequest[] }, method: string): SipRequest {
  const got = peer.requests(method);
  expect(got, `${method} requests`).toHaveLength(1);
  return got[0]!;
}

/** A new bed with the usual pair of the client suites: the UAC engine at 127.0.0.1, a scripted peer at 127.0.0.9. */
export async function uacAndPeer(makeBed: () => EngineBed) {
  const bed = makeBed();
  const uac = await bed.engine({ address: "127.0.0.1" });
  const peer = bed.peer("127.0.0.9");
  return { bed, uac, peer };
}

/** Request `n` of a series named `series`: its own branch (z9hG4bK<series><n>) and Call-ID (<series>-<n>@127.0.0.9). */
export function nthRequest(series: string, n: number, r: Omit<RawRequest, "branch" | "callId">): string {
  return rawRequest({ ...r, branch: `z9hG4bK${series}${n}`, callId: `${series}-${n}@127.0.0.9` });
}
