// The public surface of @siptm/core is what README.md documents ("The public
// API"), and nothing more: the actors, the table, the timers and the engine's
// private context are reached only through @siptm/core/internal.
import * as net from "node:net";
import { describe, expect, it } from "vitest";
import * as core from "../src/index.js";
import * as internal from "../src/internal.js";
import { Testbed } from "../src/testing.js";

const PUBLIC = [
  "ClientTransactionHandle",
  "DigestAuth",
  "Engine",
  "MemoryNetwork",
  "MemoryNonceCounts",
  "RealClock",
  "RefError",
  "ResolveError",
  "Resolver",
  "ServerTransactionHandle",
  "SipParseError",
  "StreamFramer",
  "TransactionError",
  "TransportBindError",
  "TransportSendError",
  "UsersFileError",
  "VirtualClock",
  "buildRequest",
  "buildResponse",
  "createTcpTransport",
  "createUdpTransport",
  "defaultTimers",
  "digestHa1",
  "forwardRequestStateless",
  "forwardResponseStateless",
  "fullParse",
  "isRefusal",
  "newBranch",
  "newCallId",
  "newTag",
  "nodeDns",
  "parseMessage",
  "parseNameAddr",
  "parseUri",
  "parseUsers",
  "reasonPhrase",
  "relay",
  "uriEquals",
  "uriOfNameAddr",
  "uriParam",
];

/** What the engine once had in public, and the actors and the proxy now reach through its private context. */
const INTERNAL_MEMBERS = [
  "send",
  "armTimer",
  "cancelTimer",
  "leaveIndexes",
  "freed",
  "startCancel",
  "table",
  "observers",
  "report",
  "safe",
  "startClient",
  "newBranch",
  "branchCookie",
  "relayedAck",
  "withTransaction",
  "sendStateless",
  "viaFor",
  "ownUri",
  "resolveNextHop",
];

describe("public API", () => {
  it("exports exactly the documented names; the actors, table and timers are internal", () => {
    expect(Object.keys(core).sort()).toEqual(PUBLIC);
    for (const name of [
      "InviteClientTransaction",
      "InviteServerTransaction",
      "NonInviteClientTransaction",
      "NonInviteServerTransaction",
      "TransactionTable",
      "TimerService",
      "internals",
      "serverKey",
    ]) {
      expect(core).not.toHaveProperty(name);
      expect(internal).toHaveProperty(name);
    }
    expect(core).not.toHaveProperty("BRANCH_MAGIC_COOKIE");
    // One name for the magic cookie (RFC 3261 §8.1.1.7), internal.
    expect(internal.BRANCH_COOKIE).toBe("z9hG4bK");
  });

  it("an Engine has no internal member in public, and its counters cannot be replaced", () => {
    const engine = new core.Engine();
    for (const m of INTERNAL_MEMBERS) expect(m in engine, m).toBe(false);
    const stats = Object.getOwnPropertyDescriptor(core.Engine.prototype, "stats");
    expect(stats?.get).toBeTypeOf("function");
    expect(stats?.set).toBeUndefined();
    // The context is reached, by siptm's own packages, through the internal entry only.
    expect(internal.internals(engine).stats).toBe(engine.stats);
    expect(internal.internals(engine).table.size).toBe(0);
  });
});

describe("engine.listen()", () => {
  it("makes UDP and TCP sockets with the engine as their sink; a request over each is answered", async () => {
    const uas = new core.Engine({ onRequest: (tx) => tx.reply(200) });
    const uac = new core.Engine();
    try {
      const bound = await uas.listen({
        udp: { address: "127.0.0.1", port: 0 },
        tcp: { address: "127.0.0.1", port: 0 },
      });
      expect(bound.map((b) => b.protocol)).toEqual(["UDP", "TCP"]);
      expect(bound.every((b) => b.address === "127.0.0.1" && b.port > 0)).toBe(true);
      expect(uas.transportFor("UDP")?.localPort).toBe(bound[0]!.port);
      await uac.listen({
        udp: [{ address: "127.0.0.1", port: 0 }],
        tcp: [{ address: "127.0.0.1", port: 0 }],
      });
      for (const b of bound) {
        const h = uac.request({
          method: "OPTIONS",
          uri: `sip:uas@127.0.0.1:${b.port}`,
          from: "<sip:uac@127.0.0.1>",
          to: "<sip:uas@127.0.0.1>",
          nextHop: `${b.protocol.toLowerCase()}:127.0.0.1:${b.port}`,
        });
        expect((await h.final).status).toBe(200);
      }
    } finally {
      await Promise.all([uas.close(), uac.close()]);
    }
  });

  it("a socket that cannot bind: the ones made before it are closed, none is added, the error is thrown", async () => {
    const taken = net.createServer();
    await new Promise<void>((ok) => taken.listen(0, "127.0.0.1", ok));
    const port = (taken.address() as net.AddressInfo).port;
    const engine = new core.Engine();
    try {
      await expect(
        engine.listen({ udp: { address: "127.0.0.1", port: 0 }, tcp: { address: "127.0.0.1", port } }),
      ).rejects.toThrow();
      expect(engine.transportFor("UDP")).toBeUndefined();
      expect(engine.transportFor("TCP")).toBeUndefined();
    } finally {
      taken.close();
      await engine.close();
    }
  });
});

describe("replyStateless", () => {
  it("takes the same reply options as every other reply: reason, headers, body, content type, To tag", () => {
    const bed = new Testbed();
    const engine = bed.engine({
      address: "127.0.0.5",
      onRequest: (tx) => {
        engine.replyStateless(tx.request, tx.source, 404, {
          reason: "Nobody Here",
          headers: [["X-Why", "test"]],
          body: "gone",
          contentType: "text/plain",
          toTag: "t-given",
        });
        engine.replyStateless(tx.request, tx.source, 480);
        tx.reply(200);
      },
    });
    const peer = bed.peer("127.0.0.9");
    peer.send(
      "OPTIONS sip:b@127.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKsl1\r\n" +
        "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.9>;tag=f\r\nTo: <sip:b@127.0.0.5>\r\n" +
        "Call-ID: sl-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
      Testbed.hop(engine),
    );
    bed.flush();
    const [first, second] = peer.messages((m) => !m.isRequest);
    if (!first || first.isRequest || !second || second.isRequest) throw new Error("two responses expected");
    expect([first.status, first.reason, first.toTag]).toEqual([404, "Nobody Here", "t-given"]);
    expect(first.header("x-why")).toBe("test");
    expect(first.header("content-type")).toBe("text/plain");
    expect(first.body.toString()).toBe("gone");
    expect(second.status).toBe(480);
    expect(second.toTag).toMatch(/^[0-9a-f]+$/); // ours, made for it (§8.2.6.2)
    bed.advance(64_000);
  });
});
