// Core-only parts of the loss suite: drain() and isLocal() exist only on the
// core Engine. The loss, limits and override tests run on both engines in
// test/engines/loss.test.ts.
import { describe, expect, it } from "vitest";
import { Testbed } from "../../src/testing.js";

describe("draining", () => {
  it("drain(): new requests get 503 + Retry-After, transactions in flight finish", () => {
    const bed = new Testbed();
    const pending: Array<{ reply: (s: number) => void }> = [];
    const uas = bed.engine({ address: "127.0.0.2", onRequest: (tx) => pending.push(tx) });
    const uac = bed.engine({ address: "127.0.0.1" });
    const send = () =>
      uac.request({ method: "INVITE", uri: "sip:b@127.0.0.2", from: "<sip:a@x>", to: "<sip:b@y>" });
    const first = send();
    bed.flush();
    uas.drain(3);
    expect(uas.isDraining).toBe(true);
    const second = send();
    bed.flush();
    expect(second.outcome?.status).toBe(503);
    expect(second.outcome?.response?.header("retry-after")).toBe("3");
    first.cancel();
    bed.advance(300); // the 100 Trying arrives, then the CANCEL goes out and is still honoured
    expect(first.outcome?.status).toBe(487);
    expect(pending).toHaveLength(1);
  });

  it("isLocal knows aliases and the advertised host", () => {
    const bed = new Testbed();
    const e = bed.engine({
      address: "127.0.0.2",
      aliases: ["proxy.example"],
      advertisedHost: "198.51.100.7",
    });
    expect(e.isLocal("127.0.0.2", 5060)).toBe(true);
    expect(e.isLocal("PROXY.example", undefined)).toBe(true);
    expect(e.isLocal("198.51.100.7", 5060)).toBe(true);
    expect(e.isLocal("proxy.example", 5070)).toBe(false);
    expect(e.isLocal("other.example", 5060)).toBe(false);
  });
});
