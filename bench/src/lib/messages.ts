/**
 * Realistic SIP messages for the benchmarks: one call's INVITE as a proxy in
 * the middle of a chain sees it (~1 KB: three Vias, Record-Route, SDP offer), the
 * 180 and 200 coming back, and a REGISTER. CRLF line ends, right
 * Content-Length; every message is checked to parse in both parsers before
 * anything is measured.
 */

const CRLF = "\r\n";

function message(head: string[], body = ""): Buffer {
  const bodyBytes = Buffer.from(body, "utf8");
  const lines = [...head, `Content-Length: ${bodyBytes.length}`, "", ""].join(CRLF);
  return Buffer.concat([Buffer.from(lines, "utf8"), bodyBytes]);
}

const offerSdp = [
  "v=0",
  "o=alice 2890844526 2890844526 IN IP4 198.51.100.23",
  "s=-",
  "c=IN IP4 198.51.100.23",
  "t=0 0",
  "m=audio 49170 RTP/AVP 0 8 101",
  "a=rtpmap:0 PCMU/8000",
  "a=rtpmap:8 PCMA/8000",
  "a=rtpmap:101 telephone-event/8000",
  "a=fmtp:101 0-15",
  "a=sendrecv",
  "",
].join(CRLF);

const answerSdp = [
  "v=0",
  "o=bob 2808844564 2808844564 IN IP4 203.0.113.44",
  "s=-",
  "c=IN IP4 203.0.113.44",
  "t=0 0",
  "m=audio 31000 RTP/AVP 0 101",
  "a=rtpmap:0 PCMU/8000",
  "a=rtpmap:101 telephone-event/8000",
  "a=fmtp:101 0-15",
  "a=sendrecv",
  "",
].join(CRLF);

const dialogHead = {
  callId: "a84b4c76e66710-3f9d2c1e@198.51.100.23",
  from: '"Alice Liddell" <sip:alice@atlanta.example.com>;tag=1928301774',
  to: "<sip:bob@biloxi.example.com>",
};

export const INVITE = message(
  [
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP proxy2.biloxi.example.com:5060;branch=z9hG4bK721e418c4.1",
    "Via: SIP/2.0/UDP proxy1.atlanta.example.com:5060;branch=z9hG4bK2d4790.1;received=192.0.2.101",
    "Via: SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK74bf9;received=198.51.100.23;rport=5060",
    "Max-Forwards: 68",
    "Record-Route: <sip:proxy2.biloxi.example.com;lr>, <sip:proxy1.atlanta.example.com;lr>",
    `From: ${dialogHead.from}`,
    `To: ${dialogHead.to}`,
    `Call-ID: ${dialogHead.callId}`,
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@198.51.100.23:5060>",
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, REFER, NOTIFY",
    "Supported: replaces, timer, 100rel",
    "User-Agent: ExamplePhone/4.2.1",
    "Content-Type: application/sdp",
  ],
  offerSdp,
);

/** The header lines the callee's responses to the INVITE share, after the status line. */
const answerHead = [
  "Via: SIP/2.0/UDP proxy2.biloxi.example.com:5060;branch=z9hG4bK721e418c4.1;received=192.0.2.222",
  "Via: SIP/2.0/UDP proxy1.atlanta.example.com:5060;branch=z9hG4bK2d4790.1;received=192.0.2.101",
  "Via: SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK74bf9;received=198.51.100.23;rport=5060",
  "Record-Route: <sip:proxy2.biloxi.example.com;lr>, <sip:proxy1.atlanta.example.com;lr>",
  `From: ${dialogHead.from}`,
  `To: ${dialogHead.to};tag=a6c85cf`,
  `Call-ID: ${dialogHead.callId}`,
  "CSeq: 314159 INVITE",
  "Contact: <sip:bob@203.0.113.44:5060>",
];

export const RINGING = message(["SIP/2.0 180 Ringing", ...answerHead]);

export const OK_WITH_SDP = message(
  [
    "SIP/2.0 200 OK",
    ...answerHead,
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE",
    "Supported: replaces, timer",
    "Require: timer",
    "Session-Expires: 1800;refresher=uac",
    "Server: ExampleUA/2.0",
    "Content-Type: application/sdp",
  ],
  answerSdp,
);

export const REGISTER = message([
  "REGISTER sip:registrar.biloxi.example.com SIP/2.0",
  "Via: SIP/2.0/TCP 203.0.113.44:49322;branch=z9hG4bKnashds7;alias",
  "Max-Forwards: 70",
  "To: Bob <sip:bob@biloxi.example.com>",
  "From: Bob <sip:bob@biloxi.example.com>;tag=456248",
  "Call-ID: 843817637684230@998sdasdh09",
  "CSeq: 1826 REGISTER",
  'Contact: <sip:bob@203.0.113.44:49322;transport=tcp>;expires=3600;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1',
  "Supported: path, outbound, gruu",
  "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS",
  "User-Agent: ExamplePhone/4.2.1",
  "Expires: 3600",
]);

export interface BenchMessage {
  readonly name: string;
  readonly bytes: Buffer;
}

export const MESSAGES: readonly BenchMessage[] = [
  { name: "INVITE+SDP", bytes: INVITE },
  { name: "180 Ringing", bytes: RINGING },
  { name: "200 OK+SDP", bytes: OK_WITH_SDP },
  { name: "REGISTER", bytes: REGISTER },
];
