// RFC 3261 §17.1.2, Figure 6 (non-INVITE client transaction): every (state,
// event) pair of the figure, from a fresh actor brought into the row's state,
// through a fake TxContext (figure-harness.ts). Each row names the next state,
// what is sent (" again": a retransmission, the same bytes), the timers armed
// after the event, what the user was told, and the timers armed during the
// event with their durations (none where the row names none). Default timers:
// T1 500 ms, T2 4 s, T4 5 s (Timer K), F = 64·T1, lifetime 64·T1 + T4 + 5 s.
import { NonInviteClientTransaction } from "../../src/transaction/nict.js";
import { describeFigure, type Figure, type FigureRow, makeClient, respond } from "./figure-harness.js";

type From = "trying" | "trying, E at T2" | "proceeding" | "completed" | "terminated";
type Event = "1xx" | "2xx" | "3xx-6xx" | "Timer E" | "Timer F" | "Timer K" | "lifetime" | "transport error";
type Row = FigureRow<From, Event>;

const make = makeClient(NonInviteClientTransaction, "nict1", "OPTIONS");

const ACTIVE = "E F lifetime";

// One row per (state, event) pair, written out on purpose: the table reads as Figure 6, each
// row checkable against the RFC on its own. Rows that look alike (within this table and across
// the four figure tests) are different transitions; folding them into loops would hide which
// pairs are covered. The shared machinery is figure-harness.ts.
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

// The figure's own data in figure-harness.ts's `Figure` shape (the same fields in each figure test).
const FIGURE: Figure<From, Event, ReturnType<typeof make>> = {
  title: "Figure 6: non-INVITE client transaction, every state × event",
  make,
  events: { "1xx": respond(100), "2xx": respond(200), "3xx-6xx": respond(486) },
  path: {
    trying: [],
    // E fired at 500, 1500 and 3500 ms: its interval is now T2.
    "trying, E at T2": ["Timer E", "Timer E", "Timer E"],
    proceeding: ["1xx"],
    completed: ["2xx"],
    terminated: ["2xx", "Timer K"],
  },
  initial: {
    name: "request sent, Timer E = T1 (unreliable only), Timer F = 64·T1",
    state: "trying",
    sent: ["OPTIONS"],
    arms: { UDP: ["lifetime:42000", "E:500", "F:32000"], TCP: ["lifetime:42000", "F:32000"] },
  },
  states: ["trying", "proceeding", "completed", "terminated"],
  udp: UDP,
  tcp: TCP,
};

describeFigure(FIGURE);
