// RFC 3261 §17.1.1, Figure 5 (INVITE client transaction) as updated by RFC
// 6026 §7.2 (Accepted), with §9.1 CANCEL: every (state, event) pair of the
// figure, from a fresh actor brought into the row's state, through a fake
// TxContext. Each row names the next state, what is sent (" again": a
// retransmission, the same bytes), the timers armed after the event, what the
// user was told, and the timers armed during the event with their durations
// (none where the row names none). Default timers: T1 500 ms, B = D = M =
// cancel wait 32 s, fr_inv 120 s, lifetime 180 s.
import { InviteClientTransaction } from "../../src/transaction/ict.js";
import { describeFigure, type Figure, type FigureRow, makeClient, respond } from "./figure-harness.js";

type From =
  | "calling"
  | "calling, CANCEL pending"
  | "proceeding"
  | "proceeding, CANCEL sent"
  | "accepted"
  | "completed"
  | "terminated";
/** The timers of Figure 5 and the engine's, as they expire (fired by the harness). */
type TimerEvent = "Timer A" | "Timer B" | "Timer D" | "Timer M" | "fr_inv" | "cancel_wait" | "lifetime";
type Event = "1xx" | "2xx" | "3xx-6xx" | TimerEvent | "transport error" | "TU cancel";
type Row = FigureRow<From, Event>;

const make = makeClient(InviteClientTransaction, "ict1", "INVITE");

const ACTIVE = "A B lifetime";

// One row per (state, event) pair, written out on purpose: the table reads as Figure 5, each
// row checkable against the RFC on its own. Rows that look alike (within this table and across
// the four figure tests) are different transitions; folding them into loops would hide which
// pairs are covered. The shared machinery is figure-harness.ts.
const UDP: Row[] = [
  // Calling
  ["calling", "1xx", "proceeding", [], "lifetime fr_inv", ["response 180"], ["fr_inv:181000"]],
  ["calling", "2xx", "accepted", [], "M", ["response 200", "final 200 response"], ["M:32000"]],
  ["calling", "3xx-6xx", "completed", ["ACK"], "D", ["response 486", "final 486 response"], ["D:32000"]],
  ["calling", "Timer A", "calling", ["INVITE again"], ACTIVE, [], ["A:1000"]],
  ["calling", "Timer B", "terminated", [], "", ["final 408 timeout", "terminated"]],
  ["calling", "Timer D", "calling", [], ACTIVE, []],
  ["calling", "Timer M", "calling", [], ACTIVE, []],
  ["calling", "fr_inv", "calling", [], ACTIVE, []],
  ["calling", "cancel_wait", "calling", [], ACTIVE, []],
  ["calling", "lifetime", "terminated", [], "", ["final 408 lifetime", "terminated"]],
  ["calling", "transport error", "terminated", [], "", ["final 503 transport-error", "terminated"]],
  ["calling", "TU cancel", "calling", [], ACTIVE, ["cancel() pending"], []],
  // Calling with a CANCEL waiting for the first provisional (§9.1)
  [
    "calling, CANCEL pending",
    "1xx",
    "proceeding",
    ["CANCEL"],
    "lifetime cancel_wait",
    ["response 180", "cancel sent"],
    ["fr_inv:181000", "cancel_wait:32000"],
  ],
  [
    "calling, CANCEL pending",
    "2xx",
    "accepted",
    [],
    "M",
    ["cancel not-sent", "response 200", "final 200 response"],
    ["M:32000"],
  ],
  [
    "calling, CANCEL pending",
    "3xx-6xx",
    "completed",
    ["ACK"],
    "D",
    ["cancel not-sent", "response 486", "final 486 response"],
    ["D:32000"],
  ],
  ["calling, CANCEL pending", "Timer A", "calling", ["INVITE again"], ACTIVE, [], ["A:1000"]],
  [
    "calling, CANCEL pending",
    "Timer B",
    "terminated",
    [],
    "",
    ["cancel not-sent", "final 408 timeout", "terminated"],
  ],
  ["calling, CANCEL pending", "TU cancel", "calling", [], ACTIVE, ["cancel() pending"], []],
  // Proceeding
  ["proceeding", "1xx", "proceeding", [], "lifetime fr_inv", ["response 180"], ["fr_inv:181000"]],
  ["proceeding", "2xx", "accepted", [], "M", ["response 200", "final 200 response"], ["M:32000"]],
  ["proceeding", "3xx-6xx", "completed", ["ACK"], "D", ["response 486", "final 486 response"], ["D:32000"]],
  ["proceeding", "Timer A", "proceeding", [], "lifetime fr_inv", []],
  ["proceeding", "Timer B", "proceeding", [], "lifetime fr_inv", []],
  ["proceeding", "Timer D", "proceeding", [], "lifetime fr_inv", []],
  ["proceeding", "Timer M", "proceeding", [], "lifetime fr_inv", []],
  [
    "proceeding",
    "fr_inv",
    "proceeding",
    ["CANCEL"],
    "lifetime cancel_wait",
    ["final 408 timeout", "cancel sent"],
    ["cancel_wait:32000"],
  ],
  ["proceeding", "cancel_wait", "proceeding", [], "lifetime fr_inv", []],
  ["proceeding", "lifetime", "terminated", [], "", ["final 408 lifetime", "terminated"]],
  ["proceeding", "transport error", "terminated", [], "", ["final 503 transport-error", "terminated"]],
  [
    "proceeding",
    "TU cancel",
    "proceeding",
    ["CANCEL"],
    "lifetime cancel_wait",
    ["cancel sent", "cancel() sent"],
    ["cancel_wait:32000"],
  ],
  // Proceeding with the CANCEL sent: the CANCEL wait replaces fr_inv
  ["proceeding, CANCEL sent", "1xx", "proceeding", [], "lifetime cancel_wait", ["response 180"], []],
  [
    "proceeding, CANCEL sent",
    "2xx",
    "accepted",
    [],
    "M",
    ["response 200", "final 200 response"],
    ["M:32000"],
  ],
  [
    "proceeding, CANCEL sent",
    "3xx-6xx",
    "completed",
    ["ACK"],
    "D",
    ["response 486", "final 486 response"],
    ["D:32000"],
  ],
  ["proceeding, CANCEL sent", "fr_inv", "proceeding", [], "lifetime cancel_wait", []],
  ["proceeding, CANCEL sent", "cancel_wait", "terminated", [], "", ["final 408 timeout", "terminated"]],
  ["proceeding, CANCEL sent", "TU cancel", "proceeding", [], "lifetime cancel_wait", ["cancel() sent"], []],
  // Accepted (RFC 6026 §7.2)
  ["accepted", "1xx", "accepted", [], "M", []],
  ["accepted", "2xx", "accepted", [], "M", ["response 200"]],
  ["accepted", "3xx-6xx", "accepted", [], "M", []],
  ["accepted", "Timer A", "accepted", [], "M", []],
  ["accepted", "Timer B", "accepted", [], "M", []],
  ["accepted", "Timer D", "accepted", [], "M", []],
  ["accepted", "Timer M", "terminated", [], "", ["terminated"]],
  ["accepted", "fr_inv", "accepted", [], "M", []],
  ["accepted", "cancel_wait", "accepted", [], "M", []],
  ["accepted", "lifetime", "accepted", [], "M", []],
  ["accepted", "transport error", "terminated", [], "", ["terminated"]],
  ["accepted", "TU cancel", "accepted", [], "M", ["cancel() none"]],
  // Completed
  ["completed", "1xx", "completed", [], "D", []],
  ["completed", "2xx", "completed", [], "D", []],
  ["completed", "3xx-6xx", "completed", ["ACK again"], "D", []],
  ["completed", "Timer A", "completed", [], "D", []],
  ["completed", "Timer B", "completed", [], "D", []],
  ["completed", "Timer D", "terminated", [], "", ["terminated"]],
  ["completed", "Timer M", "completed", [], "D", []],
  ["completed", "fr_inv", "completed", [], "D", []],
  ["completed", "cancel_wait", "completed", [], "D", []],
  ["completed", "lifetime", "completed", [], "D", []],
  ["completed", "transport error", "terminated", [], "", ["terminated"]],
  ["completed", "TU cancel", "completed", [], "D", ["cancel() none"]],
  // Terminated: everything is absorbed
  ...(
    [
      "1xx",
      "2xx",
      "3xx-6xx",
      "Timer A",
      "Timer B",
      "Timer D",
      "Timer M",
      "fr_inv",
      "cancel_wait",
      "lifetime",
      "transport error",
    ] as const
  ).map((e): Row => ["terminated", e, "terminated", [], "", []]),
  ["terminated", "TU cancel", "terminated", [], "", ["cancel() none"]],
];

// Where a reliable transport changes Figure 5: no Timer A, and Timer D is zero (§17.1.1.2).
const TCP: Row[] = [
  ["calling", "1xx", "proceeding", [], "lifetime fr_inv", ["response 180"], ["fr_inv:181000"]],
  ["calling", "2xx", "accepted", [], "M", ["response 200", "final 200 response"], ["M:32000"]],
  ["calling", "3xx-6xx", "terminated", ["ACK"], "", ["response 486", "final 486 response", "terminated"], []],
  ["calling", "Timer A", "calling", [], "B lifetime", []],
  ["calling", "Timer B", "terminated", [], "", ["final 408 timeout", "terminated"]],
  ["calling", "transport error", "terminated", [], "", ["final 503 transport-error", "terminated"]],
  [
    "proceeding",
    "3xx-6xx",
    "terminated",
    ["ACK"],
    "",
    ["response 486", "final 486 response", "terminated"],
    [],
  ],
  ["accepted", "Timer M", "terminated", [], "", ["terminated"]],
];

// The figure's own data in figure-harness.ts's `Figure` shape (the same fields in each figure test).
const FIGURE: Figure<From, Event, ReturnType<typeof make>> = {
  title: "Figure 5: INVITE client transaction, every state × event",
  make,
  events: {
    "1xx": respond(180),
    "2xx": respond(200),
    "3xx-6xx": respond(486),
    "TU cancel": ({ tu, tx }) => tu.log.push(`cancel() ${tx.cancel()}`),
  },
  /** How each row's starting state is reached from a fresh actor. */
  path: {
    calling: [],
    "calling, CANCEL pending": ["TU cancel"],
    proceeding: ["1xx"],
    "proceeding, CANCEL sent": ["1xx", "TU cancel"],
    accepted: ["2xx"],
    completed: ["3xx-6xx"],
    terminated: ["3xx-6xx", "Timer D"],
  },
  initial: {
    name: "INVITE sent, Timer A = T1 (unreliable only), Timer B = 64·T1",
    state: "calling",
    sent: ["INVITE"],
    arms: { UDP: ["lifetime:214000", "A:500", "B:32000"], TCP: ["lifetime:214000", "B:32000"] },
  },
  states: ["calling", "proceeding", "accepted", "completed", "terminated"],
  udp: UDP,
  tcp: TCP,
};

describeFigure(FIGURE);
