/**
 * The SipMessage implementation.
 *
 * Two representations of the header section:
 * - as parsed: the latin1 head string plus a flat array of byte ranges (a plain SMI array: small typed arrays are slow to allocate), one
 *   record of STRIDE numbers per header line (no objects per header);
 * - after the first edit: an array of Line objects; untouched lines keep a
 *   reference to their original range so serialisation copies their exact text.
 */

import { SipParseError } from "./errors.js";
import {
  countValues,
  cseqMethod,
  findTag,
  MAX_UINT32,
  parseCSeqRange,
  parseDecimal,
  parseVia,
  skipWs,
  splitCommas,
  trimEnd,
} from "./fields.js";
import { canonicalName, compactCode, isToken, rangeEqualsLower, unfold } from "./text.js";
import type { CSeq, SipRequest, SipResponse, Via } from "./types.js";

/** Numbers per header line in the index: lineStart, nameEnd, valueStart, valueEnd, lineEnd, flags. */
export const STRIDE = 6;
export const F_FOLDED = 1;

/** A header line once the message is edited. `orig` is the index of the untouched original line, or -1. */
interface Line {
  name: string;
  key: string;
  /** null until first read for an original line (cut from the head lazily). */
  value: string | null;
  orig: number;
}

const EMPTY_VIA: Via = Object.freeze({
  transport: "",
  host: "",
  port: undefined,
  branch: undefined,
  received: undefined,
  rport: undefined,
  maddr: undefined,
  ttl: undefined,
  params: Object.freeze([]) as ReadonlyArray<readonly [string, string | null]>,
  raw: "",
});

function checkName(name: string): void {
  if (!isToken(name)) throw new RangeError(`invalid header name ${JSON.stringify(name)}`);
}

function checkValue(value: string): void {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 13 || c === 10 || c > 255) {
      throw new RangeError(
        "header value must be a latin1 string without CR/LF (use latin1() from text.ts for UTF-8 text)",
      );
    }
  }
}

function err(code: string, reason: string): SipParseError {
  return new SipParseError(code, reason, -1, 400, "unknown");
}

export abstract class SipMessageImpl {
  readonly raw: Buffer;
  readonly version: string = "SIP/2.0";
  callId = "";
  cseq: CSeq = { seq: 0, method: "" };
  via: Via = EMPTY_VIA;
  viaCount = 0;
  fromTag: string | undefined = undefined;
  toTag: string | undefined = undefined;
  maxForwards: number | undefined = undefined;
  contentLength: number | undefined = undefined;
  body: Buffer;

  /** @internal latin1 text of start line + headers + blank line. */
  protected readonly _head: string;
  /** @internal header line ranges into _head. */
  protected readonly _idx: number[];
  /** @internal number of header lines in _idx. */
  protected readonly _n: number;
  /** @internal end of the start line including its terminator. */
  protected readonly _startEnd: number;
  /** @internal start of the blank line. */
  protected readonly _headEnd: number;
  /** @internal replaced start line (with CRLF), null when original. */
  protected _startLine: string | null = null;
  /** @internal edited header lines, null while unmodified. */
  protected _lines: Line[] | null = null;
  /** @internal cached serialisation. */
  protected _out: Buffer | null = null;

  constructor(
    raw: Buffer,
    head: string,
    idx: number[],
    n: number,
    startEnd: number,
    headEnd: number,
    body: Buffer,
  ) {
    this.raw = raw;
    this._head = head;
    this._idx = idx;
    this._n = n;
    this._startEnd = startEnd;
    this._headEnd = headEnd;
    this.body = body;
  }

  abstract readonly isRequest: boolean;

  get modified(): boolean {
    return this._lines !== null || this._startLine !== null;
  }

  // ------------------------------------------------------------ lookups (original form)

  private matches(k: number, key: string, cc: number): boolean {
    const idx = this._idx;
    const a = idx[k * STRIDE]!;
    const e = idx[k * STRIDE + 1]!;
    if (e - a === 1 && cc !== 0) return (this._head.charCodeAt(a) | 0x20) === cc;
    return rangeEqualsLower(this._head, a, e, key);
  }

  private origValue(k: number): string {
    const idx = this._idx;
    const b = k * STRIDE;
    const v = this._head.slice(idx[b + 2]!, idx[b + 3]!);
    return (idx[b + 5]! & F_FOLDED) !== 0 ? unfold(v) : v;
  }

  private origName(k: number): string {
    const b = k * STRIDE;
    return this._head.slice(this._idx[b]!, this._idx[b + 1]!);
  }

  // ------------------------------------------------------------ header access

  header(name: string): string | undefined {
    const key = canonicalName(name);
    const lines = this._lines;
    if (lines !== null) {
      for (const l of lines) if (l.key === key) return this.val(l);
      return undefined;
    }
    const cc = compactCode(key);
    for (let k = 0; k < this._n; k++) if (this.matches(k, key, cc)) return this.origValue(k);
    return undefined;
  }

  headerLines(name: string): string[] {
    const key = canonicalName(name);
    const out: string[] = [];
    const lines = this._lines;
    if (lines !== null) {
      for (const l of lines) if (l.key === key) out.push(this.val(l));
      return out;
    }
    const cc = compactCode(key);
    for (let k = 0; k < this._n; k++) if (this.matches(k, key, cc)) out.push(this.origValue(k));
    return out;
  }

  headerValues(name: string): string[] {
    const out: string[] = [];
    const r: number[] = [];
    for (const v of this.headerLines(name)) {
      r.length = 0;
      splitCommas(v, 0, v.length, r);
      for (let i = 0; i < r.length; i += 2) {
        if (r[i + 1]! > r[i]!) out.push(v.slice(r[i], r[i + 1]));
      }
    }
    return out;
  }

  has(name: string): boolean {
    const key = canonicalName(name);
    const lines = this._lines;
    if (lines !== null) {
      for (const l of lines) if (l.key === key) return true;
      return false;
    }
    const cc = compactCode(key);
    for (let k = 0; k < this._n; k++) if (this.matches(k, key, cc)) return true;
    return false;
  }

  headers(): Array<[string, string]> {
    const lines = this._lines;
    if (lines !== null) return lines.map((l) => [l.name, this.val(l)]);
    const out: Array<[string, string]> = [];
    for (let k = 0; k < this._n; k++) out.push([this.origName(k), this.origValue(k)]);
    return out;
  }

  /**
   * The header lines of that name as they will be serialised, each with its
   * name as written and a CRLF end (original lines keep their exact bytes,
   * folding included). Used by buildResponse to copy Via/From/Call-ID/CSeq.
   */
  headerText(name: string): string {
    const key = canonicalName(name);
    let out = "";
    const lines = this._lines;
    if (lines !== null) {
      for (const l of lines) {
        if (l.key !== key) continue;
        out += l.orig >= 0 ? this.origText(l.orig) : `${l.name}: ${l.value}\r\n`;
      }
      return out;
    }
    const cc = compactCode(key);
    for (let k = 0; k < this._n; k++) {
      if (this.matches(k, key, cc)) out += this.origText(k);
    }
    return out;
  }

  /** Original text of header line k; a line using bare LF line ends is rebuilt with CRLF. */
  private origText(k: number): string {
    const b = k * STRIDE;
    const idx = this._idx;
    const t = this._head.slice(idx[b]!, idx[b + 4]!);
    for (let i = t.indexOf("\n"); i >= 0; i = t.indexOf("\n", i + 1)) {
      if (i === 0 || t.charCodeAt(i - 1) !== 13) return `${this.origName(k)}: ${this.origValue(k)}\r\n`;
    }
    return t;
  }

  /** The start line as it will be serialised, without its line terminator. */
  get startLine(): string {
    const s = this._startLine ?? this._head.slice(0, this._startEnd);
    return s.slice(0, trimEnd(s, 0, s.length));
  }

  // ------------------------------------------------------------ edits

  private edit(): Line[] {
    this._out = null;
    let lines = this._lines;
    if (lines === null) {
      lines = new Array<Line>(this._n);
      for (let k = 0; k < this._n; k++) {
        const name = this.origName(k);
        lines[k] = { name, key: canonicalName(name), value: null, orig: k };
      }
      this._lines = lines;
    }
    return lines;
  }

  /**
   * Check a new value of an eagerly parsed header before it is committed, so a
   * failed edit leaves the message untouched.
   */
  private precheck(key: string, value: string): void {
    switch (key) {
      case "via":
        parseVia(value, 0, value.length);
        break;
      case "cseq":
        parseCSeqRange(value, 0, value.length);
        break;
      case "max-forwards":
        if (parseDecimal(value, skipWs(value, 0, value.length), trimEnd(value, 0, value.length), 255) < 0)
          throw err("bad-max-forwards", "Max-Forwards must be 0-255");
        break;
      case "content-length":
        if (
          parseDecimal(value, skipWs(value, 0, value.length), trimEnd(value, 0, value.length), MAX_UINT32) < 0
        )
          throw err("bad-content-length", "Content-Length must be a non-negative decimal");
        break;
    }
  }

  private val(l: Line): string {
    if (l.value === null) l.value = this.origValue(l.orig);
    return l.value;
  }

  /** Recompute the eager field(s) derived from header `key` after an edit. */
  private refresh(key: string): void {
    const lines = this._lines!;
    switch (key) {
      case "via": {
        let count = 0;
        let top: Via | undefined;
        for (const l of lines) {
          if (l.key !== "via") continue;
          const v = this.val(l);
          if (top === undefined) top = parseVia(v, 0, v.length);
          count += countValues(v, 0, v.length);
        }
        this.via = top ?? EMPTY_VIA;
        this.viaCount = count;
        break;
      }
      case "call-id": {
        const l = lines.find((x) => x.key === key);
        this.callId = l === undefined ? "" : this.val(l).trim();
        break;
      }
      case "cseq": {
        const l = lines.find((x) => x.key === key);
        if (l === undefined) this.cseq = { seq: 0, method: "" };
        else {
          const v = this.val(l);
          const seq = parseCSeqRange(v, 0, v.length);
          this.cseq = { seq, method: cseqMethod };
        }
        this.onCSeq();
        break;
      }
      case "from":
      case "to": {
        const l = lines.find((x) => x.key === key);
        const v = l === undefined ? "" : this.val(l);
        const tag = l === undefined ? undefined : findTag(v, 0, v.length);
        if (key === "from") this.fromTag = tag;
        else this.toTag = tag;
        break;
      }
      case "max-forwards": {
        const l = lines.find((x) => x.key === key);
        if (l === undefined) this.maxForwards = undefined;
        else {
          const v = this.val(l);
          this.maxForwards = parseDecimal(v, skipWs(v, 0, v.length), trimEnd(v, 0, v.length), 255);
        }
        break;
      }
      case "content-length": {
        const l = lines.find((x) => x.key === key);
        if (l === undefined) this.contentLength = undefined;
        else {
          const v = this.val(l);
          this.contentLength = parseDecimal(v, skipWs(v, 0, v.length), trimEnd(v, 0, v.length), MAX_UINT32);
        }
        break;
      }
    }
  }

  /** @internal responses keep `method` in step with CSeq. */
  protected onCSeq(): void {}

  prependHeader(name: string, value: string): void {
    checkName(name);
    checkValue(value);
    const key = canonicalName(name);
    this.precheck(key, value);
    const lines = this.edit();
    let at = lines.findIndex((l) => l.key === key);
    if (at < 0) at = 0;
    lines.splice(at, 0, { name, key, value, orig: -1 });
    this.refresh(key);
  }

  appendHeader(name: string, value: string): void {
    checkName(name);
    checkValue(value);
    const key = canonicalName(name);
    this.precheck(key, value);
    const lines = this.edit();
    lines.push({ name, key, value, orig: -1 });
    this.refresh(key);
  }

  setHeader(name: string, value: string): void {
    checkName(name);
    checkValue(value);
    const key = canonicalName(name);
    this.precheck(key, value);
    const lines = this.edit();
    let first = -1;
    let w = 0;
    for (let r = 0; r < lines.length; r++) {
      const l = lines[r]!;
      if (l.key === key) {
        if (first >= 0) continue;
        first = w;
        lines[w++] = { name: l.name, key, value, orig: -1 };
      } else {
        lines[w++] = l;
      }
    }
    lines.length = w;
    if (first < 0) lines.push({ name, key, value, orig: -1 });
    this.refresh(key);
  }

  removeHeader(name: string): number {
    const key = canonicalName(name);
    if (!this.has(name)) return 0;
    const lines = this.edit();
    let w = 0;
    for (let r = 0; r < lines.length; r++) {
      const l = lines[r]!;
      if (l.key !== key) lines[w++] = l;
    }
    const removed = lines.length - w;
    lines.length = w;
    this.refresh(key);
    return removed;
  }

  removeFirstValue(name: string): string | undefined {
    const key = canonicalName(name);
    if (!this.has(name)) return undefined;
    const lines = this.edit();
    const at = lines.findIndex((l) => l.key === key);
    const l = lines[at]!;
    const v = this.val(l);
    const r: number[] = [];
    splitCommas(v, 0, v.length, r);
    // skip leading empty elements (", a")
    let k = 0;
    while (k + 2 < r.length && r[k] === r[k + 1]) k += 2;
    const first = v.slice(r[k], r[k + 1]);
    let restStart = -1;
    for (let j = k + 2; j < r.length; j += 2) {
      if (r[j + 1]! > r[j]!) {
        restStart = r[j]!;
        break;
      }
    }
    if (restStart < 0) lines.splice(at, 1);
    else lines[at] = { name: l.name, key, value: v.slice(restStart), orig: -1 };
    this.refresh(key);
    return first;
  }

  pushVia(value: string): void {
    this.prependHeader("Via", value);
  }

  /** Remove the top Via value. When none is left, `via` is an empty placeholder and `viaCount` is 0. */
  popVia(): string | undefined {
    return this.removeFirstValue("via");
  }

  setMaxForwards(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 255)
      throw new RangeError("Max-Forwards must be an integer 0-255");
    this.setHeader("Max-Forwards", String(n));
  }

  setBody(body: Buffer, contentType?: string): void {
    if (contentType !== undefined) {
      checkValue(contentType);
    }
    this.setHeader("Content-Length", String(body.length));
    if (contentType !== undefined) this.setHeader("Content-Type", contentType);
    this.body = body;
  }

  // ------------------------------------------------------------ serialisation

  toBuffer(): Buffer {
    if (this._out !== null) return this._out;
    if (this._lines === null && this._startLine === null) return this.raw;
    const head = this._head;
    const idx = this._idx;
    let s = this._startLine ?? head.slice(0, this._startEnd);
    const lines = this._lines;
    if (lines === null) {
      s += head.slice(this._startEnd);
    } else {
      for (const l of lines) {
        if (l.orig >= 0) {
          const b = l.orig * STRIDE;
          s += head.slice(idx[b]!, idx[b + 4]!);
        } else {
          s += `${l.name}: ${l.value}\r\n`;
        }
      }
      s += this._headEnd < head.length ? head.slice(this._headEnd) : "\r\n";
    }
    const hl = Buffer.byteLength(s, "latin1");
    const out = Buffer.allocUnsafe(hl + this.body.length);
    out.write(s, 0, hl, "latin1");
    this.body.copy(out, hl);
    this._out = out;
    return out;
  }

  toString(): string {
    return this.toBuffer().toString("latin1");
  }
}

export class SipRequestImpl extends SipMessageImpl implements SipRequest {
  readonly isRequest = true as const;
  method: string;
  uri: string;

  constructor(
    raw: Buffer,
    head: string,
    idx: number[],
    n: number,
    startEnd: number,
    headEnd: number,
    body: Buffer,
    method: string,
    uri: string,
  ) {
    super(raw, head, idx, n, startEnd, headEnd, body);
    this.method = method;
    this.uri = uri;
  }

  setUri(uri: string): void {
    if (uri.length === 0) throw new RangeError("empty Request-URI");
    for (let i = 0; i < uri.length; i++) {
      const c = uri.charCodeAt(i);
      if (c <= 32 || c === 127 || c > 255)
        throw new RangeError("Request-URI must not contain whitespace/CTL");
    }
    this._out = null;
    this._startLine = `${this.method} ${uri} SIP/2.0\r\n`;
    this.uri = uri;
  }
}

export class SipResponseImpl extends SipMessageImpl implements SipResponse {
  readonly isRequest = false as const;
  status: number;
  reason: string;
  method = "";

  constructor(
    raw: Buffer,
    head: string,
    idx: number[],
    n: number,
    startEnd: number,
    headEnd: number,
    body: Buffer,
    status: number,
    reason: string,
  ) {
    super(raw, head, idx, n, startEnd, headEnd, body);
    this.status = status;
    this.reason = reason;
  }

  protected override onCSeq(): void {
    this.method = this.cseq.method;
  }
}
