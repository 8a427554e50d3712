// The in-memory registrar (RFC 3261 §10.3), in process on a fake clock, and
// the `default` route's REGISTER / OPTIONS / lookup paths through a real server.
import { parseMessage, type SipRequest } from "@siptm/core";
import { afterAll, describe, expect, it } from "vitest";
import { canonicalAor, Registrar } from "../src/registrar.js";
import {
  call,
  callDave,
  daveAndCaller,
  killAll,
  register as registerAt,
  SERVER_TIMERS,
  serve,
  testEngine,
  toServer,
} from "./helpers.js";

let cseq = 0;
function register(
  contacts: string[],
  opts: { expires?: number; callId?: string; cseq?: number; to?: string } = {},
) {
  const lines = [
    "REGISTER sip:127.0.0.1 SIP/2.0",
    `Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKreg${++cseq}`,
    "Max-Forwards: 70",
    "From: <sip:alice@example.com>;tag=abc",
    `To: ${opts.to ?? "<sip:alice@Example.COM:5060;transport=udp>"}`,
    `Call-ID: ${opts.callId ?? "reg-call-1"}`,
    `CSeq: ${opts.cseq ?? cseq} REGISTER`,
    ...contacts.map((c) => `Contact: ${c}`),
    ...(opts.expires === undefined ? [] : [`Expires: ${opts.expires}`]),
    "Content-Length: 0",
    "",
    "",
  ];
  return parseMessage(Buffer.from(lines.join("\r\n"), "latin1")) as SipRequest;
}

function expiresOf(headers: Array<[string, string]>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [, v] of headers) out[/<([^>]+)>/.exec(v)![1]!] = Number(/;expires=(\d+)/.exec(v)![1]);
  return out;
}

describe("Registrar", () => {
  function fresh() {
    const clock = { t: 1_000_000 };
    const reg = new Registrar({ now: () => clock.t, minExpires: 60 });
    return { reg, clock };
  }

  it("canonical AORs drop port, parameters and host case", () => {
    expect(canonicalAor("sip:alice@Example.COM:5060;transport=udp")).toBe("sip:alice@example.com");
    expect(canonicalAor("sips:bob@h.example")).toBe("sip:bob@h.example");
  });

  it("binds contacts and answers 200 with every binding and its expires", () => {
    const { reg } = fresh();
    const out = reg.register(
      register(["<sip:alice@10.0.0.1:5070>;expires=120", "<sip:alice@10.0.0.2>;q=0.5"], { expires: 300 }),
    );
    expect(out.status).toBe(200);
    expect(out.aor).toBe("sip:alice@example.com");
    expect(expiresOf(out.headers)).toEqual({ "sip:alice@10.0.0.1:5070": 120, "sip:alice@10.0.0.2": 300 });
    const found = reg.lookup("sip:alice@example.com");
    expect(found.map((b) => b.uri)).toEqual(["sip:alice@10.0.0.1:5070", "sip:alice@10.0.0.2"]);
    expect(found[1]!.q).toBe(0.5);
  });

  it("a REGISTER without Contact is a query", () => {
    const { reg } = fresh();
    reg.register(register(["<sip:alice@10.0.0.1>"]));
    const q = reg.register(register([]));
    expect(q.status).toBe(200);
    expect(q.headers).toHaveLength(1);
  });

  it("a replica takes an AOR's bindings from copyOf (relative expiry: another clock) and drops it when empty", () => {
    const { reg, clock } = fresh();
    reg.register(register(["<sip:alice@10.0.0.1>;q=0.5", "<sip:alice@10.0.0.2>"], { expires: 100 }));
    const replicaClock = { t: 5 };
    const replica = new Registrar({ now: () => replicaClock.t });
    replica.replace(structuredClone(reg.copyOf("sip:alice@example.com")));
    expect(replica.lookup("sip:alice@example.com").map((b) => b.uri)).toEqual([
      "sip:alice@10.0.0.2",
      "sip:alice@10.0.0.1",
    ]);
    expect(replica.expiresIn(replica.lookup("sip:alice@example.com")[0]!)).toBe(100);
    replicaClock.t += 100_001;
    expect(replica.lookup("sip:alice@example.com")).toEqual([]);
    clock.t += 1000;
    replica.replace(reg.copyOf("sip:alice@example.com"));
    expect(replica.lookup("sip:alice@example.com")).toHaveLength(2);
    reg.register(register(["*"], { expires: 0, cseq: 1000 }));
    replica.replace(reg.copyOf("sip:alice@example.com"));
    expect(replica.lookup("sip:alice@example.com")).toEqual([]);
    expect(replica.size).toBe(0);
  });

  it("refreshes with a higher CSeq, refuses an out-of-order one, removes with expires=0", () => {
    const { reg, clock } = fresh();
    reg.register(register(["<sip:alice@10.0.0.1>"], { cseq: 10, expires: 100 }));
    clock.t += 50_000;
    const refresh = reg.register(register(["<sip:alice@10.0.0.1>"], { cseq: 11, expires: 100 }));
    expect(expiresOf(refresh.headers)["sip:alice@10.0.0.1"]).toBe(100);
    expect(reg.register(register(["<sip:alice@10.0.0.1>"], { cseq: 11 })).status).toBe(500);
    const removed = reg.register(register(["<sip:alice@10.0.0.1>;expires=0"], { cseq: 12 }));
    expect(removed.status).toBe(200);
    expect(removed.headers).toEqual([]);
    expect(reg.lookup("sip:alice@example.com")).toEqual([]);
  });

  it("Contact: * with Expires: 0 removes everything; otherwise 400", () => {
    const { reg } = fresh();
    reg.register(register(["<sip:alice@10.0.0.1>", "<sip:alice@10.0.0.2>"], { cseq: 1 }));
    expect(reg.register(register(["*"], { cseq: 2 })).status).toBe(400);
    expect(reg.register(register(["*", "<sip:alice@10.0.0.3>"], { cseq: 3, expires: 0 })).status).toBe(400);
    expect(reg.register(register(["*"], { cseq: 4, expires: 0 })).status).toBe(200);
    expect(reg.lookup("sip:alice@example.com")).toEqual([]);
  });

  it("423 with Min-Expires for a too-brief interval; a bad Contact is 400", () => {
    const { reg } = fresh();
    const brief = reg.register(register(["<sip:alice@10.0.0.1>;expires=5"]));
    expect(brief.status).toBe(423);
    expect(brief.headers).toEqual([["Min-Expires", "60"]]);
    expect(reg.register(register(["<sip:alice@10.0.0.1"])).status).toBe(400);
  });

  it("a Contact that is not a SIP or SIPS URI is refused with 400, and nothing of the request is bound", () => {
    const { reg } = fresh();
    for (const bad of ["<http://example.invalid/x>", "<mailto:alice@example.com>"]) {
      const out = reg.register(register(["<sip:alice@10.0.0.1>", bad]));
      expect(out).toMatchObject({ status: 400, reason: "Unsupported Contact URI Scheme" });
    }
    expect(reg.lookup("sip:alice@example.com")).toEqual([]);
    expect(reg.register(register(["<sips:alice@10.0.0.1>"])).status).toBe(200);
  });

  it("expired bindings vanish on read, and the sweep drops the rest", () => {
    const { reg, clock } = fresh();
    reg.register(register(["<sip:alice@10.0.0.1>"], { expires: 60 }));
    reg.register(register(["<sip:bob@10.0.0.9>"], { expires: 60, to: "<sip:bob@example.com>", callId: "b" }));
    expect(reg.size).toBe(2);
    clock.t += 61_000;
    expect(reg.lookup("sip:alice@example.com")).toEqual([]);
    expect(reg.size).toBe(1);
    expect(reg.sweep()).toBe(1);
    expect(reg.size).toBe(0);
  });
});

describe("siptm serve --route default", () => {
  afterAll(killAll);

  it("--min-expires: a registration for 15 s (sipsak -U) gets 423 Min-Expires 60 by default, 200 with --min-expires 10 (RFC 3261 §10.3)", async () => {
    const [strict, lenient] = await Promise.all([
      serve(["--route", "default", "--workers", "0", ...SERVER_TIMERS]),
      serve(["--route", "default", "--workers", "2", "--min-expires", "10", ...SERVER_TIMERS]),
    ]);
    const ua = await testEngine();
    try {
      const uaPort = ua.transportFor("UDP")!.localPort;
      const reg = (port: number, expires: number) =>
        registerAt(
          ua,
          { udp: port },
          "sip:dave@127.0.0.1",
          `<sip:dave@127.0.0.1:${uaPort}>;expires=${expires}`,
        );
      const brief = await reg(strict.udp, 15);
      expect(brief.status).toBe(423);
      expect(brief.response?.header("min-expires")).toBe("60");
      expect((await reg(lenient.udp, 15)).status).toBe(200);
      const tooBrief = await reg(lenient.udp, 5);
      expect(tooBrief.status).toBe(423);
      expect(tooBrief.response?.header("min-expires")).toBe("10");
    } finally {
      await ua.close();
    }
  });

  it("REGISTER gets 200 with the bindings; OPTIONS to the server gets 200; an unknown user 404", async () => {
    const server = await serve(["--route", "default", ...SERVER_TIMERS]);
    const ua = await testEngine();
    try {
      const uaPort = ua.transportFor("UDP")!.localPort;
      const reg = await registerAt(ua, server, "sip:carol@127.0.0.1", undefined, {
        headers: [
          ["Contact", `<sip:carol@127.0.0.1:${uaPort}>;expires=600`],
          ["Contact", `<sip:carol@127.0.0.1:${uaPort};transport=tcp>;q=0.4`],
        ],
      });
      expect(reg.status).toBe(200);
      const contacts = reg.response!.headerValues("contact");
      expect(contacts).toHaveLength(2);
      expect(contacts.join(",")).toContain(`<sip:carol@127.0.0.1:${uaPort}>;expires=600`);
      const dump = await call<Array<{ aor: string; contacts: Array<{ uri: string }> }>>(
        server.rpc,
        "ul.dump",
      );
      expect(dump.map((a) => a.aor)).toEqual(["sip:carol@127.0.0.1"]);
      expect(dump[0]!.contacts).toHaveLength(2);

      const options = await toServer(ua, server, "OPTIONS", {
        uri: `sip:127.0.0.1:${server.udp}`,
        from: "<sip:carol@127.0.0.1>",
        to: `<sip:127.0.0.1:${server.udp}>`,
      }).final;
      expect(options.status).toBe(200);

      const nobody = await toServer(ua, server, "MESSAGE", {
        uri: `sip:nobody@127.0.0.1:${server.udp}`,
        from: "<sip:carol@127.0.0.1>",
        to: "<sip:nobody@127.0.0.1>",
      }).final;
      expect(nobody.status).toBe(404);
    } finally {
      await ua.close();
    }
  });

  it("a call to a registered AOR goes through the proxy: INVITE, 200, the ACK, an in-dialog BYE", async () => {
    const server = await serve(["--route", "default", ...SERVER_TIMERS]);
    const dave = await daveAndCaller();
    const { callee, caller, port } = dave;
    try {
      const reg = await registerAt(callee, server, "sip:dave@127.0.0.1", `<sip:dave@127.0.0.1:${port}>`);
      expect(reg.status).toBe(200);
      await callDave(dave, server);
    } finally {
      await Promise.all([callee.close(), caller.close()]);
    }
  });
});
