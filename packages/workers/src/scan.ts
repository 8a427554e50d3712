/**
 * The other cheap byte scans the coordinator needs: is it a response, which
 * method (ACK and CANCEL only), the top Via's branch, sent-by port and rport
 * flag, and the shard marker in a branch we made. Like callid.ts: no parse,
 * no string, no allocation.
 */
import { isWs, matchHeaderName, nextLine, type Span } from "./callid.js";

const LF = 10;
const CR = 13;
const SEMI = 59;
const COMMA = 44;
const EQ = 61;
// "via" in lower case
const VIA = [0x76, 0x69, 0x61] as const;
const BRANCH = [0x62, 0x72, 0x61, 0x6e, 0x63, 0x68] as const;
const RPORT = [0x72, 0x70, 0x6f, 0x72, 0x74] as const;
/** "z9hG4bK" then our "s" (RFC 3261 §8.1.1.7 magic cookie is case-sensitive as we write it). */
const MARKER = [0x7a, 0x39, 0x68, 0x47, 0x34, 0x62, 0x4b, 0x73] as const;

/** True when the message is a response ("SIP/" start line). A method token cannot contain "/". */
export function isResponse(buf: Uint8Array): boolean {
  return buf[0] === 0x53 && buf[1] === 0x49 && buf[2] === 0x50 && buf[3] === 0x2f;
}

export const METHOD_OTHER = 0;
export const METHOD_ACK = 1;
export const METHOD_CANCEL = 2;

/** ACK, CANCEL or anything else (method names are case-sensitive, RFC 3261 §7.1). */
export function methodKind(buf: Uint8Array): number {
  if (buf[0] === 0x41 && buf[1] === 0x43 && buf[2] === 0x4b && buf[3] === 0x20) return METHOD_ACK;
  if (
    buf[0] === 0x43 &&
    buf[1] === 0x41 &&
    buf[2] === 0x4e &&
    buf[3] === 0x43 &&
    buf[4] === 0x45 &&
    buf[5] === 0x4c &&
    buf[6] === 0x20
  )
    return METHOD_CANCEL;
  return METHOD_OTHER;
}

/** What `scanTopVia` finds in the first via-parm of the first Via line. */
export interface ViaScan {
  /** The branch value's range; start -1 when there is no branch. */
  branch: Span;
  /** sent-by port, or -1 when absent. */
  port: number;
  /** The `rport` parameter is present (with or without a value). */
  rport: boolean;
}

export function newViaScan(): ViaScan {
  return { branch: { start: -1, end: -1 }, port: -1, rport: false };
}

function isParamEnd(b: number | undefined): boolean {
  return b === undefined || b === SEMI || b === COMMA || b === CR || b === LF || b === EQ || isWs(b);
}

function sameName(buf: Uint8Array, s: number, e: number, name: readonly number[]): boolean {
  if (e - s !== name.length) return false;
  for (let k = 0; k < name.length; k++) {
    const b = buf[s + k]!;
    if ((b >= 0x41 && b <= 0x5a ? b | 0x20 : b) !== name[k]) return false;
  }
  return true;
}

/**
 * Scan the top Via value (the first value of the first Via / `v` line).
 * Returns false when there is no Via line before the end of the headers.
 */
export function scanTopVia(buf: Uint8Array, out: ViaScan): boolean {
  out.branch.start = -1;
  out.branch.end = -1;
  out.port = -1;
  out.rport = false;
  // The header-line walk is scanCallId's too, written out on purpose: once per datagram, no callback.
  const n = buf.length;
  let p = nextLine(buf, 0);
  while (p < n) {
    const c = buf[p]!;
    if (c === CR || c === LF) return false;
    const v = matchHeaderName(buf, p, VIA, 0x76 /* v */);
    if (v < 0) {
      p = nextLine(buf, p);
      continue;
    }
    // The via-parm runs to the first ";" (params), "," (next value) or the line end.
    let q = v;
    while (q < n && buf[q] !== SEMI && buf[q] !== COMMA && buf[q] !== CR && buf[q] !== LF) q++;
    let e = q;
    while (e > v && isWs(buf[e - 1])) e--;
    // sent-by is the last word before it: "SIP/2.0/UDP host:port".
    let s = e;
    while (s > v && !isWs(buf[s - 1])) s--;
    out.port = sentByPort(buf, s, e);
    // Parameters.
    while (q < n && buf[q] === SEMI) {
      q++;
      while (q < n && isWs(buf[q])) q++;
      const ns = q;
      while (q < n && !isParamEnd(buf[q])) q++;
      const ne = q;
      while (q < n && isWs(buf[q])) q++;
      let vs = -1;
      let ve = -1;
      if (buf[q] === EQ) {
        q++;
        while (q < n && isWs(buf[q])) q++;
        vs = q;
        while (q < n && !isParamEnd(buf[q])) q++;
        ve = q;
        while (q < n && isWs(buf[q])) q++;
      }
      if (sameName(buf, ns, ne, BRANCH) && vs >= 0 && ve > vs) {
        out.branch.start = vs;
        out.branch.end = ve;
      } else if (sameName(buf, ns, ne, RPORT)) {
        out.rport = true;
      }
    }
    return true;
  }
  return false;
}

/** "host:port", "[v6]:port" or a bare host: the port, or -1. */
function sentByPort(buf: Uint8Array, s: number, e: number): number {
  let i = s;
  if (buf[i] === 0x5b /* [ */) {
    while (i < e && buf[i] !== 0x5d /* ] */) i++;
    i++;
  } else {
    while (i < e && buf[i] !== 0x3a /* : */) i++;
  }
  if (i >= e || buf[i] !== 0x3a) return -1;
  let port = 0;
  let digits = 0;
  for (i++; i < e; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    port = port * 10 + d;
    if (++digits > 5) return -1;
  }
  return digits > 0 && port <= 65535 ? port : -1;
}

/**
 * The shard named in a branch we made ("z9hG4bK" + "s<shard>." + random,
 * see `Engine.newBranch` with `branchPrefix`), or -1 when the branch has no
 * such marker or names a shard ≥ `shards`.
 */
export function branchShard(buf: Uint8Array, branch: Span, shards: number): number {
  const s = branch.start;
  if (s < 0 || branch.end - s < MARKER.length + 2) return -1;
  for (let k = 0; k < MARKER.length; k++) if (buf[s + k] !== MARKER[k]) return -1;
  let i = s + MARKER.length;
  let shard = 0;
  let digits = 0;
  while (i < branch.end) {
    const b = buf[i]!;
    if (b === 0x2e /* . */) break;
    const d = b - 0x30;
    if (d < 0 || d > 9 || ++digits > 4) return -1;
    shard = shard * 10 + d;
    i++;
  }
  if (digits === 0 || i >= branch.end) return -1;
  return shard < shards ? shard : -1;
}

/** The text that goes between "z9hG4bK" and the random part of shard `i`'s branches. */
export function branchPrefixOf(shard: number): string {
  return `s${shard}.`;
}
