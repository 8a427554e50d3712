/**
 * Built-in route `uas`: the server answers every request itself.
 * INVITE → 180 Ringing, then --answer-code (default 200) after
 * --answer-after ms (default 0: at once; "never": rings until cancelled, or
 * until answered with tm.reply). The delay runs on the shared timer wheel,
 * not one setTimeout per call. Every other request → 200. The ACK of a 2xx
 * reaches `events.onAck`; a CANCEL gets its 200 and the INVITE its 487 from
 * the engine.
 */
import { type ServerTransactionHandle, TransactionError } from "@siptm/core";
import { ALLOW, type RouteContext, type RouteHandlers } from "../route.js";

export default function uas(ctx: RouteContext): RouteHandlers {
  const { answerCode, answerAfter } = ctx.config;
  const log = ctx.logger;

  function answer(tx: ServerTransactionHandle, contact: Array<[string, string]>): void {
    if (tx.finalStatus || tx.cancelled || tx.terminated) return;
    try {
      tx.reply(answerCode, { headers: contact });
    } catch (err) {
      // Cancelled or ended in the meantime: nothing left to answer.
      if (!(err instanceof TransactionError)) throw err;
    }
  }

  const when =
    answerAfter === "never"
      ? "never (rings until cancelled or tm.reply)"
      : answerAfter === 0
        ? "at once"
        : `after ${answerAfter} ms`;

  return {
    description: `uas: INVITE → 180, then ${answerCode} ${when}; other requests → 200`,
    onRequest(tx) {
      if (tx.method !== "INVITE") {
        tx.reply(200, tx.method === "OPTIONS" ? { headers: [["Allow", ALLOW]] } : undefined);
        return;
      }
      const contact: Array<[string, string]> = [["Contact", ctx.contactFor(tx.source)]];
      tx.events.onAck = () => log.debug({ tx: tx.id }, "ACK for the 2xx");
      tx.reply(180, { headers: contact });
      if (answerAfter === "never") return;
      if (answerAfter === 0) {
        answer(tx, contact);
        return;
      }
      const cancelTimer = ctx.after(answerAfter, () => answer(tx, contact));
      tx.events.onCancel = () => cancelTimer();
      tx.events.onTerminated = () => cancelTimer();
    },
  };
}
