// `siptm serve --listen ws:… / wss:…` in one thread and sharded: a browser-like
// client (the `ws` package, subprotocol sip) whose Via and Contact name an
// unresolvable *.invalid host gets its answers over its own WebSocket
// (RFC 7118 §5), registers, and receives a call to its AOR from a UDP caller on
// that same WebSocket; a handshake without the sip subprotocol is refused.
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { forEachEngine, workersFlag } from "../../../test/setup/engines.js";
import { call, fileEngine, type Served, serve, toServer, until } from "./helpers.js";

const FIXTURES = new URL("../../core/test/fixtures/tls/", import.meta.url).pathname;
const CA = readFileSync(`${FIXTURES}ca.pem`);
const clients: WebSocket[] = [];
afterAll(() => {
  for (const c of clients.splice(0)) c.terminate();
});

let uac: import("@siptm/core").Engine;
fileEngine((e) => {
  uac = e;
});

async function wsServe(
  workers: string,
  proto: "ws" | "wss",
  route = "default",
): Promise<Served & { ws: number }> {
  const s = await serve([
    "--workers",
    workers,
    "--route",
    route,
    "--listen",
    `${proto}:127.0.0.1:0`,
    ...(proto === "wss" ? ["--tls-cert", `${FIXTURES}server.pem`, "--tls-key", `${FIXTURES}server.key`] : []),
  ]);
  const port = Number(new RegExp(`listen:\\s+${proto} 127\\.0\\.0\\.1:(\\d+)`).exec(s.stdout())?.[1]);
  return { ...s, ws: port };
}

interface Browser {
  ws: WebSocket;
  got: string[];
}

async function browser(proto: "ws" | "wss", port: number, protocols: string[] = ["sip"]): Promise<Browser> {
  // The fixture certificate names 127.0.0.1 too: the client checks it against the URL's address.
  const ws = new WebSocket(`${proto}://127.0.0.1:${port}/`, protocols, { ca: CA });
  clients.push(ws);
  const got: string[] = [];
  ws.on("message", (d: Buffer) => got.push(d.toString("utf8")));
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return { ws, got };
}

const invalidVia = (branch: string) => `SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK${branch}`;

function request(method: string, callId: string, branch: string, port: number, extra = ""): string {
  return (
    `${method} sip:127.0.0.1:${port};transport=ws SIP/2.0\r\n` +
    `Via: ${invalidVia(branch)}\r\n` +
    "Max-Forwards: 70\r\n" +
    "From: <sip:carol@127.0.0.1>;tag=br1\r\n" +
    "To: <sip:carol@127.0.0.1>\r\n" +
    `Call-ID: ${callId}\r\n` +
    `CSeq: 1 ${method}\r\n` +
    extra +
    "Content-Length: 0\r\n\r\n"
  );
}

type Stats = Record<string, number>;

/** A server on the default route and a browser-like UA registered as carol over its WebSocket (a *.invalid Contact). */
async function registeredBrowser(workers: string, proto: "ws" | "wss", tag: string) {
  const s = await wsServe(workers, proto);
  const b = await browser(proto, s.ws);
  b.ws.send(
    request(
      "REGISTER",
      `ws-${tag}-${proto}-${workers}`,
      `${tag}${proto}${workers}`,
      s.ws,
      "Contact: <sip:k3l5@df7jal23ls0d.invalid;transport=ws>;expires=600\r\n",
    ),
  );
  await until("registered", () => b.got.some((m) => m.startsWith("SIP/2.0 200")));
  return { s, b };
}

/** A MESSAGE from the UDP caller to carol (the browser's AOR) through `s`, once it is on `b`'s WebSocket: the caller's transaction, and the MESSAGE as `b` got it. */
async function messageToBrowser(s: Served, b: Browser, extra: { body?: string; contentType?: string } = {}) {
  const tx = toServer(uac, s, "MESSAGE", {
    uri: `sip:carol@127.0.0.1:${s.udp}`,
    to: "<sip:carol@127.0.0.1>",
    ...extra,
  });
  await until("the MESSAGE on the WebSocket", () => b.got.some((m) => m.startsWith("MESSAGE ")));
  return { tx, msg: b.got.find((m) => m.startsWith("MESSAGE "))! };
}

forEachEngine((_bed, _kind, engine) => {
  const workers = workersFlag(engine);
  for (const proto of ["ws", "wss"] as const)
    describe(`siptm serve --workers ${workers}: ${proto.toUpperCase()}`, () => {
      it("answers OPTIONS on the client's WebSocket; its *.invalid Via untouched but for received/rport", async () => {
        const s = await wsServe(workers, proto, "uas");
        const b = await browser(proto, s.ws);
        b.ws.send(request("OPTIONS", `ws-opt-${proto}-${workers}`, `opt${proto}${workers}`, s.ws));
        await until("the 200", () => b.got.some((m) => m.startsWith("SIP/2.0 200")));
        const res = b.got.find((m) => m.startsWith("SIP/2.0 200"))!;
        expect(res).toContain(`Via: ${invalidVia(`opt${proto}${workers}`)};received=127.0.0.1`);
        const stats = await call<Stats>(s.rpc, "tm.stats");
        expect(stats.ws_connections).toBe(1);
      });

      it("registers a *.invalid Contact, and a call to that AOR from a UDP caller arrives on the WebSocket", async () => {
        const { s, b } = await registeredBrowser(workers, proto, "reg");
        const { tx, msg } = await messageToBrowser(s, b, {
          body: "hello browser",
          contentType: "text/plain",
        });
        expect(msg).toMatch(/^MESSAGE sip:k3l5@df7jal23ls0d\.invalid;transport=ws SIP\/2\.0\r\n/);
        expect(msg).toMatch(new RegExp(`Via: SIP/2\\.0/${proto.toUpperCase()} `));
        // Answer it as the browser would: the 200 goes back to the caller through the server.
        const vias = msg.split("\r\n").filter((l) => /^Via:/i.test(l));
        const head = msg.split("\r\n\r\n")[0]!.split("\r\n");
        const pick = (name: string) =>
          head.find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))!;
        b.ws.send(
          [
            "SIP/2.0 200 OK",
            ...vias,
            pick("From"),
            `${pick("To")};tag=brw`,
            pick("Call-ID"),
            pick("CSeq"),
            "Content-Length: 0",
            "",
            "",
          ].join("\r\n"),
        );
        const final = await tx.final;
        expect(final.status).toBe(200);
      });

      it("a request relayed to a browser whose WebSocket then closes fails at once (a local 503, sent upstream as 500), not at Timer F", async () => {
        const { s, b } = await registeredBrowser(workers, proto, "gone");
        const { tx } = await messageToBrowser(s, b);
        b.ws.terminate();
        const final = await tx.final;
        // The branch's local 503 (transport error); a proxy does not pass a 503 upstream (RFC 3261
        // §16.7 step 6): 500. At Timer F it would be a 408 instead, long after the caller's own timeout.
        expect(final.status).toBe(500);
      });

      it("refuses a WebSocket handshake without the sip subprotocol (RFC 7118 §4), counted", async () => {
        const s = await wsServe(workers, proto, "uas");
        await expect(browser(proto, s.ws, [])).rejects.toThrow(/400/);
        const stats = await call<Stats>(s.rpc, "tm.stats");
        expect(stats.ws_handshake_rejected).toBe(1);
      });
    });
});
