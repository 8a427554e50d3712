// The transaction flows over real UDP and TCP sockets on 127.0.0.1, with the
// real clock and short timers. Each test waits (bounded) until every engine
// shows created == freed.

import {
  createTcpTransport,
  createUdpTransport,
  Engine,
  type EngineOptions,
  type RequestOptions,
  type ServerTransactionHandle,
} from "@siptm/core";
import { internals } from "@siptm/core/internal";
import { afterEach, describe, expect, it } from "vitest";

const FAST = { t1: 20, t2: 160, t4: 200, timerD: 200, autoInv100: 10 };
const engines: Engine[] = [];

async function engine(opts: EngineOptions = {}): Promise<Engine> {
  const e = new Engine({ refFaults: "throw", timers: FAST, ...opts });
  e.addTransport(await createUdpTransport({ address: "127.0.0.1", port: 0, sink: e }));
  const udpPort = e.transportFor("UDP")!.localPort;
  e.addTransport(
    await createTcpTransport({ address: "127.0.0.1", port: udpPort, sink: e }).catch(() =>
      createTcpTransport({ address: "127.0.0.1", port: 0, sink: e }),
    ),
  );
  engines.push(e);
  return e;
}

async function drained(...list: Engine[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (list.every((e) => e.stats.created === e.stats.freed && internals(e).table.size === 0)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`not drained: ${list.map((e) => `${e.stats.created}/${e.stats.freed}`).join(" ")}`);
}

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

for (const protocol of ["UDP", "TCP"] as const) {
  describe(`real ${protocol} on 127.0.0.1`, () => {
    const hop = (e: Engine) => {
      const t = e.transportFor(protocol)!;
      return { protocol, address: "127.0.0.1", port: t.localPort };
    };
    /** A request from a@ to b@127.0.0.1, sent by `uac` straight to `uas`. */
    const toUas = (uac: Engine, uas: Engine, method: string, extra: Partial<RequestOptions> = {}) =>
      uac.request({
        method,
        uri: method === "OPTIONS" ? "sip:127.0.0.1" : "sip:b@127.0.0.1",
        from: "<sip:a@127.0.0.1>",
        to: "<sip:b@127.0.0.1>",
        nextHop: hop(uas),
        ...extra,
      });

    it("OPTIONS → 200", async () => {
      const uas = await engine({ onRequest: (tx) => tx.reply(200) });
      const uac = await engine();
      const h = toUas(uac, uas, "OPTIONS");
      const outcome = await h.final;
      expect(outcome.status).toBe(200);
      expect(outcome.response?.callId).toBe(h.callId);
      await drained(uac, uas);
    });

    it("INVITE → 100 (auto) → 180 → 486 → ACK; the server transaction is Confirmed by the ACK", async () => {
      let server: ServerTransactionHandle | undefined;
      const uas = await engine({
        onRequest: (tx) => {
          server = tx;
          setTimeout(() => tx.reply(180), 15);
          setTimeout(() => tx.reply(486), 30);
        },
      });
      const uac = await engine();
      const seen: number[] = [];
      const h = toUas(uac, uas, "INVITE", {
        onResponse: (r) => seen.push(r.status),
      });
      const outcome = await h.final;
      expect(outcome.status).toBe(486);
      expect(seen).toEqual([100, 180, 486]);
      expect(server?.finalStatus).toBe(486);
      await drained(uac, uas);
    });

    it("INVITE → 200 → ACK for the 2xx reaches the server's user", async () => {
      const acked: string[] = [];
      const uas = await engine({
        onRequest: (tx) => {
          tx.events.onAck = (a) => acked.push(a.method);
          tx.reply(200, { headers: [["Contact", "<sip:b@127.0.0.1>"]] });
        },
      });
      const uac = await engine();
      const h = toUas(uac, uas, "INVITE");
      const outcome = await h.final;
      expect(outcome.status).toBe(200);
      uac.ack2xx(h, outcome.response!);
      const deadline = Date.now() + 5000;
      while (acked.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(acked).toEqual(["ACK"]);
      await drained(uac, uas);
    });

    it("INVITE → 180 → CANCEL → 200 → 487 → ACK", async () => {
      const uas = await engine({ onRequest: (tx) => tx.reply(180) });
      const uac = await engine();
      const h = toUas(uac, uas, "INVITE", {
        onProvisional: (r) => {
          if (r.status === 180) h.cancel();
        },
      });
      const outcome = await h.final;
      expect(outcome.status).toBe(487);
      expect(h.lastCancel?.kind).toBe("answered");
      await drained(uac, uas);
      expect(uas.stats["4xx"]).toBe(1);
    });
  });
}
