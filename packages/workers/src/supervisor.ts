/**
 * The shard supervisor: starts each shard's thread, keeps one incarnation of
 * it running (a dead one is restarted, its live transactions counted as
 * lost), carries the control calls to it, and ends the threads at close.
 * What goes over the data port is the coordinator's (coordinator.ts); what
 * happens to a datagram before a shard sees it is admission.ts's.
 *
 * Threads: piscina. Each shard is ONE long-lived task in its own
 * single-thread pool (minThreads = maxThreads = 1, idleTimeout = Infinity):
 * affinity by construction — the shard's state never has to move, because its
 * pool has one thread. Why piscina fits: it gives a supervised worker with a
 * promise API — it loads our ESM entry, hands the task its transferred
 * MessagePorts, turns a throw or an exit of the thread into a rejected task
 * promise (our restart signal), replaces a dead thread, and tears threads
 * down on destroy(). Where it does not: its scheduler (queue, load balancing,
 * maxQueue, needsDrain) has nothing to do when a task never ends, and its
 * per-task run/wait histograms and `utilization` describe tasks, so for a task
 * that lives as long as the shard they say only "one task, still running".
 * Per-shard timing is measured by the shard itself instead (time spent
 * processing each inbound batch, batches, messages, the thread's event-loop
 * utilization: `stats().shards[i]`). Atomics are disabled: a piscina worker
 * in "sync" mode parks its thread between tasks, and a shard is an event loop
 * that must keep running its timers.
 *
 * Control plane: comlink over a dedicated MessagePort per shard. Control
 * calls (a local request, cancel, reply, stats, audit, config, drain) are
 * rare, typed and request/response shaped, which is what comlink gives
 * cheaply: a typed proxy, call ids, promise results. It would be wrong for the
 * data plane: each call is a structured-cloned message with its own id and
 * promise, i.e. one postMessage and one clone per SIP message, exactly what
 * the batches avoid. comlink waits forever for an answer from a thread that
 * died, so the calls pending on an incarnation are listed here and rejected
 * when it ends.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import { type FinalOutcome, TransactionError } from "@siptm/core";
import { type Remote, wrap } from "comlink";
import nodeEndpoint from "comlink/dist/esm/node-adapter.mjs";
import { Piscina } from "piscina";
import type { emptyCoordinatorStats } from "./api.js";
import { BatchWriter } from "./batch.js";
import type { CoordinatorLogger } from "./options.js";
import type { ShardApi, ShardExit, ShardHealth, ShardTask } from "./protocol.js";

/** The local outcome of a client transaction whose shard died or closed with it (like a transport failure, §8.1.3.1). */
export const SHARD_LOST: FinalOutcome = Object.freeze({
  status: 503,
  reason: "Shard Lost",
  cause: "transport-error",
});

const SHUTDOWN_WAIT_MS = 2_000;
/** Restarts within this window beyond RESTART_BURST are delayed by RESTART_DELAY_MS (a crash loop must not spin). */
const RESTART_WINDOW_MS = 10_000;
const RESTART_BURST = 3;
const RESTART_DELAY_MS = 1_000;

/** One run of a shard's thread, from its launch to its end. */
export interface Incarnation {
  readonly n: number;
  readonly api: Remote<ShardApi>;
  readonly data: MessagePort;
  readonly control: MessagePort;
  /** Rejects when this incarnation ends. */
  readonly dead: Promise<never>;
  die(err: Error): void;
  /** Control calls not answered yet: rejected when the incarnation ends (comlink would wait forever). */
  readonly calls: Set<(err: Error) => void>;
  ended: boolean;
  expectedEnd: boolean;
}

/** One shard as the main thread sees it: its thread (here) and its data-plane queue (the coordinator's). */
export class Slot {
  pool: Piscina;
  inc: Incarnation | undefined;
  alive = false;
  incarnations = 0;
  readonly pending = new BatchWriter();
  /** Messages posted or pending, not yet acknowledged by the shard. */
  inFlight = 0;
  /** Batches posted to the current incarnation and not yet reported processed. */
  batchesOut = 0;
  /**
   * New requests let in for this shard and not yet acknowledged (pending or posted): they may
   * become transactions the shard has not told yet. `newPending` of them are in the pending
   * batch; `newPosted` has the count of each posted batch, oldest first (acks come per batch).
   */
  newInFlight = 0;
  newPending = 0;
  readonly newPosted: number[] = [];
  /** The live transaction count the shard told last. */
  live = 0;
  restarts = 0;
  lost = 0;
  overloaded = 0;
  restartTimes: number[] = [];
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  constructor(
    readonly index: number,
    pool: Piscina,
  ) {
    this.pool = pool;
  }

  /** A new incarnation starts: what was posted to the previous one is gone; what is still pending goes to this one. */
  restartQueue(): void {
    this.live = 0;
    this.inFlight = this.pending.count;
    this.batchesOut = 0;
    this.newInFlight = this.newPending;
    this.newPosted.length = 0;
  }
}

export type EngineState = "starting" | "open" | "closing" | "closed";

/** What the supervisor needs from the coordinator. */
export interface SupervisorHooks {
  /** The task of incarnation `incarnation` of shard `index`, all but its ports. */
  task(index: number, incarnation: number): Omit<ShardTask, "data" | "control">;
  /** Something arrived on an incarnation's data port. */
  onData(slot: Slot, inc: Incarnation, m: unknown): void;
  /** An incarnation ended: the transactions the main thread held in it get `outcome`. */
  onEnd(shard: number, outcome: FinalOutcome): void;
  /** A new incarnation is running: what is pending for it may be posted. */
  onLaunch(): void;
}

function shardFile(): string {
  // Built: dist/supervisor.js next to dist/shard.js. Run from src (tests through vite): use the built one.
  const here = new URL("./shard.js", import.meta.url);
  if (existsSync(fileURLToPath(here))) return here.href;
  return new URL("../dist/shard.js", import.meta.url).href;
}

export class Supervisor {
  readonly slots: Slot[] = [];
  state: EngineState = "starting";
  /** Control calls sent and not answered yet. */
  pendingCalls = 0;
  /** Control calls answered or failed so far (what a call made a shard send comes on the data port after it). */
  settledCalls = 0;

  constructor(
    shards: number,
    private readonly hooks: SupervisorHooks,
    private readonly logger: CoordinatorLogger,
    private readonly counters: ReturnType<typeof emptyCoordinatorStats>,
  ) {
    for (let i = 0; i < shards; i++) this.slots.push(new Slot(i, this.makePool()));
  }

  /** Start every shard and resolve when all are ready (each has loaded its route module). */
  async start(): Promise<void> {
    await Promise.all(
      this.slots.map(async (slot) => {
        const inc = this.launch(slot);
        await this.call(slot.index, (api) => api.ready());
        if (slot.inc === inc) slot.alive = true;
      }),
    );
    for (const slot of this.slots)
      if (!slot.inc || slot.inc.ended) throw new Error(`shard ${slot.index} ended while starting`);
    this.state = "open";
  }

  private launch(slot: Slot): Incarnation {
    const n = ++slot.incarnations;
    const data = new MessageChannel();
    const control = new MessageChannel();
    let die!: (err: Error) => void;
    const dead = new Promise<never>((_, reject) => {
      die = reject;
    });
    dead.catch(() => {});
    const inc: Incarnation = {
      n,
      api: wrap<ShardApi>(nodeEndpoint(control.port1)),
      data: data.port1,
      control: control.port1,
      dead,
      die,
      calls: new Set(),
      ended: false,
      expectedEnd: false,
    };
    data.port1.on("message", (m: unknown) => this.hooks.onData(slot, inc, m));
    const task: ShardTask = { ...this.hooks.task(slot.index, n), data: data.port2, control: control.port2 };
    slot.inc = inc;
    slot.alive = false;
    slot.restartQueue();
    const run = slot.pool.run(task, { transferList: [data.port2, control.port2] }) as Promise<ShardExit>;
    run.then(
      () => this.onShardEnd(slot, inc, undefined),
      (err: unknown) => this.onShardEnd(slot, inc, err instanceof Error ? err : new Error(String(err))),
    );
    this.hooks.onLaunch();
    return inc;
  }

  private onShardEnd(slot: Slot, inc: Incarnation, err: Error | undefined): void {
    if (inc.ended) return;
    inc.ended = true;
    const why = err ?? new Error(`shard ${slot.index} ended`);
    inc.die(why);
    for (const reject of inc.calls) reject(why);
    inc.calls.clear();
    inc.data.close();
    inc.control.close();
    if (slot.inc === inc) slot.alive = false;
    const expected = inc.expectedEnd && err === undefined;
    const outcome: FinalOutcome = expected ? { ...SHARD_LOST, reason: "Shard Closed" } : SHARD_LOST;
    this.hooks.onEnd(slot.index, outcome);
    if (expected || this.state === "closed") return;
    if (this.state === "starting") {
      // create() fails with this error; no restart.
      this.logger.warn({ shard: slot.index, err: why.message }, `shard ${slot.index} failed to start`);
      return;
    }
    // It died (a throw, an exit, a killed thread), or ended without being asked to.
    const lost = slot.live;
    slot.lost += lost;
    slot.restarts++;
    this.counters.lost += lost;
    this.counters.restarts++;
    this.logger.warn(
      { shard: slot.index, incarnation: inc.n, lost, err: err?.message ?? "ended unasked" },
      `shard ${slot.index} died; ${lost} transaction(s) lost; starting it again`,
    );
    if (this.state === "closing") return;
    this.restart(slot);
  }

  private restart(slot: Slot): void {
    // piscina replaces a dead thread itself (minThreads 1) — unless it died during bootstrap,
    // when piscina stops replacing: then the shard gets a fresh pool.
    if (slot.pool.threads.length === 0) {
      void slot.pool.destroy().catch(() => {});
      slot.pool = this.makePool();
    }
    const now = Date.now();
    slot.restartTimes = slot.restartTimes.filter((t) => now - t < RESTART_WINDOW_MS);
    slot.restartTimes.push(now);
    const go = () => {
      slot.restartTimer = undefined;
      if (this.state !== "open" && this.state !== "starting") return;
      const inc = this.launch(slot);
      this.call(slot.index, (api) => api.ready()).then(
        () => {
          if (slot.inc === inc) slot.alive = true;
        },
        () => {},
      );
    };
    if (slot.restartTimes.length > RESTART_BURST) {
      slot.inc = undefined;
      slot.restartTimer = setTimeout(go, RESTART_DELAY_MS);
    } else go();
  }

  /** One single-thread pool per shard: affinity by construction. */
  private makePool(): Piscina {
    const pool = new Piscina({
      filename: shardFile(),
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
      // A parked ("sync") worker would stop the shard's event loop between tasks.
      atomics: "disabled",
      // Task timings would describe one task as long as the shard: see the header comment.
      recordTiming: false,
    });
    // piscina emits 'error' for a thread that fails with no task on it; unheard, that would end the process.
    pool.on("error", (err: unknown) =>
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, "shard pool error"),
    );
    return pool;
  }

  /** A control call to a shard's current incarnation; rejects if that incarnation ends first. */
  call<T>(shard: number, fn: (api: Remote<ShardApi>) => Promise<T>): Promise<T> {
    const slot = this.slots[shard];
    const inc = slot?.inc;
    if (!slot || !inc || inc.ended)
      return Promise.reject(new TransactionError("no-transport", `shard ${shard} is not running`));
    // Not Promise.race with `inc.dead`: that would pile one reaction per call on a promise that
    // lives as long as the shard. Pending calls are listed and rejected when it ends.
    this.pendingCalls++;
    return new Promise<T>((resolve, reject) => {
      const failed = (e: unknown) => {
        this.pendingCalls--;
        this.settledCalls++;
        reject(e);
      };
      inc.calls.add(failed);
      fn(inc.api).then(
        (v) => {
          if (!inc.calls.delete(failed)) return;
          this.pendingCalls--;
          this.settledCalls++;
          resolve(v);
        },
        (e: unknown) => {
          if (inc.calls.delete(failed)) failed(e);
        },
      );
    });
  }

  /** Resolves when every shard is up (after a restart). */
  async ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.slots.every((s) => s.alive)) {
      if (Date.now() > deadline || this.state === "closed") throw new Error("shards not ready");
      await delay(10);
    }
  }

  /** What the tests' leak check reads from every running shard (lockstep.ts). */
  health(): Promise<ShardHealth[]> {
    return Promise.all(this.slots.map((slot) => this.call(slot.index, (api) => api.health())));
  }

  /** close(), first step: stop restarting shards (new requests are turned away from now on). */
  beginClose(): void {
    this.state = "closing";
    for (const slot of this.slots) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
    }
  }

  /**
   * close(), then: let each shard drain for at most `drainMs`, end its task (the shard closes its
   * engine and ports), and tear the pools down. Handles still open get "Shard Closed".
   */
  async stop(drainMs: number): Promise<void> {
    await Promise.all(
      this.slots.map(async (slot) => {
        const inc = slot.inc;
        if (!inc || inc.ended) return;
        await this.call(slot.index, (api) => api.drain(drainMs)).catch(() => {});
        inc.expectedEnd = true;
        await this.call(slot.index, (api) => api.shutdown()).catch(() => {});
        // The task resolves when the shard has closed its engine and ports.
        await Promise.race([inc.dead.catch(() => {}), delay(SHUTDOWN_WAIT_MS)]);
      }),
    );
    this.state = "closed";
    for (const slot of this.slots) {
      const inc = slot.inc;
      if (inc && !inc.ended) {
        inc.expectedEnd = true;
        this.onShardEnd(slot, inc, undefined);
      }
      slot.alive = false;
      slot.pending.clear();
    }
    await Promise.all(this.slots.map((slot) => slot.pool.destroy().catch(() => {})));
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    t.unref?.();
  });
}
