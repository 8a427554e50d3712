// The registrar and flows (RFC 5626), in process on a fake clock: which bindings keep the
// connection of their REGISTER, outbound bindings keyed by instance and reg-id (§6), what a
// connection's close drops and what it keeps, what a replica gets; and the flow tokens and live
// flows of flow.ts.
import { parseMessage, type SipRequest, type Source } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { type Flow, FlowTokens, flowDestination, flowOf, LiveFlows, sameFlow } from "../src/flow.js";
import { Registrar } from "../src/registrar.js";

const AOR = "sip:alice@example.com";
const INSTANCE = '"<urn:uuid:00000000-0000-1000-8000-00a0c91e6bf6>"';

let branch = 0;
function register(
  contacts: string[],
  opts: { callId?: string; cseq?: number; supported?: string; vias?: number; expires?: number } = {},
): SipRequest {
  const lines = [
    "REGISTER sip:example.com SIP/2.0",
    ...Array.from(
      { length: opts.vias ?? 1 },
      (_, i) => `Via: SIP/2.0/TCP h${i}.invalid;branch=z9hG4bK-${++branch}`,
    ),
    "Max-Forwards: 70",
    `From: <${AOR}>;tag=abc`,
    `To: <${AOR}>`,
    `Call-ID: ${opts.callId ?? "reg-call"}`,
    `CSeq: ${opts.cseq ?? ++branch} REGISTER`,
    ...contacts.map((c) => `Contact: ${c}`),
    ...(opts.supported ? [`Supported: ${opts.supported}`] : []),
    ...(opts.expires === undefined ? [] : [`Expires: ${opts.expires}`]),
    "Content-Length: 0",
    "",
    "",
  ];
  return parseMessage(Buffer.from(lines.join("\r\n"), "latin1")) as SipRequest;
}

let connections = 0;
function tcp(port = 40000 + connections): Source {
  return {
    protocol: "TCP",
    address: "192.0.2.7",
    port,
    localAddress: "127.0.0.1",
    localPort: 5060,
    connectionId: ++connections,
  };
}
const UDP: Source = {
  protocol: "UDP",
  address: "192.0.2.7",
  port: 5062,
  localAddress: "127.0.0.1",
  localPort: 5060,
};

function fresh() {
  const clock = { t: 1_000_000 };
  const reg = new Registrar({ now: () => clock.t, minExpires: 60 });
  return { reg, clock };
}

const OUTBOUND = `<sip:alice@xyz.invalid;transport=tcp>;reg-id=1;+sip.instance=${INSTANCE}`;

describe("Registrar and flows (RFC 5626)", () => {
  it("a binding made over a connection keeps its flow; one over UDP has none", () => {
    const { reg } = fresh();
    const conn = tcp();
    reg.register(register(["<sip:alice@xyz.invalid;transport=tcp>"]), conn);
    reg.register(register(["<sip:alice@192.0.2.7:5062>"]), UDP);
    const [a, b] = reg.lookup(AOR);
    expect(a!.flow).toEqual(flowOf(conn));
    expect(flowDestination(a!.flow!)).toEqual({
      protocol: "TCP",
      address: "192.0.2.7",
      port: conn.port,
      connectionId: conn.connectionId,
    });
    expect(b!.flow).toBeUndefined();
    expect(reg.flows).toBe(1);
  });

  it("outbound (§6): keyed by instance and reg-id — a new flow replaces the old, even with another Contact; Require: outbound", () => {
    const { reg } = fresh();
    const first = tcp();
    const out = reg.register(register([OUTBOUND], { supported: "outbound", callId: "c1" }), first);
    expect(out.status).toBe(200);
    expect(out.headers).toContainEqual(["Require", "outbound"]);
    const second = tcp();
    const other = `<sip:alice@abc.invalid;transport=tcp>;reg-id=1;+sip.instance=${INSTANCE}`;
    const again = reg.register(register([other], { supported: "outbound", callId: "c2" }), second);
    expect(again.headers.filter(([n]) => n === "Contact")).toHaveLength(1);
    const [b] = reg.lookup(AOR);
    expect(b!.uri).toBe("sip:alice@abc.invalid;transport=tcp");
    expect(b!.flow).toEqual(flowOf(second));
    expect(b!.instance).toBe(INSTANCE);
    expect(b!.regId).toBe(1);
    // Another reg-id of the same instance is a second flow (§4.2.1).
    const two = `<sip:alice@abc.invalid;transport=tcp>;reg-id=2;+sip.instance=${INSTANCE}`;
    reg.register(register([two], { supported: "outbound", callId: "c2" }), tcp());
    expect(reg.lookup(AOR)).toHaveLength(2);
    // The old flow's close drops nothing: no binding lives on it now.
    expect(reg.flowClosed(first)).toEqual([]);
    expect(reg.lookup(AOR)).toHaveLength(2);
    // Deregistering one reg-id (expires=0) leaves the other.
    reg.register(register([`${two};expires=0`], { supported: "outbound", callId: "c2" }), tcp());
    expect(reg.lookup(AOR).map((x) => x.regId)).toEqual([1]);
  });

  it("reg-id without Supported: outbound, or without +sip.instance, is ignored: an ordinary binding keyed by its Contact, no Require", () => {
    const { reg } = fresh();
    const out = reg.register(register([OUTBOUND]), tcp());
    expect(out.headers.some(([n]) => n === "Require")).toBe(false);
    expect(reg.lookup(AOR)[0]!.regId).toBeUndefined();
    const noInstance = reg.register(
      register(["<sip:alice@h.invalid;transport=tcp>;reg-id=1"], { supported: "outbound" }),
      tcp(),
    );
    expect(noInstance.headers.some(([n]) => n === "Require")).toBe(false);
    expect(reg.lookup(AOR)).toHaveLength(2);
    expect(reg.lookup(AOR).every((b) => b.regId === undefined)).toBe(true);
  });

  it("outbound refusals: through another proxy 439 (no Path), a bad reg-id or two Contacts 400; nothing bound", () => {
    const { reg } = fresh();
    expect(reg.register(register([OUTBOUND], { supported: "outbound", vias: 2 }), tcp()).status).toBe(439);
    const bad = OUTBOUND.replace("reg-id=1", "reg-id=0");
    expect(reg.register(register([bad], { supported: "outbound" }), tcp()).status).toBe(400);
    const huge = OUTBOUND.replace("reg-id=1", "reg-id=2147483648");
    expect(reg.register(register([huge], { supported: "outbound" }), tcp()).status).toBe(400);
    const two = reg.register(register([OUTBOUND, "<sip:alice@192.0.2.7>"], { supported: "outbound" }), tcp());
    expect(two.status).toBe(400);
    expect(reg.lookup(AOR)).toEqual([]);
  });

  it("a connection's close drops its outbound and host-name bindings (lost: 430 / 480 kinds), keeps an IP-literal one without its flow, tells the watchers once", () => {
    const { reg } = fresh();
    const conn = tcp();
    const otherConn = tcp();
    const watched: Flow[] = [];
    const stop = reg.watchFlows((f) => watched.push(f));
    reg.register(register(["<sip:alice@xyz.invalid;transport=tcp>"], { callId: "a" }), conn);
    reg.register(register(["<sip:alice@192.0.2.7:5070;transport=tcp>"], { callId: "b" }), conn);
    reg.register(register(["<sip:alice@other.invalid;transport=tcp>"], { callId: "c" }), otherConn);
    expect(reg.flowClosed(conn)).toEqual([AOR]);
    expect(watched).toEqual([flowOf(conn)]);
    const left = reg.lookup(AOR);
    expect(left.map((b) => b.uri).sort()).toEqual([
      "sip:alice@192.0.2.7:5070;transport=tcp",
      "sip:alice@other.invalid;transport=tcp",
    ]);
    expect(left.find((b) => b.uri.includes("192.0.2.7"))!.flow).toBeUndefined();
    expect(reg.lost(AOR)).toBeUndefined(); // live bindings are left
    reg.register(register(["<sip:alice@192.0.2.7:5070;transport=tcp>;expires=0"], { callId: "b" }), tcp());
    reg.flowClosed(otherConn);
    expect(reg.lookup(AOR)).toEqual([]);
    expect(reg.lost(AOR)).toBe("flow");
    stop();
    reg.flowClosed(tcp());
    expect(watched).toHaveLength(2);
    expect(reg.flows).toBe(0);
  });

  it("an outbound binding lost to its flow makes the AOR 'outbound' lost until it would have expired, or the instance registers again, or Contact: *", () => {
    const { reg, clock } = fresh();
    const conn = tcp();
    reg.register(register([OUTBOUND], { supported: "outbound", expires: 120 }), conn);
    reg.flowClosed(conn);
    expect(reg.lookup(AOR)).toEqual([]);
    expect(reg.lost(AOR)).toBe("outbound");
    clock.t += 121_000;
    expect(reg.lost(AOR)).toBeUndefined();

    const again = tcp();
    reg.register(register([OUTBOUND], { supported: "outbound", expires: 120 }), again);
    reg.flowClosed(again);
    expect(reg.lost(AOR)).toBe("outbound");
    const back = tcp();
    reg.register(register([OUTBOUND], { supported: "outbound" }), back);
    reg.register(register([`${OUTBOUND};expires=0`], { supported: "outbound" }), back);
    expect(reg.lost(AOR)).toBeUndefined(); // registered again (then left): nobody there, 404

    const third = tcp();
    reg.register(register([OUTBOUND], { supported: "outbound" }), third);
    reg.flowClosed(third);
    expect(reg.register(register(["*"], { expires: 0 })).status).toBe(200);
    expect(reg.lost(AOR)).toBeUndefined();
  });

  it("lost bindings are bounded by maxContacts per AOR and swept when they expire", () => {
    const clock = { t: 0 };
    const reg = new Registrar({ now: () => clock.t, minExpires: 60, maxContacts: 2 });
    for (let i = 0; i < 5; i++) {
      const conn = tcp();
      reg.register(register([`<sip:alice@h${i}.invalid;transport=tcp>`], { expires: 100 + i }), conn);
      reg.flowClosed(conn);
    }
    expect(reg.copyOf(AOR).lost).toHaveLength(2);
    clock.t += 200_000;
    reg.sweep();
    expect(reg.copyOf(AOR).lost).toBeUndefined();
    expect(reg.copyAll()).toEqual([]);
  });

  it("a replica gets flows, outbound keys (two reg-ids of one Contact stay two) and lost bindings, and its flowClosed tells its watchers", () => {
    const { reg } = fresh();
    const c1 = tcp();
    const c2 = tcp();
    const one = `<sip:alice@xyz.invalid;transport=tcp>;reg-id=1;+sip.instance=${INSTANCE}`;
    const two = `<sip:alice@xyz.invalid;transport=tcp>;reg-id=2;+sip.instance=${INSTANCE}`;
    reg.register(register([one], { supported: "outbound" }), c1);
    reg.register(register([two], { supported: "outbound" }), c2);
    const replica = new Registrar({ now: () => 7 });
    const watched: Flow[] = [];
    replica.watchFlows((f) => watched.push(f));
    for (const copy of structuredClone(reg.copyAll())) replica.replace(copy);
    const got = replica.lookup(AOR);
    expect(got).toHaveLength(2);
    expect(got.map((b) => b.flow?.connectionId).sort()).toEqual([c1.connectionId, c2.connectionId].sort());
    // The main thread drops c1's binding and sends the AOR, then the flow.
    reg.flowClosed(c1);
    replica.replace(structuredClone(reg.copyOf(AOR)));
    replica.flowClosed(structuredClone(flowOf(c1)!));
    expect(replica.lookup(AOR).map((b) => b.regId)).toEqual([2]);
    expect(watched).toEqual([flowOf(c1)]);
    reg.flowClosed(c2);
    replica.replace(structuredClone(reg.copyOf(AOR)));
    expect(replica.lookup(AOR)).toEqual([]);
    expect(replica.lost(AOR)).toBe("outbound");
  });
});

describe("flow tokens and live flows", () => {
  const flow: Flow = {
    protocol: "TCP",
    address: "2001:db8::7",
    port: 50123,
    connectionId: 2 ** 40 + 5,
    localAddress: "::1",
    localPort: 5060,
  };

  it("a token decodes to its flow with the key that made it, and is only URI-unreserved characters", () => {
    const tokens = new FlowTokens();
    const t = tokens.encode(flow);
    expect(t).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(tokens.decode(t)).toEqual(flow);
    const withNode = { ...flow, protocol: "WSS" as const, node: "node-2" };
    expect(tokens.decode(tokens.encode(withNode))).toEqual(withNode);
  });

  it("a token of another key, an edited one, a truncated one, garbage or an overlong one is not ours", () => {
    const tokens = new FlowTokens();
    const t = tokens.encode(flow);
    expect(new FlowTokens().decode(t)).toBeUndefined();
    for (let i = 0; i < t.length; i += 7) {
      const edited = `${t.slice(0, i)}${t[i] === "A" ? "B" : "A"}${t.slice(i + 1)}`;
      expect(tokens.decode(edited)).toBeUndefined();
    }
    expect(tokens.decode(t.slice(0, -2))).toBeUndefined();
    expect(tokens.decode("")).toBeUndefined();
    expect(tokens.decode("abc")).toBeUndefined();
    expect(tokens.decode("not a token!")).toBeUndefined();
    expect(tokens.decode("A".repeat(10_000))).toBeUndefined();
  });

  it("one key reads the tokens of another instance made with it (the cluster's shared key)", () => {
    const key = new Uint8Array(32).fill(9);
    expect(new FlowTokens(key).decode(new FlowTokens(key).encode(flow))).toEqual(flow);
  });

  it("live flows: added, closed; a flow closed already is not added again (a late message in a shard)", () => {
    const live = new LiveFlows();
    live.add(flow);
    expect(live.has({ ...flow })).toBe(true);
    expect(live.has({ ...flow, connectionId: 1 })).toBe(false);
    live.closed(flow);
    expect(live.has(flow)).toBe(false);
    live.add(flow);
    expect(live.has(flow)).toBe(false);
    expect(live.size).toBe(0);
    expect(sameFlow(flow, { ...flow })).toBe(true);
    expect(flowOf(UDP)).toBeUndefined();
  });
});
