import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Engine } from "../../src/engine.js";
import type { FinalOutcome } from "../../src/transaction/actor.js";
import type { TlsOptions } from "../../src/transport/tls.js";
import { HOST } from "./tcp-helpers.js";

const dir = new URL("../fixtures/tls/", import.meta.url);
const pem = (name: string): Buffer => readFileSync(new URL(name, dir));
const CA = pem("ca.pem");
const tlsOf = (name: string, extra: Partial<TlsOptions> = {}): TlsOptions => ({
  cert: pem(`${name}.pem`),
  key: pem(`${name}.key`),
  ca: CA,
  ...extra,
});

const engines: Engine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

async function tlsEngine(
  name: string,
  extra: Partial<TlsOptions> = {},
): Promise<{ engine: Engine; port: number }> {
  const engine = new Engine({
    refFaults: "throw",
    onRequest: (tx) => tx.reply(200, { headers: [["X-Came-Over", tx.source.protocol]] }),
  });
  engines.push(engine);
  const [bound] = await engine.listen({ tls: { address: HOST, port: 0, tls: tlsOf(name, extra) } });
  expect(bound!.protocol).toBe("TLS");
  return { engine, port: bound!.port };
}

function finalOf(engine: Engine, uri: string, nextHop?: string): Promise<FinalOutcome> {
  return new Promise((resolve) => {
    engine.request({
      method: "OPTIONS",
      uri,
      from: "<sip:alice@127.0.0.1>",
      to: "<sip:bob@127.0.0.1>",
      ...(nextHop ? { nextHop } : {}),
      onFinal: resolve,
    });
  });
}

describe("the engine over TLS", () => {
  it("sends a sips: request over TLS (§26.2) with Via SIP/2.0/TLS, the peer certificate checked (its IP address here)", async () => {
    const server = await tlsEngine("server");
    const { engine } = await tlsEngine("client");
    let via = "";
    server.engine.onRequest = (tx) => {
      via = tx.request.header("via") ?? "";
      tx.reply(200);
    };
    const final = await finalOf(engine, `sips:bob@${HOST}:${server.port}`);
    expect(final.status).toBe(200);
    expect(via).toMatch(/^SIP\/2\.0\/TLS /);
  });

  it("refuses to send a sips: URI with transport=udp (never in the clear)", async () => {
    const { engine } = await tlsEngine("client");
    expect(() =>
      engine.request({
        method: "OPTIONS",
        uri: `sips:bob@${HOST}:5061;transport=udp`,
        from: "<sip:alice@127.0.0.1>",
        to: "<sip:bob@127.0.0.1>",
      }),
    ).toThrow(/TLS only/);
  });

  it("a certificate that does not verify ends the transaction as a transport error (local 503), counted", async () => {
    const server = await tlsEngine("selfsigned");
    const { engine } = await tlsEngine("client");
    const final = await finalOf(engine, `sips:bob@${HOST}:${server.port}`);
    expect(final.status).toBe(503);
    expect(final.cause).toBe("transport-error");
    expect(engine.snapshot().tls_verify_failed).toBe(1);
    expect(engine.snapshot().transport_errors).toBe(1);
  });

  it("RFC 5923: after a request with Via alias from a peer that proved its name, a request to that peer reuses its connection", async () => {
    const server = await tlsEngine("server", { clientCert: "optional" });
    const { connect } = await import("node:tls");
    const peer = connect({
      host: HOST,
      port: server.port,
      ca: CA,
      servername: "sip.example.test",
      cert: pem("client.pem"),
      key: pem("client.key"),
    });
    let got = "";
    peer.on("data", (d: Buffer) => {
      got += d.toString("latin1");
    });
    await new Promise((r) => peer.once("secureConnect", r));
    try {
      peer.write(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n" +
          "Via: SIP/2.0/TLS client.example.test:5071;branch=z9hG4bK-alias-1;alias\r\n" +
          "From: <sip:carrier@client.example.test>;tag=a1\r\n" +
          "To: <sip:127.0.0.1>\r\n" +
          "Call-ID: alias-1@client.example.test\r\n" +
          "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
      );
      await vi.waitFor(() => expect(got).toContain("SIP/2.0 200 OK"));
      // Nothing listens at client.example.test:5071: only the aliased connection can carry this.
      server.engine.request({
        method: "OPTIONS",
        uri: "sips:client.example.test:5071",
        from: "<sip:siptm@127.0.0.1>",
        to: "<sip:carrier@client.example.test>",
        nextHop: { protocol: "TLS", address: "127.0.0.1", port: 5071, serverName: "client.example.test" },
      });
      await vi.waitFor(() => expect(got).toContain("OPTIONS sips:client.example.test:5071 SIP/2.0"));
      expect(server.engine.snapshot().tls_connections).toBe(1);
    } finally {
      peer.destroy();
    }
  });
});
