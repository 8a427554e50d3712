/**
 * StreamFramer: cuts a TCP/TLS byte stream into whole SIP messages
 * (RFC 3261 §18.3: Content-Length is mandatory on streams) and recognises
 * RFC 5626 §3.5.1 keep-alives between messages: CRLFCRLF ("ping") and a
 * single CRLF ("pong").
 *
 * Linear time: the search for the end of the headers resumes where it stopped
 * on the previous push; buffered bytes are kept in one growable buffer
 * (amortised doubling), never re-concatenated per push.
 *
 * Messages framed straight out of a pushed chunk are zero-copy subarrays of
 * it; a message that spans pushes is copied out of the internal buffer.
 *
 * A ping split across two pushes exactly after its first CRLF is reported as
 * two pongs (a lone CRLF at the end of the data is a pong: waiting would delay
 * the pong indefinitely).
 */

import { SipParseError } from "./errors.js";
import { TOKEN_CHARS as TOKEN_TABLE } from "./text.js";
import { DEFAULT_PARSE_LIMITS, type ParseLimits } from "./types.js";

const PHASE_IDLE = 0; // between messages: keep-alives or a start line
const PHASE_HEAD = 1; // looking for the blank line
const PHASE_BODY = 2; // waiting for Content-Length body octets

export type KeepAliveKind = "ping" | "pong";

/** Module-local alias of the token table (read once per byte). */
const TOKEN_CHARS = TOKEN_TABLE;

function framingError(code: string, reason: string, status = 400): SipParseError {
  return new SipParseError(code, reason, -1, status, "unknown");
}

/**
 * Content-Length of a head b[a, e) (start line + headers, up to and
 * including the last header line's terminator). Throws when absent, not a
 * decimal, or given twice with different values.
 */
function contentLengthOf(b: Buffer, a: number, e: number, max: number): number {
  let found = -1;
  // skip the start line
  let p = b.indexOf(10, a);
  if (p < 0 || p >= e) throw framingError("bad-start-line", "no line end after the start line");
  p++;
  while (p < e) {
    // p is at the start of a header line
    const ls = p;
    while (p < e && TOKEN_CHARS[b[p]!] === 1) p++;
    const nameLen = p - ls;
    let isCl = false;
    if (nameLen === 1) isCl = (b[ls]! | 0x20) === 108;
    else if (nameLen === 14) {
      isCl = true;
      const lit = "content-length";
      for (let i = 0; i < 14; i++) {
        if ((b[ls + i]! | 0x20) !== lit.charCodeAt(i)) {
          isCl = false;
          break;
        }
      }
    }
    while (p < e && (b[p] === 32 || b[p] === 9)) p++;
    if (nameLen === 0 || p >= e || b[p] !== 58) {
      // not a "name:" line (e.g. a continuation): skip it
      isCl = false;
    } else {
      p++;
    }
    // value up to the end of the line, continuation lines included
    // state: 0 leading whitespace, 1 digits, 2 trailing whitespace
    let state = 0;
    let v = 0;
    let bad = false;
    while (true) {
      while (p < e && b[p] !== 10) {
        if (isCl) {
          const c = b[p]!;
          if (c >= 48 && c <= 57) {
            if (state === 2) bad = true;
            state = 1;
            v = v * 10 + (c - 48);
            if (v > 4294967295) v = 4294967296;
          } else if (c === 32 || c === 9 || c === 13) {
            if (state === 1) state = 2;
          } else {
            bad = true;
          }
        }
        p++;
      }
      p++; // past LF
      if (!(p < e && (b[p] === 32 || b[p] === 9))) break;
      if (state === 1) state = 2;
    }
    if (isCl) {
      if (bad || state === 0) {
        throw framingError("bad-content-length", "Content-Length is not a non-negative decimal");
      }
      if (found >= 0 && found !== v)
        throw framingError("bad-content-length", "conflicting Content-Length values");
      found = v;
    }
  }
  if (found < 0) throw framingError("bad-content-length", "Content-Length is required on a stream");
  if (found > max) throw framingError("too-large", "Content-Length exceeds the message size limit", 513);
  return found;
}

export class StreamFramer {
  private readonly limits: Readonly<ParseLimits>;
  /** Internal storage for bytes that span pushes. */
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;
  private end = 0;
  private phase = PHASE_IDLE;
  /** PHASE_HEAD: offset (from the message start) where the blank-line search resumes. */
  private scan = 0;
  /** PHASE_BODY: message length (head + body) from the message start. */
  private total = 0;
  private gen = 0;

  constructor(limits?: Partial<ParseLimits>) {
    this.limits = { ...DEFAULT_PARSE_LIMITS, ...limits };
  }

  /** Bytes held waiting for the rest of a message. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Drop buffered bytes and state (e.g. after a framing error, or for a new connection). */
  reset(): void {
    this.gen++;
    this.buf = Buffer.alloc(0);
    this.start = 0;
    this.end = 0;
    this.phase = PHASE_IDLE;
    this.scan = 0;
    this.total = 0;
  }

  /**
   * Feed bytes. Calls onMessage for each whole message (start line + headers +
   * Content-Length body), onKeepAlive for each keep-alive between messages.
   * Throws SipParseError on a framing fault; the stream cannot be resynchronised
   * then, so the caller closes the connection (reset() clears the state).
   */
  push(
    chunk: Buffer,
    onMessage: (message: Buffer) => void,
    onKeepAlive?: (kind: KeepAliveKind) => void,
  ): void {
    if (chunk.length === 0) return;
    if (this.end === this.start) {
      // nothing pending: frame straight out of the chunk (zero-copy)
      const used = this.run(chunk, 0, chunk.length, false, onMessage, onKeepAlive);
      if (used < 0) return; // reset from a callback
      if (used < chunk.length) this.keep(chunk, used);
      return;
    }
    this.append(chunk);
    const used = this.run(this.buf, this.start, this.end, true, onMessage, onKeepAlive);
    if (used < 0) return;
    this.start = used;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
      if (this.buf.length > 65536) this.buf = Buffer.alloc(0);
    }
  }

  private keep(chunk: Buffer, from: number): void {
    const n = chunk.length - from;
    if (this.buf.length < n) this.buf = Buffer.allocUnsafe(Math.max(n, 1024));
    chunk.copy(this.buf, 0, from);
    this.start = 0;
    this.end = n;
  }

  private append(chunk: Buffer): void {
    const have = this.end - this.start;
    const need = have + chunk.length;
    if (this.buf.length - this.end < chunk.length) {
      if (need <= this.buf.length) {
        this.buf.copy(this.buf, 0, this.start, this.end);
      } else {
        let cap = Math.max(1024, this.buf.length * 2);
        while (cap < need) cap *= 2;
        const nb = Buffer.allocUnsafe(cap);
        this.buf.copy(nb, 0, this.start, this.end);
        this.buf = nb;
      }
      this.start = 0;
      this.end = have;
    }
    chunk.copy(this.buf, this.end);
    this.end += chunk.length;
  }

  /**
   * Frame messages out of b[p, e). Returns where unconsumed data starts, or
   * -1 when a callback reset the framer.
   */
  private run(
    b: Buffer,
    p: number,
    e: number,
    copy: boolean,
    onMessage: (message: Buffer) => void,
    onKeepAlive: ((kind: KeepAliveKind) => void) | undefined,
  ): number {
    const gen = this.gen;
    const max = this.limits.maxMessageSize;
    while (p < e) {
      if (this.phase === PHASE_IDLE) {
        const c = b[p]!;
        if (c === 13 || c === 10) {
          if (c === 10) {
            // bare LF between messages: ignored (RFC 3261 §7.5)
            p++;
            continue;
          }
          if (p + 1 >= e) return p; // need the next byte
          if (b[p + 1] !== 10) throw framingError("bad-start-line", "stray CR between messages");
          if (p + 2 >= e) {
            p += 2;
            onKeepAlive?.("pong");
            if (this.gen !== gen) return -1;
            continue;
          }
          if (b[p + 2] === 13) {
            if (p + 3 >= e) return p; // CRLF CR: wait for the LF of a ping
            if (b[p + 3] === 10) {
              p += 4;
              onKeepAlive?.("ping");
            } else {
              p += 2;
              onKeepAlive?.("pong");
            }
            if (this.gen !== gen) return -1;
            continue;
          }
          p += 2;
          onKeepAlive?.("pong");
          if (this.gen !== gen) return -1;
          continue;
        }
        this.phase = PHASE_HEAD;
        this.scan = 0;
      }
      if (this.phase === PHASE_HEAD) {
        // look for an empty line: LF followed by LF or CRLF
        let i = b.indexOf(10, p + this.scan);
        let bodyStart = -1;
        while (i >= 0 && i < e) {
          if (i + 1 >= e) break;
          const d = b[i + 1];
          if (d === 10) {
            bodyStart = i + 2;
            break;
          }
          if (d === 13) {
            if (i + 2 >= e) break;
            if (b[i + 2] === 10) {
              bodyStart = i + 3;
              break;
            }
          }
          i = b.indexOf(10, i + 1);
        }
        if (bodyStart < 0) {
          // resume at the last LF seen (it may begin the blank line)
          this.scan = (i >= 0 && i < e ? i : e) - p;
          if (this.scan > max) {
            throw framingError("too-large", `headers exceed the message size limit of ${max} bytes`, 513);
          }
          return p;
        }
        const headLen = bodyStart - p;
        if (headLen > max) {
          throw framingError("too-large", `headers exceed the message size limit of ${max} bytes`, 513);
        }
        const cl = contentLengthOf(b, p, bodyStart, max);
        if (headLen + cl > max) {
          throw framingError("too-large", `message exceeds the size limit of ${max} bytes`, 513);
        }
        this.total = headLen + cl;
        this.phase = PHASE_BODY;
      }
      // PHASE_BODY
      if (e - p < this.total) return p;
      const msgEnd = p + this.total;
      const msg = copy ? Buffer.from(b.subarray(p, msgEnd)) : b.subarray(p, msgEnd);
      p = msgEnd;
      this.phase = PHASE_IDLE;
      this.scan = 0;
      this.total = 0;
      onMessage(msg);
      if (this.gen !== gen) return -1;
    }
    return p;
  }
}
