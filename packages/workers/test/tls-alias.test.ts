// RFC 5923 on the sharded engine: the coordinator owns the TLS connections, so it
// grants a peer's Via `alias` itself (the transport checks that the peer's client
// certificate names the sent-by); a request a shard then sends to that peer's
// domain reuses the peer's own connection. And the TLS server name of a shard's
// outbound request reaches the coordinator (RFC 5922 check, SNI).
import { readFileSync } from "node:fs";
import * as tls from "node:tls";
import { afterEach, describe, expect, it, vi } from "vitest";
import { shardedEngine } from "./helpers.js";

const dir = new URL("../../core/test/fixtures/tls/", import.meta.url);
const pem = (name: string): Buffer => readFileSync(new URL(name, dir));
const HOST = "127.0.0.1";
const open: Array<{ close(): Promise<void> }> = [];
const sockets: tls.TLSSocket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(open.splice(0).map((e) => e.close()));
});

describe("sharded engine over TLS", () => {
  it("grants a peer's Via alias (its certificate names the sent-by) and sends a shard's request to that domain on the peer's connection", async () => {
    const engine = await shardedEngine(open, {
      listen: [{ protocol: "TLS", address: HOST, port: 0 }],
      tls: { cert: pem("server.pem"), key: pem("server.key"), ca: pem("ca.pem"), clientCert: "optional" },
      onRequest: (tx) => {
        tx.reply(200).catch(() => {});
      },
    });
    const port = engine.addresses[0]!.port;
    const peer = tls.connect({
      host: HOST,
      port,
      ca: pem("ca.pem"),
      servername: "sip.example.test",
      cert: pem("client.pem"),
      key: pem("client.key"),
    });
    sockets.push(peer);
    let got = "";
    peer.on("data", (d: Buffer) => {
      got += d.toString("latin1");
    });
    await new Promise((r) => peer.once("secureConnect", r));
    peer.write(
      `OPTIONS sip:${HOST} SIP/2.0\r\n` +
        "Via: SIP/2.0/TLS client.example.test:5071;branch=z9hG4bK-shard-alias;alias\r\n" +
        "From: <sip:carrier@client.example.test>;tag=sa1\r\n" +
        `To: <sip:${HOST}>\r\n` +
        "Call-ID: shard-alias@client.example.test\r\n" +
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    );
    await vi.waitFor(() => expect(got).toContain("SIP/2.0 200 OK"));
    // Nothing listens at client.example.test:5071: only the aliased connection can carry it.
    await engine.request({
      method: "OPTIONS",
      uri: "sips:client.example.test:5071",
      from: `<sip:siptm@${HOST}>`,
      to: "<sip:carrier@client.example.test>",
      nextHop: { protocol: "TLS", address: HOST, port: 5071, serverName: "client.example.test" },
    });
    await vi.waitFor(() => expect(got).toContain("OPTIONS sips:client.example.test:5071 SIP/2.0"));
    expect((await engine.stats()).tls_connections).toBe(1);
  });
});
