// `siptm serve` over TCP against raw clients, in one thread (--workers 0) and
// sharded (--workers 2, where the coordinator owns the sockets): the TCP limits
// reach the transport and their counters reach tm.stats and /metrics, and a
// client that half-closes its connection after its request still gets the
// responses (RFC 3261 §18.2.2), while one that closed fully makes the late
// response a transport error. Child processes; everything killed in afterAll.
import { afterAll, describe, expect, it } from "vitest";
import { forEachEngine, workersFlag } from "../../../test/setup/engines.js";
import {
  rawClient as client,
  closeAll,
  listener,
  tcpRequest,
} from "../../core/test/transport/tcp-helpers.js";
import { call, killAll, SERVER_TIMERS, type Served, serve, until } from "./helpers.js";

afterAll(async () => {
  await closeAll();
  await killAll();
});

type Stats = Record<string, number>;

async function metric(s: Served, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${s.rpc}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

forEachEngine((_bed, _kind, engine) => {
  const workers = workersFlag(engine);
  /** A server on the uas route (answering INVITEs after `answerAfter` ms when given), a decoy on the Via port, and a TCP client. */
  const uasDecoyClient = async (answerAfter?: string) => {
    const after = answerAfter === undefined ? [] : ["--answer-after", answerAfter];
    const s = await serve(["--workers", workers, "--route", "uas", ...after, ...SERVER_TIMERS]);
    const elsewhere = await listener();
    return { s, elsewhere, c: await client(s.tcp) };
  };
  /** The answers came back on the client's connection: nothing at the Via port, no transport error. */
  const expectSameConnection = async (s: Served, elsewhere: { got(): string }) => {
    expect(elsewhere.got()).toBe("");
    expect((await call<Stats>(s.rpc, "tm.stats")).transport_errors).toBe(0);
  };
  describe(`siptm serve --workers ${workers}: TCP`, () => {
    it("--tcp-max-per-ip: the connection over the cap is closed at once, counted in tm.stats and /metrics", async () => {
      const s = await serve(["--workers", workers, "--route", "uas", "--tcp-max-per-ip", "2"]);
      const a = await client(s.tcp);
      const b = await client(s.tcp);
      await until(
        "two connections",
        async () => (await call<Stats>(s.rpc, "tm.stats")).tcp_connections === 2,
      );
      const c = await client(s.tcp);
      await until("the third closed", () => c.isClosed());
      const stats = await call<Stats>(s.rpc, "tm.stats");
      expect(stats.tcp_conn_rejected_ip).toBe(1);
      expect(stats.tcp_conn_rejected).toBe(0);
      expect(await metric(s, "siptm_tcp_conn_rejected_ip_total")).toBe(1);
      expect(await metric(s, "siptm_tcp_connections")).toBe(2);
      expect(a.isClosed() || b.isClosed()).toBe(false);
    });

    it("--tcp-max-pings: a ping flood closes the connection, counted", async () => {
      const s = await serve(["--workers", workers, "--route", "uas", "--tcp-max-pings", "3"]);
      const c = await client(s.tcp);
      c.socket.write("\r\n\r\n".repeat(1000));
      await until("closed", () => c.isClosed());
      const stats = await call<Stats>(s.rpc, "tm.stats");
      expect(stats.tcp_ping_flood_closed).toBe(1);
      expect(stats.tcp_pings).toBe(4);
      expect(await metric(s, "siptm_tcp_ping_flood_closed_total")).toBe(1);
    });

    it("OPTIONS then the client's FIN: the 200 still arrives", async () => {
      const { s, elsewhere, c } = await uasDecoyClient();
      c.socket.end(tcpRequest("OPTIONS", `hc-opt-${workers}`, elsewhere.port));
      await until("the 200", () => c.read().includes("SIP/2.0 200 OK"));
      await expectSameConnection(s, elsewhere);
    });

    it("INVITE answered after 500 ms, then the client's FIN: the 180 and the 200 both arrive", async () => {
      const { s, elsewhere, c } = await uasDecoyClient("500");
      c.socket.end(tcpRequest("INVITE", `hc-inv-${workers}`, elsewhere.port));
      await until("the 200", () => c.read().includes("SIP/2.0 200 OK"));
      expect(c.read()).toContain("SIP/2.0 180 Ringing");
      await expectSameConnection(s, elsewhere);
    });

    it("INVITE, then a full close: the 200 is a transport error, not sent on a new connection", async () => {
      const { s, elsewhere, c } = await uasDecoyClient("300");
      c.socket.write(tcpRequest("INVITE", `fc-inv-${workers}`, elsewhere.port));
      await until("the 180", () => c.read().includes("SIP/2.0 180 Ringing"));
      c.socket.destroy();
      await until("a transport error", async () => {
        const st = await call<Stats>(s.rpc, "tm.stats");
        return st.transport_errors === 1 && (st.tcp_send_errors ?? 0) >= 1;
      });
      expect(elsewhere.got()).toBe("");
    });
  });
});
