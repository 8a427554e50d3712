/**
 * What only tests do to a `ShardedEngine` (exported from
 * `@siptm/workers/testing`, not from `@siptm/workers`): run its shards in
 * lockstep with a virtual clock (`syncShards`, `shardsIdle`, `callsDone`,
 * `shardsNextDue`), kill or stall a shard (`crashShard`, `blockShard`, with
 * the `testHooks` option), have a shard send its periodic report now
 * (`reportNow`), and read what the leak check reads (`shardHealth`,
 * `handlesLive`).
 *
 * They are functions of the engine, not methods, so that the public class
 * carries no test-only member. They need the coordinator's private state (its
 * shards, their queues, its counters): the engine hands that over once, at
 * construction, to `registerInternals`, kept in a WeakMap keyed by the engine
 * — nothing on the instance or in its type names it, and only this module
 * (which the package entry does not export) can look it up.
 *
 * Lockstep: with `virtualClock`, every shard's engine runs on a virtual clock
 * of its own, moved only by a REC_SYNC record on its data port (batch.ts):
 * the shard runs what falls due on the way, after the messages queued before
 * the record, and answers with its next deadline once it has processed the
 * whole batch — on the same FIFO port, so everything it sent before the
 * answer has arrived when the answer does.
 */
import { type SyncRecord, writeSync } from "./batch.js";
import type { ShardedEngine } from "./coordinator.js";
import type { ShardHealth } from "./protocol.js";
import type { Slot, Supervisor } from "./supervisor.js";

/** The coordinator's state the functions here work on. */
export interface EngineInternals {
  readonly supervisor: Supervisor;
  /** The engine runs its shards on virtual clocks (`ShardedEngineOptions.virtualClock`). */
  readonly lockstep: boolean;
  /** `ShardedEngineOptions.testHooks`. */
  readonly testHooks: boolean;
  /** Post what is pending for this shard now. */
  flush(slot: Slot): void;
  /**
   * Things done so far whose effects in a shard come on the data port after they are done:
   * control calls answered (what a call sent follows its answer, which came on another port),
   * send errors posted to a shard.
   */
  effects(): number;
  /** Main-thread handles of transactions not yet told their end. */
  handlesLive(): number;
  /** Set here: a REC_SYNC answer from the current incarnation of `slot`. */
  onSync: ((slot: Slot, rec: SyncRecord) => void) | undefined;
}

interface SyncState {
  seq: number;
  /** The sync each shard has not answered yet, and its next deadline as last told. */
  readonly waits: Array<{ seq: number; done: () => void } | undefined>;
  readonly due: Array<number | undefined>;
  /** `effects()` when the last sync began. */
  effectsAtSync: number;
}

const registry = new WeakMap<object, EngineInternals>();
const syncs = new WeakMap<EngineInternals, SyncState>();

/** Called once by each `ShardedEngine` as it is made. */
export function registerInternals(engine: object, internals: EngineInternals): void {
  registry.set(engine, internals);
}

function internalsOf(engine: ShardedEngine): EngineInternals {
  const x = registry.get(engine);
  if (!x) throw new TypeError("not a ShardedEngine");
  return x;
}

function syncOf(x: EngineInternals): SyncState {
  let st = syncs.get(x);
  if (!st) {
    const state: SyncState = { seq: 0, waits: [], due: [], effectsAtSync: 0 };
    x.onSync = (slot, rec) => {
      const w = state.waits[slot.index];
      if (w?.seq !== rec.seq) return;
      state.due[slot.index] = rec.time;
      state.waits[slot.index] = undefined;
      w.done();
    };
    syncs.set(x, state);
    st = state;
  }
  return st;
}

/**
 * Lockstep tests (`virtualClock`): move every shard's clock to `t` (each runs
 * what falls due on the way, after the messages queued for it), and resolve
 * once every shard has answered — by then everything the shards sent before
 * has been received by the coordinator and handed to the transports. Resolves
 * with the earliest deadline still pending in any shard.
 */
export async function syncShards(engine: ShardedEngine, t: number): Promise<number | undefined> {
  const x = internalsOf(engine);
  if (!x.lockstep) throw new Error("syncShards: the engine has no virtual clock");
  const st = syncOf(x);
  // What a control call sent leaves on the data port after its answer (another port): this sync,
  // answered on the data port, comes after it.
  st.effectsAtSync = x.effects();
  await Promise.all(
    x.supervisor.slots.map((slot) => {
      const inc = slot.inc;
      if (!inc || inc.ended) return undefined;
      const seq = ++st.seq;
      const answered = new Promise<void>((done) => {
        st.waits[slot.index] = { seq, done };
      });
      writeSync(slot.pending, seq, t);
      x.flush(slot);
      return Promise.race([answered, inc.dead.catch(() => {})]);
    }),
  );
  return shardsNextDue(engine);
}

/**
 * Lockstep: nothing waits — no message queued for a shard or posted and not
 * yet processed, no control call unanswered, none answered since the last
 * sync (what it sent may still be on its way).
 */
export function shardsIdle(engine: ShardedEngine): boolean {
  const x = internalsOf(engine);
  return (
    x.supervisor.pendingCalls === 0 &&
    x.effects() === (syncs.get(x)?.effectsAtSync ?? 0) &&
    x.supervisor.slots.every((s) => s.pending.count === 0 && s.inFlight === 0)
  );
}

/** Lockstep: no control call unanswered. */
export function callsDone(engine: ShardedEngine): boolean {
  return internalsOf(engine).supervisor.pendingCalls === 0;
}

/** Lockstep: the earliest deadline pending in any shard, as told at the last `syncShards`. */
export function shardsNextDue(engine: ShardedEngine): number | undefined {
  const st = syncs.get(internalsOf(engine));
  let due: number | undefined;
  if (st) for (const d of st.due) if (d !== undefined && (due === undefined || d < due)) due = d;
  return due;
}

function hooksOn(x: EngineInternals): void {
  if (!x.testHooks) throw new Error("test hooks are off");
}

/** Test hook (`testHooks`): kill shard `shard` — `process.exit` in its thread, or an uncaught throw. */
export async function crashShard(
  engine: ShardedEngine,
  shard: number,
  mode: "exit" | "throw" = "exit",
): Promise<void> {
  const x = internalsOf(engine);
  hooksOn(x);
  const inc = x.supervisor.slots[shard]?.inc;
  if (!inc) throw new RangeError(`no shard ${shard}`);
  // The call never answers: the thread is gone. Wait for the coordinator to have seen the death.
  void inc.api.crash(mode).catch(() => {});
  await inc.dead.catch(() => {});
}

/** Test hook (`testHooks`): keep shard `shard`'s thread busy for `ms` (it processes nothing meanwhile). */
export async function blockShard(engine: ShardedEngine, shard: number, ms: number): Promise<void> {
  const x = internalsOf(engine);
  hooksOn(x);
  await x.supervisor.call(shard, (api) => api.block(ms));
}

/**
 * Test hook (`testHooks`): shard `shard` runs its periodic report now (what its `reportIntervalMs`
 * timer runs): it tells its live count if it changed, and the acknowledgements it held back.
 * Resolves with the number of batches whose acknowledgement went with this report.
 */
export async function reportNow(engine: ShardedEngine, shard: number): Promise<number> {
  const x = internalsOf(engine);
  hooksOn(x);
  return x.supervisor.call(shard, (api) => api.report());
}

/** What the tests' leak check reads from every running shard. */
export function shardHealth(engine: ShardedEngine): Promise<ShardHealth[]> {
  return internalsOf(engine).supervisor.health();
}

/** Main-thread handles of transactions not yet told their end (0 once everything has ended). */
export function handlesLive(engine: ShardedEngine): number {
  return internalsOf(engine).handlesLive();
}
