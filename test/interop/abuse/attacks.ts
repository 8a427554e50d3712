// The abuse scripts of the soak test (abuse-soak.test.ts): each one attacks a
// running `siptm serve` from its own loopback source address, for a bounded
// time and count, and reports what it did and what the server did to it. All
// traffic goes to 127.0.0.0/8 only.
import * as dgram from "node:dgram";
import * as net from "node:net";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What one attack did, for the test's assertions and its failure message. */
export interface AttackReport {
  name: string;
  [counter: string]: number | string;
}

/** FNV-1a 32-bit over the bytes of `s` (the unkeyed hash a shard used to be chosen by). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Call-IDs that an unkeyed FNV-1a would all put on shard 0 of `shards`. */
export function collidingCallIds(count: number, shards: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const id = `flood-${i}@attacker`;
    if (fnv1a(id) % shards === 0) out.push(id);
  }
  return out;
}

function request(method: string, callId: string, branch: string, port: number, from: string): string {
  return (
    `${method} sip:victim@127.0.0.1:${port} SIP/2.0\r\n` +
    `Via: SIP/2.0/UDP ${from};branch=z9hG4bK${branch};rport\r\n` +
    "Max-Forwards: 70\r\n" +
    `From: <sip:attacker@${from}>;tag=${branch}\r\n` +
    `To: <sip:victim@127.0.0.1:${port}>\r\n` +
    `Call-ID: ${callId}\r\n` +
    `CSeq: 1 ${method}\r\n` +
    `Contact: <sip:attacker@${from}>\r\n` +
    "Content-Length: 0\r\n\r\n"
  );
}

async function udpSocket(address: string): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    s.bind({ address, port: 0 }, () => resolve());
  });
  return s;
}

/**
 * OPTIONS probes from `address`, one every `everyMs`, until `stop()`, each
 * retransmitted like a SIP client would (RFC 3261 §17.1.2.2: Timer E from
 * T1 = 500 ms, doubling) for up to 4 s. Counts sent, answered 200, answered
 * otherwise, and never answered; the slowest answer in ms is reported for
 * the failure message only.
 */
export function probe(address: string, port: number, everyMs: number) {
  let sent = 0;
  let ok = 0;
  let other = 0;
  let worstMs = 0;
  let running = true;
  const pending = new Map<string, number>();
  const texts = new Map<string, string>();
  const done = (async () => {
    const s = await udpSocket(address);
    s.on("message", (msg) => {
      const text = msg.toString("latin1");
      const id = /\r\nCall-ID:\s*([^\r]+)/i.exec(text)?.[1];
      if (!id || !pending.has(id)) return;
      worstMs = Math.max(worstMs, Date.now() - pending.get(id)!);
      pending.delete(id);
      texts.delete(id);
      if (text.startsWith("SIP/2.0 200")) ok++;
      else other++;
    });
    const me = `${address}:${s.address().port}`;
    const resend = () => {
      const now = Date.now();
      for (const [id, at] of pending) {
        const age = now - at;
        // Timer E: 500, 1000, 2000 ms after the first send (a window of ±everyMs)
        if ([500, 1000, 2000].some((t) => age >= t && age < t + everyMs))
          s.send(texts.get(id)!, port, "127.0.0.1");
      }
    };
    while (running) {
      const id = `probe-${sent}@${address}`;
      const text = request("OPTIONS", id, `p${sent}`, port, me);
      pending.set(id, Date.now());
      texts.set(id, text);
      s.send(text, port, "127.0.0.1");
      sent++;
      await sleep(everyMs);
      resend();
    }
    for (let i = 0; i < 4000 / everyMs && pending.size > 0; i++) {
      await sleep(everyMs);
      resend();
    }
    s.close();
  })();
  return {
    stop: async (): Promise<AttackReport> => {
      running = false;
      await done;
      return { name: "probe", sent, ok, other, unanswered: pending.size, worstMs };
    },
  };
}

/** INVITEs from `address` at about `perSecond`, for `ms`, Call-IDs from `callIds` (cycled). */
export async function inviteFlood(
  address: string,
  port: number,
  perSecond: number,
  ms: number,
  callIds: string[],
): Promise<AttackReport> {
  const s = await udpSocket(address);
  const me = `${address}:${s.address().port}`;
  let answers = 0;
  let s503 = 0;
  s.on("message", (msg) => {
    answers++;
    if (msg.toString("latin1", 0, 12) === "SIP/2.0 503 ") s503++;
  });
  const end = Date.now() + ms;
  let sent = 0;
  const tick = 20;
  while (Date.now() < end) {
    for (let i = 0; i < (perSecond * tick) / 1000; i++) {
      const id = callIds[sent % callIds.length]!;
      s.send(request("INVITE", `${id}-${sent}`, `f${sent}`, port, me), port, "127.0.0.1");
      sent++;
    }
    await sleep(tick);
  }
  await sleep(500);
  s.close();
  return { name: "invite-flood", sent, answers, s503 };
}

/** One TCP connection streaming CRLFCRLF keep-alive pings without ever reading the pongs (RFC 5626 §4.4.1 abuse). */
export async function crlfFlood(
  address: string,
  port: number,
  ms: number,
  maxBytes: number,
): Promise<AttackReport> {
  const sock = net.connect({ host: "127.0.0.1", port, localAddress: address });
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", () => resolve());
    sock.once("error", reject);
  });
  sock.pause(); // never read the pongs
  const chunk = Buffer.from("\r\n\r\n".repeat(16384), "latin1");
  let sent = 0;
  let closedByServer = false;
  sock.on("close", () => {
    closedByServer = true;
  });
  sock.on("error", () => {});
  const end = Date.now() + ms;
  while (!closedByServer && Date.now() < end && sent < maxBytes) {
    if (!sock.write(chunk)) await Promise.race([new Promise((r) => sock.once("drain", r)), sleep(200)]);
    sent += chunk.length;
    await new Promise((r) => setImmediate(r));
  }
  sock.destroy();
  return { name: "crlf-flood", sentMB: Math.round(sent / 1e6), closedByServer: closedByServer ? 1 : 0 };
}

/** Open up to `count` idle TCP connections from `address` and hold them for `ms`. */
export async function connectionFlood(
  address: string,
  port: number,
  count: number,
  ms: number,
): Promise<AttackReport> {
  const socks: net.Socket[] = [];
  let refused = 0;
  let closedByServer = 0;
  for (let i = 0; i < count; i++) {
    const sock = net.connect({ host: "127.0.0.1", port, localAddress: address });
    sock.on("error", () => {
      refused++;
    });
    sock.on("close", () => {
      closedByServer++;
    });
    socks.push(sock);
    if (i % 100 === 99) await sleep(10);
  }
  await sleep(ms);
  const open = socks.filter((s) => !s.destroyed && s.readyState === "open").length;
  for (const s of socks) s.destroy();
  return { name: "connection-flood", tried: count, open, closedByServer, refused };
}

/** `count` connections from `address` sending the start of an INVITE at one byte per `everyMs`, for `ms`. */
export async function slowSenders(
  address: string,
  port: number,
  count: number,
  everyMs: number,
  ms: number,
): Promise<AttackReport> {
  const text = request("INVITE", "slow", "slow", port, `${address}:5060`);
  const socks: net.Socket[] = [];
  let closedByServer = 0;
  for (let i = 0; i < count; i++) {
    const sock = net.connect({ host: "127.0.0.1", port, localAddress: address });
    sock.on("error", () => {});
    sock.on("close", () => {
      closedByServer++;
    });
    socks.push(sock);
  }
  const end = Date.now() + ms;
  for (let at = 0; Date.now() < end; at = (at + 1) % text.length) {
    for (const s of socks) if (!s.destroyed) s.write(text[at]!);
    await sleep(everyMs);
  }
  const open = socks.filter((s) => !s.destroyed).length;
  for (const s of socks) s.destroy();
  return { name: "slow-senders", count, open, closedByServer };
}

/** Forged responses whose top Via names the server and whose second Via names `victim`: nothing may reach it. */
export async function reflection(
  address: string,
  port: number,
  victim: dgram.Socket,
  count: number,
): Promise<AttackReport> {
  const s = await udpSocket(address);
  let reflected = 0;
  victim.on("message", () => {
    reflected++;
  });
  const v = victim.address();
  for (let i = 0; i < count; i++) {
    const text =
      "SIP/2.0 200 OK\r\n" +
      `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bKforged${i}\r\n` +
      `Via: SIP/2.0/UDP ${v.address}:${v.port};branch=z9hG4bKv${i}\r\n` +
      `From: <sip:a@x>;tag=${i}\r\nTo: <sip:b@y>;tag=t${i}\r\nCall-ID: reflect-${i}\r\n` +
      "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    s.send(text, port, "127.0.0.1");
    if (i % 200 === 199) await sleep(10);
  }
  await sleep(500);
  s.close();
  return { name: "reflection", sent: count, reflected };
}

/** JSON-RPC batches of `size` tm.list calls, one after another, for `ms`. */
export async function controlBatches(rpcPort: number, size: number, ms: number): Promise<AttackReport> {
  const end = Date.now() + ms;
  let batches = 0;
  let errors = 0;
  let maxBytes = 0;
  const body = JSON.stringify(
    Array.from({ length: size }, (_, i) => ({ jsonrpc: "2.0", id: i, method: "tm.list" })),
  );
  while (Date.now() < end) {
    try {
      const res = await fetch(`http://127.0.0.1:${rpcPort}/rpc`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body,
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      maxBytes = Math.max(maxBytes, text.length);
    } catch {
      errors++;
    }
    batches++;
  }
  return { name: "control-batches", batches, errors, maxKB: Math.round(maxBytes / 1024) };
}

/** The process's resident set in bytes (Linux /proc), or 0 when it is gone. */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  try {
    const status = await readFile(`/proc/${pid}/status`, "latin1");
    const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}
