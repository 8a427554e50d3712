/**
 * CPU time and memory of other processes, read from Linux /proc: what the
 * load benchmark uses to measure a server (and SIPp) from the outside, the
 * same way for every system (Node, Kamailio's several processes, SIPp).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of utime/stime in /proc/<pid>/stat (getconf CLK_TCK; 100 on Linux). */
export const CLK_TCK: number = (() => {
  try {
    const n = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return undefined;
  }
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  const text = read(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  // fields[0] is field 3 (state), so field N is fields[N - 3].
  return text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
}

/** CPU seconds (user + system, all threads) the process has used so far; undefined when it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  const f = statFields(pid);
  if (f === undefined) return undefined;
  const utime = Number(f[14 - 3]);
  const stime = Number(f[15 - 3]);
  return (utime + stime) / CLK_TCK;
}

/** Parent pid, or undefined when the process is gone. */
export function parentPid(pid: number): number | undefined {
  const f = statFields(pid);
  return f === undefined ? undefined : Number(f[4 - 3]);
}

/** True while the process exists and is not a zombie. */
export function alive(pid: number): boolean {
  const f = statFields(pid);
  return f !== undefined && f[0] !== "Z" && f[0] !== "X";
}

/** Every live descendant of `pid` (children, their children…), from one scan of /proc. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const p = Number(name);
    const ppid = parentPid(p);
    if (ppid === undefined) continue;
    const list = children.get(ppid);
    if (list) list.push(p);
    else children.set(ppid, [p]);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    for (const c of children.get(p) ?? []) {
      if (!alive(c)) continue;
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

function statusKb(pid: number, field: string): number | undefined {
  const text = read(`/proc/${pid}/status`);
  const m = text?.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return m ? Number(m[1]) : undefined;
}

/** Resident set size (VmRSS), bytes. */
export function rssBytes(pid: number): number | undefined {
  const kb = statusKb(pid, "VmRSS");
  return kb === undefined ? undefined : kb * 1024;
}

/** Peak resident set size (VmHWM), bytes. */
export function peakRssBytes(pid: number): number | undefined {
  const kb = statusKb(pid, "VmHWM");
  return kb === undefined ? undefined : kb * 1024;
}

/**
 * Proportional set size (Pss from smaps_rollup), bytes: pages shared between
 * processes count once in total over them. The right sum for Kamailio, whose
 * processes share one memory segment that each one's VmRSS would count again.
 */
export function pssBytes(pid: number): number | undefined {
  const text = read(`/proc/${pid}/smaps_rollup`);
  const m = text?.match(/^Pss:\s+(\d+) kB/m);
  return m ? Number(m[1]) * 1024 : rssBytes(pid);
}

/** A set of processes measured together (a server and its worker processes). */
export interface ProcessGroup {
  /** The pids to sum over, read now (a group may fork at start). */
  pids(): number[];
}

export function groupCpuSeconds(group: ProcessGroup): number {
  let sum = 0;
  for (const pid of group.pids()) sum += cpuSeconds(pid) ?? 0;
  return sum;
}

export interface MemorySample {
  /** VmRSS summed over the group (double-counts shared memory when there are several processes). */
  readonly rss: number;
  /** Pss summed over the group. */
  readonly pss: number;
  /** VmHWM of the first (main) process. */
  readonly peakRss: number;
  readonly processes: number;
}

export function groupMemory(group: ProcessGroup): MemorySample {
  const pids = group.pids();
  let rss = 0;
  let pss = 0;
  for (const pid of pids) {
    rss += rssBytes(pid) ?? 0;
    pss += pssBytes(pid) ?? 0;
  }
  const first = pids[0];
  return { rss, pss, peakRss: first === undefined ? 0 : (peakRssBytes(first) ?? 0), processes: pids.length };
}

/**
 * Samples CPU use of some processes every `everyMs` while a load runs: the
 * average over the interval, and the busiest sampling interval (as a share of
 * one core, so 1.0 = one core fully busy). A process that exits keeps the CPU
 * time last read for it, and the average then ends at that last reading (a
 * reaped process has no /proc entry left to read).
 */
export class CpuSampler {
  private readonly start: number;
  private readonly startCpu: number;
  private readonly lastPerPid = new Map<number, number>();
  private lastReadTime: number;
  private lastTime: number;
  private lastCpu: number;
  private peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly group: ProcessGroup,
    everyMs = 250,
  ) {
    this.start = performance.now();
    this.startCpu = this.read();
    this.lastReadTime = this.start;
    this.lastTime = this.start;
    this.lastCpu = this.startCpu;
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  /** CPU seconds summed over the group, a gone process counted with its last reading. */
  private read(): number {
    let anyRead = false;
    for (const pid of this.group.pids()) {
      const cpu = cpuSeconds(pid);
      if (cpu !== undefined) {
        this.lastPerPid.set(pid, cpu);
        anyRead = true;
      }
    }
    if (anyRead) this.lastReadTime = performance.now();
    let sum = 0;
    for (const v of this.lastPerPid.values()) sum += v;
    return sum;
  }

  private sample(): void {
    const cpu = this.read();
    const now = this.lastReadTime;
    const dt = (now - this.lastTime) / 1000;
    // CLK_TCK granularity (10 ms) makes a short interval noisy; the peak counts intervals of 0.9 s or more.
    if (dt >= 0.9) {
      this.peak = Math.max(this.peak, (cpu - this.lastCpu) / dt);
      this.lastTime = now;
      this.lastCpu = cpu;
    }
  }

  /** Stop sampling; CPU seconds used, wall seconds, average and peak share of one core. */
  stop(): { cpuSeconds: number; wallSeconds: number; average: number; peak: number } {
    clearInterval(this.timer);
    this.sample();
    const wallSeconds = (this.lastReadTime - this.start) / 1000;
    let total = 0;
    for (const v of this.lastPerPid.values()) total += v;
    const cpu = total - this.startCpu;
    const average = wallSeconds > 0 ? cpu / wallSeconds : 0;
    return { cpuSeconds: cpu, wallSeconds, average, peak: Math.max(this.peak, average) };
  }
}

/** Busy and total jiffies of the whole machine (the aggregate "cpu" line of /proc/stat). */
function machineTicks(): { busy: number; total: number } | undefined {
  const line = read("/proc/stat")?.split("\n", 1)[0];
  if (!line?.startsWith("cpu ")) return undefined;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const total = v.slice(0, 8).reduce((a, b) => a + (b || 0), 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * How busy the whole machine was while a load ran (every process, other
 * people's included), as a share of all its cores: average and busiest second.
 */
export class MachineSampler {
  private readonly first: { busy: number; total: number } | undefined;
  private last: { busy: number; total: number } | undefined;
  private peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(everyMs = 1000) {
    this.first = machineTicks();
    this.last = this.first;
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  private sample(): void {
    const now = machineTicks();
    if (now && this.last && now.total > this.last.total) {
      this.peak = Math.max(this.peak, (now.busy - this.last.busy) / (now.total - this.last.total));
      this.last = now;
    }
  }

  stop(): { average: number; peak: number } {
    clearInterval(this.timer);
    this.sample();
    const end = machineTicks();
    if (!end || !this.first || end.total <= this.first.total) return { average: 0, peak: this.peak };
    const average = (end.busy - this.first.busy) / (end.total - this.first.total);
    return { average, peak: Math.max(this.peak, average) };
  }
}

/**
 * The kernel's count of UDP datagrams dropped because a socket's receive
 * buffer was full (`RcvbufErrors` in /proc/net/snmp, the whole machine since
 * boot); undefined where it cannot be read. Read before and after a step: a
 * loss there is no retransmission SIPp or the server chose, and a call whose
 * lost message nobody retransmits waits for its timeout.
 */
export function udpReceiveBufferDrops(): number | undefined {
  try {
    const lines = readFileSync("/proc/net/snmp", "utf8").split("\n");
    const [head, values] = lines.filter((l) => l.startsWith("Udp:"));
    if (!head || !values) return undefined;
    const i = head.split(/\s+/).indexOf("RcvbufErrors");
    const v = Number(values.split(/\s+/)[i]);
    return i > 0 && Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
