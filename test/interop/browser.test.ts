// SIP.js and JsSIP in headless Chromium over WSS through Kamailio 5.6 as a WebRTC gateway
// (browser-kamailio.ts): the reference the browser suite (browser-suite.ts) was first proven
// against, kept as the comparison for siptm (browser-siptm.test.ts): same clients, same SIPp UASes.
import { expect } from "vitest";
import { KamailioWss, requireKamailioWss } from "./browser-kamailio.js";
import { browserSuite, literal } from "./browser-suite.js";

browserSuite(
  "browsers over WSS to Kamailio (the reference WebRTC gateway)",
  async (cert) => {
    requireKamailioWss();
    const k = await KamailioWss.start(cert);
    return {
      kamailio: k,
      name: "kamailio",
      udp: k.udp,
      wsUrl: k.wsUrl,
      report: () => k.report(),
      stop: () => k.stop(),
    };
  },
  async ({ kamailio }, calls) => {
    // What Kamailio got from the browser (its request_route logs each request): the client's ACK
    // of the 487 reached it over WSS, so did the ACK of the 200 and the BYE.
    const got = (method: string, callId: string, proto = "wss?") =>
      new RegExp(`kamailio in: ${method} \\S+ from \\S+/${proto} ci=${literal(callId)}\\n`).test(
        kamailio.output,
      );
    expect(got("INVITE", calls.cancelled), kamailio.report()).toBe(true);
    expect(got("CANCEL", calls.cancelled), kamailio.report()).toBe(true);
    expect(got("ACK", calls.cancelled), kamailio.report()).toBe(true);
    expect(got("ACK", calls.answered), kamailio.report()).toBe(true);
    expect(got("BYE", calls.answered), kamailio.report()).toBe(true);
    // The call to the browser came from SIPp over UDP, its ACK and BYE too (to the browser's
    // .invalid Contact, through Kamailio's Record-Route).
    const incoming = calls.incoming!;
    expect(got("INVITE", incoming, "udp"), kamailio.report()).toBe(true);
    expect(got("ACK", incoming, "udp"), kamailio.report()).toBe(true);
    expect(got("BYE", incoming, "udp"), kamailio.report()).toBe(true);
  },
  { incoming: true },
);
