// Kamailio tm reference-counting regressions, re-created against siptm.
// Each names the Kamailio issue it re-creates; each must end with created ==
// freed (the automatic leak check runs after every test).
// Only the core-only ones are here: they drive a core Engine directly over a
// transport whose every send fails. The others run on both engines in
// test/engines/cancel-regressions.test.ts.
import { describe, expect, it } from "vitest";
import { Testbed } from "../../src/testing.js";
import type { Destination, SendErrorTarget, Transport } from "../../src/transport/types.js";

/** A transport whose every send fails (a route to nowhere, a closed connection). */
class FailingTransport implements Transport {
  readonly reliable = false;
  readonly localAddress = "127.0.0.1";
  readonly localPort = 5060;
  sends = 0;
  constructor(readonly protocol: "UDP" | "TCP" = "UDP") {}
  send(_data: Buffer, _dest: Destination, onError?: SendErrorTarget): void {
    this.sends++;
    onError?.transportError(new Error("EHOSTUNREACH"));
  }
  async close(): Promise<void> {}
}

describe("Kamailio regressions", () => {
  it("#4140 / #1554: a send failure while replying does not leak", () => {
    // An engine of the bed (its clock, the automatic leak check) with no memory transport, only the failing one.
    const bed = new Testbed();
    const failing = new FailingTransport();
    const uas = bed.engine({ protocols: [], onRequest: (tx) => tx.reply(200) });
    uas.addTransport(failing);
    const req =
      "MESSAGE sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKfail1\r\n" +
      "Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: f1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    uas.onMessage(Buffer.from(req, "latin1"), {
      protocol: "UDP",
      address: "127.0.0.9",
      port: 5060,
      localAddress: "127.0.0.1",
      localPort: 5060,
    });
    expect(failing.sends).toBe(1);
    expect(uas.stats.transport_errors).toBe(1);
    expect(uas.stats.created).toBe(1);
    expect(uas.stats.freed).toBe(1);
    expect(uas.armedTimers).toBe(0);
    expect(uas.snapshot().user_errors).toBe(0);
    expect(bed.leaks()).toEqual([]);
  });

  it("#4140: a send failure while sending a request does not leak, and the user hears a 503", () => {
    const bed = new Testbed();
    const uac = bed.engine({ protocols: [] });
    uac.addTransport(new FailingTransport());
    const h = uac.request({ method: "INVITE", uri: "sip:b@127.0.0.9", from: "<sip:a@x>", to: "<sip:b@y>" });
    expect(h.outcome).toMatchObject({ status: 503, cause: "transport-error" });
    expect(uac.stats.created).toBe(1);
    expect(uac.stats.freed).toBe(1);
    expect(uac.armedTimers).toBe(0);
    expect(bed.leaks()).toEqual([]);
  });
});
