// A fake TxContext for driving one transaction actor by hand, outside any
// engine: it records what the actor sends, which timers it arms and cancels,
// when it leaves the indexes and when it is freed, and lets a test fire an
// armed timer. Used by the table-driven figure tests (fig5 … fig8): each
// holds its table and the few events of its own, and `describeFigure` here
// makes its actor, drives every row and checks the table is whole.
//
// Nothing here registers with the automatic leak check; instead every row
// ends with `drain()`, which fires the actor's timers until it is freed, and
// `expectFreed()`: the same created == freed the leak check asks of a Testbed.
import { describe, expect, it } from "vitest";
import { buildResponse } from "../../src/message/build.js";
import { parseMessage } from "../../src/message/parser.js";
import type { SipRequest, SipResponse } from "../../src/message/types.js";
import {
  type FinalOutcome,
  newStats,
  TIMER_NAMES,
  Timer,
  type TimerKind,
  type Transaction,
  type TxContext,
} from "../../src/transaction/actor.js";
import type { CancelProgress, ClientTu } from "../../src/transaction/client.js";
import { defaultTimers, type TimerConfig } from "../../src/transaction/config.js";
import { TransactionError } from "../../src/transaction/errors.js";
import type { NictInit } from "../../src/transaction/nict.js";
import { throwingReporter } from "../../src/transaction/refs.js";
import type { ServerEndCause, ServerInit, ServerTu } from "../../src/transaction/server.js";
import type { TimerEntry } from "../../src/transaction/timers.js";
import type { Destination, SendErrorTarget, Source } from "../../src/transport/types.js";

export type Protocol = "UDP" | "TCP";

/** Timer kinds by the names `armedTimers()` uses ("A", "fr_inv", "2xx" …). */
export const TIMER_BY_NAME: Record<string, TimerKind> = Object.fromEntries(
  TIMER_NAMES.map((n, k) => [n, k as TimerKind]),
);

interface Armed {
  readonly owner: Transaction;
  readonly kind: number;
  readonly deadline: number;
}

/** One send, labelled by its start line: a request's method, a response's status. */
export interface Sent {
  readonly label: string;
  readonly data: Buffer;
}

export function label(data: Buffer): string {
  const line = data.toString("latin1", 0, data.indexOf("\r\n"));
  return line.startsWith("SIP/2.0 ") ? line.slice(8, 11) : line.slice(0, line.indexOf(" "));
}

export class FakeContext implements TxContext {
  time = 0;
  readonly stats = newStats();
  readonly observers = {};
  readonly report = throwingReporter;
  /** Every send since the actor was made, in order. */
  readonly history: Sent[] = [];
  /** Since the last `mark()`: sends, timers armed ("A:1000"), timers cancelled ("B"). */
  sent: Sent[] = [];
  arms: string[] = [];
  cancels: string[] = [];
  /** Timers armed now, by kind. */
  readonly armed = new Map<number, Armed>();
  left = 0;
  freedCount = 0;

  now(): number {
    return this.time;
  }
  send(data: Buffer, _dest: Destination, _onError: SendErrorTarget): void {
    const s = { label: label(data), data };
    this.history.push(s);
    this.sent.push(s);
  }
  armTimer(tx: Transaction, kind: TimerKind, duration: number): TimerEntry<Transaction> {
    expect(this.armed.has(kind), `timer ${TIMER_NAMES[kind]} armed twice without a cancel`).toBe(false);
    const entry: Armed = { owner: tx, kind, deadline: this.time + duration };
    this.armed.set(kind, entry);
    this.arms.push(`${TIMER_NAMES[kind]}:${duration}`);
    return entry;
  }
  cancelTimer(entry: TimerEntry<Transaction>): boolean {
    expect(this.armed.get(entry.kind), "cancelling a timer that is not armed").toBe(entry);
    this.armed.delete(entry.kind);
    this.cancels.push(TIMER_NAMES[entry.kind]!);
    return true;
  }
  leaveIndexes(tx: Transaction): void {
    this.left++;
    tx.release("table"); // as TransactionTable.remove does
  }
  freed(_tx: Transaction): void {
    this.freedCount++;
  }
  startCancel(_ict: Transaction, cancel: Buffer, _dest: Destination): void {
    // The engine starts the CANCEL's own transaction, which sends it.
    this.send(cancel, _dest, _ict);
  }

  /** Forget what was recorded so far: the next event's effects start here. */
  mark(): void {
    this.sent = [];
    this.arms = [];
    this.cancels = [];
  }

  /**
   * A timer of this kind expires, as the engine's TimerService makes it: at
   * its deadline, out of the queue, then `fire`. One that is not armed is
   * still delivered (a stale expiry): the actor must ignore it.
   */
  fire(tx: Transaction, kind: TimerKind): void {
    const entry = this.armed.get(kind);
    if (entry) {
      this.time = Math.max(this.time, entry.deadline);
      this.armed.delete(kind);
    }
    tx.fire(kind);
  }

  /** Fire the earliest armed timer until the actor is freed (bounded). */
  drain(tx: Transaction): void {
    for (let i = 0; i < 1000 && this.armed.size > 0; i++) {
      let next: Armed | undefined;
      for (const e of this.armed.values()) if (!next || e.deadline < next.deadline) next = e;
      this.fire(tx, next!.kind as TimerKind);
    }
  }

  /** What the leak check asks: it left every index, was freed once, and nothing holds it or is armed. */
  expectFreed(tx: Transaction): void {
    expect(tx.state).toBe("terminated");
    expect(this.left).toBe(1);
    expect(this.freedCount).toBe(1);
    expect(tx.refs.freed).toBe(true);
    expect(this.armed.size).toBe(0);
  }
}

/** A client transaction's user: records what it is told. */
export class RecordingClientTu implements ClientTu {
  log: string[] = [];
  onResponse(_tx: Transaction, res: SipResponse): void {
    this.log.push(`response ${res.status}`);
  }
  onFinal(_tx: Transaction, outcome: FinalOutcome): void {
    this.log.push(`final ${outcome.status} ${outcome.cause}`);
  }
  onCancel(_tx: Transaction, progress: CancelProgress): void {
    this.log.push(`cancel ${progress.kind}`);
  }
  onTerminated(_tx: Transaction): void {
    this.log.push("terminated");
  }
}

/** A server transaction's user: records what it is told. */
export class RecordingServerTu implements ServerTu {
  log: string[] = [];
  onCancel(_tx: Transaction, _cancel: SipRequest): void {
    this.log.push("cancel");
  }
  onAck(_tx: Transaction, _ack: SipRequest): void {
    this.log.push("ack");
  }
  onFinalSent(_tx: Transaction, status: number): void {
    this.log.push(`final sent ${status}`);
  }
  onTerminated(_tx: Transaction, cause: ServerEndCause): void {
    this.log.push(`terminated ${cause}`);
  }
}

/** Run a TU command; a TransactionError it throws is recorded as "refused <code>". */
export function refusing(log: string[], fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof TransactionError)) throw err;
    log.push(`refused ${err.code}`);
  }
}

export function timers(): TimerConfig {
  return defaultTimers();
}

export const PEER: Destination = { protocol: "UDP", address: "127.0.0.9", port: 5060 };

export function dest(protocol: Protocol): Destination {
  return { ...PEER, protocol };
}

export function source(protocol: Protocol): Source {
  return { protocol, address: "127.0.0.9", port: 5060, localAddress: "127.0.0.1", localPort: 5060 };
}

/** A request as a UAC sends it (CRLF, Content-Length 0). */
export function requestText(
  method: string,
  protocol: Protocol,
  branch = "z9hG4bKfig1",
  cseqMethod = method,
): string {
  return (
    `${method} sip:bob@127.0.0.1 SIP/2.0\r\n` +
    `Via: SIP/2.0/${protocol} 127.0.0.9:5060;branch=${branch}\r\n` +
    "Max-Forwards: 70\r\n" +
    "From: <sip:alice@127.0.0.9>;tag=fa\r\n" +
    "To: <sip:bob@127.0.0.1>\r\n" +
    "Call-ID: fig@127.0.0.9\r\n" +
    `CSeq: 1 ${cseqMethod}\r\n` +
    "Contact: <sip:alice@127.0.0.9>\r\n" +
    "Content-Length: 0\r\n\r\n"
  );
}

export function request(method: string, protocol: Protocol, cseqMethod = method): SipRequest {
  return parseMessage(
    Buffer.from(requestText(method, protocol, "z9hG4bKfig1", cseqMethod), "latin1"),
  ) as SipRequest;
}

/** A response to `req` from the UAS (To tag "uas" but on 100). */
export function responseTo(req: SipRequest, status: number): SipResponse {
  return parseMessage(
    buildResponse(req, status, { toTag: status === 100 ? undefined : "uas" }),
  ) as SipResponse;
}

/** Names of the timers armed now, in kind order, space separated ("" when none). */
export function armedNames(tx: Transaction): string {
  return tx.armedTimers().join(" ");
}

/**
 * The common row check: the state reached, what was sent (a label ending in
 * " again" is a retransmission: counted in stats.retransmissions and the same
 * bytes as an earlier send of that label), the timers armed after the event,
 * what the user was told, and the timers armed (or re-armed) during the
 * event with their durations (none when `arms` is not given).
 */
export function expectEffects(
  ctx: FakeContext,
  tx: Transaction,
  retransmissionsBefore: number,
  historyBefore: number,
  tuLog: string[],
  want: {
    to: string;
    sent: readonly string[];
    timers: string;
    tu: readonly string[];
    arms?: readonly string[];
  },
): void {
  expect(tx.state, "next state").toBe(want.to);
  expect(
    ctx.sent.map((s, i) => {
      const again = want.sent[i]?.endsWith(" again") ?? false;
      if (!again) return s.label;
      const earlier = ctx.history.slice(0, historyBefore).filter((h) => h.label === s.label);
      expect(earlier.length, `an earlier ${s.label} to resend`).toBeGreaterThan(0);
      expect(s.data.equals(earlier[earlier.length - 1]!.data), `${s.label} resent byte for byte`).toBe(true);
      return `${s.label} again`;
    }),
    "sent",
  ).toEqual(want.sent);
  const resent = want.sent.filter((s) => s.endsWith(" again")).length;
  expect(ctx.stats.retransmissions - retransmissionsBefore, "retransmissions counted").toBe(resent);
  expect(armedNames(tx), "timers armed after the event").toBe(want.timers);
  // The context's view of what is armed agrees with the actor's.
  expect([...ctx.armed.keys()].sort((a, b) => a - b).map((k) => TIMER_NAMES[k])).toEqual(tx.armedTimers());
  expect(tuLog, "what the user was told").toEqual(want.tu);
  expect(ctx.arms, "timers armed during the event").toEqual(want.arms ?? []);
  if (want.to === "terminated") {
    expect(ctx.left, "left every index").toBe(1);
  }
}

export { Timer };

/** What a figure test holds of one actor: its context, its recording user, the actor, the transport. */
export interface Made<T extends Transaction & { start(): void }, U extends { log: string[] }> {
  readonly ctx: FakeContext;
  readonly tu: U;
  readonly tx: T;
  readonly protocol: Protocol;
}

/** What every actor's init has, over a fresh fake context. */
function baseInit(id: string, protocol: Protocol) {
  return { id, ctx: new FakeContext(), timers: timers(), reliable: protocol === "TCP" };
}

/** The actor as the engine's table insert leaves it: held by "table". */
function held<T extends Transaction & { start(): void }, U extends { log: string[] }>(
  ctx: FakeContext,
  tu: U,
  tx: T,
  protocol: Protocol,
): Made<T, U> {
  tx.take("table");
  return { ctx, tu, tx, protocol };
}

/** How a figure makes a client actor (either kind) sending `method`, for a transport. */
export function makeClient<T extends Transaction & { start(): void }>(
  Actor: new (init: NictInit) => T,
  id: string,
  method: string,
): (protocol: Protocol) => Made<T, RecordingClientTu> & { readonly sent: SipRequest } {
  return (protocol) => {
    const base = baseInit(id, protocol);
    const tu = new RecordingClientTu();
    const tx = new Actor({
      ...base,
      request: Buffer.from(requestText(method, protocol), "latin1"),
      dest: dest(protocol),
      callId: "fig@127.0.0.9",
      cseq: 1,
      method,
      branch: "z9hG4bKfig1",
      tu,
    });
    return { ...held(base.ctx, tu, tx, protocol), sent: request(method, protocol) };
  };
}

/** How a figure makes a server actor (either kind) for a `method` request, for a transport. */
export function makeServer<T extends Transaction & { start(): void }>(
  Actor: new (init: ServerInit) => T,
  id: string,
  method: string,
): (protocol: Protocol) => Made<T, RecordingServerTu> {
  return (protocol) => {
    const base = baseInit(id, protocol);
    const tu = new RecordingServerTu();
    const tx = new Actor({
      ...base,
      request: request(method, protocol),
      source: source(protocol),
      dest: dest(protocol),
      tu,
    });
    return held(base.ctx, tu, tx, protocol);
  };
}

/** The events every figure names the same way: a timer of that kind expires. */
const TIMER_EVENTS = {
  "Timer A": Timer.A,
  "Timer B": Timer.B,
  "Timer D": Timer.D,
  "Timer E": Timer.E,
  "Timer F": Timer.F,
  "Timer G": Timer.G,
  "Timer H": Timer.H,
  "Timer I": Timer.I,
  "Timer J": Timer.J,
  "Timer K": Timer.K,
  "Timer L": Timer.L,
  "Timer M": Timer.M,
  fr_inv: Timer.FrInv,
  cancel_wait: Timer.CancelWait,
  "2xx timer": Timer.Retransmit2xx,
  nist100: Timer.Nist100,
  lifetime: Timer.Lifetime,
} as const;
/** The events the harness applies itself: the timers above and a transport error. */
export type CommonEvent = keyof typeof TIMER_EVENTS | "transport error";

/** What one of a figure's own events does to its actor. */
export type Step<M> = (made: M) => void;

/** The event: a response with this status from the UAS to the request the client sent. */
export function respond(
  status: number,
): Step<{ tx: { receiveResponse(res: SipResponse): void }; sent: SipRequest }> {
  return ({ tx, sent }) => tx.receiveResponse(responseTo(sent, status));
}

/** The event: the TU replies with this status; a refusal is recorded as "refused <code>". */
export function reply(status: number): Step<{ tx: { reply(status: number): void }; tu: { log: string[] } }> {
  return ({ tx, tu }) => refusing(tu.log, () => tx.reply(status));
}

/** The event: a request of this method (a retransmission, an ACK) reaches the server actor. */
export function receive(
  method: string,
): Step<{ tx: { receiveRequest(req: SipRequest): void }; protocol: Protocol }> {
  return ({ tx, protocol }) => tx.receiveRequest(request(method, protocol));
}

/**
 * One row of a figure's table: from (a state, optionally ", detail" for a
 * variant of it), event, next state, what is sent, the timers armed after,
 * what the user is told, and the timers armed during the event ("A:1000";
 * none when left out).
 */
export type FigureRow<F extends string, E extends string> = [
  F,
  E,
  string,
  string[],
  string,
  string[],
  string[]?,
];

type AnyMade = Made<Transaction & { start(): void }, { log: string[] }>;

/**
 * A figure's table and how it is driven: how its actor is made, what each of
 * its own events does (the timers and the transport error are the harness's),
 * how each row's starting state is reached from a fresh actor, the initial
 * arrow, the figure's states and its rows over UDP and over TCP.
 */
export interface Figure<F extends string, E extends string, M extends AnyMade> {
  readonly title: string;
  make(protocol: Protocol): M;
  readonly events: Record<Exclude<E, CommonEvent>, Step<M>>;
  readonly path: Record<F, E[]>;
  /** The initial arrow: its test's name, the state it reaches, what it sends, the timers it arms per transport. */
  readonly initial: {
    readonly name: string;
    readonly state: string;
    readonly sent: readonly string[];
    readonly arms: Record<Protocol, readonly string[]>;
  };
  readonly states: readonly string[];
  readonly udp: ReadonlyArray<FigureRow<F, E>>;
  /** The rows a reliable transport changes. */
  readonly tcp: ReadonlyArray<FigureRow<F, E>>;
}

function applyEvent<F extends string, E extends string, M extends AnyMade>(
  fig: Figure<F, E, M>,
  made: M,
  event: E,
): void {
  if (event === "transport error") made.tx.transportError(new Error("unreachable"));
  else if (event in TIMER_EVENTS) made.ctx.fire(made.tx, TIMER_EVENTS[event as keyof typeof TIMER_EVENTS]);
  else fig.events[event as Exclude<E, CommonEvent>](made);
}

/** Drive one row from a fresh actor, then run its timers until it is freed. */
export function runRow<F extends string, E extends string, M extends AnyMade>(
  fig: Figure<F, E, M>,
  protocol: Protocol,
  [from, event, to, sent, timersAfter, told, arms]: FigureRow<F, E>,
): void {
  const made = fig.make(protocol);
  const { ctx, tu, tx } = made;
  tx.start();
  for (const e of fig.path[from]) applyEvent(fig, made, e);
  expect(tx.state, "the row's starting state").toBe(from.split(",")[0]);
  ctx.mark();
  tu.log = [];
  const rtx = ctx.stats.retransmissions;
  const history = ctx.history.length;
  applyEvent(fig, made, event);
  expectEffects(ctx, tx, rtx, history, tu.log, { to, sent, timers: timersAfter, tu: told, arms });
  ctx.drain(tx);
  ctx.expectFreed(tx);
}

/** Every state of the figure has a row for every event the table uses. */
export function expectEveryPair<F extends string, E extends string>(
  rows: ReadonlyArray<FigureRow<F, E>>,
  states: readonly string[],
): void {
  const events = new Set(rows.map((r) => r[1]));
  expect([...new Set(rows.map((r) => r[0].split(",")[0]))].sort()).toEqual([...states].sort());
  const missing: string[] = [];
  for (const s of states)
    for (const e of events) if (!rows.some((r) => r[0] === s && r[1] === e)) missing.push(`${s} × ${e}`);
  expect(missing, "(state, event) pairs without a row").toEqual([]);
}

/**
 * The figure's tests: the initial arrow over both transports (then a
 * transport error ends it and it must be freed), one test per row over UDP
 * and per TCP row, and the check that the UDP table names every state × event.
 */
export function describeFigure<F extends string, E extends string, M extends AnyMade>(
  fig: Figure<F, E, M>,
): void {
  describe(fig.title, () => {
    it(`the initial arrow: ${fig.initial.name}`, () => {
      for (const protocol of ["UDP", "TCP"] as const) {
        const { ctx, tx } = fig.make(protocol);
        tx.start();
        expect(tx.state).toBe(fig.initial.state);
        expect(ctx.sent.map((s) => s.label)).toEqual(fig.initial.sent);
        expect(ctx.arms).toEqual(fig.initial.arms[protocol]);
        tx.transportError(new Error("end"));
        ctx.expectFreed(tx);
      }
    });

    describe("unreliable (UDP)", () => {
      for (const row of fig.udp) it(`${row[0]} —${row[1]}→ ${row[2]}`, () => runRow(fig, "UDP", row));
    });
    describe("reliable (TCP)", () => {
      for (const row of fig.tcp) it(`${row[0]} —${row[1]}→ ${row[2]}`, () => runRow(fig, "TCP", row));
    });

    it("the table names every state and every event of the figure", () => {
      expectEveryPair(fig.udp, fig.states);
    });
  });
}
