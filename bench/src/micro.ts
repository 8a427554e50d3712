/**
 * Micro benchmark: SIP message parse and serialise, siptm against the npm
 * `sip` package, the same messages in the same process run.
 *
 *   node dist/micro.js            full run (~2 s per case), writes bench/results/
 *   node dist/micro.js --quick    short run for CI (seconds), writes *.tmp files only
 *   node dist/micro.js --time=500 custom time budget per case, ms
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { fullParse, parseMessage, type SipMessage, type SipRequest } from "@siptm/core";
import { serverKey } from "@siptm/core/internal";
import sip, { type SipMessageObject, type SipTransactionLayer } from "sip";
import { environment, packageVersion } from "./lib/env.js";
import { MESSAGES } from "./lib/messages.js";
import { type Goal, goalsText, jsonReport, markdownReport, type ReportRow, textTable } from "./lib/report.js";
import { type BenchCase, type CaseResult, runSuite, sink, sinkChecksum } from "./lib/suite.js";

/** Operations per timed call. */
const BATCH = 32;
/** Distinct copies of each message cycled through, so no run can profit from reusing one Buffer object. */
const RING = 64;

/** The index of the next of the RING copies of a message, wrapping (the first call gives 1). */
function ringCursor(): () => number {
  let k = 0;
  return () => {
    k = (k + 1) & (RING - 1);
    return k;
  };
}

/** UDP is the common case: parse as a datagram. */
// Named constants of the benchmark, alike in form with other files' fixtures (digest.test.ts's RFC values): data, not code.
const PARSE_OPTIONS = { datagram: true } as const;
/** The Via a proxy would push in the edit benchmark. */
const NEW_VIA = "SIP/2.0/UDP 192.0.2.250:5060;branch=z9hG4bK-bench-2f81c0e9a1";

const OP = {
  parse: "siptm parse (txn fields)",
  full: "siptm full parse",
  serialise: "siptm toBuffer (unmodified)",
  edit: "siptm pushVia+setMaxForwards+toBuffer",
  match: "siptm match (server key + table lookup)",
  sipParse: "sip.parse",
  sipStringify: "sip.stringify",
  sipMatch: "sip getServer (transaction id + lookup)",
} as const;

/** Which `sip` case each siptm case is compared with. */
const VERSUS: Record<string, string> = {
  [OP.parse]: OP.sipParse,
  [OP.full]: OP.sipParse,
  [OP.serialise]: OP.sipStringify,
  [OP.edit]: OP.sipStringify,
  [OP.match]: OP.sipMatch,
};

/** Live transactions in the tables the match cases look up in. */
const LIVE = 10_000;
/** sip transaction layers made by the match cases: shut down at the end (they hold timers). */
const sipLayers: SipTransactionLayer[] = [];

/**
 * Matching a received request to its server transaction (RFC 3261 §17.2.3),
 * in a table of LIVE transactions: siptm's key (branch + sent-by + method) and
 * Map lookup; sip's transaction id (CSeq method + Call-ID + branch) and lookup.
 * The parse is not timed: both start from their parsed message.
 */
function matchCases(group: string, bytes: Buffer, copies: Buffer[]): BenchCase[] {
  const parsed = copies.map((b) => parseMessage(b, PARSE_OPTIONS));
  if (!parsed[0]!.isRequest) return [];
  const table = new Map<string, number>();
  // the table holds other transactions plus the ones being matched
  for (let i = 0; i < LIVE; i++)
    table.set(
      serverKey(
        parseMessage(
          Buffer.from(bytes.toString("latin1").replace("branch=", `branch=x${i}`), "latin1"),
        ) as SipRequest,
        false,
      ),
      i,
    );
  for (const m of parsed) table.set(serverKey(m as SipRequest, false), 1);
  const sipParsed = copies.map((b) => sip.parse(b.toString("binary"))!);
  const conn = { send() {}, release() {}, protocol: "UDP" };
  const layer = sip.makeTransactionLayer({}, () => conn);
  sipLayers.push(layer);
  for (let i = 0; i < LIVE; i++)
    layer.createServerTransaction(
      sip.parse(
        Buffer.from(bytes.toString("latin1").replace("branch=", `branch=x${i}`), "latin1").toString("binary"),
      )!,
      conn,
    );
  for (const m of sipParsed) layer.createServerTransaction(m, conn);
  const next = ringCursor();
  const common = { group, bytes: bytes.length, batch: BATCH };
  // Each case's loop is written out (the same shape as casesFor's): the measured loop calls
  // the code under test directly, not through a shared runner's parameter.
  return [
    {
      ...common,
      operation: OP.match,
      impl: "siptm",
      run: () => {
        let s = 0;
        for (let i = 0; i < BATCH; i++) s += table.get(serverKey(parsed[next()]! as SipRequest, false)) ?? 0;
        sink(s);
      },
    },
    {
      ...common,
      operation: OP.sipMatch,
      impl: "sip",
      run: () => {
        let s = 0;
        for (let i = 0; i < BATCH; i++) s += layer.getServer(sipParsed[next()]!) ? 1 : 0;
        sink(s);
      },
    },
  ];
}

interface Args {
  quick: boolean;
  time: number | undefined;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { quick: false, time: undefined };
  for (const a of argv) {
    if (a === "--quick") args.quick = true;
    else if (a.startsWith("--time=")) args.time = Number(a.slice("--time=".length));
    else if (a === "--help" || a === "-h") {
      console.log("usage: node dist/micro.js [--quick] [--time=<ms per case>]");
      process.exit(0);
    } else {
      console.error(`unknown argument: ${a}`);
      process.exit(2);
    }
  }
  if (args.time !== undefined && !(args.time > 0)) {
    console.error("--time needs a positive number of milliseconds");
    process.exit(2);
  }
  return args;
}

function ring(bytes: Buffer): Buffer[] {
  return Array.from({ length: RING }, () => Buffer.from(bytes));
}

/** The transaction-layer fields a server reads from every message. */
function touchTxnFields(m: SipMessage): number {
  return (
    m.callId.length +
    m.cseq.seq +
    m.cseq.method.length +
    (m.via.branch?.length ?? 0) +
    m.via.host.length +
    m.viaCount +
    (m.fromTag?.length ?? 0) +
    (m.toTag?.length ?? 0) +
    (m.maxForwards ?? 0) +
    m.body.length
  );
}

function touchSip(m: SipMessageObject): number {
  const h = m.headers;
  const via = h.via?.[0];
  return (
    (h["call-id"]?.length ?? 0) +
    (h.cseq?.seq ?? 0) +
    (h.cseq?.method.length ?? 0) +
    String(via?.params.branch ?? "").length +
    (via?.host.length ?? 0) +
    (h.via?.length ?? 0) +
    String(h.from?.params.tag ?? "").length +
    String(h.to?.params.tag ?? "").length +
    Number(h["max-forwards"] ?? 0) +
    (m.content?.length ?? 0)
  );
}

/** Both parsers must understand every message, and serialising must work, before anything is timed. */
function checkMessages(): void {
  for (const { name, bytes } of MESSAGES) {
    const m = parseMessage(bytes, PARSE_OPTIONS);
    fullParse(m);
    if (!m.toBuffer().equals(bytes)) throw new Error(`${name}: toBuffer() is not byte-identical`);
    m.pushVia(NEW_VIA);
    m.setMaxForwards(69);
    const edited = parseMessage(m.toBuffer(), PARSE_OPTIONS);
    if (edited.viaCount !== m.viaCount || edited.maxForwards !== 69) {
      throw new Error(`${name}: edited message does not parse back as expected`);
    }
    const s = sip.parse(bytes.toString("binary"));
    if (!s || s.headers["call-id"] !== m.callId || s.headers.cseq?.seq !== m.cseq.seq) {
      throw new Error(`${name}: the sip package did not parse the message`);
    }
    if (!sip.parse(sip.stringify(s))) throw new Error(`${name}: sip.stringify output does not parse back`);
  }
}

function casesFor(group: string, bytes: Buffer): BenchCase[] {
  const copies = ring(bytes);
  const parsed = copies.map((b) => parseMessage(b, PARSE_OPTIONS));
  const sipParsed = copies.map((b) => {
    const m = sip.parse(b.toString("binary"));
    if (!m) throw new Error(`${group}: sip.parse failed`);
    return m;
  });
  const next = ringCursor();
  let editBatch: SipMessage[] = [];
  const common = { group, bytes: bytes.length, batch: BATCH };
  // Each case's loop is written out: the measured loop calls the code under test directly,
  // not through a shared runner's parameter (the same shape again in matchCases).
  return [
    {
      ...common,
      operation: OP.parse,
      impl: "siptm",
      run: () => {
        let s = 0;
        for (let i = 0; i < BATCH; i++) s += touchTxnFields(parseMessage(copies[next()]!, PARSE_OPTIONS));
        sink(s);
      },
    },
    {
      ...common,
      operation: OP.full,
      impl: "siptm",
      run: () => {
        let s = 0;
        for (let i = 0; i < BATCH; i++) {
          const m = parseMessage(copies[next()]!, PARSE_OPTIONS);
          fullParse(m);
          s += touchTxnFields(m);
          for (const [name, value] of m.headers()) s += name.length + value.length;
        }
        sink(s);
      },
    },
    {
      ...common,
      operation: OP.serialise,
      impl: "siptm",
      run: () => {
        let s = 0;
        for (let i = 0; i < BATCH; i++) s += parsed[next()]!.toBuffer().length;
        sink(s);
      },
    },
    {
      ...common,
      operation: OP.edit,
      impl: "siptm",
      // Fresh, unedited messages for every timed call; parsing them is not timed.
      prepare: () => {
        editBatch = [];
        for (let i = 0; i < BATCH; i++) editBatch.push(parseMessage(copies[next()]!, PARSE_OPTIONS));
      },
      run: () => {
        let s = 0;
        for (let i = 0; i < BATCH; i++) {
          const m = editBatch[i]!;
          m.pushVia(NEW_VIA);
          m.setMaxForwards(69);
          s += m.toBuffer().length;
        }
        sink(s);
      },
    },
    {
      ...common,
      operation: OP.sipParse,
      impl: "sip",
      // A server receives a Buffer; the string conversion is part of the parse.
      run: () => {
        let s = 0;
        for (let i = 0; i < BATCH; i++) {
          const m = sip.parse(copies[next()]!.toString("binary"));
          s += m ? touchSip(m) : 0;
        }
        sink(s);
      },
    },
    {
      ...common,
      operation: OP.sipStringify,
      impl: "sip",
      // A server sends a Buffer; sip's transports convert with 'binary' too.
      run: () => {
        let s = 0;
        for (let i = 0; i < BATCH; i++) s += Buffer.from(sip.stringify(sipParsed[next()]!), "binary").length;
        sink(s);
      },
    },
  ];
}

function rowsWithRatios(results: readonly CaseResult[]): ReportRow[] {
  return results.map((result) => {
    const versus = VERSUS[result.operation];
    const base = versus ? results.find((r) => r.group === result.group && r.operation === versus) : undefined;
    return {
      result,
      ratio: base && base.opsPerSec > 0 ? result.opsPerSec / base.opsPerSec : undefined,
      versus: base ? versus : undefined,
    };
  });
}

function goal(rows: readonly ReportRow[], operation: string, name: string, target: number): Goal {
  const ratios = rows.filter((r) => r.result.operation === operation).map((r) => r.ratio ?? 0);
  const worst = Math.min(...ratios);
  return { name, target, worst, best: Math.max(...ratios), met: worst >= target };
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const time = args.time ?? (args.quick ? 150 : 2000);
  const warmupTime = args.quick ? 50 : 500;
  const preWarmCalls = args.quick ? 50 : 300;

  checkMessages();
  const cases = MESSAGES.flatMap((m) => [
    ...casesFor(m.name, m.bytes),
    ...matchCases(m.name, m.bytes, ring(m.bytes)),
  ]);
  console.log(
    `siptm micro benchmark: ${cases.length} cases, ${time} ms each (+${warmupTime} ms warm-up), ` +
      `${BATCH} operations per sample, Node ${process.version}`,
  );
  const results = runSuite(cases, {
    time,
    warmupTime,
    preWarmCalls,
    onResult: (r) => process.stdout.write(`  ${r.group} / ${r.operation}: done\n`),
  });
  // sip's transaction layer arms a real timer per transaction: end them, or the process waits for them.
  for (const layer of sipLayers) layer.destroy();
  const rows = rowsWithRatios(results);
  const goals = [
    goal(rows, OP.parse, "parse, transaction-layer fields vs sip.parse", 5),
    goal(rows, OP.full, "full parse vs sip.parse", 2),
  ];

  console.log(`\n${textTable(rows)}\n\n${goalsText(goals)}\n(checksum ${sinkChecksum()})`);

  const repoDir = fileURLToPath(new URL("../../", import.meta.url));
  const env = environment(repoDir, {
    "@siptm/core": packageVersion(new URL("../../packages/core/package.json", import.meta.url)),
    sip:
      packageVersion(new URL("../node_modules/sip/package.json", import.meta.url)) ??
      packageVersion(new URL("../../node_modules/sip/package.json", import.meta.url)),
    tinybench: packageVersion(new URL("../node_modules/tinybench/package.json", import.meta.url)),
  });
  const settings = { quick: args.quick, timeMs: time, warmupMs: warmupTime, batch: BATCH, ring: RING };
  const settingsText =
    `${time} ms per case after ${warmupTime} ms warm-up, ${BATCH} operations per sample, ` +
    `messages parsed as UDP datagrams${args.quick ? " (--quick: indicative only)" : ""}`;

  const resultsDir = new URL("../results/", import.meta.url);
  mkdirSync(resultsDir, { recursive: true });
  const markdown = markdownReport("siptm micro benchmark", env, settingsText, rows, goals);
  const json = jsonReport(env, settings, rows, goals);
  // Quick runs are too short to be quoted: they go to git-ignored *.tmp files.
  const mdName = args.quick ? "micro-quick.md.tmp" : "micro-latest.md";
  const jsonName = args.quick ? "micro-quick.json.tmp" : `micro-${env.date.slice(0, 10)}.json`;
  writeFileSync(new URL(mdName, resultsDir), markdown);
  writeFileSync(new URL(jsonName, resultsDir), json);
  console.log(`\nwrote bench/results/${mdName} and bench/results/${jsonName}`);
}

main();
