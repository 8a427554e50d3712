// The main-thread handle of a server transaction that lives in a shard: a
// reply the state no longer allows is refused (the promise rejects for who
// awaits it), and a refusal nobody awaits is not an unhandled rejection —
// which would end a Node process. On a virtual clock (ShardedBed).
import { TransactionError } from "@siptm/core";
import { expect, it } from "vitest";
import type { ServerTransactionLike } from "../src/api.js";
import { ShardedBed } from "../src/testing.js";

it("a refused reply rejects for an awaiting caller, and is no unhandled rejection when not awaited", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    const bed = new ShardedBed();
    const uas = await bed.engine({ address: "127.0.0.2" });
    let tx: ServerTransactionLike | undefined;
    uas.onRequest = (t) => {
      tx = t;
      void t.reply(486);
    };
    const peer = bed.peer("127.0.0.9");
    peer.send(
      "INVITE sip:bob@127.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKrefused\r\n" +
        "Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.9>;tag=a\r\nTo: <sip:bob@127.0.0.2>\r\n" +
        "Call-ID: refused-reply\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
      uas.hop(),
    );
    await bed.flush();
    expect(peer.messages().map((m) => (m.isRequest ? m.method : m.status))).toEqual([486]);
    // After the final: a provisional is refused. Not awaited (a handler racing a CANCEL does this)…
    tx!.reply(180);
    // …and awaited.
    await expect(tx!.reply(180)).rejects.toBeInstanceOf(TransactionError);
    await bed.flush();
    await new Promise((r) => setImmediate(r));
    expect(unhandled).toEqual([]);
    expect(peer.messages().map((m) => (m.isRequest ? m.method : m.status))).toEqual([486]);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
