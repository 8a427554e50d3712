// A dialog-creating request or 2xx carries one Contact (RFC 3261 §8.1.1.8, §12.1.1): the engine's
// own unless the user gave one, in any spelling (compact "m" or "M", §7.3.3).
import { buildResponse } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { forEachEngine } from "../setup/engines.js";
import { UAS, uacAndPeer } from "./raw.js";

forEachEngine((makeBed) => {
  describe("Contact given by the user, any spelling", () => {
    for (const name of ["Contact", "contact", "m", "M"])
      it(`an INVITE with "${name}:" and its 2xx carry that one Contact, not the engine's as well`, async () => {
        const { bed, uac, peer } = await uacAndPeer(makeBed);
        const h = await uac.request({
          method: "INVITE",
          uri: "sip:bob@127.0.0.9",
          from: "<sip:a@127.0.0.1>",
          to: "<sip:bob@127.0.0.9>",
          headers: [[name, "<sip:me@192.0.2.1>"]],
          nextHop: peer.hop,
        });
        await bed.flush();
        const invite = peer.requests("INVITE")[0]!;
        expect(invite.headerValues("contact")).toEqual(["<sip:me@192.0.2.1>"]);
        peer.send(buildResponse(invite, 486, { toTag: "x" }), UAS);
        await bed.flush();
        expect((await h.final).status).toBe(486);

        // The server side: a 2xx with the user's Contact.
        const uas = await bed.engine({ address: "127.0.0.2" });
        uas.onRequest = (tx) => tx.reply(200, { headers: [[name, "<sip:uas@192.0.2.2>"]] });
        peer.send(
          `INVITE sip:x@127.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKct${name}\r\nMax-Forwards: 70\r\nFrom: <sip:p@127.0.0.9>;tag=p\r\nTo: <sip:x@127.0.0.2>\r\nCall-ID: ct-${name}\r\nCSeq: 1 INVITE\r\nContact: <sip:p@127.0.0.9>\r\nContent-Length: 0\r\n\r\n`,
          { protocol: "UDP", address: "127.0.0.2", port: 5060 },
        );
        await bed.flush();
        const ok = peer.messages((m) => !m.isRequest && m.status === 200)[0]!;
        expect(ok.headerValues("contact")).toEqual(["<sip:uas@192.0.2.2>"]);
        await bed.advance(40_000);
      });
  });
});
