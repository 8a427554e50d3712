// RFC 3261 §17.1.2, Figure 6 (non-INVITE client transaction): every (state,
// event) pair of the figure, from a fresh actor brought into the row's state,
// through a fake TxContext (figure-harness.ts). Each row names the next state,
// what is sent (" again": a retransmission, the same bytes), the timers armed
// after the event, what the user was told, and the timers armed during the
// event with their durations (none where the row names none). Default timers:
// T1 500 ms, T2 4 s, T4 5 s (Timer K), F = 64·T1, lifetime 64·T1 + T4 + 5 s.
import { describe, expect, it } from "vitest";
import { NonInviteClientTransaction } from "../../src/transaction/nict.js";
import {
  dest,
  expectEveryPair,
  FakeContext,
  type Figure,
  type FigureRow,
  type Protocol,
  RecordingClientTu,
  request,
  requestText,
  responseTo,
  runRow,
  Timer,
  timers,
} from "./figure-harness.js";

type From = "trying" | "trying, E at T2" | "proceeding" | "completed" | "terminated";
type Event = "1xx" | "2xx" | "3xx-6xx" | "Timer E" | "Timer F" | "Timer K" | "lifetime" | "transport error";
type Row = FigureRow<From, Event>;

function make(protocol: Protocol) {
  const ctx = new FakeContext();
  const tu = new RecordingClientTu();
  const tx = new NonInviteClientTransaction({
    id: "nict1",
    ctx,
    timers: timers(),
    reliable: protocol === "TCP",
    request: Buffer.from(requestText("OPTIONS", protocol), "latin1"),
    dest: dest(protocol),
    callId: "fig@127.0.0.9",
    cseq: 1,
    method: "OPTIONS",
    branch: "z9hG4bKfig1",
    tu,
  });
  tx.take("table"); // as the engine's table insert does
  return { ctx, tu, tx, sent: request("OPTIONS", protocol) };
}

type Made = ReturnType<typeof make>;

function apply({ ctx, tx, sent }: Made, event: Event): void {
  switch (event) {
    case "1xx":
      tx.receiveResponse(responseTo(sent, 100));
      return;
    case "2xx":
      tx.receiveResponse(responseTo(sent, 200));
      return;
    case "3xx-6xx":
      tx.receiveResponse(responseTo(sent, 486));
      return;
    case "Timer E":
      ctx.fire(tx, Timer.E);
      return;
    case "Timer F":
      ctx.fire(tx, Timer.F);
      return;
    case "Timer K":
      ctx.fire(tx, Timer.K);
      return;
    case "lifetime":
      ctx.fire(tx, Timer.Lifetime);
      return;
    case "transport error":
      tx.transportError(new Error("unreachable"));
      return;
  }
}

const FIGURE: Figure<From, Event, Made> = {
  make,
  start: ({ tx }) => tx.start(),
  apply,
  path: {
    trying: [],
    // E fired at 500, 1500 and 3500 ms: its interval is now T2.
    "trying, E at T2": ["Timer E", "Timer E", "Timer E"],
    proceeding: ["1xx"],
    completed: ["2xx"],
    terminated: ["2xx", "Timer K"],
  },
};

const ACTIVE = "E F lifetime";

const UDP: Row[] = [
  // Trying
  ["trying", "1xx", "proceeding", [], ACTIVE, ["response 100"], []],
  ["trying", "2xx", "completed", [], "K", ["response 200", "final 200 response"], ["K:5000"]],
  ["trying", "3xx-6xx", "completed", [], "K", ["response 486", "final 486 response"], ["K:5000"]],
  ["trying", "Timer E", "trying", ["OPTIONS again"], ACTIVE, [], ["E:1000"]],
  ["trying", "Timer F", "terminated", [], "", ["final 408 timeout", "terminated"]],
  ["trying", "Timer K", "trying", [], ACTIVE, []],
  ["trying", "lifetime", "terminated", [], "", ["final 408 lifetime", "terminated"]],
  ["trying", "transport error", "terminated", [], "", ["final 503 transport-error", "terminated"]],
  // Trying, E doubled up to T2: it stays at T2 (§17.1.2.2)
  ["trying, E at T2", "Timer E", "trying", ["OPTIONS again"], ACTIVE, [], ["E:4000"]],
  // Proceeding
  ["proceeding", "1xx", "proceeding", [], ACTIVE, ["response 100"], []],
  ["proceeding", "2xx", "completed", [], "K", ["response 200", "final 200 response"], ["K:5000"]],
  ["proceeding", "3xx-6xx", "completed", [], "K", ["response 486", "final 486 response"], ["K:5000"]],
  // §17.1.2.2: in Proceeding, E is reset to T2 at once.
  ["proceeding", "Timer E", "proceeding", ["OPTIONS again"], ACTIVE, [], ["E:4000"]],
  ["proceeding", "Timer F", "terminated", [], "", ["final 408 timeout", "terminated"]],
  ["proceeding", "Timer K", "proceeding", [], ACTIVE, []],
  ["proceeding", "lifetime", "terminated", [], "", ["final 408 lifetime", "terminated"]],
  ["proceeding", "transport error", "terminated", [], "", ["final 503 transport-error", "terminated"]],
  // Completed: retransmitted responses are absorbed
  ["completed", "1xx", "completed", [], "K", []],
  ["completed", "2xx", "completed", [], "K", []],
  ["completed", "3xx-6xx", "completed", [], "K", []],
  ["completed", "Timer E", "completed", [], "K", []],
  ["completed", "Timer F", "completed", [], "K", []],
  ["completed", "Timer K", "terminated", [], "", ["terminated"]],
  ["completed", "lifetime", "completed", [], "K", []],
  ["completed", "transport error", "terminated", [], "", ["terminated"]],
  // Terminated: everything is absorbed
  ...(["1xx", "2xx", "3xx-6xx", "Timer E", "Timer F", "Timer K", "lifetime", "transport error"] as const).map(
    (e): Row => ["terminated", e, "terminated", [], "", []],
  ),
];

// Where a reliable transport changes Figure 6: no Timer E, and Timer K is zero (§17.1.2.2).
const TCP: Row[] = [
  ["trying", "1xx", "proceeding", [], "F lifetime", ["response 100"], []],
  ["trying", "2xx", "terminated", [], "", ["response 200", "final 200 response", "terminated"], []],
  ["trying", "3xx-6xx", "terminated", [], "", ["response 486", "final 486 response", "terminated"], []],
  ["trying", "Timer E", "trying", [], "F lifetime", []],
  ["trying", "Timer F", "terminated", [], "", ["final 408 timeout", "terminated"]],
  ["proceeding", "2xx", "terminated", [], "", ["response 200", "final 200 response", "terminated"], []],
  ["proceeding", "Timer E", "proceeding", [], "F lifetime", []],
  ["proceeding", "transport error", "terminated", [], "", ["final 503 transport-error", "terminated"]],
];

describe("Figure 6: non-INVITE client transaction, every state × event", () => {
  it("the initial arrow: request sent, Timer E = T1 (unreliable only), Timer F = 64·T1", () => {
    for (const [protocol, arms] of [
      ["UDP", ["lifetime:42000", "E:500", "F:32000"]],
      ["TCP", ["lifetime:42000", "F:32000"]],
    ] as const) {
      const { ctx, tx } = make(protocol);
      tx.start();
      expect(tx.state).toBe("trying");
      expect(ctx.sent.map((s) => s.label)).toEqual(["OPTIONS"]);
      expect(ctx.arms).toEqual(arms);
      tx.transportError(new Error("end"));
      ctx.expectFreed(tx);
    }
  });

  describe("unreliable (UDP)", () => {
    for (const row of UDP) it(`${row[0]} —${row[1]}→ ${row[2]}`, () => runRow(FIGURE, "UDP", row));
  });
  describe("reliable (TCP)", () => {
    for (const row of TCP) it(`${row[0]} —${row[1]}→ ${row[2]}`, () => runRow(FIGURE, "TCP", row));
  });

  it("the table names every state and every event of the figure", () => {
    expectEveryPair(UDP, ["trying", "proceeding", "completed", "terminated"]);
  });
});
