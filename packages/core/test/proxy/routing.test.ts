// Our own route processing (RFC 3261 §16.4, RFC 5658 §4) on a proxy with UDP and TCP on
// 127.0.0.5:5060: which Route values of a request it removes as its own.
import { describe, expect, it } from "vitest";
import { parseMessage } from "../../src/message/parser.js";
import type { SipRequest } from "../../src/message/types.js";
import { ownRouteProcessing } from "../../src/proxy/routing.js";
import { Testbed } from "../../src/testing.js";

const UDP = "<sip:127.0.0.5:5060;lr>";
const TCP = "<sip:127.0.0.5:5060;transport=tcp;lr>";
const OTHER = "<sip:192.0.2.9:5060;lr>";

function routesAfter(routes: string[], uri = "sip:bob@127.0.0.10"): { routes: string[]; uri: string } {
  const bed = new Testbed();
  const proxy = bed.engine({ address: "127.0.0.5" });
  const req = parseMessage(
    Buffer.from(
      `BYE ${uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKr1\r\nMax-Forwards: 70\r\n` +
        routes.map((r) => `Route: ${r}\r\n`).join("") +
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.10>;tag=2\r\nCall-ID: r1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
      "latin1",
    ),
  ) as SipRequest;
  ownRouteProcessing(proxy, req);
  return { routes: req.headerValues("route"), uri: req.uri };
}

describe("ownRouteProcessing", () => {
  it("removes both values of a double Record-Route, either order, with or without transport", () => {
    expect(routesAfter([UDP, TCP, OTHER]).routes).toEqual([OTHER]);
    expect(routesAfter([TCP, UDP]).routes).toEqual([]);
    expect(routesAfter([TCP, UDP, OTHER]).routes).toEqual([OTHER]);
  });

  it("removes one value of ours alone, and nothing that is not ours", () => {
    expect(routesAfter([TCP, OTHER]).routes).toEqual([OTHER]);
    expect(routesAfter([UDP, OTHER, TCP]).routes).toEqual([OTHER, TCP]);
    expect(routesAfter([OTHER, UDP]).routes).toEqual([OTHER, UDP]);
  });

  it("the same URI of ours twice (a spiral) loses one per pass", () => {
    expect(routesAfter([UDP, UDP, OTHER]).routes).toEqual([UDP, OTHER]);
  });

  it("a strict router's Request-URI naming us: the last Route becomes the Request-URI, then our pair goes", () => {
    expect(routesAfter([TCP, "<sip:bob@127.0.0.10>"], "sip:127.0.0.5:5060")).toEqual({
      routes: [],
      uri: "sip:bob@127.0.0.10",
    });
  });
});
