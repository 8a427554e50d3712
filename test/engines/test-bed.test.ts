// One shape of test bed: the same test, written once against core's `TestBed`
// interface, runs on core's own `Testbed` and on the beds of every engine kind
// (`BED_KINDS`), and the leak check covers each.
// Core's bed from the built package, as @siptm/workers' beds use it: one TestBed type for all three.
import { type TestBed, Testbed } from "@siptm/core/testing";
import { describe, expect, it } from "vitest";
import { BED_KINDS } from "../setup/engines.js";
import { nthRequest, UAS } from "./raw.js";

const options = (n: number) => nthRequest("bed", n, { method: "OPTIONS", fromTag: "fb" });

/** What this test asks of an engine: what the core Engine and a bed's engine have in common. */
interface Answering {
  onRequest: ((tx: { method: string; reply(status: number): unknown }) => void) | undefined;
}

const beds: Array<{ name: string; make: () => TestBed<unknown, { address?: string }> }> = [
  { name: "core Testbed", make: () => new Testbed() },
  ...BED_KINDS.map((k) => ({ name: `${k.name} bed`, make: () => k.make() })),
];

describe.each(beds)("$name", ({ make }) => {
  it("an engine, a peer, time moved: the peer's OPTIONS are answered, retransmissions absorbed, everything freed", async () => {
    const bed = make();
    const uas = (await bed.engine({ address: "127.0.0.1" })) as Answering;
    const seen: string[] = [];
    uas.onRequest = (tx) => {
      seen.push(tx.method);
      tx.reply(200);
    };
    const peer = bed.peer("127.0.0.9");
    for (let n = 0; n < 3; n++) peer.send(options(n), UAS);
    await bed.flush();
    expect(seen).toEqual(["OPTIONS", "OPTIONS", "OPTIONS"]);
    expect(peer.messages((m) => !m.isRequest && m.status === 200)).toHaveLength(3);
    // A retransmission 500 ms later gets the same 200 again, without a new transaction.
    await bed.advance(500);
    peer.send(options(0), UAS);
    await bed.flush();
    expect(seen).toHaveLength(3);
    expect(peer.messages((m) => !m.isRequest && m.status === 200)).toHaveLength(4);
    await bed.settle();
    expect(await bed.leaks()).toEqual([]);
  });
});
