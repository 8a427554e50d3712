// The browser interop suite, run against each peer by browser.test.ts (Kamailio) and
// browser-siptm.test.ts (siptm serve): SIP.js and JsSIP in headless Chromium (browser.ts) register
// over WSS (RFC 7118) and call SIPp UASes registered over UDP, through the peer:
//
//  (a) a call the UAS rings (180) and the client cancels: the CANCEL is answered 200, the INVITE
//      487, and the client's own stack ACKs the 487 (RFC 3261 §9.1, §17.1.1.3);
//  (b) a second call, answered 200 (with an SDP answer the browser accepts): the client ACKs it,
//      hangs up with a BYE, gets its 200 (§12, §15.1.1) — on the same WebSocket as (a).
//
// Every message the browser sent or got is read from its WebSocket frames (playwright), so the
// checks are the same for both stacks and every peer; the peer adds its own (what it saw).
//
// Each step waits on an event (registered, a frame, a page event); every wait is bounded. Every
// process (Chromium, SIPp, the peer) is stopped by its own handle however the tests end.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../packages/core/src/index.js";
import { BrowserPhones, type Frame, type Lib, PageServer, type TestCert, testCert } from "./browser.js";
import { expectSippClean, FAST_TIMERS, type SiptmSide, startSiptm } from "./harness.js";
import { HOST, killedAfterAll, requireSipp, type SippProcess, startSipp } from "./sipp.js";

/** A SIP server with a WSS listener for the browser and a UDP one for SIPp. */
export interface WssPeer {
  name: string;
  udp: number;
  wsUrl: string;
  report(): string;
  stop(): Promise<void>;
}

const LIBS: Array<{ lib: Lib; user: string }> = [
  { lib: "sipjs", user: "alice" },
  { lib: "jssip", user: "carol" },
];

/** REGISTER `contact` for `aor` at 127.0.0.1:`port` over UDP, from an in-test engine (as the UA owning that contact would). */
async function registerUdp(engine: Engine, port: number, aor: string, contact: string): Promise<number> {
  const h = engine.request({
    method: "REGISTER",
    uri: `sip:${HOST}:${port}`,
    from: `<${aor}>`,
    to: `<${aor}>`,
    headers: [
      ["Contact", `<${contact}>`],
      ["Expires", "600"],
    ],
    nextHop: `udp:${HOST}:${port}`,
  });
  const final = await h.final;
  return final.status;
}

const ofCall = (callId: string) => (f: Frame) => f.callId === callId;
const branch = (f: Frame) => /branch=([^;,\s]+)/i.exec(f.text)?.[1];

/** Each line of `lines` is in `flow`, in this order. */
function expectInOrder(flow: string[], lines: string[], report: string): void {
  let at = -1;
  for (const line of lines) {
    const next = flow.indexOf(line, at + 1);
    expect(
      next,
      `${line} after ${lines[lines.indexOf(line) - 1] ?? "the start"} in\n${flow.join("\n")}\n${report}`,
    ).toBeGreaterThan(at);
    at = next;
  }
}

/**
 * (a) A call to `target` (a SIPp UAS ringing), cancelled once its 180 is in: the 487 comes, the
 * client's stack ACKs it in the INVITE's transaction (§17.1.1.3), the CANCEL gets its 200.
 */
async function cancelledCall(b: BrowserPhones, user: string, target: string): Promise<string> {
  const call = await b.call(user, target);
  await b.waitEvent({ call, type: "progress", status: 180 });
  const invite = await b.waitFrame(
    (f) => f.dir === "out" && f.start === `INVITE ${target} SIP/2.0`,
    `the INVITE for ${target}`,
  );
  const mine = ofCall(invite.callId);
  await b.cancel(call);
  await b.waitFrame((f) => mine(f) && f.dir === "in" && f.status === 487, "487 to the INVITE");
  const ack = await b.waitFrame(
    (f) => mine(f) && f.dir === "out" && f.method === "ACK",
    "the client's ACK of the 487",
  );
  // §17.1.1.3: the ACK of a non-2xx final is in the INVITE's transaction: its branch, its CSeq number.
  expect(ack.cseqMethod).toBe("ACK");
  expect(ack.cseq).toBe(invite.cseq);
  expect(branch(ack)).toBe(branch(invite));
  // Wait for the answer, then the flow in order, as the answered call below does: each call's own frames.
  await b.waitFrame(
    (f) => mine(f) && f.dir === "in" && f.status === 200 && f.cseqMethod === "CANCEL",
    "200 to the CANCEL",
  );
  const flow = b.flow(invite.callId);
  expectInOrder(
    flow,
    ["out INVITE", "in 180 INVITE", "out CANCEL", "in 487 INVITE", "out ACK"],
    await b.report(),
  );
  expect(
    flow.filter((l) => l === "in 200 INVITE" || l === "out BYE"),
    flow.join("\n"),
  ).toEqual([]);
  return invite.callId;
}

/**
 * (b) A call to `target` (a SIPp UAS answering 200 with an SDP answer): the client ACKs the 200,
 * keeps the call up (it took the answer) until told to hang up, sends the BYE, gets its 200.
 */
async function answeredCall(b: BrowserPhones, user: string, target: string): Promise<string> {
  const call = await b.call(user, target);
  // "accepted" (SIP.js: Established; JsSIP: accepted) comes only once the stack applied the SDP
  // answer; one it could not apply would have it ACK and BYE (488) at once instead.
  await b.waitEvent({ call, type: "accepted" });
  const invite = await b.waitFrame(
    (f) => f.dir === "out" && f.start === `INVITE ${target} SIP/2.0`,
    `the INVITE for ${target}`,
  );
  const mine = ofCall(invite.callId);
  await b.waitFrame((f) => mine(f) && f.dir === "out" && f.method === "ACK", "the ACK of the 200");
  // The browser took the SDP answer: it did not tear the call down on its own.
  expect(
    b.frames.filter((f) => mine(f) && f.method === "BYE"),
    await b.report(),
  ).toEqual([]);
  const events = await b.events();
  expect(
    events.filter((e) => e.call === call && ["terminated", "ended", "rejected"].includes(e.type)),
  ).toEqual([]);
  await b.bye(call);
  await b.waitFrame((f) => mine(f) && f.dir === "out" && f.method === "BYE", "the client's BYE");
  await b.waitFrame(
    (f) => mine(f) && f.dir === "in" && f.status === 200 && f.cseqMethod === "BYE",
    "200 to the BYE",
  );
  const flow = b.flow(invite.callId);
  expectInOrder(
    flow,
    ["out INVITE", "in 180 INVITE", "in 200 INVITE", "out ACK", "out BYE", "in 200 BYE"],
    await b.report(),
  );
  // One BYE, ours: over a reliable transport nothing is retransmitted (§17.1.2.2, Timer E).
  expect(
    flow.filter((l) => l === "out BYE"),
    flow.join("\n"),
  ).toEqual(["out BYE"]);
  return invite.callId;
}

/**
 * (c) A call to the client: a SIPp UAC calls its address of record through the peer (over UDP);
 * the peer finds its binding and sends the INVITE down the client's WebSocket; the client answers
 * 200 (SDP), gets the ACK and SIPp's BYE (to its .invalid Contact, via the peer's Record-Route),
 * answers it 200.
 */
async function incomingCall(
  b: BrowserPhones,
  user: string,
  peer: WssPeer,
  sipps: Set<SippProcess>,
): Promise<string> {
  const from = b.frames.length;
  const caller = await startSipp(sipps, {
    scenario: "uac-webrtc-call.xml",
    calls: 1,
    remote: `${HOST}:${peer.udp}`,
    extra: ["-s", user],
  });
  const invite = await b
    .waitFrame(
      (f) => b.frames.indexOf(f) >= from && f.dir === "in" && f.method === "INVITE",
      "the INVITE from the SIPp UAC",
    )
    .catch(async (err: Error) => {
      await caller.kill();
      throw new Error(`${err.message}\n${(await caller.done).report()}\n${peer.report()}`);
    });
  const call = `in:${invite.callId}`;
  await b.waitEvent({ call, type: "incoming" });
  await b.waitEvent({ call, type: "answered" });
  await b.waitEvent({ call, type: "ended" });
  const mine = ofCall(invite.callId);
  await b.waitFrame(
    (f) => mine(f) && f.dir === "out" && f.status === 200 && f.cseqMethod === "BYE",
    "200 to the BYE",
  );
  expectSippClean(await caller.wait(30_000), 1);
  const flow = b.flow(invite.callId);
  expectInOrder(flow, ["in INVITE", "out 200 INVITE", "in ACK", "in BYE", "out 200 BYE"], await b.report());
  return invite.callId;
}

/** The Call-IDs of one test's calls, for the peer's own checks (`incoming` when (c) ran). */
export interface Calls {
  cancelled: string;
  answered: string;
  incoming: string | undefined;
}

/**
 * The browser suite against one peer: `start` brings the peer up (with the test's certificate);
 * `afterCalls` runs the peer's own checks once the calls of a test are over and the browser is
 * closed (what it saw of them; siptm: drained). `incoming`: also (c), a call to the browser.
 */
export function browserSuite<P extends WssPeer>(
  title: string,
  start: (cert: TestCert) => Promise<P>,
  afterCalls: (peer: P, calls: Calls) => Promise<void>,
  opts: { incoming: boolean },
): void {
  describe(title, () => {
    let cert: TestCert | undefined;
    let pages: PageServer | undefined;
    let peer: P | undefined;
    let registrar: SiptmSide | undefined;
    const sipps = killedAfterAll<SippProcess>();
    const browsers = new Set<BrowserPhones>();

    beforeAll(async () => {
      requireSipp();
      cert = testCert();
      pages = await PageServer.start();
      peer = await start(cert);
      registrar = await startSiptm({ timers: FAST_TIMERS });
    });

    afterAll(async () => {
      await Promise.all([...browsers].map((b) => b.close()));
      await registrar?.engine.close();
      await peer?.stop();
      await pages?.close();
      cert?.remove();
    });

    for (const { lib, user } of LIBS)
      it(`${lib} in Chromium registers over the WebSocket; (a) a call rung (180) and cancelled: 200 to the CANCEL, 487 to the INVITE, ${lib}'s own ACK of the 487; (b) a second call on the same WebSocket answered 200 (SDP): ${lib} ACKs it, hangs up with a BYE, gets its 200${opts.incoming ? `; (c) a call to ${lib} from a SIPp UAC answered, then SIPp's ACK and BYE reach it over its WebSocket` : ""}`, async () => {
        // SIPp UASes, registered over UDP: `ring` rings and is cancelled, `bob` answers.
        const ring = await startSipp(sipps, { scenario: "uas-proxied-cancel.xml", calls: 1, listen: true });
        const bob = await startSipp(sipps, { scenario: "uas-webrtc-call.xml", calls: 1, listen: true });
        const e = registrar!.engine;
        const ringAor = `sip:ring-${lib}@${HOST}`;
        const bobAor = `sip:bob-${lib}@${HOST}`;
        expect(await registerUdp(e, peer!.udp, ringAor, `sip:ring@${HOST}:${ring.port}`)).toBe(200);
        expect(await registerUdp(e, peer!.udp, bobAor, `sip:bob@${HOST}:${bob.port}`)).toBe(200);
        const b = await BrowserPhones.launch(pages!.url, cert!.spki);
        browsers.add(b);
        try {
          await b.phone(user, lib, peer!.wsUrl, `sip:${user}@${HOST}`);
          expect(await b.register(user)).toBe(200);
          // A failing step's message ends with what the peer logged (its SIP trace).
          const step = <T>(run: Promise<T>): Promise<T> =>
            run.catch((err: Error) => {
              err.message = `${err.message}\n${peer!.report()}`;
              throw err;
            });
          const cancelled = await step(cancelledCall(b, user, ringAor));
          const answered = await step(answeredCall(b, user, bobAor));
          const incoming = opts.incoming ? await step(incomingCall(b, user, peer!, sipps)) : undefined;
          // Each SIPp ran its one call to the end (lingering a while for retransmissions) with no
          // failure: for `ring`, the proxy's CANCEL and ACK carried the branch of its INVITE.
          const [rang, answeredSipp] = await Promise.all([ring.wait(30_000), bob.wait(30_000)]);
          expectSippClean(rang, 1);
          expectSippClean(answeredSipp, 1);
          // One WebSocket for the REGISTER and both calls, still open.
          expect(b.sockets, "WebSockets the page opened").toHaveLength(1);
          expect(b.closedSockets, "WebSockets closed").toEqual([]);
          expect(new Set(b.frames.map((f) => f.url)).size, "WebSocket URLs of the frames").toBe(1);
          await b.close();
          await afterCalls(peer!, { cancelled, answered, incoming });
        } finally {
          await b.close();
          browsers.delete(b);
          await Promise.all([ring.kill(), bob.kill()]);
        }
      });
  });
}

/** The branch of the first Via of a message. */
export function topBranch(text: string): string | undefined {
  return /\r\n(?:Via|v)\s*:[^\r]*?;\s*branch=([^;,\s]+)/i.exec(text)?.[1];
}

/** `text` as a literal inside a RegExp. */
export function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
