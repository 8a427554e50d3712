// RFC 3261 §16.7 best-response selection, as a table.
import { describe, expect, it } from "vitest";
import { parseMessage } from "../../src/message/parser.js";
import type { SipResponse } from "../../src/message/types.js";
import { selectBest } from "../../src/proxy/select.js";

function res(status: number, extra = ""): SipResponse {
  return parseMessage(
    Buffer.from(
      `SIP/2.0 ${status} X\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\n` +
        `Call-ID: c\r\nCSeq: 1 INVITE\r\n${extra}Content-Length: 0\r\n\r\n`,
      "latin1",
    ),
  ) as SipResponse;
}
const f = (status: number, extra = "") => ({ status, reason: "X", response: res(status, extra) });

describe("best response (RFC 3261 §16.7)", () => {
  const table: Array<[string, number[], number]> = [
    ["no response at all → 408", [], 408],
    ["a 6xx wins over everything", [486, 302, 603, 500], 603],
    ["lowest class: 3xx over 4xx and 5xx", [486, 302, 500], 302],
    ["lowest class: 4xx over 5xx", [500, 404], 404],
    ["a 503 chosen becomes 500", [503], 500],
    ["resubmission info preferred in 4xx: 407 over 404", [404, 407], 407],
    ["484 preferred over 486", [486, 484], 484],
    ["first of the class otherwise", [486, 480], 486],
    ["local timeouts (408) count", [408, 503], 408],
  ];
  for (const [name, statuses, expected] of table) {
    it(name, () => {
      expect(selectBest(statuses.map((s) => f(s))).status).toBe(expected);
    });
  }

  it("merges the challenges of every 401/407 into the chosen one (§16.7 item 7)", () => {
    const sel = selectBest([
      f(401, 'WWW-Authenticate: Digest realm="a"\r\n'),
      f(407, 'Proxy-Authenticate: Digest realm="b"\r\n'),
      f(486),
    ]);
    expect(sel.status).toBe(401);
    expect(sel.challenges).toEqual([["Proxy-Authenticate", 'Digest realm="b"']]);
  });
});
