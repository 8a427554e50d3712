// siptm as the UAC of cancelled INVITEs, against SIPp as the UAS
// (scenarios/uas-cancel.xml): INVITE → 100 → 180 → CANCEL → 200 → 487 → ACK.
// SIPp fails a call that misses any step (the ACK included), so 0 failed
// calls means every CANCEL matched its INVITE and every 487 was ACKed.
import { describe, expect, it } from "vitest";
import type {
  CancelProgress,
  CancelResult,
  ClientTransactionHandle,
  FinalOutcome,
} from "../../packages/core/src/index.js";
// The SIPp harness, as siptm-uas.test.ts imports it (the two sides of the same interop runs).
import {
  type Drop,
  dropFirst,
  expectCounts,
  FAST_TIMERS,
  LOSSY_TIMERS,
  runAgainstSipp,
  type SiptmSide,
} from "./harness.js";
import { HOST, killedAfterAll, type SippProcess, sleep, startSipp } from "./sipp.js";

const running = killedAfterAll<SippProcess>();

const startUas = (calls: number, extra: string[] = []) =>
  startSipp(running, { scenario: "uas-cancel.xml", calls, extra, listen: true });

/** How call i is cancelled: from its handle, by Kamailio's `tm.cancel callid cseq`, or at once (two-phase: "pending"). */
type How = "handle" | "engine" | "pending";

interface Call {
  handle: ClientTransactionHandle;
  how: How;
  results: CancelResult[];
  progress: CancelProgress[];
}

/**
 * Send `n` INVITEs to SIPp, one every `spacingMs`, each cancelled as `how(i)`
 * says: after its 180, or after its first provisional of any kind
 * (`cancelOn: "1xx"`, for runs where a 180 may be lost: SIPp answers a
 * retransmitted INVITE with its 100 only).
 */
async function callAndCancel(
  side: SiptmSide,
  sipp: SippProcess,
  n: number,
  opts: {
    how: (i: number) => How;
    cancelOn: "180" | "1xx";
    callId?: (i: number) => string;
    spacingMs?: number;
  },
): Promise<Call[]> {
  const { engine, port } = side;
  const target = `${HOST}:${sipp.port}`;
  const calls: Call[] = [];
  for (let i = 0; i < n; i++) {
    const how = opts.how(i);
    const results: CancelResult[] = [];
    const progress: CancelProgress[] = [];
    let asked = false;
    const cancel = () => {
      if (asked) return;
      asked = true;
      results.push(how === "engine" ? engine.cancel(handle.callId, handle.cseq) : handle.cancel());
    };
    const handle: ClientTransactionHandle = engine.request({
      method: "INVITE",
      uri: `sip:service@${target}`,
      from: `"siptm" <sip:siptm@${HOST}:${port}>`,
      to: `<sip:service@${target}>`,
      callId: opts.callId?.(i),
      headers: [
        ["Contact", `<sip:siptm@${HOST}:${port}>`],
        ["Subject", `siptm interop call ${i}`],
      ],
      onProvisional: (res) => {
        if (how !== "pending" && (opts.cancelOn === "1xx" || res.status === 180)) cancel();
      },
      onCancel: (p) => progress.push(p),
    });
    if (how === "pending") cancel();
    calls.push({ handle, how, results, progress });
    await sleep(opts.spacingMs ?? 50);
  }
  return calls;
}

async function finals(calls: Call[], timeoutMs: number): Promise<FinalOutcome[]> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const open = calls
        .filter((c) => !c.handle.outcome)
        .map((c) => `${c.handle.callId} (${c.handle.state})`);
      reject(new Error(`no final response within ${timeoutMs} ms for: ${open.join(", ")}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([Promise.all(calls.map((c) => c.handle.final)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** callAndCancel, then every call's final outcome (within `timeoutMs`). */
async function callsAndFinals(
  side: SiptmSide,
  sipp: SippProcess,
  n: number,
  timeoutMs: number,
  opts: Parameters<typeof callAndCancel>[3],
): Promise<{ calls: Call[]; outcomes: FinalOutcome[] }> {
  const calls = await callAndCancel(side, sipp, n, opts);
  return { calls, outcomes: await finals(calls, timeoutMs) };
}

/** Every call: the cancel request was accepted, the CANCEL got its 200, the INVITE ended with the 487. */
function expectAllCancelled(calls: Call[], outcomes: FinalOutcome[]): void {
  calls.forEach((call, i) => {
    const label = `call ${i} (${call.how}, ${call.handle.callId})`;
    expect(outcomes[i], label).toMatchObject({ status: 487, cause: "response" });
    expect(call.results, label).toEqual([call.how === "pending" ? "pending" : "sent"]);
    expect(
      call.progress.map((p) => p.kind),
      label,
    ).toEqual(["sent", "answered"]);
    expect(call.handle.lastCancel, label).toMatchObject({ kind: "answered", status: 200 });
  });
}

describe("siptm as UAC, SIPp as UAS (uas-cancel.xml)", () => {
  it("20 INVITEs cancelled after their 180 (half by handle.cancel(), half by engine.cancel(callId, cseq)): 0 failed calls, all freed", async () => {
    const N = 20;
    await runAgainstSipp(
      { timers: FAST_TIMERS },
      {
        calls: N,
        drainMs: 10_000,
        // The message trace (messages.log) of this run is what cancel-trace.txt was cut from.
        sipp: () => startUas(N),
        drive: (side, sipp) =>
          callsAndFinals(side, sipp, N, 20_000, {
            how: (i) => (i % 2 === 0 ? "handle" : "engine"),
            cancelOn: "180",
          }),
        check: (side, { calls, outcomes }) => {
          expectAllCancelled(calls, outcomes);
          // One INVITE and one CANCEL client transaction per call, nothing else.
          expectCounts(side.engine, { created: 2 * N, timeouts: 0, stray_responses: 0 });
        },
      },
    );
  });

  it("each loss recovered by the RFC 3261 retransmission rules, one per call, deterministically", async () => {
    // Call i loses exactly the datagrams in plan[i] (their first copy), on siptm's side:
    const plan: Drop[][] = [
      // our INVITE: Timer A resends it (§17.1.1.2)
      [{ direction: "send", kind: "INVITE" }],
      // the 100 and the 180: Timer A again; SIPp answers the retransmitted INVITE with its 100
      [
        { direction: "receive", kind: "100 INVITE" },
        { direction: "receive", kind: "180 INVITE" },
      ],
      // our CANCEL: Timer E of the CANCEL's own transaction (§9.1, §17.1.2.2)
      [{ direction: "send", kind: "CANCEL" }],
      // the 200 to the CANCEL: Timer E; SIPp answers the retransmitted CANCEL with the same 200
      [{ direction: "receive", kind: "200 CANCEL" }],
      // the 487: SIPp retransmits it (Timer G on its side)
      [{ direction: "receive", kind: "487 INVITE" }],
      // our ACK: SIPp retransmits the 487, the INVITE transaction (Completed, Timer D) sends the ACK again
      [{ direction: "send", kind: "ACK" }],
    ];
    const ids = plan.map((_, i) => `interop-loss-${i}-${process.pid}@siptm`);
    const drops = dropFirst(plan, (callId) => {
      const i = ids.indexOf(callId);
      return i < 0 ? undefined : i;
    });
    await runAgainstSipp(
      { timers: LOSSY_TIMERS, loss: { loss: 0, filter: drops.filter } },
      {
        calls: plan.length,
        drainMs: 15_000,
        sipp: () => startUas(plan.length),
        drive: (side, sipp) =>
          callsAndFinals(side, sipp, plan.length, 30_000, {
            how: (i) => (["handle", "engine", "pending"] as const)[i % 3]!,
            cancelOn: "1xx",
            callId: (i) => ids[i]!,
            spacingMs: 100,
          }),
        check: (side, { calls, outcomes }) => {
          expectAllCancelled(calls, outcomes);
          // Every planned loss happened (so every path above was taken), and nothing else was lost.
          expect(drops.hits).toHaveLength(plan.flat().length);
          expect(side.link?.dropped).toBe(plan.flat().length);
          expect(side.engine.stats.retransmissions).toBeGreaterThanOrEqual(4);
          expect(side.engine.stats.created).toBe(2 * plan.length);
        },
      },
    );
  });

  it("20 INVITEs with 10% of datagrams lost both ways on siptm's side: still 0 failed calls, all freed", async () => {
    const N = 20;
    await runAgainstSipp(
      { timers: LOSSY_TIMERS, loss: { loss: 0.1, seed: 3261 } },
      {
        calls: N,
        drainMs: 15_000,
        sipp: () => startUas(N),
        drive: (side, sipp) =>
          callsAndFinals(side, sipp, N, 30_000, {
            how: (i) => (["handle", "engine", "pending"] as const)[i % 3]!,
            cancelOn: "1xx",
          }),
        check: (side, { calls, outcomes }) => {
          expectAllCancelled(calls, outcomes);
          expect(side.link?.dropped).toBeGreaterThan(0);
          expect(side.engine.stats.created).toBe(2 * N);
        },
      },
    );
  });
});
