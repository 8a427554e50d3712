/**
 * @siptm/core — the SIP message layer and the RFC 3261 transaction engine,
 * without threads. See ARCHITECTURE.md at the repository root; the public
 * surface is what README.md ("The public API") documents, and nothing more.
 * What siptm's own packages share beyond it is `@siptm/core/internal`.
 */

// --- digest authentication (RFC 3261 §22, RFC 7616, RFC 8760)
export {
  type ChallengeOptions,
  type CredentialLookup,
  type DigestAlgorithm,
  DigestAuth,
  type DigestAuthOptions,
  type DigestChallenge,
  type DigestFailure,
  type DigestRequest,
  type DigestResult,
  digestHa1,
} from "./auth/digest.js";
export {
  MemoryNonceCounts,
  type MemoryNonceCountsOptions,
  type NonceCounts,
  type NonceUse,
} from "./auth/nonce-counts.js";
export {
  type ParseUsersOptions,
  parseUsers,
  type UserEntry,
  UsersFileError,
  type UsersFileProblem,
  type UsersFileProblemCode,
  type UsersTable,
} from "./auth/users.js";
export { type Clock, RealClock, VirtualClock } from "./clock.js";
export {
  type AuditEntry,
  type BoundSocket,
  Engine,
  type EngineLogger,
  type EngineOptions,
  type ListenOptions,
  type RequestOptions,
  type StatsSnapshot,
  type TcpListen,
  type TlsListen,
  type UdpListen,
  type WsListen,
} from "./engine.js";
// --- the message layer
export {
  type BuildRequestOptions,
  type BuildResponseOptions,
  buildRequest,
  buildResponse,
  reasonPhrase,
} from "./message/build.js";
export { SipParseError, type SipParseErrorCode, type SipParseErrorKind } from "./message/errors.js";
export { newBranch, newCallId, newTag } from "./message/ids.js";
export { type NameAddr, parseNameAddr, uriOfNameAddr } from "./message/nameaddr.js";
export { parseMessage } from "./message/parser.js";
export { type KeepAliveKind, StreamFramer } from "./message/stream.js";
export type * from "./message/types.js";
// The public subset of message/index.ts's names, listed again on purpose: the public API is exactly
// what is written here (pinned by test/api.test.ts and README.md), not whatever the layer exports.
export {
  type AbsoluteUri,
  parseUri,
  type SipUri,
  type TelUri,
  type Uri,
  type UriParam,
  uriEquals,
  uriParam,
} from "./message/uri.js";
export { type FullParseOptions, fullParse } from "./message/validate.js";
// --- proxying
export { type RelayOptions, type RelayOutcome, type RelayTarget, relay } from "./proxy/relay.js";
export {
  type DnsLookup,
  nodeDns,
  ResolveError,
  type ResolveErrorCode,
  Resolver,
  type ResolverOptions,
  type ResolverTransport,
} from "./proxy/resolver.js";
export { forwardRequestStateless, forwardResponseStateless } from "./proxy/stateless.js";
// --- transactions, as their users see them
export type { FinalOutcome, TxKind, TxStats } from "./transaction/actor.js";
export type { CancelProgress, CancelResult } from "./transaction/client.js";
export { defaultTimers, type TimerConfig } from "./transaction/config.js";
export { isRefusal, TransactionError, type TransactionErrorCode } from "./transaction/errors.js";
export {
  type ClientEvents,
  ClientTransactionHandle,
  type ServerEvents,
  ServerTransactionHandle,
} from "./transaction/handles.js";
export { RefError, type RefFault } from "./transaction/refs.js";
export type { ReplyOptions, ServerEndCause } from "./transaction/server.js";
// --- transports
export { TransportBindError, TransportSendError } from "./transport/errors.js";
export { type MemoryFaults, MemoryNetwork, type MemoryNetworkOptions } from "./transport/memory.js";
export type { RateLimitOptions } from "./transport/ratelimit.js";
export { createTcpTransport, type TcpLimitOptions, type TcpTransportOptions } from "./transport/tcp.js";
export type { TlsCredentials, TlsOptions } from "./transport/tls.js";
export type {
  Destination,
  SendErrorTarget,
  Source,
  Transport,
  TransportProtocol,
  TransportSink,
  TransportStats,
} from "./transport/types.js";
export { createUdpTransport, type UdpTransportOptions } from "./transport/udp.js";
