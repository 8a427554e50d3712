/**
 * Test support (exported as `@siptm/core/testing`): engines on a virtual clock
 * over an in-memory network, and the automatic leak check that runs after
 * every test — every engine made here is run past its longest timer and must
 * show created == freed, an empty table, no armed timer and no reference fault.
 */
import { VirtualClock } from "./clock.js";
import { internals } from "./engine/context.js";
import { Engine, type EngineOptions } from "./engine.js";
import { parseMessage } from "./message/parser.js";
import type { SipMessage, SipRequest } from "./message/types.js";
import { type MemoryFaults, MemoryNetwork } from "./transport/memory.js";
import type { Destination, Source, Transport } from "./transport/types.js";

/** A scripted SIP peer: records what it receives, sends what the test tells it. */
export class Peer {
  readonly received: Array<{ data: Buffer; msg: SipMessage; source: Source }> = [];
  transport!: Transport;
  constructor(readonly protocol: "UDP" | "TCP") {}
  onMessage(data: Buffer, source: Source): void {
    this.received.push({ data, msg: parseMessage(data, { datagram: source.protocol === "UDP" }), source });
  }
  /** Messages received so far, parsed, optionally only those whose method (requests) or CSeq method matches. */
  messages(filter?: (m: SipMessage) => boolean): SipMessage[] {
    const all = this.received.map((r) => r.msg);
    return filter ? all.filter(filter) : all;
  }
  requests(method?: string): SipRequest[] {
    return this.messages((m) => m.isRequest && (method === undefined || m.method === method)) as SipRequest[];
  }
  last(): { data: Buffer; msg: SipMessage; source: Source } {
    const r = this.received[this.received.length - 1];
    if (!r) throw new Error("the peer received nothing");
    return r;
  }
  /** Send raw text (CRLF line ends expected) or bytes to a destination. */
  send(data: Buffer | string, dest: Destination): void {
    this.transport.send(typeof data === "string" ? Buffer.from(data, "latin1") : data, dest);
  }
  get hop(): Destination {
    return { protocol: this.protocol, address: this.transport.localAddress, port: this.transport.localPort };
  }
}

export interface TestbedOptions extends Partial<MemoryFaults> {
  seed?: number;
  log?: boolean | number;
}

export interface TestEngineOptions extends EngineOptions {
  /** Address of the engine's transports. Default 127.0.0.N for the N-th engine. */
  address?: string;
  port?: number;
  /** Which memory transports to attach. Default both. */
  protocols?: Array<"UDP" | "TCP">;
}

export class Testbed {
  readonly clock = new VirtualClock(0);
  readonly network: MemoryNetwork;
  readonly engines: Engine[] = [];

  constructor(opts: TestbedOptions = {}) {
    this.network = new MemoryNetwork({ clock: this.clock, ...opts });
    beds.add(this);
  }

  /** A new engine with memory UDP and TCP transports, reference faults thrown. */
  engine(opts: TestEngineOptions = {}): Engine {
    const address = opts.address ?? `127.0.0.${this.engines.length + 1}`;
    const port = opts.port ?? 5060;
    const engine = new Engine({ refFaults: "throw", ...opts, clock: this.clock });
    for (const protocol of opts.protocols ?? ["UDP", "TCP"]) {
      engine.addTransport(this.network.createTransport({ address, port, protocol, sink: engine }));
    }
    this.engines.push(engine);
    return engine;
  }

  /** A scripted peer at address:port. */
  peer(address: string, port = 5060, protocol: "UDP" | "TCP" = "UDP"): Peer {
    const peer = new Peer(protocol);
    peer.transport = this.network.createTransport({ address, port, protocol, sink: peer });
    return peer;
  }

  /** Where an engine made here listens, for `nextHop`. */
  static hop(engine: Engine, protocol: "UDP" | "TCP" = "UDP"): Destination {
    const t = engine.transportFor(protocol);
    if (!t) throw new Error(`engine has no ${protocol} transport`);
    return { protocol, address: t.localAddress, port: t.localPort };
  }

  /** Deliver what is due now without moving time. */
  flush(): void {
    this.clock.advance(0);
  }
  advance(ms: number): void {
    this.clock.advance(ms);
  }

  /** Run the clock past every engine's longest timer. */
  settle(): void {
    let longest = 0;
    for (const e of this.engines) longest = Math.max(longest, e.longestTimer);
    this.clock.advance(longest + 1_000);
  }

  /** Problems found after settling: leaks, armed timers, reference faults. */
  leaks(): string[] {
    this.settle();
    const out: string[] = [];
    this.engines.forEach((e, i) => {
      const s = e.stats;
      if (s.created !== s.freed) {
        const live = e
          .audit()
          .map((a) => `${a.id} ${a.kind} ${a.method} ${a.state} holders=[${a.holders.join(",")}]`);
        out.push(
          `engine #${i}: created ${s.created} != freed ${s.freed}; live: ${live.join("; ") || "(none in table)"}`,
        );
      }
      if (s.ctx_created !== s.ctx_freed)
        out.push(`engine #${i}: proxy contexts created ${s.ctx_created} != freed ${s.ctx_freed}`);
      const inTable = internals(e).table.size;
      if (inTable !== 0) out.push(`engine #${i}: ${inTable} transactions still in the table`);
      if (e.armedTimers !== 0) out.push(`engine #${i}: ${e.armedTimers} timers still armed`);
      if (e.refFaults.length)
        out.push(`engine #${i}: reference faults: ${e.refFaults.map((f) => f.message).join("; ")}`);
    });
    return out;
  }
}

const beds = new Set<Testbed>();

/** Called after every test (test/setup/leak-check.ts): checks and forgets every testbed made during the test. */
export function checkAllTestbeds(): string[] {
  const problems: string[] = [];
  for (const bed of beds) problems.push(...bed.leaks());
  beds.clear();
  return problems;
}
