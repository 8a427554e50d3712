import { test } from "vitest";
import { parseMessage } from "../../src/message/parser.js";
const msg = Buffer.from(
  "INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK3\r\nMax-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@pc33.atlanta.example.com>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
);
test("bench", () => {
  for (let i = 0; i < 20000; i++) parseMessage(msg);
  const n = 200000;
  const t = performance.now();
  for (let i = 0; i < n; i++) parseMessage(msg);
  const dt = performance.now() - t;
  console.log(`parse: ${((dt * 1e6) / n).toFixed(0)} ns/msg`);
  const m = parseMessage(msg);
  const t2 = performance.now();
  for (let i = 0; i < n; i++) { const x = parseMessage(msg); x.pushVia("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKabc"); x.setMaxForwards(69); x.toBuffer(); }
  console.log(`parse+edit+serialise: ${(((performance.now() - t2) * 1e6) / n).toFixed(0)} ns/msg`);
  void m;
});
