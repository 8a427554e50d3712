// Route `default` and UAs on their own connections (RFC 5626 flows), against a real `siptm serve`
// in one thread and with 2 shards (where the coordinator owns the connections and the registrar
// lives in the main thread). Alice is a raw SIP client on a node:net socket, like a browser on a
// WebSocket: her Via and Contact name `xyz.invalid`, so nothing but her connection reaches her;
// one test has a browser-like UA on a real WebSocket (the `ws` package, RFC 7118). The callers
// and callees on UDP are in-test engines. The server is a child process, killed in
// afterAll.
import {
  type Engine,
  newCallId,
  parseMessage,
  type ServerTransactionHandle,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  StreamFramer,
} from "@siptm/core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { forEachEngine, workersFlag } from "../../../test/setup/engines.js";
import { closeAll, rawSocket } from "../../core/test/transport/tcp-helpers.js";
import { call, killAll, type Served, serveDefault, testEngine, until } from "./helpers.js";

const websockets: WebSocket[] = [];
const engines: Engine[] = [];
afterEach(async () => {
  await closeAll();
  for (const w of websockets.splice(0)) w.terminate();
  await Promise.all(engines.splice(0).map((e) => e.close()));
});
afterAll(killAll);

const AOR = "sip:alice@127.0.0.1";
const INVALID_CONTACT = "<sip:alice@xyz.invalid;transport=tcp>";
const INSTANCE = '"<urn:uuid:00000000-0000-1000-8000-00a0c91e6bf6>"';

/** A SIP UA on one connection (TCP, or a WebSocket), by hand: what it got (in order), and lines to send. */
interface RawUa {
  /** Every message received, in order. */
  readonly got: SipMessage[];
  isClosed(): boolean;
  send(lines: string[]): void;
  /** The first message received (and not taken before) that `pred` accepts; waits for it. */
  take(what: string, pred: (m: SipMessage) => boolean): Promise<SipMessage>;
  /**
   * Drop the connection abruptly (a reset: a UA that crashed, a NAT that forgot it) and wait until
   * it is closed. (After a FIN the server keeps a connection half-closed for the responses it
   * owes, RFC 3261 §18.2.2, until its idle timeout: the flow ends when the connection does.)
   */
  close(): Promise<void>;
}

async function rawUa(port: number): Promise<RawUa> {
  const got: SipMessage[] = [];
  const framer = new StreamFramer();
  const {
    socket,
    closed: done,
    isClosed,
  } = await rawSocket(port, (chunk) =>
    framer.push(chunk, (m) => got.push(parseMessage(Buffer.from(m), { datagram: false }))),
  );
  return {
    got,
    isClosed,
    send: (lines) => socket.write(`${lines.join("\r\n")}\r\n\r\n`, "latin1"),
    take: taker(got),
    async close() {
      socket.resetAndDestroy();
      await done;
    },
  };
}

/** `RawUa.take` over the messages `got`. */
function taker(got: SipMessage[]): RawUa["take"] {
  const taken = new Set<SipMessage>();
  return async (what, pred) => {
    let found: SipMessage | undefined;
    await until(what, () => {
      found = got.find((m) => !taken.has(m) && pred(m));
      return found !== undefined;
    });
    taken.add(found!);
    return found!;
  };
}

/** A browser-like UA on a WebSocket (subprotocol sip, RFC 7118): one SIP message per WebSocket message. */
async function wsUa(port: number): Promise<RawUa> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, ["sip"]);
  websockets.push(ws);
  const got: SipMessage[] = [];
  let closed = false;
  ws.on("message", (d: Buffer) => got.push(parseMessage(Buffer.from(d), { datagram: false })));
  ws.on("error", () => {});
  const done = new Promise<void>((resolve) =>
    ws.once("close", () => {
      closed = true;
      resolve();
    }),
  );
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return {
    got,
    isClosed: () => closed,
    send: (lines) => ws.send(`${lines.join("\r\n")}\r\n\r\n`),
    take: taker(got),
    async close() {
      // The tab went away: no closing handshake, the connection just ends.
      ws.terminate();
      await done;
    },
  };
}

const isRequest = (method: string) => (m: SipMessage) => m.isRequest && (m as SipRequest).method === method;
const isResponse = (method: string) => (m: SipMessage) =>
  !m.isRequest && (m as SipResponse).cseq.method === method && (m as SipResponse).status >= 200;

let branches = 0;
/** A REGISTER of alice over her connection (Via and Contact `xyz.invalid`), with these header lines. */
function registerLines(callId: string, cseq: number, contact: string, extra: string[] = []): string[] {
  return [
    "REGISTER sip:127.0.0.1 SIP/2.0",
    `Via: SIP/2.0/TCP xyz.invalid;branch=z9hG4bK-reg${++branches}`,
    "Max-Forwards: 70",
    `From: <${AOR}>;tag=reg`,
    `To: <${AOR}>`,
    `Call-ID: ${callId}`,
    `CSeq: ${cseq} REGISTER`,
    `Contact: ${contact}`,
    "Expires: 600",
    ...extra,
    "Content-Length: 0",
  ];
}

async function registerOn(ua: RawUa, callId: string, cseq: number, contact: string, extra: string[] = []) {
  ua.send(registerLines(callId, cseq, contact, extra));
  return (await ua.take("the 200 to the REGISTER", isResponse("REGISTER"))) as SipResponse;
}

/** Alice's answer to `req`: its Vias, From, To (tagged), Call-ID and CSeq; an INVITE's 2xx with its Record-Route and her Contact. */
function answer(req: SipRequest, status: number): string[] {
  const lines = [`SIP/2.0 ${status} ${status === 200 ? "OK" : "Whatever"}`];
  for (const v of req.headerLines("via")) lines.push(`Via: ${v}`);
  const invite2xx = req.method === "INVITE" && status < 300;
  if (invite2xx) for (const rr of req.headerLines("record-route")) lines.push(`Record-Route: ${rr}`);
  const to = req.header("to")!;
  lines.push(
    `From: ${req.header("from")}`,
    `To: ${to.includes(";tag=") ? to : `${to};tag=alice`}`,
    `Call-ID: ${req.callId}`,
    `CSeq: ${req.header("cseq")}`,
  );
  if (invite2xx) lines.push(`Contact: ${INVALID_CONTACT}`);
  lines.push("Content-Length: 0");
  return lines;
}

/** The flow token of a Record-Route value of ours (`sip:TOKEN@127.0.0.1:PORT;transport=tcp;ob;lr`), or undefined. */
function tokenOf(rr: string, transport = "tcp"): string | undefined {
  return new RegExp(`^<sip:([A-Za-z0-9_-]+)@127\\.0\\.0\\.1:\\d+;transport=${transport};ob;lr>$`).exec(
    rr,
  )?.[1];
}

/** An in-test engine on UDP (and TCP), closed after the test. */
async function peer(opts: Parameters<typeof testEngine>[0] = {}): Promise<{ engine: Engine; port: number }> {
  const engine = await testEngine(opts);
  engines.push(engine);
  return { engine, port: engine.transportFor("UDP")!.localPort };
}

function inviteAlice(caller: Engine, server: Served) {
  return caller.request({
    method: "INVITE",
    uri: AOR,
    from: "<sip:carol@127.0.0.1>",
    to: `<${AOR}>`,
    nextHop: `udp:127.0.0.1:${server.udp}`,
  });
}

interface BindingView {
  uri: string;
  flow?: string;
  instance?: string;
  reg_id?: number;
}

async function bindings(server: Served): Promise<BindingView[]> {
  return call<BindingView[]>(server.rpc, "ul.lookup", [AOR]);
}

/** A call from `caller` to alice through `server`, and its INVITE as `ua` got it (on `where`). */
async function inviteTakenOn(ua: RawUa, where: string, caller: Engine, server: Served) {
  const h = inviteAlice(caller, server);
  const invite = (await ua.take(`the INVITE on ${where}`, isRequest("INVITE"))) as SipRequest;
  return { h, invite };
}

/** The caller's ACK and BYE of the dialog `h` answered (stateless ACK, §16.11) reach `ua` (on `where`); the BYE answered 200. The ACK. */
async function ackAndByeOn(
  ua: RawUa,
  where: string,
  caller: Engine,
  h: ReturnType<typeof inviteAlice>,
  response: SipResponse,
): Promise<SipRequest> {
  const bye = caller.ackAndBye(h, response);
  const ack = (await ua.take(`the ACK on ${where}`, isRequest("ACK"))) as SipRequest;
  const byeIn = (await ua.take(`the BYE on ${where}`, isRequest("BYE"))) as SipRequest;
  ua.send(answer(byeIn, 200));
  expect((await bye.final).status).toBe(200);
  return ack;
}

/** After its connection closed: alice's binding goes, and a call to her then gets `status` (`whom` names her in the wait). */
async function expectGoneThen(server: Served, caller: Engine, status: number, whom = "alice"): Promise<void> {
  await until("the binding gone", async () => (await bindings(server)).length === 0);
  await until(
    `${status} to a call to ${whom}`,
    async () => (await inviteAlice(caller, server).final).status === status,
  );
}

forEachEngine((_bed, _kind, engine) => {
  const workers = workersFlag(engine);
  describe(`route default and flows, --workers ${workers}`, () => {
    const start = (extra: string[] = []) => serveDefault(workers, extra);

    it("a binding made over TCP with a .invalid Contact is reached over that connection: the INVITE, the ACK and BYE of the dialog (flow token in Record-Route); once it closes the binding is gone and a call gets 480", async () => {
      const server = await start();
      const alice = await rawUa(server.tcp);
      const reg = await registerOn(alice, newCallId(), 1, INVALID_CONTACT);
      expect(reg.status).toBe(200);
      expect(reg.header("require")).toBeUndefined();
      const { engine: caller } = await peer();

      const { h, invite } = await inviteTakenOn(alice, "alice's connection", caller, server);
      expect(invite.uri).toBe("sip:alice@xyz.invalid;transport=tcp");
      // The Record-Route facing alice (the outbound side of the double Record-Route) has her flow's token.
      const rr = invite.headerValues("record-route");
      expect(rr).toHaveLength(2);
      expect(tokenOf(rr[0]!)).toBeDefined();
      expect(rr[1]).toBe(`<sip:127.0.0.1:${server.udp};lr>`);
      alice.send(answer(invite, 200));
      const outcome = await h.final;
      expect(outcome.status).toBe(200);

      // The caller's ACK (stateless, §16.11) and BYE go along the route set: over alice's connection.
      const ack = await ackAndByeOn(alice, "alice's connection", caller, h, outcome.response!);
      expect(ack.callId).toBe(invite.callId);

      await alice.close();
      // Registered, but its connection closed (RFC 5626 §3): not reachable now.
      await expectGoneThen(server, caller, 480);
    });

    // Registers, then a call to alice taken on a connection, as the test above: the same steps, each test's own
    // assertions in between (Require: outbound, ul.lookup's flow), so not folded into one helper.
    it("outbound (reg-id, +sip.instance, Supported: outbound): 200 with Require: outbound; a refresh of the same instance and reg-id over a new connection replaces the flow; once that one closes a call gets 430 Flow Failed", async () => {
      const server = await start();
      const contact = `${INVALID_CONTACT};reg-id=1;+sip.instance=${INSTANCE}`;
      const callId = newCallId();
      const first = await rawUa(server.tcp);
      const reg = await registerOn(first, callId, 1, contact, ["Supported: outbound, path"]);
      expect(reg.status).toBe(200);
      expect(reg.header("require")).toBe("outbound");
      expect(reg.header("contact")).toContain("reg-id=1");

      // The UA's flow broke (to it) and it registered again over another connection (RFC 5626 §4.2.1).
      const second = await rawUa(server.tcp);
      const again = await registerOn(second, callId, 2, contact, ["Supported: outbound"]);
      expect(again.status).toBe(200);
      expect(again.headerValues("contact")).toHaveLength(1);
      const [only] = await bindings(server);
      // ul.lookup shows the flow (protocol, peer, connection id) and the outbound identity.
      expect(only?.flow).toMatch(/^tcp:127\.0\.0\.1:\d+#\d+$/);
      expect(only?.instance).toBeDefined();
      expect(only?.reg_id).toBe(1);

      const { engine: caller } = await peer();
      const { h, invite } = await inviteTakenOn(second, "the new connection", caller, server);
      second.send(answer(invite, 486));
      expect((await h.final).status).toBe(486);
      expect(first.got.filter(isRequest("INVITE"))).toHaveLength(0);

      // The first connection closing changes nothing: no binding lives on it any more.
      await first.close();
      expect(await bindings(server)).toHaveLength(1);
      await second.close();
      await expectGoneThen(server, caller, 430);
    });

    it("reg-id without Supported: outbound is an ordinary binding (no Require: outbound); one through another proxy (two Vias) that asks for outbound gets 439", async () => {
      const server = await start();
      const alice = await rawUa(server.tcp);
      const contact = `${INVALID_CONTACT};reg-id=1;+sip.instance=${INSTANCE}`;
      const reg = await registerOn(alice, newCallId(), 1, contact);
      expect(reg.status).toBe(200);
      expect(reg.header("require")).toBeUndefined();
      const lines = registerLines(newCallId(), 1, contact, ["Supported: outbound"]);
      lines.splice(1, 0, "Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-edge1");
      alice.send(lines);
      expect(((await alice.take("the 439", isResponse("REGISTER"))) as SipResponse).status).toBe(439);
    });

    it("alice on TCP calls bob on UDP: bob's BYE along the route set reaches her connection (flow token); one with a forged token gets 403; after her connection closed, 430 Flow Failed (a Request-URI reachable without the flow is routed as usual)", async () => {
      const server = await start();
      let bobInvite: ServerTransactionHandle | undefined;
      const acks: string[] = [];
      const { engine: bob, port: bobPort } = await peer({
        onRequest: (tx) => {
          if (tx.method === "INVITE") {
            bobInvite = tx;
            tx.events.onAck = (a) => acks.push(a.method);
            tx.reply(200, { toTag: "bob", headers: [["Contact", `<sip:bob@127.0.0.1:${bobPort}>`]] });
          } else tx.reply(200);
        },
      });
      const alice = await rawUa(server.tcp);
      const callId = newCallId();
      alice.send([
        `INVITE sip:bob@127.0.0.1:${bobPort} SIP/2.0`,
        "Via: SIP/2.0/TCP xyz.invalid;branch=z9hG4bK-inv1",
        "Max-Forwards: 70",
        `From: <${AOR}>;tag=alice`,
        "To: <sip:bob@127.0.0.1>",
        `Call-ID: ${callId}`,
        "CSeq: 1 INVITE",
        `Contact: ${INVALID_CONTACT}`,
        "Content-Length: 0",
      ]);
      const ok = (await alice.take("the 200 on alice's connection", isResponse("INVITE"))) as SipResponse;
      expect(ok.status).toBe(200);
      // The side facing alice (the one her request came in on) carries her flow's token.
      const rr = ok.headerValues("record-route");
      expect(rr).toHaveLength(2);
      expect(rr[0]).toBe(`<sip:127.0.0.1:${server.udp};lr>`);
      const token = tokenOf(rr[1]!);
      expect(token).toBeDefined();
      expect(bobInvite!.request.headerValues("record-route")).toEqual(rr);

      // Her ACK comes over her own flow: routed as usual, to bob.
      alice.send([
        `ACK sip:bob@127.0.0.1:${bobPort} SIP/2.0`,
        "Via: SIP/2.0/TCP xyz.invalid;branch=z9hG4bK-ack1",
        "Max-Forwards: 70",
        `Route: ${rr[1]}`,
        `Route: ${rr[0]}`,
        `From: <${AOR}>;tag=alice`,
        "To: <sip:bob@127.0.0.1>;tag=bob",
        `Call-ID: ${callId}`,
        "CSeq: 1 ACK",
        "Content-Length: 0",
      ]);
      await until("the ACK at bob", () => acks.length === 1);

      // bob (the UAS) sends in-dialog requests along the Record-Route as it is (§12.1.1).
      let cseq = 0;
      const bobRequest = (routes: string[], uri = "sip:alice@xyz.invalid;transport=tcp") =>
        bob.request({
          method: "BYE",
          uri,
          from: "<sip:bob@127.0.0.1>;tag=bob",
          to: `<${AOR}>;tag=alice`,
          callId,
          cseq: ++cseq,
          headers: routes.map((r): [string, string] => ["Route", r]),
          nextHop: `udp:127.0.0.1:${server.udp}`,
        }).final;

      // A token with a flipped character: its MAC fails (RFC 5626 §5.3: 403).
      const forged = `${token!.slice(0, 5)}${token![5] === "A" ? "B" : "A"}${token!.slice(6)}`;
      const forgedRoute = rr[1]!.replace(token!, forged);
      expect((await bobRequest([rr[0]!, forgedRoute])).status).toBe(403);
      expect(alice.got.filter(isRequest("BYE"))).toHaveLength(0);

      // The real token: the BYE goes over alice's connection.
      const bye = bobRequest(rr);
      const byeIn = (await alice.take("the BYE on alice's connection", isRequest("BYE"))) as SipRequest;
      expect(byeIn.uri).toBe("sip:alice@xyz.invalid;transport=tcp");
      alice.send(answer(byeIn, 200));
      expect((await bye).status).toBe(200);

      // Her connection closes: the flow is gone, and nothing else reaches xyz.invalid.
      await alice.close();
      await until("430 to a request along her flow", async () => (await bobRequest(rr)).status === 430);
      // A Request-URI that is reachable without the flow (an IP literal, no `ob`) is routed as usual.
      const { port: elsewhere } = await peer({ onRequest: (tx) => tx.reply(200) });
      const routed = await bobRequest(rr, `sip:alice@127.0.0.1:${elsewhere}`);
      expect(routed.status).toBe(200);
    });

    it("carol on TCP calls alice registered over TCP: both sides of the Record-Route carry a token; carol's ACK reaches alice's connection, alice's BYE carol's", async () => {
      const server = await start();
      const alice = await rawUa(server.tcp);
      expect((await registerOn(alice, newCallId(), 1, INVALID_CONTACT)).status).toBe(200);
      const carol = await rawUa(server.tcp);
      const callId = newCallId();
      const carolContact = "<sip:carol@abc.invalid;transport=tcp>";
      carol.send([
        `INVITE ${AOR} SIP/2.0`,
        "Via: SIP/2.0/TCP abc.invalid;branch=z9hG4bK-inv2",
        "Max-Forwards: 70",
        "From: <sip:carol@127.0.0.1>;tag=carol",
        `To: <${AOR}>`,
        `Call-ID: ${callId}`,
        "CSeq: 1 INVITE",
        `Contact: ${carolContact}`,
        "Content-Length: 0",
      ]);
      const invite = (await alice.take(
        "the INVITE on alice's connection",
        isRequest("INVITE"),
      )) as SipRequest;
      const rr = invite.headerValues("record-route");
      expect(rr).toHaveLength(2);
      const [toAlice, toCarol] = rr.map((r) => tokenOf(r));
      expect(toAlice).toBeDefined();
      expect(toCarol).toBeDefined();
      expect(toAlice).not.toBe(toCarol);
      alice.send(answer(invite, 200));
      const ok = (await carol.take("the 200 on carol's connection", isResponse("INVITE"))) as SipResponse;
      expect(ok.status).toBe(200);
      expect(ok.headerValues("record-route")).toEqual(rr);

      // carol (UAC): the route set reversed (§12.1.2); her own token is passed over, alice's used.
      carol.send([
        "ACK sip:alice@xyz.invalid;transport=tcp SIP/2.0",
        "Via: SIP/2.0/TCP abc.invalid;branch=z9hG4bK-ack2",
        "Max-Forwards: 70",
        `Route: ${rr[1]}, ${rr[0]}`,
        "From: <sip:carol@127.0.0.1>;tag=carol",
        `To: <${AOR}>;tag=alice`,
        `Call-ID: ${callId}`,
        "CSeq: 1 ACK",
        "Content-Length: 0",
      ]);
      await alice.take("the ACK on alice's connection", isRequest("ACK"));
      // alice (UAS): the route set as recorded.
      alice.send([
        "BYE sip:carol@abc.invalid;transport=tcp SIP/2.0",
        "Via: SIP/2.0/TCP xyz.invalid;branch=z9hG4bK-bye2",
        "Max-Forwards: 70",
        `Route: ${rr[0]}, ${rr[1]}`,
        `From: <${AOR}>;tag=alice`,
        "To: <sip:carol@127.0.0.1>;tag=carol",
        `Call-ID: ${callId}`,
        "CSeq: 1 BYE",
        "Content-Length: 0",
      ]);
      const bye = (await carol.take("the BYE on carol's connection", isRequest("BYE"))) as SipRequest;
      carol.send(answer(bye, 200));
      const done = (await alice.take("the 200 to the BYE", isResponse("BYE"))) as SipResponse;
      expect(done.status).toBe(200);
    });

    it("a browser on a WebSocket (outbound, .invalid): the call from a UDP caller, its ACK and BYE arrive on the WebSocket (a ws flow token); once the tab is gone a call gets 430", async () => {
      const server = await start(["--listen", "ws:127.0.0.1:0"]);
      const wsPort = Number(/listen:\s+ws 127\.0\.0\.1:(\d+)/.exec(server.stdout())?.[1]);
      const browser = await wsUa(wsPort);
      const contact = `<sip:k3l5@df7jal23ls0d.invalid;transport=ws>;reg-id=1;+sip.instance=${INSTANCE}`;
      browser.send([
        `REGISTER sip:127.0.0.1:${wsPort};transport=ws SIP/2.0`,
        "Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK-wsreg",
        "Max-Forwards: 70",
        `From: <${AOR}>;tag=br`,
        `To: <${AOR}>`,
        `Call-ID: ${newCallId()}`,
        "CSeq: 1 REGISTER",
        `Contact: ${contact}`,
        "Supported: path, outbound, gruu",
        "Expires: 600",
        "Content-Length: 0",
      ]);
      const reg = (await browser.take("the 200 to the REGISTER", isResponse("REGISTER"))) as SipResponse;
      expect(reg.status).toBe(200);
      expect(reg.header("require")).toBe("outbound");

      const { engine: caller } = await peer();
      const { h, invite } = await inviteTakenOn(browser, "the WebSocket", caller, server);
      expect(invite.uri).toBe("sip:k3l5@df7jal23ls0d.invalid;transport=ws");
      expect(invite.via.transport).toBe("WS");
      const rr = invite.headerValues("record-route");
      expect(rr).toHaveLength(2);
      expect(tokenOf(rr[0]!, "ws")).toBeDefined();
      browser.send(answer(invite, 200));
      const outcome = await h.final;
      expect(outcome.status).toBe(200);
      await ackAndByeOn(browser, "the WebSocket", caller, h, outcome.response!);

      await browser.close();
      await expectGoneThen(server, caller, 430, "the browser");
    });

    it("a binding over TCP with an IP-literal Contact stays when its connection closes, and is reached at its Contact from then on", async () => {
      const server = await start();
      const invites: string[] = [];
      const { engine: uas } = await peer({
        onRequest: (tx) => {
          invites.push(tx.source.protocol);
          tx.reply(486);
        },
      });
      const tcpPort = uas.transportFor("TCP")!.localPort;
      const alice = await rawUa(server.tcp);
      const contact = `<sip:alice@127.0.0.1:${tcpPort};transport=tcp>`;
      expect((await registerOn(alice, newCallId(), 1, contact)).status).toBe(200);
      const { engine: caller } = await peer();

      // Reached over the REGISTER's connection first (RFC 5626 flow), not at the Contact.
      const { h, invite } = await inviteTakenOn(alice, "the connection", caller, server);
      alice.send(answer(invite, 486));
      expect((await h.final).status).toBe(486);
      expect(invites).toHaveLength(0);

      await alice.close();
      // The close is told asynchronously; the binding stays throughout (Kamailio keeps it too).
      await until("the server saw the close", async () => {
        const st = await call<Record<string, number>>(server.rpc, "tm.stats");
        return st.tcp_connections === 0;
      });
      expect(await bindings(server)).toHaveLength(1);
      await until("a call reaching the Contact", async () => {
        await inviteAlice(caller, server).final;
        return invites.length > 0;
      });
      expect(invites[0]).toBe("TCP");
      expect(await bindings(server)).toHaveLength(1);
    });
  });
});
