/**
 * Named reference ownership.
 *
 * Every holder of a transaction (the table, each armed timer, the user's
 * handle, a pending CANCEL, an in-flight control request) takes a NAMED
 * reference and releases it; an actor is freed only when it is Terminated
 * AND unheld. Because references are named, a release without a matching
 * take, a take after free, or a reference still held at free is reported
 * with the holder's name and the owner's id instead of as a bare count
 * going wrong somewhere.
 *
 * A transaction has few holders (<= 8 typically), so a `RefSet` is one
 * small array of holder names, one slot per outstanding reference, in take
 * order: no Map, no per-holder object. The array starts with room for four
 * (a first push would give it seventeen, kept as long as the owner lives)
 * and its used length is counted apart.
 */

export type RefFault = "double-release" | "take-after-free" | "release-after-free" | "leak";

const FAULT_TEXT: Record<RefFault, string> = {
  "double-release": "released without a matching take",
  "take-after-free": "taken after the owner was freed",
  "release-after-free": "released after the owner was freed",
  leak: "still held when the owner was freed",
};

/** A reference-ownership bug: which fault, by which holder, on which owner. */
export class RefError extends Error {
  readonly fault: RefFault;
  readonly holder: string;
  readonly owner: string;

  constructor(fault: RefFault, holder: string, owner: string) {
    super(`ref ${fault}: holder "${holder}" on ${owner}: ${FAULT_TEXT[fault]}`);
    this.name = "RefError";
    this.fault = fault;
    this.holder = holder;
    this.owner = owner;
  }
}

/** Receives reference faults. Production: count and log. Tests and debug builds: throw. */
export type RefReporter = (err: RefError) => void;

/** Throws every fault (tests, debug builds). */
export const throwingReporter: RefReporter = (err: RefError): void => {
  throw err;
};

export interface CountingReporter extends RefReporter {
  /** Faults kept, oldest first (at most `keep` of them). */
  readonly faults: RefError[];
  /** Exact number of faults reported, per kind (not bounded by `keep`). */
  readonly counts: Record<RefFault, number>;
  /** Exact number of faults reported in all. */
  readonly total: number;
}

export interface CountingReporterOptions {
  /** Called with every fault (e.g. a logger). */
  log?: (err: RefError) => void;
  /** Keep at most this many faults in `faults` (default: all). Counts stay exact. */
  keep?: number;
}

/** A reporter that never throws: it counts every fault and keeps them (production, audits). */
export function countingReporter(options: CountingReporterOptions = {}): CountingReporter {
  const keep = options.keep ?? Number.POSITIVE_INFINITY;
  const log = options.log;
  const faults: RefError[] = [];
  const counts: Record<RefFault, number> = {
    "double-release": 0,
    "take-after-free": 0,
    "release-after-free": 0,
    leak: 0,
  };
  let total = 0;
  const reporter = ((err: RefError): void => {
    counts[err.fault]++;
    total++;
    if (faults.length < keep) faults.push(err);
    log?.(err);
  }) as CountingReporter;
  Object.defineProperty(reporter, "faults", { value: faults, enumerable: true });
  Object.defineProperty(reporter, "counts", { value: counts, enumerable: true });
  Object.defineProperty(reporter, "total", { get: () => total, enumerable: true });
  return reporter;
}

/** Holder name used when `markFreed` is called twice. */
const FREE_HOLDER = "(free)";

/**
 * The multiset of named references held on one owner (e.g. a transaction).
 * The same holder may hold several references; each `release` drops that
 * holder's most recent one.
 */
export class RefSet {
  readonly ownerId: string;
  private readonly report: RefReporter;
  /** One slot per outstanding reference, in take order: names[0, n). */
  private readonly names: string[] = ["", "", "", ""];
  private n = 0;
  private isFreed = false;

  constructor(ownerId: string, report: RefReporter) {
    this.ownerId = ownerId;
    this.report = report;
  }

  /** Take a reference for `holder`. Reports "take-after-free" (and takes nothing) once freed. */
  take(holder: string): void {
    if (this.isFreed) {
      this.report(new RefError("take-after-free", holder, this.ownerId));
      return;
    }
    const names = this.names;
    if (this.n < names.length) names[this.n] = holder;
    else names.push(holder);
    this.n++;
  }

  /**
   * Release one reference of `holder`. Returns true if that was the last
   * reference of all holders (the count dropped to 0). A holder that holds
   * nothing reports "double-release"; once freed, "release-after-free";
   * both return false and change nothing.
   */
  release(holder: string): boolean {
    if (this.isFreed) {
      this.report(new RefError("release-after-free", holder, this.ownerId));
      return false;
    }
    const names = this.names;
    const n = this.n;
    let i = n - 1;
    while (i >= 0 && names[i] !== holder) i--;
    if (i < 0) {
      this.report(new RefError("double-release", holder, this.ownerId));
      return false;
    }
    // Close the gap in place (no splice: it would allocate the removed array).
    for (let j = i + 1; j < n; j++) names[j - 1] = names[j]!;
    names[n - 1] = "";
    this.n = n - 1;
    return n === 1;
  }

  /** True if `holder` holds at least one reference. */
  holds(holder: string): boolean {
    const names = this.names;
    for (let i = 0; i < this.n; i++) if (names[i] === holder) return true;
    return false;
  }

  /** How many references `holder` holds. */
  countOf(holder: string): number {
    const names = this.names;
    let c = 0;
    for (let i = 0; i < this.n; i++) if (names[i] === holder) c++;
    return c;
  }

  /** Total references held, all holders together. */
  get count(): number {
    return this.n;
  }

  /** Outstanding references in take order, one entry per reference (a holder may repeat). */
  holders(): string[] {
    return this.names.slice(0, this.n);
  }

  get freed(): boolean {
    return this.isFreed;
  }

  /**
   * Mark the owner freed; later takes and releases are faults. References
   * still held are reported as "leak" (one report per reference), since no
   * release can now legally drop them; they are kept for `holders()`.
   * Freeing twice reports "release-after-free" with holder "(free)".
   */
  markFreed(): void {
    if (this.isFreed) {
      this.report(new RefError("release-after-free", FREE_HOLDER, this.ownerId));
      return;
    }
    this.isFreed = true;
    const names = this.names;
    for (let i = 0; i < this.n; i++) this.report(new RefError("leak", names[i]!, this.ownerId));
  }

  /**
   * Audit (e.g. at engine shutdown): report every outstanding reference as a
   * "leak" without freeing. Returns how many were reported.
   */
  reportLeaks(): number {
    const names = this.names;
    const n = this.n;
    for (let i = 0; i < n; i++) this.report(new RefError("leak", names[i]!, this.ownerId));
    return n;
  }
}
