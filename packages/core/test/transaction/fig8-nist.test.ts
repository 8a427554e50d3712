// RFC 3261 §17.2.2, Figure 8 (non-INVITE server transaction) with RFC 4320
// §4.1 (no provisional but 100, none before T2 over an unreliable transport,
// never a 408): every (state, event) pair of the figure, from a fresh actor
// brought into the row's state, through a fake TxContext (figure-harness.ts).
// Each row names the next state, what is sent (" again": a retransmission, the
// same bytes), the timers armed after the event, what the user was told (a TU
// command the state refuses: "refused <code>"), and the timers armed during
// the event with their durations (none where the row names none). Default
// timers: T1 500 ms, T2 4 s, J = 64·T1, lifetime 64·T1 + T4 + 5 s.
import { NonInviteServerTransaction } from "../../src/transaction/nist.js";
import { describeFigure, type Figure, type FigureRow, makeServer, receive, reply } from "./figure-harness.js";

type From = "trying" | "trying, 100 deferred" | "proceeding" | "completed" | "terminated";
/** What the TU answers (RFC 4320 refuses some of them). */
type Reply = "TU 100" | "TU 180" | "TU 2xx" | "TU 3xx-6xx" | "TU 408";
type Event = "request" | Reply | "Timer J" | "nist100" | "lifetime" | "transport error";
type Row = FigureRow<From, Event>;

const make = makeServer(NonInviteServerTransaction, "nist1", "OPTIONS");

const NOT_ALLOWED = "refused not-allowed";
const FINAL_SENT = "refused final-already-sent";
const TERMINATED = "refused terminated";

// One row per (state, event) pair, written out on purpose: the table reads as Figure 8, each
// row checkable against the RFC on its own. Rows that look alike (within this table and across
// the four figure tests) are different transitions; folding them into loops would hide which
// pairs are covered. The shared machinery is figure-harness.ts.
const UDP: Row[] = [
  // Trying
  ["trying", "request", "trying", [], "lifetime", []],
  // RFC 4320 §4.1: no 100 before T2 over an unreliable transport: deferred to T2.
  ["trying", "TU 100", "trying", [], "lifetime nist100", [], ["nist100:4000"]],
  ["trying", "TU 180", "trying", [], "lifetime", [NOT_ALLOWED]],
  ["trying", "TU 2xx", "completed", ["200"], "J", ["final sent 200"], ["J:32000"]],
  ["trying", "TU 3xx-6xx", "completed", ["486"], "J", ["final sent 486"], ["J:32000"]],
  ["trying", "TU 408", "trying", [], "lifetime", [NOT_ALLOWED]],
  ["trying", "Timer J", "trying", [], "lifetime", []],
  ["trying", "nist100", "trying", [], "lifetime", []],
  ["trying", "lifetime", "terminated", [], "", ["terminated lifetime"]],
  ["trying", "transport error", "terminated", [], "", ["terminated transport-error"]],
  // Trying with the 100 deferred
  ["trying, 100 deferred", "request", "trying", [], "lifetime nist100", []],
  ["trying, 100 deferred", "TU 100", "trying", [], "lifetime nist100", [], []],
  ["trying, 100 deferred", "TU 2xx", "completed", ["200"], "J", ["final sent 200"], ["J:32000"]],
  ["trying, 100 deferred", "nist100", "proceeding", ["100"], "lifetime", [], []],
  // Proceeding
  ["proceeding", "request", "proceeding", ["100 again"], "lifetime", []],
  ["proceeding", "TU 100", "proceeding", ["100"], "lifetime", [], []],
  ["proceeding", "TU 180", "proceeding", [], "lifetime", [NOT_ALLOWED]],
  ["proceeding", "TU 2xx", "completed", ["200"], "J", ["final sent 200"], ["J:32000"]],
  ["proceeding", "TU 3xx-6xx", "completed", ["486"], "J", ["final sent 486"], ["J:32000"]],
  ["proceeding", "TU 408", "proceeding", [], "lifetime", [NOT_ALLOWED]],
  ["proceeding", "Timer J", "proceeding", [], "lifetime", []],
  ["proceeding", "nist100", "proceeding", [], "lifetime", []],
  ["proceeding", "lifetime", "terminated", [], "", ["terminated lifetime"]],
  ["proceeding", "transport error", "terminated", [], "", ["terminated transport-error"]],
  // Completed
  ["completed", "request", "completed", ["200 again"], "J", []],
  ["completed", "TU 100", "completed", [], "J", [FINAL_SENT]],
  ["completed", "TU 180", "completed", [], "J", [FINAL_SENT]],
  ["completed", "TU 2xx", "completed", [], "J", [FINAL_SENT]],
  ["completed", "TU 3xx-6xx", "completed", [], "J", [FINAL_SENT]],
  ["completed", "TU 408", "completed", [], "J", [FINAL_SENT]],
  ["completed", "Timer J", "terminated", [], "", ["terminated normal"]],
  ["completed", "nist100", "completed", [], "J", []],
  ["completed", "lifetime", "completed", [], "J", []],
  ["completed", "transport error", "terminated", [], "", ["terminated transport-error"]],
  // Terminated: everything is absorbed, the user's replies refused
  ...(["request", "Timer J", "nist100", "lifetime", "transport error"] as const).map(
    (e): Row => ["terminated", e, "terminated", [], "", []],
  ),
  ...(["TU 100", "TU 180", "TU 2xx", "TU 3xx-6xx", "TU 408"] as const).map(
    (e): Row => ["terminated", e, "terminated", [], "", [TERMINATED]],
  ),
];

// Where a reliable transport changes Figure 8: a 100 goes at once (RFC 4320
// §4.1 defers it only over unreliable transports) and Timer J is zero (§17.2.2).
const TCP: Row[] = [
  ["trying", "TU 100", "proceeding", ["100"], "lifetime", [], []],
  ["trying", "TU 2xx", "terminated", ["200"], "", ["final sent 200", "terminated normal"], []],
  ["trying", "TU 3xx-6xx", "terminated", ["486"], "", ["final sent 486", "terminated normal"], []],
  ["proceeding", "request", "proceeding", ["100 again"], "lifetime", []],
  ["proceeding", "TU 2xx", "terminated", ["200"], "", ["final sent 200", "terminated normal"], []],
];

// The figure's own data in figure-harness.ts's `Figure` shape (the same fields in each figure test).
const FIGURE: Figure<From, Event, ReturnType<typeof make>> = {
  title: "Figure 8: non-INVITE server transaction, every state × event",
  make,
  events: {
    request: receive("OPTIONS"),
    "TU 100": reply(100),
    "TU 180": reply(180),
    "TU 2xx": reply(200),
    "TU 3xx-6xx": reply(486),
    "TU 408": reply(408),
  },
  path: {
    trying: [],
    "trying, 100 deferred": ["TU 100"],
    // The 100 asked for at once goes out when T2 has passed (unreliable); at once over TCP.
    proceeding: ["TU 100", "nist100"],
    completed: ["TU 2xx"],
    terminated: ["TU 2xx", "Timer J"],
  },
  initial: {
    name: "→ Trying, nothing sent, only the lifetime cap armed",
    state: "trying",
    sent: [],
    arms: { UDP: ["lifetime:42000"], TCP: ["lifetime:42000"] },
  },
  states: ["trying", "proceeding", "completed", "terminated"],
  udp: UDP,
  tcp: TCP,
};

describeFigure(FIGURE);
