// The abuse soak: `siptm serve` on its defaults (but for ephemeral ports and
// the `uas` route ringing for ever, so that the floods leave live
// transactions behind) is attacked from several loopback addresses at once
// — an INVITE flood, one aimed at a single shard, a CRLF keep-alive flood,
// a connection flood, slow senders, forged responses meant to be reflected at
// a third party, control batches, and SIPVicious' scanners — while a caller
// of its own probes it with OPTIONS. The server must stay up, keep its memory
// bounded, answer every probe, reflect nothing, and stop cleanly. Bounded in
// time and count; 127.0.0.0/8 only.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import {
  type AttackReport,
  collidingCallIds,
  connectionFlood,
  controlBatches,
  crlfFlood,
  inviteFlood,
  probe,
  reflection,
  rssOf,
  sleep,
  slowSenders,
} from "./abuse/attacks.js";
import { type SiptmServer, startServer } from "./siptm-server.js";

/** How long the attacks run together. */
const SOAK_MS = 20_000;
/**
 * Most the server's resident set may grow over its idle size during the soak.
 * Batches of 16 full tm.list answers (each cut at 4 MiB) leave a few hundred MB
 * of garbage that V8 keeps mapped until it needs the room; what the bound
 * catches is growth without end (the CRLF flood reached 2.1 GB in 20 s).
 */
const RSS_GROWTH_LIMIT = 768 * 1024 * 1024;

const children = new Set<ChildProcess>();
const servers = new Set<SiptmServer>();
afterEach(async () => {
  for (const c of children) c.kill("SIGKILL");
  children.clear();
  await Promise.all([...servers].map((s) => s.kill()));
  servers.clear();
});

/** SIPVicious (Debian's `sipvicious`), or a thrown Error saying how to get it: never a skip. */
function requireSipvicious(): void {
  const probe = spawnSync("svmap", ["--version"], { encoding: "utf8", timeout: 10_000 });
  if (probe.error)
    throw new Error(
      `SIPVicious is not installed (${probe.error.message}): apt-get install -y sipvicious (.ci/run does it)`,
    );
}

/** Run one SIPVicious tool against the server, bounded by `timeout` (coreutils) and its own options. */
function sipvicious(tool: string, args: string[], seconds: number): Promise<AttackReport> {
  return new Promise((resolve) => {
    const child = spawn("timeout", [String(seconds), tool, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.on("exit", (code) => {
      children.delete(child);
      resolve({ name: tool, code: code ?? -1, lines: out.split("\n").length });
    });
  });
}

/** The server on its defaults but for ephemeral ports, ringing for ever, without a wire log. */
async function serve(workers: string): Promise<SiptmServer> {
  const server = await startServer(
    [
      "--listen",
      "udp:127.0.0.1:0",
      "--listen",
      "tcp:127.0.0.1:0",
      "--workers",
      workers,
      "--route",
      "uas",
      "--answer-after",
      "never",
    ],
    { trace: false },
  );
  servers.add(server);
  return server;
}

describe("abuse soak: siptm serve under attack from loopback", () => {
  for (const workers of ["0", "2"])
    it(`--workers ${workers}: alive, memory bounded, every probe answered, nothing reflected, a clean stop`, async () => {
      requireSipvicious();
      const server = await serve(workers);
      const pid = server.pid!;
      await sleep(500);
      const idle = await rssOf(pid);
      let peak = idle;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peak = Math.max(peak, await rssOf(pid));
          await sleep(250);
        }
      })();
      const victim = dgram.createSocket("udp4");
      await new Promise<void>((r) => victim.bind({ address: "127.0.0.66", port: 0 }, () => r()));

      const prober = probe("127.0.0.1", server.udp, 100);
      const attacks = await Promise.all([
        inviteFlood("127.0.0.2", server.udp, 1000, SOAK_MS, ["plain"]),
        inviteFlood("127.0.0.3", server.udp, 1000, SOAK_MS, collidingCallIds(256, 2)),
        crlfFlood("127.0.0.4", server.tcp, SOAK_MS, 2_000_000_000),
        connectionFlood("127.0.0.5", server.tcp, 2000, SOAK_MS),
        // Past the default --tcp-msg-timeout (20 s) from their first byte: every one must be gone by then.
        slowSenders("127.0.0.6", server.tcp, 200, 1000, SOAK_MS + 6000),
        reflection("127.0.0.7", server.udp, victim, 5000),
        controlBatches(server.rpc, 16, SOAK_MS),
        sipvicious("svmap", ["-p", String(server.udp), "127.0.0.1"], 15),
        sipvicious(
          "svwar",
          ["-p", String(server.udp), "-e", "100-999", "-m", "REGISTER", "--force", "127.0.0.1"],
          20,
        ),
      ]);
      const probes = await prober.stop();
      sampling = false;
      await sampler;
      victim.close();
      const reports = [probes, ...attacks];
      const why = `${JSON.stringify(reports, null, 1)}\nidle RSS ${idle} peak ${peak}\n${server.report()}`;

      // The figures, for the record (the assertions below judge them).
      const line = (r: AttackReport) =>
        Object.entries(r)
          .map(([k, v]) => (k === "name" ? v : `${k}=${v}`))
          .join(" ");
      console.info(
        `abuse soak --workers ${workers}: RSS idle ${Math.round(idle / 2 ** 20)} MiB, peak ${Math.round(peak / 2 ** 20)} MiB; ${reports.map(line).join("; ")}`,
      );
      expect(server.running, why).toBe(true);
      expect(probes.sent, why).toBeGreaterThan(100);
      expect(probes.ok, why).toBe(probes.sent);
      expect(peak - idle, why).toBeLessThan(RSS_GROWTH_LIMIT);
      const by = (name: string) => reports.find((r) => r.name === name)!;
      expect(by("reflection").reflected, why).toBe(0);
      expect(by("crlf-flood").closedByServer, why).toBe(1);
      expect(by("control-batches").errors, why).toBe(0);
      expect(Number(by("connection-flood").open), why).toBeLessThan(2000);
      expect(by("slow-senders").open, why).toBe(0);

      // SIGTERM: the INVITEs still ringing hold the drain for --drain-timeout (5 s), then get 503.
      // SIGKILL only if the process has not ended 15 s later (its code is then null).
      await server.kill(15_000);
      expect((await server.exited).code, why).toBe(0);
    }, 120_000);
});
