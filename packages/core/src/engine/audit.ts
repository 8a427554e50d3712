/**
 * What the engine says of its live transactions (Kamailio's tm.list): every
 * entry names the holders of its transaction, so a leak names who holds it.
 */
import type { Transaction, TxKind, TxState } from "../transaction/actor.js";
import type { TransactionTable } from "../transaction/table.js";

export interface AuditEntry {
  id: string;
  kind: TxKind;
  state: TxState;
  method: string;
  callId: string;
  cseq: number;
  ageMs: number;
  holders: string[];
  timers: string[];
}

/** What `audit()` and `auditPage()` say of one transaction at `now`. */
export function auditEntry(tx: Transaction, now: number): AuditEntry {
  return {
    id: tx.id,
    kind: tx.kind,
    state: tx.state,
    method: tx.method,
    callId: tx.callId,
    cseq: tx.cseq,
    ageMs: now - tx.createdAt,
    holders: tx.refs.holders(),
    timers: tx.armedTimers(),
  };
}

/** Walks of a table kept for their next page. */
const PAGE_WALKS = 4;

/**
 * Pages of the live transactions (and the terminated ones still held), in
 * creation order, by id cursor. Where a walk stopped, the table iterator
 * waits for its next page (a few kept, a shortcut only), so walking a big
 * table costs O(limit) a page.
 */
export class AuditPager {
  private readonly walks = new Map<string, Iterator<Transaction>>();

  constructor(
    private readonly engineId: string,
    private readonly table: TransactionTable,
    private readonly unfreed: ReadonlySet<Transaction>,
  ) {}

  page(
    after: string | undefined,
    limit: number,
    now: number,
  ): { entries: AuditEntry[]; next: string | undefined } {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`page limit ${limit} is not a whole number ≥ 1`);
    const id = this.engineId;
    if (
      after !== undefined &&
      !(after.startsWith(`${id}.`) && /^[0-9a-z]+$/.test(after.slice(id.length + 1)))
    )
      throw new RangeError(
        `cursor ${JSON.stringify(after.slice(0, 80))} is not a transaction id of this engine`,
      );
    // The table's transactions after `after`, in order: where the walk stopped, or read up to there.
    let it = after === undefined ? undefined : this.walks.get(after);
    if (it) this.walks.delete(after!);
    else {
      it = this.table.values();
      if (after !== undefined) {
        let r = it.next();
        while (!r.done && !idAfter(r.value.id, after)) r = it.next();
        if (!r.done) it = prepend(r.value, it);
      }
    }
    const fromTable: Transaction[] = [];
    while (fromTable.length < limit) {
      const r = it.next();
      if (r.done) break;
      fromTable.push(r.value);
    }
    // Terminated ones still held (few: they have left the table) go where their ids are.
    let held: Transaction[] | undefined;
    for (const tx of this.unfreed)
      if (after === undefined || idAfter(tx.id, after)) {
        held ??= [];
        held.push(tx);
      }
    let picked = fromTable;
    let walkGoesOn = fromTable.length === limit;
    if (held) {
      picked = [...fromTable, ...held].sort((a, b) => (idAfter(a.id, b.id) ? 1 : -1)).slice(0, limit);
      // A table entry pushed off the page by held ones is not where the iterator stopped.
      if (picked[picked.length - 1] !== fromTable[fromTable.length - 1]) walkGoesOn = false;
    }
    const full = picked.length === limit;
    const last = picked[picked.length - 1];
    if (full && walkGoesOn && last) {
      this.walks.set(last.id, it);
      if (this.walks.size > PAGE_WALKS) this.walks.delete(this.walks.keys().next().value!);
    }
    const entries = picked.map((tx) => auditEntry(tx, now));
    return { entries, next: full && last ? last.id : undefined };
  }

  clear(): void {
    this.walks.clear();
  }
}

/** Ids of one engine, "<engine id>.<n in base 36>": a longer one is later, ids of one length compare as strings. */
function idAfter(a: string, b: string): boolean {
  return a.length !== b.length ? a.length > b.length : a > b;
}

function* prepend<T>(first: T, rest: Iterator<T>): Iterator<T> {
  yield first;
  for (let r = rest.next(); !r.done; r = rest.next()) yield r.value;
}
