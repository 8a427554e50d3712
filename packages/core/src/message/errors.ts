/**
 * The one error type of the message layer. Every parse failure, whatever the
 * input, surfaces as a SipParseError carrying what a UAS/proxy needs to react:
 * the status to answer a faulty request with (0 for responses: a response is
 * never answered, only dropped), a machine-readable code and the byte offset.
 */

export type SipParseErrorKind = "request" | "response" | "unknown";

/**
 * Machine-readable failure codes. Other strings may appear for new checks;
 * these are the ones the parser uses today.
 */
export type SipParseErrorCode =
  | "bad-input"
  | "empty"
  | "too-large"
  | "limit-exceeded"
  | "bad-start-line"
  | "bad-version"
  | "bad-status"
  | "bad-uri"
  | "unsupported-scheme"
  | "bad-header"
  | "missing-header"
  | "duplicate-header"
  | "bad-via"
  | "bad-cseq"
  | "cseq-mismatch"
  | "bad-max-forwards"
  | "bad-content-length"
  | "truncated"
  | "no-end-of-headers"
  | "internal";

export class SipParseError extends Error {
  override readonly name = "SipParseError";
  /** Human-readable description of the fault. */
  readonly reason: string;
  /** Byte offset (from the start of the parsed buffer) where the fault was found; -1 when unknown. */
  readonly offset: number;
  /** The SIP status to answer a request with (400, 505, 513, 501, 416); 0 for responses. */
  readonly status: number;
  /** Machine-readable code, e.g. "bad-start-line", "missing-header", "bad-content-length". */
  readonly code: string;
  readonly kind: SipParseErrorKind;

  constructor(code: string, reason: string, offset = -1, status = 400, kind: SipParseErrorKind = "unknown") {
    const st = kind === "response" ? 0 : status;
    super(offset >= 0 ? `${reason} (at byte ${offset})` : reason);
    this.reason = reason;
    this.offset = offset;
    this.status = st;
    this.code = code;
    this.kind = kind;
  }

  /** The same fault attributed to a message kind (responses get status 0), offset shifted by `base`. */
  withKind(kind: SipParseErrorKind, base = 0): SipParseError {
    if (kind === this.kind && base === 0) return this;
    const e = new SipParseError(
      this.code,
      this.reason,
      this.offset >= 0 ? this.offset + base : -1,
      this.status === 0 && this.kind === "response" ? 400 : this.status,
      kind,
    );
    return e;
  }
}

/** Wrap anything thrown into a SipParseError (used at API boundaries that promise to throw nothing else). */
export function toSipParseError(e: unknown, kind: SipParseErrorKind = "unknown", base = 0): SipParseError {
  if (e instanceof SipParseError) return e.withKind(kind === "unknown" ? e.kind : kind, base);
  const msg = e instanceof Error ? e.message : String(e);
  return new SipParseError("internal", `malformed message (${msg})`, -1, 400, kind);
}
