// RFC 3261 §17.2.1, Figure 7 (INVITE server transaction) as updated by RFC
// 6026 §7.1 (Accepted), with §9.2 CANCEL and §13.3.1.4 2xx retransmission:
// every (state, event) pair of the figure, from a fresh actor brought into the
// row's state, through a fake TxContext (figure-harness.ts). Each row names
// the next state, what is sent (" again": a retransmission, the same bytes),
// the timers armed after the event, what the user was told (a TU command the
// state refuses: "refused <code>"), and the timers armed during the event with
// their durations (none where the row names none). Default timers: auto 100
// after 200 ms, T1 500 ms, T2 4 s, T4 5 s (Timer I), H = L = 64·T1, lifetime
// 180 s.
import { buildResponse } from "../../src/message/build.js";
import type { SipRequest } from "../../src/message/types.js";
import { InviteServerTransaction } from "../../src/transaction/ist.js";
import {
  describeFigure,
  type Figure,
  type FigureRow,
  makeServer,
  receive,
  reply,
  request,
  Timer,
} from "./figure-harness.js";

type From =
  | "proceeding"
  | "proceeding, 180 sent"
  | "accepted"
  | "accepted, ACKed"
  | "completed"
  | "completed, after a CANCEL"
  | "confirmed"
  | "terminated";
/** What the TU does: answer, or (a proxy) pass a 2xx of another fork. */
type Reply = "TU 1xx" | "TU 2xx" | "TU 3xx-6xx" | "relayed 2xx";
type TimerEvent = "Timer 100" | "Timer G" | "Timer H" | "Timer I" | "Timer L" | "2xx timer" | "lifetime";
type Event = "INVITE" | "ACK" | "CANCEL" | Reply | TimerEvent | "transport error";
type Row = FigureRow<From, Event>;

const compacted = (req: SipRequest) => (req as unknown as { compacted: boolean }).compacted;

const make = makeServer(InviteServerTransaction, "ist1", "INVITE");

const FRESH = "100 lifetime";
const FINAL_SENT = "refused final-already-sent";

/** §9.2: a CANCEL in Proceeding, a provisional sent or not: the automatic 487 takes it to Completed. */
const CANCELLED: [string, string[], string, string[], string[]] = [
  "completed",
  ["487"],
  "G H",
  ["cancel", "final sent 487", "cancel() true"],
  ["G:500", "H:32000"],
];

// One row per (state, event) pair, written out on purpose: the table reads as Figure 7, each
// row checkable against the RFC on its own. Rows that look alike (within this table and across
// the four figure tests) are different transitions; folding them into loops would hide which
// pairs are covered. The shared machinery is figure-harness.ts.
const UDP: Row[] = [
  // Proceeding, nothing sent yet
  ["proceeding", "INVITE", "proceeding", [], FRESH, []],
  ["proceeding", "ACK", "proceeding", [], FRESH, []],
  ["proceeding", "CANCEL", ...CANCELLED],
  ["proceeding", "TU 1xx", "proceeding", ["180"], FRESH, [], []],
  ["proceeding", "TU 2xx", "accepted", ["200"], "L 2xx", ["final sent 200"], ["L:32000", "2xx:500"]],
  ["proceeding", "TU 3xx-6xx", "completed", ["486"], "G H", ["final sent 486"], ["G:500", "H:32000"]],
  // RFC 6026 §8.5: a 2xx the proxy relays is not resent by it: no 2xx timer.
  ["proceeding", "relayed 2xx", "accepted", ["200"], "L", ["final sent 200"], ["L:32000"]],
  // §17.2.1: a 100 when the TU has not answered within 200 ms.
  ["proceeding", "Timer 100", "proceeding", ["100"], "lifetime", [], []],
  ["proceeding", "Timer G", "proceeding", [], FRESH, []],
  ["proceeding", "Timer H", "proceeding", [], FRESH, []],
  ["proceeding", "Timer I", "proceeding", [], FRESH, []],
  ["proceeding", "Timer L", "proceeding", [], FRESH, []],
  ["proceeding", "2xx timer", "proceeding", [], FRESH, []],
  ["proceeding", "lifetime", "terminated", [], "", ["terminated lifetime"]],
  ["proceeding", "transport error", "terminated", [], "", ["terminated transport-error"]],
  // Proceeding after a provisional
  ["proceeding, 180 sent", "INVITE", "proceeding", ["180 again"], FRESH, []],
  ["proceeding, 180 sent", "TU 1xx", "proceeding", ["180"], FRESH, [], []],
  ["proceeding, 180 sent", "Timer 100", "proceeding", [], "lifetime", ["(request compacted)"], []],
  ["proceeding, 180 sent", "CANCEL", ...CANCELLED],
  // Accepted (RFC 6026 §7.1): our 2xx resent until the ACK (§13.3.1.4)
  ["accepted", "INVITE", "accepted", [], "L 2xx", []],
  ["accepted", "ACK", "accepted", [], "L", ["ack"], []],
  ["accepted", "CANCEL", "accepted", [], "L 2xx", ["cancel() false"]],
  ["accepted", "TU 1xx", "accepted", [], "L 2xx", [FINAL_SENT]],
  ["accepted", "TU 2xx", "accepted", [], "L 2xx", [FINAL_SENT]],
  ["accepted", "TU 3xx-6xx", "accepted", [], "L 2xx", [FINAL_SENT]],
  ["accepted", "relayed 2xx", "accepted", ["200"], "L 2xx", [], []],
  ["accepted", "Timer 100", "accepted", [], "L 2xx", []],
  ["accepted", "Timer G", "accepted", [], "L 2xx", []],
  ["accepted", "Timer H", "accepted", [], "L 2xx", []],
  ["accepted", "Timer I", "accepted", [], "L 2xx", []],
  ["accepted", "Timer L", "terminated", [], "", ["terminated ack-timeout"]],
  ["accepted", "2xx timer", "accepted", ["200 again"], "L 2xx", [], ["2xx:1000"]],
  ["accepted", "lifetime", "accepted", [], "L 2xx", []],
  ["accepted", "transport error", "terminated", [], "", ["terminated transport-error"]],
  // Accepted once the ACK came: only Timer L is left; a second ACK is not passed up again
  ["accepted, ACKed", "ACK", "accepted", [], "L", []],
  ["accepted, ACKed", "2xx timer", "accepted", [], "L", []],
  ["accepted, ACKed", "Timer L", "terminated", [], "", ["terminated normal"]],
  // Completed
  ["completed", "INVITE", "completed", ["486 again"], "G H", []],
  ["completed", "ACK", "confirmed", [], "I", [], ["I:5000"]],
  ["completed", "CANCEL", "completed", [], "G H", ["cancel() false"]],
  ["completed", "TU 1xx", "completed", [], "G H", [FINAL_SENT]],
  ["completed", "TU 2xx", "completed", [], "G H", [FINAL_SENT]],
  ["completed", "TU 3xx-6xx", "completed", [], "G H", [FINAL_SENT]],
  ["completed", "relayed 2xx", "completed", [], "G H", []],
  ["completed", "Timer 100", "completed", [], "G H", []],
  ["completed", "Timer G", "completed", ["486 again"], "G H", [], ["G:1000"]],
  ["completed", "Timer H", "terminated", [], "", ["terminated ack-timeout"]],
  ["completed", "Timer I", "completed", [], "G H", []],
  ["completed", "Timer L", "completed", [], "G H", []],
  ["completed", "2xx timer", "completed", [], "G H", []],
  ["completed", "lifetime", "completed", [], "G H", []],
  ["completed", "transport error", "terminated", [], "", ["terminated transport-error"]],
  // Completed by the automatic 487: the user's final is refused as "cancelled" (§9.2)
  ["completed, after a CANCEL", "TU 2xx", "completed", [], "G H", ["refused cancelled"]],
  ["completed, after a CANCEL", "INVITE", "completed", ["487 again"], "G H", []],
  // Confirmed: ACKs and INVITEs are absorbed until Timer I
  ["confirmed", "INVITE", "confirmed", [], "I", []],
  ["confirmed", "ACK", "confirmed", [], "I", []],
  ["confirmed", "CANCEL", "confirmed", [], "I", ["cancel() false"]],
  ["confirmed", "TU 1xx", "confirmed", [], "I", [FINAL_SENT]],
  ["confirmed", "TU 2xx", "confirmed", [], "I", [FINAL_SENT]],
  ["confirmed", "TU 3xx-6xx", "confirmed", [], "I", [FINAL_SENT]],
  ["confirmed", "relayed 2xx", "confirmed", [], "I", []],
  ["confirmed", "Timer 100", "confirmed", [], "I", []],
  ["confirmed", "Timer G", "confirmed", [], "I", []],
  ["confirmed", "Timer H", "confirmed", [], "I", []],
  ["confirmed", "Timer I", "terminated", [], "", ["terminated normal"]],
  ["confirmed", "Timer L", "confirmed", [], "I", []],
  ["confirmed", "2xx timer", "confirmed", [], "I", []],
  ["confirmed", "lifetime", "confirmed", [], "I", []],
  ["confirmed", "transport error", "terminated", [], "", ["terminated transport-error"]],
  // Terminated: everything is absorbed, the user's replies refused
  ...(
    [
      "INVITE",
      "ACK",
      "relayed 2xx",
      "Timer 100",
      "Timer G",
      "Timer H",
      "Timer I",
      "Timer L",
      "2xx timer",
      "lifetime",
      "transport error",
    ] as const
  ).map((e): Row => ["terminated", e, "terminated", [], "", []]),
  ["terminated", "CANCEL", "terminated", [], "", ["cancel() false"]],
  ["terminated", "TU 1xx", "terminated", [], "", ["refused terminated"]],
  ["terminated", "TU 2xx", "terminated", [], "", ["refused terminated"]],
  ["terminated", "TU 3xx-6xx", "terminated", [], "", ["refused terminated"]],
];

// Where a reliable transport changes Figure 7: no Timer G, Timer I is zero
// (§17.2.1). The engine also resends its own 2xx only over an unreliable
// transport (ist.ts); §13.3.1.4 words the 2xx retransmission as independent of
// the transport, so this row pins the engine's choice, not the figure.
const TCP: Row[] = [
  ["proceeding", "TU 2xx", "accepted", ["200"], "L", ["final sent 200"], ["L:32000"]],
  ["proceeding", "TU 3xx-6xx", "completed", ["486"], "H", ["final sent 486"], ["H:32000"]],
  [
    "proceeding",
    "CANCEL",
    "completed",
    ["487"],
    "H",
    ["cancel", "final sent 487", "cancel() true"],
    ["H:32000"],
  ],
  ["accepted", "ACK", "accepted", [], "L", ["ack"], []],
  ["accepted", "2xx timer", "accepted", [], "L", []],
  ["accepted", "Timer L", "terminated", [], "", ["terminated normal"]],
  ["completed", "INVITE", "completed", ["486 again"], "H", []],
  ["completed", "ACK", "terminated", [], "", ["terminated normal"], []],
  ["completed", "Timer G", "completed", [], "H", []],
  ["completed", "Timer H", "terminated", [], "", ["terminated ack-timeout"]],
];

// The figure's own data in figure-harness.ts's `Figure` shape (the same fields in each figure test).
const FIGURE: Figure<From, Event, ReturnType<typeof make>> = {
  title: "Figure 7: INVITE server transaction, every state × event",
  make,
  events: {
    INVITE: receive("INVITE"),
    ACK: receive("ACK"),
    CANCEL: ({ tu, tx, protocol }) => tu.log.push(`cancel() ${tx.cancel(request("CANCEL", protocol), true)}`),
    "TU 1xx": reply(180),
    "TU 2xx": reply(200),
    "TU 3xx-6xx": reply(486),
    // A proxy's path: a 2xx built elsewhere (another fork), passed as bytes.
    "relayed 2xx": ({ tx }) =>
      tx.sendResponse(200, buildResponse(tx.request, 200, { toTag: "fork2" }), false),
    "Timer 100": ({ ctx, tu, tx }) => {
      const before = compacted(tx.request);
      ctx.fire(tx, Timer.Trying100);
      if (!before && compacted(tx.request)) tu.log.push("(request compacted)");
    },
  },
  path: {
    proceeding: [],
    "proceeding, 180 sent": ["TU 1xx"],
    accepted: ["TU 2xx"],
    "accepted, ACKed": ["TU 2xx", "ACK"],
    completed: ["TU 3xx-6xx"],
    "completed, after a CANCEL": ["CANCEL"],
    confirmed: ["TU 3xx-6xx", "ACK"],
    terminated: ["TU 3xx-6xx", "ACK", "Timer I"],
  },
  initial: {
    name: "→ Proceeding, the auto 100 armed for 200 ms, nothing sent",
    state: "proceeding",
    sent: [],
    arms: { UDP: ["lifetime:214000", "100:200"], TCP: ["lifetime:214000", "100:200"] },
  },
  states: ["proceeding", "accepted", "completed", "confirmed", "terminated"],
  udp: UDP,
  tcp: TCP,
};

describeFigure(FIGURE);
