// siptm as the UAS of cancelled INVITEs, against SIPp as the UAC
// (scenarios/uac-cancel.xml): SIPp sends INVITE, waits for the 180, sends
// CANCEL, expects 200 (CANCEL) and 487 (INVITE), sends the ACK. siptm's
// handler answers 180 and nothing else: the 200 and the 487 are the
// engine's own (§9.2, autoCancel487).
import { describe, expect, it } from "vitest";
import type { ServerEndCause, ServerTransactionHandle } from "../../packages/core/src/index.js";
// The SIPp harness, as siptm-uac.test.ts imports it (the two sides of the same interop runs).
import {
  type Drop,
  dropFirst,
  expectCounts,
  FAST_TIMERS,
  LOSSY_TIMERS,
  runAgainstSipp,
  type SiptmSide,
} from "./harness.js";
import { HOST, killedAfterAll, type SippProcess, startSipp } from "./sipp.js";

const running = killedAfterAll<SippProcess>();

interface Invite {
  handle: ServerTransactionHandle;
  cancels: number;
  ended: ServerEndCause | undefined;
}

/** The UAS: 180 to each INVITE, never a final; records what the engine tells the handler. */
function ringing(invites: Invite[]) {
  return (handle: ServerTransactionHandle) => {
    if (handle.method !== "INVITE") return;
    const invite: Invite = { handle, cancels: 0, ended: undefined };
    invites.push(invite);
    handle.events.onCancel = () => {
      invite.cancels++;
    };
    handle.events.onTerminated = (cause) => {
      invite.ended = cause;
    };
    handle.reply(180);
  };
}

const runUac = (side: SiptmSide, calls: number) =>
  startSipp(running, { scenario: "uac-cancel.xml", calls, remote: `${HOST}:${side.port}` });

/** Every INVITE was cancelled once, answered 487 by the engine, and ACKed (Timer H never fired). */
function expectAllCancelled(invites: Invite[], calls: number): void {
  expect(invites).toHaveLength(calls);
  invites.forEach((inv, i) => {
    const label = `INVITE ${i} (${inv.handle.request.callId})`;
    expect(inv.cancels, label).toBe(1);
    expect(inv.handle.cancelled, label).toBe(true);
    expect(inv.handle.finalStatus, label).toBe(487);
    expect(inv.ended, `${label}: "ack-timeout" means the ACK of the 487 never arrived`).toBe("normal");
    expect(() => inv.handle.reply(200), label).toThrow(/cancelled/);
  });
}

describe("siptm as UAS, SIPp as UAC (uac-cancel.xml)", () => {
  it("20 calls: 180, then SIPp's CANCEL gets 200 and the INVITE 487, ACKed: 0 failed calls, all freed", async () => {
    const N = 20;
    const invites: Invite[] = [];
    await runAgainstSipp(
      { timers: FAST_TIMERS, onRequest: ringing(invites) },
      {
        calls: N,
        drainMs: 10_000,
        sipp: (side) => runUac(side, N),
        check: (side) => {
          expectAllCancelled(invites, N);
          // One INVITE and one CANCEL server transaction per call.
          expectCounts(side.engine, { created: 2 * N, unmatched_cancels: 0, retransmissions: 0 });
        },
      },
    );
  });

  it("each loss recovered by the RFC 3261 retransmission rules, one per call, deterministically", async () => {
    // Call i (numbered by the arrival of its first INVITE) loses exactly these datagrams, on siptm's side:
    const plan: Drop[][] = [
      // SIPp's INVITE: SIPp retransmits it
      [{ direction: "receive", kind: "INVITE" }],
      // our 180: SIPp retransmits the INVITE, the server transaction sends the 180 again (§17.2.1)
      [{ direction: "send", kind: "180 INVITE" }],
      // SIPp's CANCEL: SIPp retransmits it
      [{ direction: "receive", kind: "CANCEL" }],
      // our 200 to the CANCEL: the 487 arrives first, SIPp ACKs it and resends the CANCEL,
      // the CANCEL's server transaction (Completed) sends the 200 again (§17.2.2)
      [{ direction: "send", kind: "200 CANCEL" }],
      // our 487: Timer G resends it (§17.2.1)
      [{ direction: "send", kind: "487 INVITE" }],
      // SIPp's ACK: Timer G resends the 487, SIPp ACKs it again
      [{ direction: "receive", kind: "ACK" }],
    ];
    const order: string[] = [];
    const drops = dropFirst(plan, (callId) => {
      if (!order.includes(callId)) order.push(callId);
      return order.indexOf(callId);
    });
    const invites: Invite[] = [];
    await runAgainstSipp(
      { timers: LOSSY_TIMERS, onRequest: ringing(invites), loss: { loss: 0, filter: drops.filter } },
      {
        calls: plan.length,
        drainMs: 15_000,
        sipp: (side) => runUac(side, plan.length),
        check: (side) => {
          expectAllCancelled(invites, plan.length);
          expect(drops.hits).toHaveLength(plan.flat().length);
          expect(side.link?.dropped).toBe(plan.flat().length);
          // Timer G resent the 487 at least for calls 4 and 5; the 180 and the 200 were resent on request.
          expect(side.engine.stats.retransmissions).toBeGreaterThanOrEqual(2);
          expect(side.engine.stats.created).toBe(2 * plan.length);
        },
      },
    );
  });

  it("20 calls with 10% of datagrams lost both ways on siptm's side: still 0 failed calls, all freed", async () => {
    const N = 20;
    const invites: Invite[] = [];
    await runAgainstSipp(
      { timers: LOSSY_TIMERS, onRequest: ringing(invites), loss: { loss: 0.1, seed: 9 } },
      {
        calls: N,
        drainMs: 15_000,
        sipp: (side) => runUac(side, N),
        check: (side) => {
          expectAllCancelled(invites, N);
          expect(side.link?.dropped).toBeGreaterThan(0);
          expect(side.engine.stats.unmatched_cancels).toBe(0);
        },
      },
    );
  });
});
