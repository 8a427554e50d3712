// The siptm side of the interop tests: an engine on a real UDP socket on
// 127.0.0.1 (optionally behind a lossy link), message classification for
// targeted drops, and the end-of-test checks (SIPp clean, engine drained).
import { expect } from "vitest";
import {
  createUdpTransport,
  Engine,
  type EngineOptions,
  parseMessage,
  type TimerConfig,
} from "../../packages/core/src/index.js";
import { type LossDirection, type LossyLink, lossy } from "../../packages/core/src/transport/lossy.js";
import type { UdpTransport } from "../../packages/core/src/transport/udp.js";
import { HOST, type SippProcess, type SippResult, waitUntil } from "./sipp.js";

/** Short timers so a test ends in seconds (RFC values: T1 500, T2 4000, T4 5000, D 32 s). */
export const FAST_TIMERS: Partial<TimerConfig> = { t1: 50, t2: 400, t4: 500, timerD: 500 };
/**
 * Under loss, Timer D must outlast the peer's retransmissions of the final
 * response (that is what D is for, §17.1.1.2): SIPp resends the 487 at
 * 100, 200, 400, 800 ms… (capped by -T2), and each needs our ACK again.
 */
export const LOSSY_TIMERS: Partial<TimerConfig> = { ...FAST_TIMERS, timerD: 4000 };

export interface SiptmSide {
  engine: Engine;
  udp: UdpTransport;
  link: LossyLink | undefined;
  port: number;
}

export async function startSiptm(opts: {
  timers: Partial<TimerConfig>;
  onRequest?: EngineOptions["onRequest"];
  loss?: Parameters<typeof lossy>[0];
}): Promise<SiptmSide> {
  const engine = new Engine({ timers: opts.timers, onRequest: opts.onRequest, refFaults: "count" });
  // Start, and close what was made if that fails (as siptm-server.ts's startServer does for its child).
  const link = opts.loss ? lossy(opts.loss) : undefined;
  try {
    const udp = await createUdpTransport({ address: HOST, port: 0, sink: link ? link.sink(engine) : engine });
    engine.addTransport(link ? link.wrap(udp) : udp);
    return { engine, udp, link, port: udp.localPort };
  } catch (err) {
    await engine.close();
    throw err;
  }
}

/** What a datagram is, for targeted drops: "INVITE", "CANCEL", "ACK", or a status with its CSeq method ("200 CANCEL"). */
export interface Described {
  kind: string;
  callId: string;
}

export function classify(data: Buffer): Described | undefined {
  try {
    const msg = parseMessage(data);
    if (msg.isRequest) return { kind: msg.method, callId: msg.callId };
    return { kind: `${msg.status} ${msg.cseq.method}`, callId: msg.callId };
  } catch {
    return undefined;
  }
}

export interface Drop {
  direction: LossDirection;
  /** As `classify` names it: "INVITE", "ACK", "180 INVITE", "200 CANCEL"… */
  kind: string;
}

/**
 * A loss filter that drops, for call i, the first datagram of each kind
 * listed in `plan[i]` (once each), and nothing else: each call then
 * exercises one recovery path. `callOf` maps a Call-ID to its index (siptm's
 * own Call-IDs are known; SIPp's are numbered in order of arrival).
 */
export function dropFirst(
  plan: ReadonlyArray<readonly Drop[]>,
  callOf: (callId: string) => number | undefined,
): { filter: NonNullable<Parameters<typeof lossy>[0]["filter"]>; hits: string[] } {
  const left = plan.map((drops) => [...drops]);
  const hits: string[] = [];
  const filter = (data: Buffer, direction: LossDirection): boolean => {
    const d = classify(data);
    if (!d) return false;
    const index = callOf(d.callId);
    const drops = index === undefined ? undefined : left[index];
    if (!drops) return false;
    const at = drops.findIndex((x) => x.direction === direction && x.kind === d.kind);
    if (at < 0) return false;
    drops.splice(at, 1);
    hits.push(`call ${index}: ${direction} ${d.kind}`);
    return true;
  };
  return { filter, hits };
}

/** SIPp ran every call to the end of its scenario: exit code 0 and no failed call in its statistics. */
export function expectSippClean(result: SippResult, calls: number): void {
  const report = result.report();
  expect(result.code, `SIPp exit code (0 = all calls succeeded)\n${report}`).toBe(0);
  expect(result.failed, `SIPp failed calls\n${report}`).toBe(0);
  expect(result.successful, `SIPp successful calls\n${report}`).toBe(calls);
}

/** Each counter of the engine's stats named in `expected` has the value given there. */
export function expectCounts(engine: Engine, expected: Record<string, number>): void {
  const stats = engine.stats as unknown as Record<string, number>;
  for (const [name, value] of Object.entries(expected)) expect(stats[name], name).toBe(value);
}

/**
 * Once every timer has run out, every transaction the engine created is
 * freed: nothing live, nothing held, no timer armed, no reference fault, no
 * user callback that threw. Polls up to `timeoutMs` (real time).
 */
export async function expectDrained(engine: Engine, timeoutMs: number): Promise<void> {
  const stats = engine.stats;
  const drained = await waitUntil(() => stats.created === stats.freed, timeoutMs);
  expect(
    drained,
    `created ${stats.created} freed ${stats.freed} after ${timeoutMs} ms; live: ${JSON.stringify(engine.audit(), null, 1)}`,
  ).toBe(true);
  expect(stats.current).toBe(0);
  expect(engine.audit()).toEqual([]);
  expect(engine.armedTimers).toBe(0);
  expect(stats.ref_faults, JSON.stringify(engine.refFaults)).toBe(0);
  expect(engine.snapshot().user_errors).toBe(0);
}

/**
 * One run of SIPp against a siptm side: the side made from `side`, SIPp
 * started by `sipp`, and `drive` (what siptm does while SIPp runs); then
 * SIPp's `calls` calls all ended well (waited up to 60 s) and the side drained
 * within `drainMs`, and `check` looks at the side and at what `drive` gave
 * before the side closes. The side is closed and SIPp killed whatever happens.
 */
export async function runAgainstSipp<T = undefined>(
  side: Parameters<typeof startSiptm>[0],
  run: {
    calls: number;
    drainMs: number;
    sipp: (side: SiptmSide) => Promise<SippProcess>;
    drive?: (side: SiptmSide, sipp: SippProcess) => Promise<T>;
    check: (side: SiptmSide, driven: T) => void;
  },
): Promise<void> {
  let sipp: SippProcess | undefined;
  const s = await startSiptm(side);
  try {
    sipp = await run.sipp(s);
    const driven = (await run.drive?.(s, sipp)) as T;
    const result = await sipp.wait(60_000);
    expectSippClean(result, run.calls);
    await expectDrained(s.engine, run.drainMs);
    run.check(s, driven);
  } finally {
    await s.engine.close();
    await sipp?.kill();
  }
}
