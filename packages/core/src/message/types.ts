/**
 * The message layer's public contract. The parser (parser.ts) produces
 * objects implementing SipMessage; everything above the message layer
 * (transactions, proxy, engine) depends only on these types.
 *
 * Text convention: the head of a message (start line + headers) is held as a
 * "binary" (latin1) string, one JS char per byte, so string offsets are byte
 * offsets and `Buffer.from(s, "latin1")` gives back the exact bytes. Header
 * values returned here are such latin1 strings; use `utf8()` (text.ts) to show
 * a display name to a human.
 */

/** Transport protocol tokens as written in Via (RFC 3261 §20.42), upper case. */
export type TransportName = string;

/** The parsed top Via header field value (RFC 3261 §20.42, RFC 3581). */
export interface Via {
  /** "SIP/2.0/UDP" → "UDP" (upper-cased). Unknown transports are kept as written. */
  readonly transport: TransportName;
  /** sent-by host as written; IPv6 references keep their brackets: "[2001:db8::1]". */
  readonly host: string;
  /** sent-by port, undefined when absent. */
  readonly port: number | undefined;
  /** `branch` parameter value, undefined when absent. */
  readonly branch: string | undefined;
  /** `received` parameter, undefined when absent (brackets kept if written). */
  readonly received: string | undefined;
  /** `rport`: undefined when absent, null when present without value, number when it has one. */
  readonly rport: number | null | undefined;
  /** `maddr` parameter. */
  readonly maddr: string | undefined;
  /** `ttl` parameter. */
  readonly ttl: number | undefined;
  /** All parameters in order, names lower-cased, value null when the parameter has no "=". */
  readonly params: ReadonlyArray<readonly [string, string | null]>;
  /** The whole via-parm text as written (one value, not the whole header line). */
  readonly raw: string;
}

export interface CSeq {
  readonly seq: number;
  readonly method: string;
}

export interface SipMessageBase {
  /**
   * The bytes this message was parsed from (the UDP datagram or the framed TCP message), trailing
   * octets excluded; after `compact()` of an edited message, its serialisation.
   */
  readonly raw: Buffer;
  readonly version: string; // "SIP/2.0"

  // --- Fields the transaction layer needs, found eagerly on receive. ---
  readonly callId: string;
  readonly cseq: CSeq;
  /** The topmost Via value. */
  readonly via: Via;
  /** Number of Via values in the message (all Via header lines, comma-split). */
  readonly viaCount: number;
  readonly fromTag: string | undefined;
  readonly toTag: string | undefined;
  /** undefined when the header is absent. */
  readonly maxForwards: number | undefined;
  /** The Content-Length header value; undefined when absent (then body runs to the end of a datagram). */
  readonly contentLength: number | undefined;
  readonly body: Buffer;

  // --- Header access (lazy: values are cut from byte ranges on first use). ---
  /** First value of a header, by full or compact name, case-insensitive. For comma lists, the whole first line. */
  header(name: string): string | undefined;
  /** All header lines' values of that name, in order (not comma-split). */
  headerLines(name: string): string[];
  /** All values of a comma-separated list header (Via, Route, Record-Route, Contact, Allow, Supported…), split outside quotes and <>. */
  headerValues(name: string): string[];
  has(name: string): boolean;
  /** Header fields in order, as written: [name as written, value]. */
  headers(): Array<[string, string]>;

  // --- Edits: each changes only what it touches; untouched lines keep their bytes. ---
  /** Insert a header line above all others of that name (or at the top of the headers when none). */
  prependHeader(name: string, value: string): void;
  /** Append a header line after the last header. */
  appendHeader(name: string, value: string): void;
  /** Replace every line of that header by one line with this value (added at the end when absent). */
  setHeader(name: string, value: string): void;
  /** Remove every line of that header. Returns how many lines were removed. */
  removeHeader(name: string): number;
  /** Remove the first value of a comma-list header (the first line, or the first value of a multi-value line); returns it. */
  removeFirstValue(name: string): string | undefined;
  /** Push a new top Via (a full via-parm such as "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK..."). */
  pushVia(value: string): void;
  /** Remove the top Via value; returns it (raw text). */
  popVia(): string | undefined;
  /** Set Max-Forwards (added if absent). */
  setMaxForwards(n: number): void;
  /** Replace the body; Content-Length is rewritten to match; Content-Type set when given. */
  setBody(body: Buffer, contentType?: string): void;

  /** Serialise. A message nobody changed returns `raw` itself (byte-identical, no copy). */
  toBuffer(): Buffer;
  /** True when an edit was made since parsing. */
  readonly modified: boolean;
  /**
   * Memory hint for a message kept long and rarely read again: let go of the
   * parsed head and top Via, keep `raw` and the other eager fields. Reads still answer the same
   * (the next one parses `raw` again). An edited message is folded first:
   * its serialisation becomes `raw` (it stays `modified`).
   */
  compact(): void;
}

export interface SipRequest extends SipMessageBase {
  readonly isRequest: true;
  readonly method: string;
  /** Request-URI as written. */
  readonly uri: string;
  /** Replace the Request-URI (only the start line changes). */
  setUri(uri: string): void;
}

export interface SipResponse extends SipMessageBase {
  readonly isRequest: false;
  readonly status: number;
  /** Reason-Phrase as written (may be empty). */
  readonly reason: string;
  /** For responses, the method of the transaction: CSeq method. */
  readonly method: string;
}

export type SipMessage = SipRequest | SipResponse;

/** Size limits enforced while parsing; oversize input is refused before any deep work. */
export interface ParseLimits {
  /** Largest message (head + body) accepted, bytes. Default 65535 (max UDP payload). */
  maxMessageSize: number;
  /** Most header lines. Default 256. */
  maxHeaders: number;
  /** Longest single header line including folded continuations, bytes. Default 8192. */
  maxHeaderLineLength: number;
  /**
   * Most Via values. Default 72: a request may legally cross 70 proxies
   * (Max-Forwards 70), and RFC 4475 longreq.dat carries 34 Vias.
   */
  maxVias: number;
}

export const DEFAULT_PARSE_LIMITS: Readonly<ParseLimits> = Object.freeze({
  maxMessageSize: 65535,
  maxHeaders: 256,
  maxHeaderLineLength: 8192,
  maxVias: 72,
});

/**
 * Module map of the message layer (each file owns one job):
 * - errors.ts  `SipParseError` (typed, with reason, byte offset and the SIP status to answer with)
 * - parser.ts  `parseMessage(data, options)` → SipMessage (fast path: transaction fields only, rest lazy)
 * - message.ts the SipMessage implementation: lazy header access, minimal edits, byte-identical output
 * - stream.ts  `StreamFramer`: TCP byte stream → whole messages by Content-Length, RFC 5626 keep-alives
 * - uri.ts     `parseUri` (SIP/SIPS/tel and absolute URIs, IPv6 references, %-escapes)
 * - nameaddr.ts `parseNameAddr` (name-addr / addr-spec with display name and header params)
 * - validate.ts `fullParse(msg)`: the strict grammar check of every known header (RFC 3261 §25)
 * - build.ts   `buildResponse`, `buildRequest`
 * - ids.ts     `newBranch`, `newTag`, `newCallId`
 */
export interface ParseOptions {
  limits?: Partial<ParseLimits>;
  /**
   * True for a UDP datagram: a message without Content-Length takes the rest of
   * the datagram as body (RFC 3261 §18.3), and octets after Content-Length are
   * ignored. False for a framed stream message, where Content-Length is required.
   */
  datagram?: boolean;
}
