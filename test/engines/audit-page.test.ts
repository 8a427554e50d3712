// auditPage (tm.list paging): every live transaction once, in pages of at most `limit`, on both
// engines (with 2 shards the walk goes shard by shard), with nothing kept between pages.
import { describe, expect, it } from "vitest";
import { forEachEngine } from "../setup/engines.js";
import { nthRequest, UAS } from "./raw.js";

const invite = (n: number) => nthRequest("page", n, { method: "INVITE", fromTag: "fa", contact: true });

forEachEngine((makeBed, kind) => {
  describe("auditPage", () => {
    it("walks every live transaction once, at most limit a page, next undefined on the last", async () => {
      const bed = makeBed();
      const uas = await bed.engine({ address: "127.0.0.1" });
      const txs: Array<{ reply(status: number): unknown }> = [];
      uas.onRequest = (tx) => {
        txs.push(tx);
        tx.reply(180);
      };
      const peer = bed.peer("127.0.0.9");
      for (let n = 0; n < 25; n++) peer.send(invite(n), UAS);
      await bed.flush();
      expect(txs).toHaveLength(25);
      const all = (await uas.audit()).map((a) => a.id).sort();
      expect(all).toHaveLength(25);

      const seen: string[] = [];
      let after: string | undefined;
      let pages = 0;
      for (;;) {
        const page = await uas.auditPage(after, 4);
        pages++;
        expect(page.entries.length).toBeLessThanOrEqual(4);
        seen.push(...page.entries.map((e) => e.id));
        if (page.next === undefined) break;
        expect(page.next).toBe(page.entries[page.entries.length - 1]!.id);
        after = page.next;
        expect(pages).toBeLessThan(20);
      }
      expect([...seen].sort()).toEqual(all);
      expect(new Set(seen).size).toBe(25);
      // One page for everything.
      const one = await uas.auditPage(undefined, 100);
      expect(one.entries).toHaveLength(25);
      expect(one.next).toBeUndefined();
      // A cursor that is no transaction id of this engine is a RangeError.
      await expect(async () => uas.auditPage("no-such-cursor", 4)).rejects.toThrow(RangeError);
      await expect(async () => uas.auditPage(undefined, 0)).rejects.toThrow(RangeError);

      for (const tx of txs) await tx.reply(486);
      await bed.advance(40_000);
      expect((await uas.stats()).current).toBe(0);
    });

    it("pages stay right while transactions come and go between them; a cursor asked again gives the same page", async () => {
      const bed = makeBed();
      const uas = await bed.engine({ address: "127.0.0.1" });
      const txs = new Map<string, { reply(status: number): unknown }>();
      uas.onRequest = (tx) => {
        txs.set(tx.id, tx);
        tx.reply(180);
      };
      const peer = bed.peer("127.0.0.9");
      for (let n = 0; n < 20; n++) peer.send(invite(n), UAS);
      await bed.flush();
      const first = await uas.auditPage(undefined, 5);
      expect(first.entries).toHaveLength(5);
      const again = await uas.auditPage(undefined, 5);
      expect(again.entries.map((e) => e.id)).toEqual(first.entries.map((e) => e.id));
      const second = await uas.auditPage(first.next, 5);
      const secondAgain = await uas.auditPage(first.next, 5);
      expect(secondAgain.entries.map((e) => e.id)).toEqual(second.entries.map((e) => e.id));
      // Between pages: every transaction not yet listed with an even Call-ID number ends, and new ones come.
      const listed = new Set([...first.entries, ...second.entries].map((e) => e.id));
      const ended = new Set<string>();
      for (const a of await uas.audit())
        if (!listed.has(a.id) && Number(/page-(\d+)@/.exec(a.callId)![1]) % 2 === 0) {
          await txs.get(a.id)!.reply(486);
          ended.add(a.id);
        }
      await bed.advance(40_000);
      const older = new Set(txs.keys()); // every transaction made before the walk's third page
      for (let n = 20; n < 26; n++) peer.send(invite(n), UAS);
      await bed.flush();
      const live = (await uas.audit()).map((a) => a.id);
      expect(live).toHaveLength(20 - ended.size + 6);
      const rest: string[] = [];
      let after = second.next;
      while (after !== undefined) {
        const page = await uas.auditPage(after, 5);
        rest.push(...page.entries.map((e) => e.id));
        after = page.next;
      }
      for (const id of rest) expect(ended.has(id)).toBe(false);
      expect(new Set(rest).size).toBe(rest.length);
      // Everything live since before the walk and not on the first two pages comes once, in creation order.
      expect(rest.filter((id) => older.has(id))).toEqual(
        live.filter((id) => older.has(id) && !listed.has(id)),
      );
      // Those created during the walk come at most once, in creation order: all of them in one
      // table; with shards, those whose shard the walk has passed are not seen (as in a SCAN).
      const fresh = live.filter((id) => !older.has(id));
      const seenFresh = rest.filter((id) => !older.has(id));
      if (kind === "core") expect(seenFresh).toEqual(fresh);
      else expect(seenFresh).toEqual(fresh.filter((id) => seenFresh.includes(id)));

      for (const id of live) await txs.get(id)!.reply(486);
      await bed.advance(40_000);
      expect((await uas.stats()).current).toBe(0);
    });
  });
});
