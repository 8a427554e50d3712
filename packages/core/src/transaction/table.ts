/**
 * The transaction table: the indexes a message or a command is matched by.
 * Holding a transaction in the table is a named reference ("table"), taken on
 * insert and released on removal — the table never frees anything itself.
 *
 * - byKey: RFC 3261 §17.1.3 (client: branch + CSeq method) and §17.2.3
 *   (server: branch + sent-by + method, ACK folded into INVITE; RFC 2543
 *   fallback for requests without the magic cookie).
 * - byDialog: Call-ID + CSeq number, for Kamailio-style lookups
 *   (tm.cancel callid cseq, tm.reply_callid), merged-request detection
 *   (§8.2.2.2) and the ACK of a 2xx (§13.3.1.4).
 * - byId: the opaque transaction id of the control interface.
 */
import { BRANCH_COOKIE } from "../message/ids.js";
import { flat } from "../message/text.js";
import type { SipRequest } from "../message/types.js";
import type { Transaction } from "./actor.js";

export function clientKey(branch: string, method: string): string {
  return flat(`c\0${branch}\0${method}`);
}

/**
 * §17.2.3 server key of a request. ACK and CANCEL are folded into the INVITE's
 * key when `asInvite` is set (matching an ACK to its INVITE, a CANCEL to the
 * INVITE it cancels, §9.2).
 */
export function serverKey(req: SipRequest, asInvite: boolean): string {
  const method = asInvite ? "INVITE" : req.method === "ACK" ? "INVITE" : req.method;
  const via = req.via;
  const branch = via.branch;
  if (branch !== undefined && branch.length > BRANCH_COOKIE.length && branch.startsWith(BRANCH_COOKIE)) {
    return flat(`s\0${branch}\0${via.host}:${via.port ?? ""}\0${method}`);
  }
  // RFC 2543 fallback (§17.2.3): Request-URI, From tag, Call-ID, CSeq number and top Via.
  // The ACK's To tag is the one of our response, so it is left out of the key.
  return flat(`2\0${req.uri}\0${req.fromTag ?? ""}\0${req.callId}\0${req.cseq.seq}\0${via.raw}\0${method}`);
}

export function dialogKey(callId: string, cseq: number): string {
  return flat(`${callId}\0${cseq}`);
}

export class TransactionTable {
  private readonly byKey = new Map<string, Transaction>();
  /** One transaction (the common case) or several: no array is made for the first. */
  private readonly byDialog = new Map<string, Transaction | Transaction[]>();
  private readonly byId = new Map<string, Transaction>();

  get size(): number {
    return this.byId.size;
  }

  get(key: string): Transaction | undefined {
    return this.byKey.get(key);
  }
  getById(id: string): Transaction | undefined {
    return this.byId.get(id);
  }
  byCallId(callId: string, cseq: number): readonly Transaction[] {
    const v = this.byDialog.get(dialogKey(callId, cseq));
    return v === undefined ? EMPTY : Array.isArray(v) ? v : [v];
  }
  /**
   * byCallId for the receive path: the first transaction of this Call-ID and CSeq number that
   * `match(tx, arg)` accepts. No array is made for the common single one.
   */
  findInDialog<T>(
    callId: string,
    cseq: number,
    match: (tx: Transaction, arg: T) => boolean,
    arg: T,
  ): Transaction | undefined {
    const v = this.byDialog.get(dialogKey(callId, cseq));
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return match(v, arg) ? v : undefined;
    for (const tx of v) if (match(tx, arg)) return tx;
    return undefined;
  }
  has(key: string): boolean {
    return this.byKey.has(key);
  }

  /** Insert into every index; takes the "table" reference. */
  insert(tx: Transaction): void {
    this.byKey.set(tx.key, tx);
    this.byId.set(tx.id, tx);
    // Local non-INVITE requests are never looked up by Call-ID (tm.cancel and tm.reply_callid
    // concern INVITEs and server transactions; merged-request detection concerns servers).
    if (tx.kind !== "nict") {
      tx.dialogKey = dialogKey(tx.callId, tx.cseq);
      const v = this.byDialog.get(tx.dialogKey);
      if (v === undefined) this.byDialog.set(tx.dialogKey, tx);
      else if (Array.isArray(v)) v.push(tx);
      else this.byDialog.set(tx.dialogKey, [v, tx]);
    }
    tx.take("table");
  }

  /** Remove from every index; releases the "table" reference (may free the actor). */
  remove(tx: Transaction): void {
    if (this.byId.get(tx.id) !== tx) return;
    this.byId.delete(tx.id);
    if (this.byKey.get(tx.key) === tx) this.byKey.delete(tx.key);
    if (tx.dialogKey) {
      const v = this.byDialog.get(tx.dialogKey);
      if (v === tx) this.byDialog.delete(tx.dialogKey);
      else if (Array.isArray(v)) {
        const i = v.indexOf(tx);
        if (i >= 0) v.splice(i, 1);
        if (v.length === 1) this.byDialog.set(tx.dialogKey, v[0]!);
        else if (v.length === 0) this.byDialog.delete(tx.dialogKey);
      }
    }
    tx.release("table");
  }

  values(): IterableIterator<Transaction> {
    return this.byId.values();
  }
}

const EMPTY: readonly Transaction[] = Object.freeze([]);
