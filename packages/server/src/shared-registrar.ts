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
 */
import { BroadcastChannel } from "node:worker_threads";
import type { AorCopy, Registrar } from "./registrar.js";

type Message = { type: "hello" } | { type: "aor"; copy: AorCopy } | { type: "full"; aors: AorCopy[] };

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
    this.post({ type: "full", aors: this.registrar.dump().map((a) => this.registrar.copyOf(a.aor)) });
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
  };
  channel.unref();
  channel.postMessage({ type: "hello" } satisfies Message);
  return () => channel.close();
}
