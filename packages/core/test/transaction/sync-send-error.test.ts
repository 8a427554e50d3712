// A send that fails synchronously (the engine has no transport for the
// destination's protocol: TxContext.send reports it before returning) ends
// the transaction inside the step that sent. The step must not then count the
// terminated actor as waiting or settled: those counters feed
// Engine.unsettled, what a drain waits for.
import { describe, expect, it } from "vitest";
import type { Transaction } from "../../src/transaction/actor.js";
import { InviteClientTransaction } from "../../src/transaction/ict.js";
import { InviteServerTransaction } from "../../src/transaction/ist.js";
import { NonInviteServerTransaction } from "../../src/transaction/nist.js";
import { type FakeContext, makeClient, makeServer, responseTo } from "./figure-harness.js";

/** From now on every send of `ctx` fails before it returns. */
function failSends(ctx: FakeContext): void {
  const send = ctx.send.bind(ctx);
  ctx.send = (data, to, onError) => {
    send(data, to, onError);
    onError.transportError(new Error("no transport"));
  };
}

function expectUncounted(ctx: FakeContext, tx: Transaction): void {
  ctx.drain(tx);
  ctx.expectFreed(tx);
  expect(ctx.stats.transport_errors).toBe(1);
  expect(ctx.stats.waiting, "stats.waiting").toBe(0);
  expect(ctx.stats.settled, "stats.settled").toBe(0);
}

describe("a send failing synchronously inside a transition", () => {
  it("ICT: the ACK of a 486 fails: Terminated, neither waiting nor settled", () => {
    const { ctx, tu, tx } = makeClient(InviteClientTransaction, "ict1", "INVITE")("UDP");
    tx.start();
    failSends(ctx);
    tx.receiveResponse(responseTo(tx.sentRequest(), 486));
    expect(tx.state).toBe("terminated");
    expect(ctx.sent.map((s) => s.label)).toEqual(["INVITE", "ACK"]);
    // The order the user hears it in is unchanged: the end first (inside the send), then the response.
    expect(tu.log).toEqual(["terminated", "response 486", "final 486 response"]);
    expectUncounted(ctx, tx);
  });

  for (const [name, status] of [
    ["IST", 486],
    ["IST", 200],
    ["NIST", 200],
  ] as const) {
    it(`${name}: the ${status} fails: Terminated, neither waiting nor settled`, () => {
      const { ctx, tu, tx } =
        name === "IST"
          ? makeServer(InviteServerTransaction, "s1", "INVITE")("UDP")
          : makeServer(NonInviteServerTransaction, "s1", "OPTIONS")("UDP");
      tx.start();
      failSends(ctx);
      tx.reply(status);
      expect(tx.state).toBe("terminated");
      expect(tu.log).toContain("terminated transport-error");
      expectUncounted(ctx, tx);
    });
  }
});
