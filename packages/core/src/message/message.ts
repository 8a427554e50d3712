/**
 * The SipMessage implementation.
 *
 * The header section is held as parsed: the latin1 head string, the raw
 * Buffer, and a flat array of line records (a plain SMI array: small typed
 * arrays are slow to allocate), STRIDE numbers per header line, no objects
 * per header. Values are cut from the head on demand; the header id of a line
 * the parser did not identify (not a transaction header) is resolved on first
 * lookup and kept in its record.
 *
 * Edits do not rebuild that. The first edit creates an EditState whose `ord`
 * lists the header lines in output order as small integers (k >= 0: original
 * line k, untouched; ~j: the j-th line added by an edit). Eager fields are
 * updated from the edited value alone where that is exact (a pushed Via is
 * the new top Via). Serialisation copies runs of untouched bytes from `raw`
 * and writes only the added lines, into one allocation.
 */

import { SipParseError } from "./errors.js";
import * as fld from "./fields.js";
import {
  bytesOf,
  countValues,
  cseqMethod,
  EMPTY_VIA,
  findTag,
  parseCSeqRange,
  parseTrimmedDecimal,
  parseVia,
  splitCommas,
  viaEnd,
} from "./fields.js";
import * as ids from "./names.js";
import { headerId, headerIdOfKey, nameString } from "./names.js";
import { canonicalName, isToken, unfold } from "./text.js";
import type { CSeq, SipRequest, SipResponse, Via } from "./types.js";

// Module-local copies of imported constants and functions: V8 folds a module's own
// constants into optimised code but re-reads an imported binding (with a
// TDZ check) at every use, which costs in the per-byte and per-line loops.
// Each hot module keeps its own copies (hence the same lines in parser.ts), by design.
const H_CALL_ID = ids.H_CALL_ID;
const H_CONTENT_LENGTH = ids.H_CONTENT_LENGTH;
const H_CSEQ = ids.H_CSEQ;
const H_FROM = ids.H_FROM;
const H_LAST_EAGER = ids.H_LAST_EAGER;
const H_MAX_FORWARDS = ids.H_MAX_FORWARDS;
const H_PENDING = ids.H_PENDING;
const H_TO = ids.H_TO;
const H_VIA = ids.H_VIA;
const MAX_UINT32 = fld.MAX_UINT32;

/**
 * Numbers per header line in the index: lineStart, nameEnd, valueStart,
 * valueEnd, info. info = header id (names.ts) << ID_SHIFT | flags. A line ends
 * where the next one starts (the last one at the blank line).
 */
export const STRIDE = 5;
export const F_FOLDED = 1;
/** On a Via line: the parser found it to be one via-parm that passes the strict check too. */
export const F_VIA_CHECKED = 2;
export const ID_SHIFT = 2;
const FLAGS = (1 << ID_SHIFT) - 1;
/**
 * After the line records the index holds three more numbers (HEAD_EXTRA):
 * the end of the start line (after its terminator), the start of the blank
 * line, and the start of the body. Fewer fields per message object.
 */
export const HEAD_EXTRA = 3;

/**
 * Parses the bytes of a message that parsed before (set by parser.ts, which
 * imports this module: a hook instead of an import cycle).
 */
let reparse: (raw: Buffer, lines: number, vias: number) => SipMessageImpl = () => {
  throw new Error("the parser is not loaded");
};
/** @internal */
export function setReparse(fn: (raw: Buffer, lines: number, vias: number) => SipMessageImpl): void {
  reparse = fn;
}

/** A header line added by an edit. */
class AddedLine {
  declare readonly name: string;
  declare readonly key: string;
  declare readonly id: number;
  declare readonly value: string;
  constructor(name: string, key: string, id: number, value: string) {
    this.name = name;
    this.key = key;
    this.id = id;
    this.value = value;
  }
}

function checkName(name: string): void {
  if (!isToken(name)) throw new RangeError(`invalid header name ${JSON.stringify(name)}`);
}

/**
 * CR, LF or a char above 0xFF. One character class: a linear scan that cannot
 * backtrack (and several times faster than a charCodeAt loop).
 */
const NOT_IN_VALUE = /[\r\n\u0100-\uffff]/;

function checkValue(value: string): void {
  if (NOT_IN_VALUE.test(value)) {
    throw new RangeError(
      "header value must be a latin1 string without CR/LF (use latin1() from text.ts for UTF-8 text)",
    );
  }
}

/** 0, 1, 2, ...: the order of the lines of an unedited message is a slice of it. */
let identity: number[] = [];
function firstIntegers(n: number): number[] {
  if (identity.length < n) {
    const more = identity.slice();
    for (let k = more.length; k < Math.max(n, 64); k++) more.push(k);
    identity = more;
  }
  return identity.slice(0, n);
}

function err(code: string, reason: string): SipParseError {
  return new SipParseError(code, reason, -1, 400, "unknown");
}

/** s without trailing SP/HT/CR/LF. */
function trimEndText(s: string): string {
  let e = s.length;
  while (e > 0) {
    const c = s.charCodeAt(e - 1);
    if (c === 32 || c === 9 || c === 13 || c === 10) e--;
    else break;
  }
  return e === s.length ? s : s.slice(0, e);
}

/** Case-insensitive compare of b[a, e) with an already lower-cased ASCII string. */
function bytesEqualLower(b: Uint8Array, a: number, e: number, lower: string): boolean {
  const n = lower.length;
  if (e - a !== n) return false;
  for (let i = 0; i < n; i++) {
    let c = b[a + i]!;
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

const latin1Write: (b: Buffer, s: string, at: number) => void =
  typeof (Buffer.prototype as unknown as { latin1Write?: unknown }).latin1Write === "function"
    ? (b, s, at) => {
        (b as unknown as { latin1Write(s: string, o: number): number }).latin1Write(s, at);
      }
    : (b, s, at) => {
        b.write(s, at, s.length, "latin1");
      };

/** Below this many bytes a JS loop beats the native copy/write call. */
const SHORT = 48;

/** Copy raw[a, e) to out at w; returns the bytes copied. */
function copyRun(raw: Buffer, out: Buffer, w: number, a: number, e: number): number {
  const n = e - a;
  if (n >= SHORT) return raw.copy(out, w, a, e);
  for (let i = 0; i < n; i++) out[w + i] = raw[a + i]!;
  return n;
}

/** Write the latin1 text at out[w]; returns its length. */
function writeText(out: Buffer, text: string, w: number): number {
  const n = text.length;
  if (n >= SHORT) latin1Write(out, text, w);
  else for (let i = 0; i < n; i++) out[w + i] = text.charCodeAt(i);
  return n;
}

/** Via values in the text of the last `precheck` of a Via (set with its result). */
let precheckViaCount = 0;

/** What the edits of a message changed; created by the first edit. */
class EditState {
  /** Replaced start line (with CRLF), null when original. */
  declare startLine: string | null;
  /** Header lines in output order (see the file comment), null while only the start line changed. */
  declare ord: number[] | null;
  /** Lines added by edits, referenced from ord as ~index. */
  declare added: AddedLine[];
  /** Cached serialisation. */
  declare out: Buffer | null;
  /** The body as parsed (its bytes follow the blank line in raw). */
  declare body0: Buffer;
  /** viaCount may not match the lines (a recount threw): the next Via edit recounts. */
  declare viaStale: boolean;
  constructor(body0: Buffer) {
    this.startLine = null;
    this.ord = null;
    this.added = [];
    this.out = null;
    this.body0 = body0;
    this.viaStale = false;
  }
}

/*
 * Fields are `declare`d and assigned once in the constructors, always in the
 * same order: one object shape, and no define-then-assign of every field.
 * Constants (version, isRequest) live on the prototypes.
 */
export abstract class SipMessageImpl {
  declare readonly raw: Buffer;
  declare readonly version: string;
  declare callId: string;
  declare cseq: CSeq;
  declare viaCount: number;
  declare fromTag: string | undefined;
  declare toTag: string | undefined;
  declare maxForwards: number | undefined;
  declare contentLength: number | undefined;
  declare body: Buffer;

  /** Storage of `_head`; null after `compact()` until the next read parses `raw` again. */
  declare private _h: string | null;
  /** Storage of `_idx`; null with `_h`. */
  declare private _i: number[] | null;
  /** Header lines, kept by compact() for the parse that restores them. */
  declare private _lines: number;
  /** @internal null until the first edit. */
  declare protected _edit: EditState | null;
  /** compact() folded edits into `raw`: still `modified`. */
  declare private _folded: boolean;
  /** Storage of `via`; null after `compact()` until the next read of `via` parses `raw` again. */
  declare private _v: Via | null;

  // Positional arguments, not an init object (nor one shared by the request and response
  // constructors): this runs once per parsed message, and an object per message would cost.
  constructor(
    raw: Buffer,
    head: string,
    idx: number[],
    body: Buffer,
    callId: string,
    cseq: CSeq,
    via: Via,
    viaCount: number,
    fromTag: string | undefined,
    toTag: string | undefined,
    maxForwards: number | undefined,
    contentLength: number | undefined,
  ) {
    this.raw = raw;
    this.callId = callId;
    this.cseq = cseq;
    this._v = via;
    this.viaCount = viaCount;
    this.fromTag = fromTag;
    this.toTag = toTag;
    this.maxForwards = maxForwards;
    this.contentLength = contentLength;
    this.body = body;
    this._h = head;
    this._i = idx;
    this._lines = 0;
    this._edit = null;
    this._folded = false;
  }

  /** The top Via, parsed (an empty placeholder when there is none). */
  get via(): Via {
    const v = this._v;
    if (v !== null) return v;
    // compacted: the top Via of `raw`, without keeping the rest of the parse
    const again = reparse(this.raw, this._lines, this.viaCount).via;
    this._v = again;
    return again;
  }

  /** @internal latin1 text of the message from the start line at least to the blank line (offsets = raw offsets). */
  get _head(): string {
    const h = this._h;
    return h !== null ? h : this.restore();
  }

  /** @internal header line records (STRIDE numbers each) into _head / raw, then HEAD_EXTRA numbers. */
  get _idx(): number[] {
    const i = this._i;
    if (i !== null) return i;
    this.restore();
    return this._i!;
  }

  /**
   * Let go of the parsed head (its latin1 string and line records) and the
   * parsed top Via, keeping `raw` and the other eager fields, which hold no
   * view into the head. A message
   * that must stay a long time and will rarely be read again (the request of
   * a completed server transaction, kept for 32 s) shrinks by about twice its
   * size; the next header read (or read of `via`) parses `raw` again, to the
   * same result.
   *
   * An edited message (a Via stamped with `received`, say) is first folded:
   * its serialisation becomes `raw` and the edit records go, so it reads and
   * serialises the same afterwards and stays `modified`. A message whose Via
   * count is unsure after a failed edit keeps everything.
   */
  compact(): void {
    const ed = this._edit;
    if (ed !== null) {
      if (ed.viaStale) return;
      const out = this.toBuffer();
      this._lines = ed.ord === null ? this._n : ed.ord.length;
      const body = this.body;
      (this as { raw: Buffer }).raw = out;
      // The body as a view of the new bytes: nothing keeps the old datagram alive.
      if (body.length > 0) this.body = out.subarray(out.length - body.length);
      this._edit = null;
      this._folded = true;
    } else if (this._i !== null) this._lines = this._n;
    else return;
    this._h = null;
    this._i = null;
    this._v = null;
  }

  /** @internal true while compacted (for tests). */
  get compacted(): boolean {
    return this._h === null;
  }

  /** Parse `raw` again after compact(); returns the head. */
  private restore(): string {
    const again = reparse(this.raw, this._lines, this.viaCount);
    this._h = again._h;
    this._i = again._i;
    if (this._v === null) this._v = again.via;
    return again._h!;
  }

  /** @internal number of header lines. */
  protected get _n(): number {
    return (this._idx.length - HEAD_EXTRA) / STRIDE;
  }

  /** @internal end of the start line including its terminator. */
  protected get _startEnd(): number {
    const idx = this._idx;
    return idx[idx.length - 3]!;
  }

  /** @internal start of the blank line. */
  protected get _headEnd(): number {
    const idx = this._idx;
    return idx[idx.length - 2]!;
  }

  /** @internal start of the body (after the blank line). */
  protected get _bodyOff(): number {
    const idx = this._idx;
    return idx[idx.length - 1]!;
  }

  abstract readonly isRequest: boolean;

  get modified(): boolean {
    return this._edit !== null || this._folded;
  }

  // ------------------------------------------------------------ original lines

  /**
   * Header id of original line k. The parser identifies only the eager
   * headers; another line is resolved here on first use and the id kept.
   */
  private lineId(k: number): number {
    const idx = this._idx;
    const r = k * STRIDE;
    const info = idx[r + 4]!;
    const id = info >> ID_SHIFT;
    if (id !== H_PENDING) return id;
    const resolved = headerId(this.raw, idx[r]!, idx[r + 1]!);
    idx[r + 4] = (resolved << ID_SHIFT) | (info & FLAGS);
    return resolved;
  }

  /** @internal resolve the ids of all lines (for code that reads _idx directly). */
  resolveIds(): void {
    for (let k = 0, n = this._n; k < n; k++) this.lineId(k);
  }

  /** Original line k has that header (canonical key, id from headerIdOfKey). */
  private origIs(k: number, key: string, id: number): boolean {
    // the parser resolved every eager header: a pending line is none of them
    if (id !== 0 && id <= H_LAST_EAGER) return this._idx[k * STRIDE + 4]! >> ID_SHIFT === id;
    const lid = this.lineId(k);
    if (id !== 0) return lid === id;
    const idx = this._idx;
    const r = k * STRIDE;
    return lid === 0 && bytesEqualLower(this.raw, idx[r]!, idx[r + 1]!, key);
  }

  private origValue(k: number): string {
    const idx = this._idx;
    const r = k * STRIDE;
    const v = this._head.slice(idx[r + 2]!, idx[r + 3]!);
    return (idx[r + 4]! & F_FOLDED) !== 0 ? unfold(v) : v;
  }

  private origName(k: number): string {
    const idx = this._idx;
    const r = k * STRIDE;
    return nameString(this.raw, this._head, idx[r]!, idx[r + 1]!, this.lineId(k));
  }

  /** End of original line k (after its line terminator, folds included). */
  private lineEnd(k: number): number {
    const idx = this._idx;
    const r = (k + 1) * STRIDE;
    return r < idx.length - HEAD_EXTRA ? idx[r]! : idx[idx.length - 2]!;
  }

  /** Header lines in output order once edited, null while the original lines are unchanged. */
  private get _ord(): number[] | null {
    const ed = this._edit;
    return ed === null ? null : ed.ord;
  }

  // ------------------------------------------------------------ lines of an edited message

  private added(ref: number): AddedLine {
    return this._edit!.added[~ref]!;
  }

  private refIs(ref: number, key: string, id: number): boolean {
    return ref >= 0 ? this.origIs(ref, key, id) : this.added(ref).key === key;
  }

  private refValue(ref: number): string {
    return ref >= 0 ? this.origValue(ref) : this.added(ref).value;
  }

  private refName(ref: number): string {
    return ref >= 0 ? this.origName(ref) : this.added(ref).name;
  }

  // ------------------------------------------------------------ header access

  header(name: string): string | undefined {
    const key = canonicalName(name);
    const id = headerIdOfKey(key);
    const ord = this._ord;
    if (ord !== null) {
      for (let i = 0; i < ord.length; i++) if (this.refIs(ord[i]!, key, id)) return this.refValue(ord[i]!);
      return undefined;
    }
    for (let k = 0; k < this._n; k++) if (this.origIs(k, key, id)) return this.origValue(k);
    return undefined;
  }

  headerLines(name: string): string[] {
    const key = canonicalName(name);
    const id = headerIdOfKey(key);
    const out: string[] = [];
    const ord = this._ord;
    if (ord !== null) {
      for (let i = 0; i < ord.length; i++) if (this.refIs(ord[i]!, key, id)) out.push(this.refValue(ord[i]!));
      return out;
    }
    for (let k = 0; k < this._n; k++) if (this.origIs(k, key, id)) out.push(this.origValue(k));
    return out;
  }

  headerValues(name: string): string[] {
    const out: string[] = [];
    const r: number[] = [];
    for (const v of this.headerLines(name)) {
      r.length = 0;
      splitCommas(bytesOf(v, true), 0, v.length, r);
      for (let i = 0; i < r.length; i += 2) {
        if (r[i + 1]! > r[i]!) out.push(v.slice(r[i], r[i + 1]));
      }
    }
    return out;
  }

  has(name: string): boolean {
    const key = canonicalName(name);
    const id = headerIdOfKey(key);
    const ord = this._ord;
    if (ord !== null) {
      for (let i = 0; i < ord.length; i++) if (this.refIs(ord[i]!, key, id)) return true;
      return false;
    }
    for (let k = 0; k < this._n; k++) if (this.origIs(k, key, id)) return true;
    return false;
  }

  headers(): Array<[string, string]> {
    const ord = this._ord;
    if (ord !== null) {
      const out: Array<[string, string]> = [];
      for (let i = 0; i < ord.length; i++) out.push([this.refName(ord[i]!), this.refValue(ord[i]!)]);
      return out;
    }
    const n = this._n;
    const out = new Array<[string, string]>(n);
    for (let k = 0; k < n; k++) out[k] = [this.origName(k), this.origValue(k)];
    return out;
  }

  /**
   * The header lines of that name as they will be serialised, each with its
   * name as written and a CRLF end (original lines keep their exact bytes,
   * folding included). Used by buildResponse to copy Via/From/Call-ID/CSeq.
   */
  headerText(name: string): string {
    const key = canonicalName(name);
    const id = headerIdOfKey(key);
    let out = "";
    const ord = this._ord;
    if (ord !== null) {
      for (let i = 0; i < ord.length; i++) {
        const ref = ord[i]!;
        if (!this.refIs(ref, key, id)) continue;
        if (ref >= 0) out += this.origText(ref);
        else {
          const l = this.added(ref);
          out += `${l.name}: ${l.value}\r\n`;
        }
      }
      return out;
    }
    for (let k = 0; k < this._n; k++) {
      if (this.origIs(k, key, id)) out += this.origText(k);
    }
    return out;
  }

  /** Original text of header line k; a line using bare LF line ends is rebuilt with CRLF. */
  private origText(k: number): string {
    const t = this._head.slice(this._idx[k * STRIDE]!, this.lineEnd(k));
    for (let i = t.indexOf("\n"); i >= 0; i = t.indexOf("\n", i + 1)) {
      if (i === 0 || t.charCodeAt(i - 1) !== 13) return `${this.origName(k)}: ${this.origValue(k)}\r\n`;
    }
    return t;
  }

  /** The start line as it will be serialised, without its line terminator. */
  get startLine(): string {
    return trimEndText(this._edit?.startLine ?? this._head.slice(0, this._startEnd));
  }

  // ------------------------------------------------------------ edits

  /** @internal the edit state, created on the first edit; drops the cached serialisation. */
  protected editState(): EditState {
    let ed = this._edit;
    if (ed === null) {
      ed = new EditState(this.body);
      this._edit = ed;
    }
    ed.out = null;
    return ed;
  }

  private edit(): number[] {
    const ed = this.editState();
    let ord = ed.ord;
    if (ord === null) {
      ord = firstIntegers(this._n);
      ed.ord = ord;
    }
    return ord;
  }

  private addLine(name: string, key: string, id: number, value: string): number {
    const added = this._edit!.added;
    added.push(new AddedLine(name, key, id, value));
    return ~(added.length - 1);
  }

  /** Index in `ord` of the first line with that header, -1 when none. */
  private firstIn(ord: number[], key: string, id: number): number {
    for (let i = 0; i < ord.length; i++) if (this.refIs(ord[i]!, key, id)) return i;
    return -1;
  }

  /**
   * Check a new value of an eagerly parsed header before it is committed, so a
   * failed edit leaves the message untouched. Returns the parsed Via for a Via
   * (and sets precheckViaCount).
   */
  private precheck(id: number, value: string): Via | undefined {
    switch (id) {
      case H_VIA: {
        const b = bytesOf(value, true);
        const via = parseVia(b, value, 0, value.length);
        precheckViaCount = viaEnd === value.length ? 1 : countValues(b, 0, value.length);
        return via;
      }
      case H_CSEQ:
        parseCSeqRange(bytesOf(value, true), value, 0, value.length);
        break;
      case H_MAX_FORWARDS:
        if (parseTrimmedDecimal(bytesOf(value, true), 0, value.length, 255) < 0)
          throw err("bad-max-forwards", "Max-Forwards must be 0-255");
        break;
      case H_CONTENT_LENGTH:
        if (parseTrimmedDecimal(bytesOf(value, true), 0, value.length, MAX_UINT32) < 0)
          throw err("bad-content-length", "Content-Length must be a non-negative decimal");
        break;
    }
    return undefined;
  }

  /** Set the eager field of header `id` (not Via) from `value`, the value of its first line. */
  private fieldFrom(id: number, value: string): void {
    switch (id) {
      case H_CALL_ID:
        this.callId = value.trim();
        break;
      case H_CSEQ: {
        const seq = parseCSeqRange(bytesOf(value, true), value, 0, value.length);
        this.cseq = { seq, method: cseqMethod };
        this.onCSeq();
        break;
      }
      case H_FROM:
        this.fromTag = findTag(bytesOf(value, true), value, 0, value.length);
        break;
      case H_TO:
        this.toTag = findTag(bytesOf(value, true), value, 0, value.length);
        break;
      case H_MAX_FORWARDS:
        this.maxForwards = parseTrimmedDecimal(bytesOf(value, true), 0, value.length, 255);
        break;
      case H_CONTENT_LENGTH:
        this.contentLength = parseTrimmedDecimal(bytesOf(value, true), 0, value.length, MAX_UINT32);
        break;
    }
  }

  /** Recompute the eager field(s) of header `id` from the lines as they are now (after a removal). */
  private refresh(key: string, id: number): void {
    if (id === 0 || id > H_LAST_EAGER) return;
    const ord = this._ord!;
    if (id === H_VIA) {
      // a throw below (a malformed Via becoming the top one) leaves the edit
      // done and via/viaCount as they were: marked stale until a recount
      const ed = this._edit!;
      ed.viaStale = true;
      let count = 0;
      let top: Via | undefined;
      for (let i = 0; i < ord.length; i++) {
        const ref = ord[i]!;
        if (!this.refIs(ref, key, id)) continue;
        const v = this.refValue(ref);
        const b = bytesOf(v, true);
        if (top === undefined) top = parseVia(b, v, 0, v.length);
        count += countValues(b, 0, v.length);
      }
      this._v = top ?? EMPTY_VIA;
      this.viaCount = count;
      ed.viaStale = false;
      return;
    }
    const at = this.firstIn(ord, key, id);
    if (at >= 0) {
      this.fieldFrom(id, this.refValue(ord[at]!));
      return;
    }
    switch (id) {
      case H_CALL_ID:
        this.callId = "";
        break;
      case H_CSEQ:
        this.cseq = { seq: 0, method: "" };
        this.onCSeq();
        break;
      case H_FROM:
        this.fromTag = undefined;
        break;
      case H_TO:
        this.toTag = undefined;
        break;
      case H_MAX_FORWARDS:
        this.maxForwards = undefined;
        break;
      case H_CONTENT_LENGTH:
        this.contentLength = undefined;
        break;
    }
  }

  /** @internal responses keep `method` in step with CSeq. */
  protected onCSeq(): void {}

  prependHeader(name: string, value: string): void {
    checkName(name);
    checkValue(value);
    const key = canonicalName(name);
    const id = headerIdOfKey(key);
    const via = this.precheck(id, value);
    const ord = this.edit();
    const at = this.firstIn(ord, key, id);
    // insert at `at` (0 when none): shift the rest up by one
    const pos = Math.max(at, 0);
    ord.push(0);
    for (let i = ord.length - 1; i > pos; i--) ord[i] = ord[i - 1]!;
    ord[pos] = this.addLine(name, key, id, value);
    // the new line is now the first of its header
    if (via !== undefined) {
      if (this._edit!.viaStale) this.refresh(key, id);
      else {
        this._v = via;
        this.viaCount += precheckViaCount;
      }
    } else if (id !== 0 && id <= H_LAST_EAGER) this.fieldFrom(id, value);
  }

  appendHeader(name: string, value: string): void {
    checkName(name);
    checkValue(value);
    const key = canonicalName(name);
    const id = headerIdOfKey(key);
    const via = this.precheck(id, value);
    this.edit().push(this.addLine(name, key, id, value));
    // rare: recompute from the lines as they are now
    if (via !== undefined || (id !== 0 && id <= H_LAST_EAGER)) this.refresh(key, id);
  }

  setHeader(name: string, value: string): void {
    checkName(name);
    checkValue(value);
    const key = canonicalName(name);
    const id = headerIdOfKey(key);
    const via = this.precheck(id, value);
    this.replaceAll(key, id, name, value);
    if (via !== undefined) {
      this._v = via;
      this.viaCount = precheckViaCount;
    } else if (id !== 0 && id <= H_LAST_EAGER) this.fieldFrom(id, value);
  }

  /** Replace every line of the header by one line (the first keeps its name as written; added at the end when none). */
  private replaceAll(key: string, id: number, name: string, value: string): void {
    const ord = this.edit();
    const at = this.firstIn(ord, key, id);
    if (at < 0) {
      ord.push(this.addLine(name, key, id, value));
      return;
    }
    let others = false;
    for (let r = at + 1; r < ord.length && !others; r++) others = this.refIs(ord[r]!, key, id);
    if (!others) {
      // the usual case: one line, replaced in place
      ord[at] = this.addLine(this.refName(ord[at]!), key, id, value);
      return;
    }
    let first = -1;
    let w = 0;
    for (let r = 0; r < ord.length; r++) {
      const ref = ord[r]!;
      if (this.refIs(ref, key, id)) {
        if (first >= 0) continue;
        first = w;
        ord[w++] = this.addLine(this.refName(ref), key, id, value);
      } else {
        ord[w++] = ref;
      }
    }
    ord.length = w;
    if (first < 0) ord.push(this.addLine(name, key, id, value));
  }

  removeHeader(name: string): number {
    const key = canonicalName(name);
    const id = headerIdOfKey(key);
    if (!this.has(name)) return 0;
    const ord = this.edit();
    let w = 0;
    for (let r = 0; r < ord.length; r++) {
      const ref = ord[r]!;
      if (!this.refIs(ref, key, id)) ord[w++] = ref;
    }
    const removed = ord.length - w;
    ord.length = w;
    this.refresh(key, id);
    return removed;
  }

  removeFirstValue(name: string): string | undefined {
    const key = canonicalName(name);
    const id = headerIdOfKey(key);
    if (!this.has(name)) return undefined;
    const ord = this.edit();
    const at = this.firstIn(ord, key, id);
    const ref = ord[at]!;
    const v = this.refValue(ref);
    const r: number[] = [];
    splitCommas(bytesOf(v, true), 0, v.length, r);
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
    if (restStart < 0) ord.splice(at, 1);
    else ord[at] = this.addLine(this.refName(ref), key, id, v.slice(restStart));
    this.refresh(key, id);
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
    this.replaceAll("max-forwards", H_MAX_FORWARDS, "Max-Forwards", String(n));
    this.maxForwards = n;
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
    const ed = this._edit;
    if (ed === null) return this.raw;
    if (ed.out !== null) return ed.out;
    const ord = ed.ord;
    const startLine = ed.startLine;
    const raw = this.raw;
    const idx = this._idx;
    const added = ed.added;
    const body = this.body;
    const bodyKept = body === ed.body0;
    const startEnd = this._startEnd;
    const headEnd = this._headEnd;
    const bodyOff = this._bodyOff;

    let size = (startLine === null ? startEnd : startLine.length) + body.length;
    if (ord === null) size += bodyOff - startEnd;
    else {
      for (let i = 0; i < ord.length; i++) {
        const ref = ord[i]!;
        if (ref >= 0) size += this.lineEnd(ref) - idx[ref * STRIDE]!;
        else {
          const l = added[~ref]!;
          size += l.name.length + l.value.length + 4;
        }
      }
      size += headEnd < bodyOff ? bodyOff - headEnd : 2;
    }
    const out = Buffer.allocUnsafe(size);

    // Untouched bytes are copied in runs: [runA, runE) of raw is pending at out[w].
    let w = 0;
    let runA = 0;
    let runE = 0;
    if (startLine === null) runE = startEnd;
    else w = writeText(out, startLine, 0);
    if (ord === null) {
      // only the start line changed (it was written above)
      runA = startEnd;
      runE = bodyOff;
    } else {
      for (let i = 0; i < ord.length; i++) {
        const ref = ord[i]!;
        if (ref >= 0) {
          const a = idx[ref * STRIDE]!;
          if (a !== runE) {
            if (runE > runA) w += copyRun(raw, out, w, runA, runE);
            runA = a;
          }
          runE = this.lineEnd(ref);
        } else {
          if (runE > runA) w += copyRun(raw, out, w, runA, runE);
          runA = runE = 0;
          const l = added[~ref]!;
          w += writeText(out, `${l.name}: ${l.value}\r\n`, w);
        }
      }
      if (headEnd < bodyOff) {
        if (headEnd !== runE) {
          if (runE > runA) w += copyRun(raw, out, w, runA, runE);
          runA = headEnd;
        }
        runE = bodyOff;
      } else {
        if (runE > runA) w += copyRun(raw, out, w, runA, runE);
        runA = runE = 0;
        out[w++] = 13;
        out[w++] = 10;
      }
    }
    // an unchanged body follows the blank line in raw: same run
    if (bodyKept && runE === bodyOff) runE = raw.length;
    if (runE > runA) w += copyRun(raw, out, w, runA, runE);
    if (!(bodyKept && runE === raw.length) && body.length > 0) body.copy(out, w);
    ed.out = out;
    return out;
  }

  toString(): string {
    return this.toBuffer().toString("latin1");
  }
}

Object.defineProperty(SipMessageImpl.prototype, "version", { value: "SIP/2.0", enumerable: true });

export class SipRequestImpl extends SipMessageImpl implements SipRequest {
  declare readonly isRequest: true;
  declare method: string;
  declare uri: string;

  // The same 14 positional arguments as SipResponseImpl's, kept apart: one constructor per kind,
  // no init object, because it runs once per parsed message.
  constructor(
    raw: Buffer,
    head: string,
    idx: number[],
    body: Buffer,
    callId: string,
    cseq: CSeq,
    via: Via,
    viaCount: number,
    fromTag: string | undefined,
    toTag: string | undefined,
    maxForwards: number | undefined,
    contentLength: number | undefined,
    method: string,
    uri: string,
  ) {
    super(raw, head, idx, body, callId, cseq, via, viaCount, fromTag, toTag, maxForwards, contentLength);
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
    this.editState().startLine = `${this.method} ${uri} SIP/2.0\r\n`;
    this.uri = uri;
  }
}

Object.defineProperty(SipRequestImpl.prototype, "isRequest", { value: true, enumerable: true });

export class SipResponseImpl extends SipMessageImpl implements SipResponse {
  declare readonly isRequest: false;
  declare status: number;
  declare reason: string;
  declare method: string;

  // The same 14 positional arguments as SipRequestImpl's, kept apart: one constructor per kind,
  // no init object, because it runs once per parsed message.
  constructor(
    raw: Buffer,
    head: string,
    idx: number[],
    body: Buffer,
    callId: string,
    cseq: CSeq,
    via: Via,
    viaCount: number,
    fromTag: string | undefined,
    toTag: string | undefined,
    maxForwards: number | undefined,
    contentLength: number | undefined,
    status: number,
    reason: string,
  ) {
    super(raw, head, idx, body, callId, cseq, via, viaCount, fromTag, toTag, maxForwards, contentLength);
    this.status = status;
    this.reason = reason;
    this.method = cseq.method;
  }

  protected override onCSeq(): void {
    this.method = this.cseq.method;
  }
}

Object.defineProperty(SipResponseImpl.prototype, "isRequest", { value: false, enumerable: true });
