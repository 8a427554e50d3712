/**
 * The registrar shared across shards (`--workers N`, route `default`).
 *
 * A REGISTER may land on another shard than the INVITE to that AOR (shards
 * own Call-IDs, not AORs), so the registrar cannot live in a shard. For now
 * it lives in the main thread: shards hand every REGISTER over (the sharded
 * engine's main-thread `onRequest`), the main thread's `Registrar` answers
 * it, and the AOR's new binding set is broadcast to every shard over a
 * `BroadcastChannel` (the control plane: one message per successful
 * REGISTER, not per call). Each shard keeps a read-only replica that serves
 * the lookups of its proxy. A shard that starts (or restarts) says "hello"
 * and gets the whole table.
 *
 * THIS IS THE SEAM FOR THE LATER SHARED STORE: `RegistrarPublisher` (writes,
 * in one place) and `subscribeReplica` (reads, in each shard) are the two
 * sides to replace with a store shared across threads and machines; the
 * routes only see `Registrar.lookup` / `register`.
 *
 * Ordering: the update is posted before the 200 to the REGISTER leaves, and
 * an INVITE to the AOR arrives over the network after that 200 — in practice
 * the replicas are current when it is routed, but nothing enforces it.
 *
 * Flows (RFC 5626): the coordinator owns every connection, so a connection's
 * close is told to the main thread (`ShardedEngine.onFlowClosed`), whose
 * registrar drops the bindings that lived on it; the AORs that changed are
 * broadcast like any change, then the closed flow itself, so that each
 * shard's route forgets it (`Registrar.watchFlows`: its flow tokens of that
 * flow are answered 430 from then on).
 */
import { BroadcastChannel } from "node:worker_threads";
import type { Source } from "@siptm/core";
import { type Flow, flowOf } from "./flow.js";
import type { AorCopy, Registrar } from "./registrar.js";

type Message =
  | { type: "hello" }
  | { type: "aor"; copy: AorCopy }
  | { type: "full"; aors: AorCopy[] }
  | { type: "flow"; flow: Flow };

function dataOf(ev: unknown): Message | undefined {
  const data = (ev as { data?: unknown }).data as { type?: unknown } | undefined;
  return data && typeof data.type === "string" ? (data as Message) : undefined;
}

/** A channel name unique to one server (several servers may run in one process). */
export function registrarChannelName(): string {
  return `siptm-registrar-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** Main thread: the owner of the bindings, telling the shards every change. */
export class RegistrarPublisher {
  private readonly channel: BroadcastChannel;

  constructor(
    readonly name: string,
    private readonly registrar: Registrar,
  ) {
    this.channel = new BroadcastChannel(name);
    this.channel.onmessage = (ev) => {
      if (dataOf(ev)?.type === "hello") this.publishAll();
    };
    this.channel.unref();
  }

  /** The AOR changed (a 200 to a REGISTER): send its binding set. */
  publish(aor: string): void {
    this.post({ type: "aor", copy: this.registrar.copyOf(aor) });
  }

  /** Every AOR (a shard asked). */
  publishAll(): void {
    this.post({ type: "full", aors: this.registrar.copyAll() });
  }

  /** A connection closed (the sharded engine's onFlowClosed): drop its bindings here, then tell the shards. */
  flowClosed(source: Source): void {
    const flow = flowOf(source);
    if (!flow) return;
    for (const aor of this.registrar.flowClosed(flow)) this.publish(aor);
    this.post({ type: "flow", flow });
  }

  close(): void {
    this.channel.close();
  }

  private post(m: Message): void {
    this.channel.postMessage(m);
  }
}

/** Shard: keep `replica` (a Registrar used for lookups only) in step with the main thread's. Returns a stop function. */
export function subscribeReplica(name: string, replica: Registrar): () => void {
  const channel = new BroadcastChannel(name);
  channel.onmessage = (ev) => {
    const m = dataOf(ev);
    if (m?.type === "aor") replica.replace(m.copy);
    else if (m?.type === "full") for (const copy of m.aors) replica.replace(copy);
    // Its bindings came as "aor" updates before; this tells the replica's flow watchers.
    else if (m?.type === "flow") replica.flowClosed(m.flow);
  };
  channel.unref();
  channel.postMessage({ type: "hello" } satisfies Message);
  return () => channel.close();
}
