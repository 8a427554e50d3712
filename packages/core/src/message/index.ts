/** The SIP message layer: parsing, lazy header access, minimal edits, framing, building. */

export {
  type BuildRequestOptions,
  type BuildResponseOptions,
  buildRequest,
  buildResponse,
  checkHeaderFields,
  REASON_PHRASES,
  REQUEST_OWN_HEADERS,
  RESPONSE_OWN_HEADERS,
  reasonPhrase,
  SINGLE_INSTANCE_HEADERS,
} from "./build.js";
export { SipParseError, type SipParseErrorCode, type SipParseErrorKind, toSipParseError } from "./errors.js";
export { BRANCH_COOKIE, newBranch, newCallId, newTag } from "./ids.js";
export { SipMessageImpl, SipRequestImpl, SipResponseImpl } from "./message.js";
export { type NameAddr, parseGenericParams, parseNameAddr, scanQuotedString } from "./nameaddr.js";
export { KNOWN_METHODS, parseMessage } from "./parser.js";
export { type KeepAliveKind, StreamFramer } from "./stream.js";
// The message layer's names, one export list per module (text.test.ts imports the same names from
// text.ts; src/index.ts re-exports the public subset): lists of names alike by nature, no code to share.
export {
  COMPACT_FORMS,
  canonicalName,
  compactCode,
  isToken,
  latin1,
  properName,
  unfold,
  utf8,
} from "./text.js";
export * from "./types.js";
export {
  type AbsoluteUri,
  isIPv4,
  isIPv6,
  parseUri,
  pctDecode,
  type SipUri,
  type TelUri,
  type Uri,
  type UriParam,
  uriEquals,
  uriParam,
} from "./uri.js";
export { type FullParseOptions, fullParse } from "./validate.js";
