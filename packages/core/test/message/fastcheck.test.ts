// The byte-level fast path of fullParse answers only "certainly valid" or
// "not sure". This holds it to the reference validator: whenever the fast path
// accepts, the reference check must accept too — on the torture corpus, on the
// benchmark-like messages, and on seeded random mutations of both.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fastValid } from "../../src/message/fastcheck.js";
import { SipMessageImpl } from "../../src/message/message.js";
import { parseMessage } from "../../src/message/parser.js";
import type { SipMessage } from "../../src/message/types.js";
import { referenceParse } from "../../src/message/validate.js";

const dir = join(import.meta.dirname, "..", "fixtures", "torture");
const corpus: Buffer[] = [
  ...readdirSync(join(dir, "rfc4475"))
    .filter((f) => f.endsWith(".dat"))
    .map((f) => readFileSync(join(dir, "rfc4475", f))),
  ...readdirSync(join(dir, "rfc5118", "wire"))
    .filter((f) => !f.endsWith(".txt"))
    .map((f) => readFileSync(join(dir, "rfc5118", "wire", f))),
  Buffer.from(
    "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7;rport\r\n" +
      "Max-Forwards: 70\r\nFrom: Bob <sip:bob@example.com>;tag=456248\r\nTo: Bob <sip:bob@example.com>\r\n" +
      "Call-ID: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\nContact: <sip:bob@192.0.2.4>;expires=7200\r\n" +
      "Expires: 7200\r\nContent-Length: 0\r\n\r\n",
    "latin1",
  ),
];

function parsed(data: Buffer): SipMessage | undefined {
  try {
    return parseMessage(data);
  } catch {
    return undefined;
  }
}

/** The fast path accepted: then the reference must accept too. */
function agrees(data: Buffer): boolean {
  const msg = parsed(data);
  if (!(msg instanceof SipMessageImpl)) return true;
  if (!fastValid(msg, undefined)) return true; // "not sure": the reference decides, nothing to compare
  try {
    referenceParse(msg);
    return true;
  } catch {
    return false;
  }
}

describe("fullParse fast path vs the reference validator", () => {
  it("agrees on every corpus message", () => {
    const disagreements = corpus.filter((d) => !agrees(d)).map((d) => d.toString("latin1", 0, 60));
    expect(disagreements).toEqual([]);
    // and it does take the fast path for most valid messages (otherwise this test proves little)
    const fast = corpus.filter((d) => {
      const m = parsed(d);
      return m instanceof SipMessageImpl && fastValid(m, undefined);
    }).length;
    expect(fast).toBeGreaterThan(5);
  });

  it("agrees on seeded random byte mutations of the corpus", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: corpus.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (which, edits) => {
          const data = Buffer.from(corpus[which]!);
          for (const [at, byte] of edits) data[at % data.length] = byte;
          return agrees(data);
        },
      ),
      { numRuns: 3000, seed: 4475 },
    );
  });
});
