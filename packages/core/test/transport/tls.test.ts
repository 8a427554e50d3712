// SIP over TLS (RFC 3261 §26.3.1): the TCP transport's framing and limits over TLS,
// the peer certificate check of RFC 5922 §7, client certificates, pins, reloads,
// and what a broken or slow handshake costs (counted, the server keeps serving).
import { readFileSync } from "node:fs";
import * as net from "node:net";
import * as tls from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { TransportSendError } from "../../src/transport/errors.js";
import type { TcpTransport } from "../../src/transport/tcp.js";
import {
  checkSipServerIdentity,
  fingerprintOf,
  normalizeFingerprint,
  sipIdentities,
  type TlsOptions,
} from "../../src/transport/tls.js";
import type { Destination, Source } from "../../src/transport/types.js";
import { closeAll, collector, HOST, sipMessage, sockets, transport } from "./tcp-helpers.js";

const dir = new URL("../fixtures/tls/", import.meta.url);
const pem = (name: string): Buffer => readFileSync(new URL(name, dir));
const CA = pem("ca.pem");
const cred = (name: string): Pick<TlsOptions, "cert" | "key"> => ({
  cert: pem(`${name}.pem`),
  key: pem(`${name}.key`),
});

afterEach(closeAll);

/** A TLS transport presenting `name`'s certificate, trusting the test CA. */
function tlsTransport(name: string, extra: Partial<TlsOptions> = {}, sink = collector()) {
  return transport({ sink, tls: { ...cred(name), ca: CA, ...extra } }).then((t) => ({ t, sink }));
}

function errorTarget(): { errors: Error[]; transportError(err: Error): void } {
  const errors: Error[] = [];
  return { errors, transportError: (err) => errors.push(err) };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

/** A TLS client socket to `t`, trusting the test CA (optionally presenting a certificate). */
function client(t: TcpTransport, opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: HOST, port: t.localPort, ca: CA, servername: "sip.example.test", ...opts });
    sockets.push(s);
    s.once("secureConnect", () => resolve(s));
    s.once("error", reject);
  });
}

/** A plain TCP socket to `t` that never starts its TLS handshake (errors ignored, destroyed by closeAll). */
function silentSocket(t: TcpTransport): net.Socket {
  const socket = net.connect({ host: HOST, port: t.localPort });
  sockets.push(socket);
  socket.on("error", () => {});
  return socket;
}

function dest(t: TcpTransport, serverName?: string): Destination {
  return { protocol: "TLS", address: HOST, port: t.localPort, serverName };
}

describe("RFC 5922 §7.1: the SIP identities of a certificate", () => {
  it("takes the sip URIs when there are any, and then ignores the DNS names", () => {
    expect(sipIdentities({ subjectaltname: "URI:sip:a.test, DNS:b.test, IP Address:127.0.0.1" })).toEqual([
      "a.test",
    ]);
  });
  it("takes the DNS names when there is no sip URI (other URIs do not count)", () => {
    expect(sipIdentities({ subjectaltname: "URI:https://x.test/, DNS:B.Test, DNS:c.test" })).toEqual([
      "b.test",
      "c.test",
    ]);
  });
  it("takes the Common Name only when there is no subjectAltName at all", () => {
    expect(sipIdentities({ subject: { CN: "Only.Test" } })).toEqual(["only.test"]);
    expect(sipIdentities({ subjectaltname: "IP Address:10.0.0.1", subject: { CN: "cn.test" } })).toEqual([]);
  });
  it("skips a sip URI with a user part (an AOR is not a domain identity) and drops URI parameters", () => {
    expect(sipIdentities({ subjectaltname: "URI:sip:alice@a.test, URI:sips:b.test;transport=tcp" })).toEqual([
      "b.test",
    ]);
  });
  it("matches case-blind, never by wildcard (§7.2)", () => {
    const cert = { subjectaltname: "DNS:*.example.test" } as tls.PeerCertificate;
    expect(checkSipServerIdentity("sip.example.test", cert)).toBeInstanceOf(Error);
    const exact = { subjectaltname: "DNS:Sip.Example.Test" } as tls.PeerCertificate;
    expect(checkSipServerIdentity("sip.example.test.", exact)).toBeUndefined();
  });
  it("normalises fingerprints written with or without colons, in either case", () => {
    const fp = fingerprintOf(pem("selfsigned.pem"));
    expect(normalizeFingerprint(fp.replaceAll(":", "").toLowerCase())).toBe(fp);
    expect(fp).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });
});

describe("TLS transport, inbound", () => {
  it("frames SIP over TLS, gives the source as TLS, and answers on the same connection", async () => {
    const { t, sink } = await tlsTransport("server");
    expect(t.protocol).toBe("TLS");
    expect(t.reliable).toBe(true);
    const c = await client(t);
    const got: Buffer[] = [];
    c.on("data", (d: Buffer) => got.push(d));
    c.write(sipMessage("tls-in-1"));
    await until(() => sink.received.length === 1);
    const src = sink.received[0]!.source;
    expect(src.protocol).toBe("TLS");
    expect(src.address).toBe(HOST);
    expect(src.port).toBe(c.localPort);
    expect(sink.received[0]!.data.toString("latin1")).toContain("Call-ID: tls-in-1");
    t.send(Buffer.from("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"), {
      protocol: "TLS",
      address: src.address,
      port: src.port,
      connectionId: src.connectionId,
    });
    await until(() => Buffer.concat(got).includes("200 OK"));
    expect(t.stats.tls_connections).toBe(1);
    expect(t.stats.tcp_connections).toBe(0);
  });

  it("answers a CRLFCRLF keep-alive with CRLF over TLS (RFC 5626 §3.5.1)", async () => {
    const { t } = await tlsTransport("server");
    const c = await client(t);
    const got: Buffer[] = [];
    c.on("data", (d: Buffer) => got.push(d));
    c.write("\r\n\r\n");
    await until(() => Buffer.concat(got).equals(Buffer.from("\r\n")));
    expect(t.stats.tcp_pings).toBe(1);
  });

  it("tells the sink once when a connection closes, with the source its messages carried", async () => {
    const closed: Source[] = [];
    const sink = { ...collector(), onConnectionClosed: (s: Source) => closed.push(s) };
    const { t } = await tlsTransport("server", {}, sink);
    const c = await client(t);
    c.write(sipMessage("tls-close"));
    await until(() => sink.received.length === 1);
    const gone = new Promise((r) => c.once("close", r));
    expect(t.closeConnection(sink.received[0]!.source.connectionId!)).toBe(true);
    await gone;
    await until(() => closed.length === 1);
    expect(closed[0]).toEqual(sink.received[0]!.source);
    await new Promise((r) => setTimeout(r, 20));
    expect(closed).toHaveLength(1);
    expect(t.connectionCount).toBe(0);
  });

  it("survives garbage on the port: a plain-text SIP request fails its handshake, counted, and the next client is served", async () => {
    const { t, sink } = await tlsTransport("server");
    const raw = net.connect({ host: HOST, port: t.localPort });
    sockets.push(raw);
    const closed = new Promise((r) => raw.once("close", r));
    raw.on("error", () => {});
    raw.write(sipMessage("plain-on-tls"));
    await closed;
    await until(() => t.stats.tls_handshake_failed === 1);
    expect(sink.received).toHaveLength(0);
    const c = await client(t);
    c.write(sipMessage("after-garbage"));
    await until(() => sink.received.length === 1);
  });

  it("abandons a handshake not done within the handshake timeout (counted)", async () => {
    const { t } = await tlsTransport("server", { handshakeTimeoutMs: 50 });
    const raw = silentSocket(t);
    await new Promise((r) => raw.once("close", r));
    await until(() => t.stats.tls_handshake_timeout === 1);
    expect(t.handshakes).toBe(0);
  });

  it("counts handshakes in progress against the connection cap", async () => {
    const sink = collector();
    const t = await transport({ sink, maxConnections: 1, tls: { ...cred("server"), ca: CA } });
    silentSocket(t); // holds the one connection the cap allows, in its handshake
    await until(() => t.handshakes === 1);
    const second = silentSocket(t);
    await new Promise((r) => second.once("close", r));
    expect(t.stats.tcp_conn_rejected).toBe(1);
  });

  it("caps handshakes and connections per source IP together (--tcp-max-per-ip): the one over it is closed at once, counted", async () => {
    const sink = collector();
    const t = await transport({ sink, maxConnectionsPerIp: 2, tls: { ...cred("server"), ca: CA } });
    const done = await client(t);
    done.write(sipMessage("per-ip-1"));
    await until(() => sink.received.length === 1);
    const pending = silentSocket(t);
    await until(() => t.handshakes === 1);
    const third = silentSocket(t);
    await new Promise((r) => third.once("close", r));
    expect(t.stats.tcp_conn_rejected_ip).toBe(1);
    // The pending handshake gone, there is room again.
    pending.destroy();
    await until(() => t.handshakes === 0);
    const fourth = await client(t);
    fourth.write(sipMessage("per-ip-2"));
    await until(() => sink.received.length === 2);
  });

  it("with client certificates required: one without is refused (counted), one from the CA is served", async () => {
    const { t, sink } = await tlsTransport("server", { clientCert: "required" });
    await expect(
      (async () => {
        const c = await client(t);
        // TLS 1.3: the refusal arrives after the client thinks it is connected.
        await new Promise((resolve, reject) => {
          c.once("error", reject);
          c.once("close", resolve);
          c.write(sipMessage("no-cert"));
        });
      })(),
    ).rejects.toThrow();
    await until(() => t.stats.tls_handshake_failed === 1);
    const c = await client(t, cred("client"));
    c.write(sipMessage("with-cert"));
    await until(() => sink.received.length === 1);
    expect(sink.received[0]!.data.toString("latin1")).toContain("with-cert");
  });

  it("reloads its certificate: new handshakes see the new one, a live connection keeps working", async () => {
    const { t, sink } = await tlsTransport("server");
    const old = await client(t);
    expect(old.getPeerCertificate().subject.CN).toBe("sip.example.test");
    t.reloadCertificates(cred("dnsonly"));
    const fresh = await client(t, { servername: "dns.example.test" });
    expect(fresh.getPeerCertificate().subject.CN).toBe("ignored.test");
    old.write(sipMessage("old-conn"));
    await until(() => sink.received.length === 1);
    expect(() => t.reloadCertificates({ cert: "not a certificate", key: "nor a key" })).toThrow();
    const again = await client(t, { servername: "dns.example.test" });
    expect(again.getPeerCertificate().subject.CN).toBe("ignored.test");
  });
});

describe("TLS transport, outbound: the peer's certificate (RFC 3261 §26.3.1, RFC 5922 §7.2)", () => {
  async function pair(serverCert: string, clientTls: Partial<TlsOptions> = {}) {
    const server = await tlsTransport(serverCert);
    const from = await tlsTransport("client", clientTls);
    return { server, from };
  }

  it("connects to a peer whose sip URI names the domain, and sends (SNI is the domain)", async () => {
    let sni: string | undefined;
    const { server, from } = await pair("server");
    (server.t as unknown as { server: tls.Server }).server.prependListener(
      "secureConnection",
      (s: tls.TLSSocket) => {
        sni = (s as tls.TLSSocket & { servername?: string }).servername;
      },
    );
    const target = errorTarget();
    from.t.send(sipMessage("out-ok"), dest(server.t, "sip.example.test"), target);
    await until(() => server.sink.received.length === 1);
    expect(target.errors).toEqual([]);
    expect(sni).toBe("sip.example.test");
    expect(from.t.stats.tls_verify_failed).toBe(0);
    expect(from.t.stats.tls_connections).toBe(1);
  });

  it("refuses a certificate for another domain: the send fails as a transport error, counted, nothing written", async () => {
    const { server, from } = await pair("server");
    const target = errorTarget();
    from.t.send(sipMessage("out-wrong"), dest(server.t, "wrong.example.test"), target);
    await until(() => target.errors.length === 1);
    expect(target.errors[0]).toBeInstanceOf(TransportSendError);
    expect((target.errors[0] as TransportSendError).code).toBe("ECERT");
    expect(from.t.stats.tls_verify_failed).toBe(1);
    expect(server.sink.received).toHaveLength(0);
  });

  it("ignores the DNS names of a certificate that has a sip URI for another domain (§7.1)", async () => {
    const { server, from } = await pair("urimismatch");
    const target = errorTarget();
    from.t.send(sipMessage("out-uri"), dest(server.t, "sip.example.test"), target);
    await until(() => target.errors.length === 1);
    expect(from.t.stats.tls_verify_failed).toBe(1);
  });

  it("accepts a DNS name when the certificate has no sip URI", async () => {
    const { server, from } = await pair("dnsonly");
    const target = errorTarget();
    from.t.send(sipMessage("out-dns"), dest(server.t, "dns.example.test"), target);
    await until(() => server.sink.received.length === 1);
    expect(target.errors).toEqual([]);
  });

  it("checks an IP-literal target against the certificate's IP address", async () => {
    const { server, from } = await pair("server");
    from.t.send(sipMessage("out-ip"), dest(server.t), errorTarget());
    await until(() => server.sink.received.length === 1);
  });

  it("refuses a certificate outside the CA set; accepts it when pinned, or when verification is off", async () => {
    const { server, from } = await pair("selfsigned");
    const target = errorTarget();
    from.t.send(sipMessage("out-self"), dest(server.t, "pinned.example.test"), target);
    await until(() => target.errors.length === 1);
    expect(String(target.errors[0]!.message)).toContain("not trusted");

    const pinned = await tlsTransport("client", { pins: [fingerprintOf(pem("selfsigned.pem"))] });
    pinned.t.send(sipMessage("out-pinned"), dest(server.t, "pinned.example.test"), errorTarget());
    await until(() => server.sink.received.length === 1);

    const lab = await tlsTransport("client", { verify: "insecure" });
    lab.t.send(sipMessage("out-insecure"), dest(server.t, "anything.test"), errorTarget());
    await until(() => server.sink.received.length === 2);
  });

  it("a peer that refuses our client certificate after the handshake (TLS 1.3) fails the sends at once, counted", async () => {
    const server = await tlsTransport("server", { clientCert: "required" });
    // We present a certificate outside the peer's CA set; we trust the peer.
    const from = await tlsTransport("selfsigned");
    const target = errorTarget();
    from.t.send(sipMessage("refused-cert"), dest(server.t, "sip.example.test"), target);
    await until(() => target.errors.length === 1);
    expect(target.errors[0]).toBeInstanceOf(TransportSendError);
    expect(from.t.stats.tls_handshake_failed).toBe(1);
    expect(server.t.stats.tls_handshake_failed).toBe(1);
    expect(server.sink.received).toHaveLength(0);
  });

  it("reuses the connection for the next request to the same peer", async () => {
    const { server, from } = await pair("server");
    from.t.send(sipMessage("reuse-1"), dest(server.t, "sip.example.test"), errorTarget());
    from.t.send(sipMessage("reuse-2"), dest(server.t, "sip.example.test"), errorTarget());
    await until(() => server.sink.received.length === 2);
    expect(from.t.connectionCount).toBe(1);
    expect(server.sink.received[0]!.source.connectionId).toBe(server.sink.received[1]!.source.connectionId);
  });
});

describe("RFC 5923 connection reuse on TLS (Via alias)", () => {
  async function aliased(clientCert: TlsOptions["clientCert"], present: boolean) {
    const { t, sink } = await tlsTransport("server", { clientCert });
    const c = await client(t, present ? cred("client") : {});
    const got: Buffer[] = [];
    c.on("data", (d: Buffer) => got.push(d));
    c.write(sipMessage("alias-1"));
    await until(() => sink.received.length === 1);
    return { t, sink, c, got, id: sink.received[0]!.source.connectionId! };
  }

  it("a peer whose certificate names its sent-by gets requests to it on its own connection", async () => {
    const { t, got, id } = await aliased("optional", true);
    expect(t.alias(id, "client.example.test", 5071)).toBe(true);
    const target = errorTarget();
    t.send(
      sipMessage("to-alias"),
      { protocol: "TLS", address: "192.0.2.7", port: 5071, serverName: "client.example.test" },
      target,
    );
    await until(() => Buffer.concat(got).includes("to-alias"));
    expect(target.errors).toEqual([]);
    expect(t.connectionCount).toBe(1);
  });

  it("is refused for a name the certificate does not show, without a client certificate, and on plain TCP", async () => {
    const withCert = await aliased("optional", true);
    expect(withCert.t.alias(withCert.id, "carrier.example.test", 5061)).toBe(false);
    const noCert = await aliased("off", false);
    expect(noCert.t.alias(noCert.id, "client.example.test", 5061)).toBe(false);
    const sink = collector();
    const tcp = await transport({ sink });
    const raw = net.connect({ host: HOST, port: tcp.localPort });
    sockets.push(raw);
    raw.write(sipMessage("tcp-alias"));
    await until(() => sink.received.length === 1);
    expect(tcp.alias(sink.received[0]!.source.connectionId!, "127.0.0.1", 5060)).toBe(false);
  });
});
