// One suite of transaction and CANCEL flows over real UDP on 127.0.0.1,
// written once against `TransactionEngine` and run, through `forEachEngine`
// (test/setup/engines.ts), on engine kinds: the core Engine (through
// wrapEngine) and the ShardedEngine, made here on real sockets from the kind.
// The other side of every flow is a plain core Engine on another port. One
// engine under test per suite, so the last test can check that everything the
// suite made was freed; the suite's afterAll checks it too (bounded waits: no
// virtual clock to run past the timers), so no engine of the suite escapes
// the leak check.
import {
  createUdpTransport,
  Engine,
  type RequestOptions,
  type ServerEndCause,
  type ServerTransactionHandle,
  type SipRequest,
  type TimerConfig,
} from "@siptm/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineKind } from "../../../test/setup/engines.js";
import { type ServerTransactionLike, type TransactionEngine, wrapEngine } from "../src/api.js";
import { ShardedEngine } from "../src/coordinator.js";
import { deferred, FAST, FROM, peerEngine, sleep, TO, udp, waitFor } from "./helpers.js";

export interface UnderTest {
  engine: TransactionEngine;
  /** The UDP port it listens on (127.0.0.1). */
  port: number;
}

/** The engine of this kind on an ephemeral UDP port of 127.0.0.1, reference faults thrown. */
async function makeEngine(
  kind: EngineKind,
  opts: { timers: Partial<TimerConfig>; onRequest: (tx: ServerTransactionLike) => void },
): Promise<UnderTest> {
  const { timers, onRequest } = opts;
  if (kind.kind === "core") {
    const engine = new Engine({ timers, refFaults: "throw", onRequest });
    engine.addTransport(await createUdpTransport({ address: "127.0.0.1", port: 0, sink: engine }));
    return { engine: wrapEngine(engine), port: engine.transportFor("UDP")!.localPort };
  }
  const engine = await ShardedEngine.create({
    shards: kind.shards,
    listen: [{ protocol: "UDP", address: "127.0.0.1", port: 0 }],
    engine: { timers, refFaults: "throw" },
    onRequest,
  });
  return { engine, port: engine.addresses[0]!.port };
}

/** Run a reply without letting a refused one (TransactionError) escape as an unhandled error. */
function later(ms: number, fn: () => unknown): void {
  setTimeout(() => {
    Promise.resolve()
      .then(fn)
      .catch(() => {});
  }, ms);
}

/** The suite on one engine kind (inside forEachEngine's describe). */
export function runSuite(kind: EngineKind): void {
  describe("over real UDP", () => {
    let under: UnderTest;
    let peer: Engine;
    let peerPort: number;
    /** What the engine under test does with a new server transaction (set per test). */
    let uas: (tx: ServerTransactionLike) => void = (tx) => later(0, () => tx.reply(200));
    /** What the peer does with a new server transaction (set per test). */
    let peerUas: (tx: ServerTransactionHandle) => void = (tx) => tx.reply(200);

    const toUnder = () => udp(under.port);
    const toPeer = () => udp(peerPort);
    /** A request to sip:bob@127.0.0.1 from the engine under test to the peer. */
    const toPeerRequest = (method: string, extra: Partial<RequestOptions> = {}) =>
      under.engine.request({
        method,
        uri: "sip:bob@127.0.0.1",
        from: FROM,
        to: TO,
        nextHop: toPeer(),
        ...extra,
      });
    /** A request to sip:bob@127.0.0.1 from the peer to the engine under test. */
    const toUnderRequest = (method: string, extra: Partial<RequestOptions> = {}) =>
      peer.request({ method, uri: "sip:bob@127.0.0.1", from: FROM, to: TO, nextHop: toUnder(), ...extra });
    /** An INVITE from the engine under test that the peer keeps ringing, once its 180 is in. */
    const ringingInvite = async () => {
      peerUas = (tx) => tx.reply(180);
      const ringing = deferred();
      const h = await toPeerRequest("INVITE", {
        onProvisional: (r) => {
          if (r.status === 180) ringing.resolve();
        },
      });
      await ringing.promise;
      return h;
    };

    beforeAll(async () => {
      under = await makeEngine(kind, { timers: FAST, onRequest: (tx) => uas(tx) });
      const p = await peerEngine({ onRequest: (tx) => peerUas(tx) });
      peer = p.engine;
      peerPort = p.port;
    });
    afterAll(async () => {
      try {
        // The suite's leak check: whatever ran, everything both engines made is freed in the end.
        if (under) {
          const engine = under.engine;
          await waitFor(
            async () => {
              const s = await engine.stats();
              return s.created === s.freed && s.current === 0;
            },
            15_000,
            "the engine under test to free everything",
          );
          const s = await engine.stats();
          expect([s.ref_faults, s.ctx_created - s.ctx_freed]).toEqual([0, 0]);
          expect(await engine.audit()).toEqual([]);
        }
        if (peer) {
          const p = peer;
          await waitFor(() => p.stats.created === p.stats.freed, 15_000, "the peer to free everything");
          expect(p.stats.ref_faults).toBe(0);
        }
      } finally {
        await under?.engine.close();
        await peer?.close();
      }
    });

    it("OPTIONS → 200, the engine as UAC", async () => {
      peerUas = (tx) => tx.reply(200);
      const handles = await Promise.all(Array.from({ length: 6 }, () => toPeerRequest("OPTIONS")));
      const outcomes = await Promise.all(handles.map((h) => h.final));
      expect(outcomes.map((o) => o.status)).toEqual([200, 200, 200, 200, 200, 200]);
      for (const [i, h] of handles.entries()) {
        expect(outcomes[i]!.response?.callId).toBe(h.callId);
        expect(h.id).not.toBe("");
        expect(h.branch.startsWith("z9hG4bK")).toBe(true);
        expect(h.request.toString("latin1").startsWith("OPTIONS sip:bob@127.0.0.1 SIP/2.0")).toBe(true);
      }
    });

    it("OPTIONS → 200, the engine as UAS", async () => {
      const seen: ServerTransactionLike[] = [];
      uas = (tx) => {
        seen.push(tx);
        later(0, () => tx.reply(200));
      };
      const outcomes = await Promise.all(Array.from({ length: 6 }, () => toUnderRequest("OPTIONS").final));
      expect(outcomes.map((o) => o.status)).toEqual([200, 200, 200, 200, 200, 200]);
      expect(seen.length).toBe(6);
      for (const tx of seen) {
        expect(tx.method).toBe("OPTIONS");
        expect(tx.source.address).toBe("127.0.0.1");
        expect(tx.source.port).toBe(peerPort);
        expect(tx.request.via.received === undefined || tx.request.via.received === "127.0.0.1").toBe(true);
      }
    });

    it("INVITE → 180 → 486 → ACK, the engine as UAS (the ACK confirms its server transaction)", async () => {
      let server: ServerTransactionLike | undefined;
      const ended = deferred<ServerEndCause>();
      uas = (tx) => {
        server = tx;
        tx.events.onTerminated = (cause) => ended.resolve(cause);
        later(0, () => tx.reply(180));
        later(30, () => tx.reply(486));
      };
      const statuses: number[] = [];
      const h = toUnderRequest("INVITE", {
        onResponse: (r) => statuses.push(r.status),
      });
      const outcome = await h.final;
      expect(outcome.status).toBe(486);
      expect(statuses.filter((s) => s !== 100)).toEqual([180, 486]);
      // Confirmed by the ACK, then Timer I: "normal" (without the ACK it would be Timer H, "ack-timeout").
      expect(await ended.promise).toBe("normal");
      expect(server?.finalStatus).toBe(486);
    });

    it("INVITE → 180 → 486 → ACK, the engine as UAC (its ICT sends the ACK)", async () => {
      const ended = deferred<ServerEndCause>();
      peerUas = (tx) => {
        tx.events.onTerminated = (cause) => ended.resolve(cause);
        tx.reply(180);
        later(30, () => tx.reply(486));
      };
      const statuses: number[] = [];
      const h = await toPeerRequest("INVITE", {
        onResponse: (r) => statuses.push(r.status),
      });
      const outcome = await h.final;
      expect(outcome.status).toBe(486);
      expect(outcome.cause).toBe("response");
      expect(outcome.response?.status).toBe(486);
      expect(statuses.filter((s) => s !== 100)).toEqual([180, 486]);
      expect(await ended.promise).toBe("normal");
    });

    it("INVITE → 200, the engine as UAC; its ACK for the 2xx reaches the peer", async () => {
      const acked = deferred<SipRequest>();
      peerUas = (tx) => {
        tx.events.onAck = (a) => acked.resolve(a);
        tx.reply(200, { headers: [["Contact", `<sip:bob@127.0.0.1:${peerPort}>`]] });
      };
      const h = await toPeerRequest("INVITE");
      const outcome = await h.final;
      expect(outcome.status).toBe(200);
      expect(h.answers.length).toBe(1);
      await under.engine.ack2xx(h, outcome.response!);
      const ack = await acked.promise;
      expect(ack.method).toBe("ACK");
      expect(ack.callId).toBe(h.callId);
    });

    it("INVITE → 200, the engine as UAS; the ACK for the 2xx reaches its onAck", async () => {
      const acked = deferred<SipRequest>();
      uas = (tx) => {
        tx.events.onAck = (a) => acked.resolve(a);
        later(0, () => tx.reply(200, { headers: [["Contact", `<sip:bob@127.0.0.1:${under.port}>`]] }));
      };
      const h = toUnderRequest("INVITE");
      const outcome = await h.final;
      expect(outcome.status).toBe(200);
      peer.ack2xx(h, outcome.response!);
      expect((await acked.promise).callId).toBe(h.callId);
    });

    it("INVITE → 180 → cancel by handle → 200 (CANCEL) / 487 → ACK", async () => {
      const h = await ringingInvite();
      expect(await h.cancel()).toBe("sent");
      const outcome = await h.final;
      expect(outcome.status).toBe(487);
      await waitFor(() => h.lastCancel?.kind === "answered", 5000, "the CANCEL's 200");
      expect(h.lastCancel).toMatchObject({ kind: "answered", status: 200 });
    });

    it("cancel by Call-ID and CSeq (tm.cancel)", async () => {
      const h = await ringingInvite();
      expect(await under.engine.cancel(h.callId, h.cseq)).toBe("sent");
      expect((await h.final).status).toBe(487);
      expect(await under.engine.cancel(h.callId, h.cseq)).toBe("none");
      expect(await under.engine.cancel("no-such-call-id", 1)).toBe("none");
    });

    it("cancel before any provisional: pending, sent with the first provisional, then 487", async () => {
      peerUas = (tx) => later(150, () => tx.reply(180));
      const cancels: string[] = [];
      const h = await toPeerRequest("INVITE", {
        onCancel: (p) => cancels.push(p.kind),
      });
      expect(await h.cancel()).toBe("pending");
      const outcome = await h.final;
      expect(outcome.status).toBe(487);
      await waitFor(() => cancels.includes("answered"), 5000, "the CANCEL's answer");
      expect(cancels[0]).toBe("sent");
    });

    it("a UAS handler that never answers; replyById and replyByCallId answer later", async () => {
      const pending: ServerTransactionLike[] = [];
      uas = (tx) => {
        pending.push(tx);
      };
      const options = toUnderRequest("OPTIONS");
      const invite = toUnderRequest("INVITE");
      await waitFor(() => pending.length === 2, 5000, "both requests at the UAS");
      await sleep(60); // let the peer retransmit the OPTIONS at least once: still one transaction
      expect(pending.length).toBe(2);
      const opt = pending.find((t) => t.method === "OPTIONS")!;
      const inv = pending.find((t) => t.method === "INVITE")!;
      await under.engine.replyById(opt.id, 200, { reason: "Fine" });
      await under.engine.replyByCallId(inv.request.callId, inv.request.cseq.seq, 486);
      const [o1, o2] = await Promise.all([options.final, invite.final]);
      expect([o1.status, o1.reason]).toEqual([200, "Fine"]);
      expect(o2.status).toBe(486);
      // A second final on the same transaction is refused; an unknown id too.
      await expect((async () => under.engine.replyById(opt.id, 500))()).rejects.toThrow();
      await expect((async () => under.engine.replyById("nobody.1", 200))()).rejects.toThrow();
    });

    it("stats: created == freed after a bounded wait; audit empty; no reference fault", async () => {
      uas = (tx) => later(0, () => tx.reply(200));
      await waitFor(
        async () => {
          const s = await under.engine.stats();
          return s.created > 0 && s.created === s.freed && s.current === 0;
        },
        15_000,
        "the engine under test to free everything",
      );
      await waitFor(() => peer.stats.created === peer.stats.freed, 15_000, "the peer to free everything");
      const s = await under.engine.stats();
      expect(s.ref_faults).toBe(0);
      expect(s.user_errors).toBe(0);
      expect(s.shards.length).toBeGreaterThan(0);
      expect(s.shards.reduce((n, e) => n + e.created, 0)).toBe(s.created);
      // With several shards, the random Call-IDs of this suite reached each of them.
      if (s.shards.length > 1) for (const e of s.shards) expect(e.created).toBeGreaterThan(0);
      expect(await under.engine.audit()).toEqual([]);
      expect(peer.stats.ref_faults).toBe(0);
    });
  });
}
