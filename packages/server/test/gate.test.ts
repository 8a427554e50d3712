// The one-thread start gate (gate.ts): before the route is installed a request
// is dropped and a response passes; once open everything reaches the engine;
// with --trace every message in is logged. Refusing new requests at shutdown is
// the engine's own drain, not the gate's (serve-drain.test.ts).
import type { Engine, Source } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { Gate } from "../src/gate.js";
import type { Logger } from "../src/log.js";

const SOURCE: Source = {
  protocol: "UDP",
  address: "127.0.0.9",
  port: 5070,
  localAddress: "127.0.0.1",
  localPort: 5060,
};
const REQUEST = Buffer.from(
  "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bKg1\r\nMax-Forwards: 70\r\n" +
    "From: <sip:a@127.0.0.9>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: g1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
  "latin1",
);
const RESPONSE = Buffer.from(
  "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKg2\r\nFrom: <sip:b@127.0.0.1>;tag=2\r\n" +
    "To: <sip:a@127.0.0.9>;tag=3\r\nCall-ID: g2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
  "latin1",
);

function gate(trace: boolean) {
  const delivered: Buffer[] = [];
  const logged: Array<{ obj: Record<string, unknown>; msg: string }> = [];
  const engine = { onMessage: (data: Buffer) => delivered.push(data) } as unknown as Engine;
  const logger = {
    info: (obj: Record<string, unknown>, msg: string) => logged.push({ obj, msg }),
    debug: () => {},
  } as unknown as Logger;
  return { g: new Gate(engine, logger, trace), delivered, logged };
}

describe("Gate", () => {
  it("drops requests until open, passes responses; then passes everything", () => {
    const { g, delivered, logged } = gate(false);
    g.onMessage(REQUEST, SOURCE);
    g.onMessage(RESPONSE, SOURCE);
    expect(delivered).toEqual([RESPONSE]);
    g.open();
    g.onMessage(REQUEST, SOURCE);
    expect(delivered).toEqual([RESPONSE, REQUEST]);
    expect(logged).toEqual([]);
  });

  it("--trace: every message in is logged, the dropped ones too", () => {
    const { g, logged } = gate(true);
    g.onMessage(REQUEST, SOURCE);
    g.open();
    g.onMessage(REQUEST, SOURCE);
    expect(logged.map((l) => [l.obj.dir, l.obj.peer, l.msg])).toEqual([
      ["in", "127.0.0.9:5070", "<< OPTIONS sip:127.0.0.1 SIP/2.0"],
      ["in", "127.0.0.9:5070", "<< OPTIONS sip:127.0.0.1 SIP/2.0"],
    ]);
  });
});
