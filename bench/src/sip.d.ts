/**
 * Local typings for the npm `sip` package (kirm/sip.js), which ships none.
 * Only the part the benchmarks use: the message parser and serialiser.
 */
declare module "sip" {
  export interface SipUri {
    schema: string;
    user?: string;
    password?: string;
    host: string;
    port: number;
    params: Record<string, string | null>;
    headers: Record<string, string>;
  }

  export interface SipVia {
    version: string;
    protocol: string;
    host: string;
    port?: number;
    params: Record<string, string | null | undefined>;
  }

  export interface SipNameAddr {
    name?: string;
    uri: string | SipUri;
    params: Record<string, string | null | undefined>;
  }

  export interface SipHeaders {
    via?: SipVia[];
    to?: SipNameAddr;
    from?: SipNameAddr;
    "call-id"?: string;
    cseq?: { seq: number; method: string };
    contact?: SipNameAddr[] | "*";
    route?: SipNameAddr[];
    "record-route"?: SipNameAddr[];
    "content-length"?: number;
    [name: string]: unknown;
  }

  export interface SipMessageObject {
    method?: string;
    uri?: string | SipUri;
    status?: number;
    reason?: string;
    version: string;
    headers: SipHeaders;
    content?: string;
  }

  /** Parses one whole message (string, or a Buffer it converts with 'binary'); undefined when it cannot. */
  export function parse(data: string | Buffer): SipMessageObject | undefined;
  export function stringify(message: SipMessageObject): string;
  export function parseUri(uri: string): SipUri | undefined;
  /** The package's transaction layer over a connection factory (used by the match benchmark). */
  export interface SipTransactionLayer {
    createServerTransaction(rq: SipMessageObject, cn: SipConnection): unknown;
    getServer(m: SipMessageObject): unknown;
    destroy(): void;
  }
  export interface SipConnection {
    send(m: SipMessageObject): void;
    release(): void;
    protocol: string;
  }
  export function makeTransactionLayer(options: object, open: () => SipConnection): SipTransactionLayer;

  const sip: {
    parse: typeof parse;
    stringify: typeof stringify;
    parseUri: typeof parseUri;
    makeTransactionLayer: typeof makeTransactionLayer;
  };
  export default sip;
}
