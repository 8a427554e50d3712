// The coordinator's byte scans and the Call-ID hash: no parse, stable values.
import { newCallId, parseMessage } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { BatchReader, BatchWriter, NOT_TOLD, REC_IN, REC_SEND } from "../src/batch.js";
import { findCallId, type Span, scanCallId } from "../src/callid.js";
import { hashBytes, hashString, shardOf } from "../src/hash.js";
import { buildReject, replyDestination } from "../src/reject.js";
import {
  branchShard,
  isResponse,
  METHOD_ACK,
  METHOD_CANCEL,
  METHOD_OTHER,
  methodKind,
  newViaScan,
  scanTopVia,
} from "../src/scan.js";

const b = (s: string) => Buffer.from(s, "latin1");

function request(headers: string[], method = "INVITE"): Buffer {
  return b(`${method} sip:bob@example.com SIP/2.0\r\n${headers.join("\r\n")}\r\n\r\nbody`);
}

describe("Call-ID scan", () => {
  it("finds the long form", () => {
    expect(
      findCallId(request(["Via: SIP/2.0/UDP h;branch=z9hG4bK1", "Call-ID: abc@host", "CSeq: 1 INVITE"])),
    ).toBe("abc@host");
  });
  it("finds the compact form i", () => {
    expect(findCallId(request(["v: SIP/2.0/UDP h;branch=z9hG4bK1", "i: compact-1", "CSeq: 1 INVITE"]))).toBe(
      "compact-1",
    );
  });
  it("is case-insensitive in the name", () => {
    expect(findCallId(request(["CALL-ID: up"]))).toBe("up");
    expect(findCallId(request(["call-id: low"]))).toBe("low");
    expect(findCallId(request(["cAlL-iD: mixed"]))).toBe("mixed");
    expect(findCallId(request(["I: big-i"]))).toBe("big-i");
  });
  it("allows whitespace before the colon and trims the value", () => {
    expect(findCallId(request(["Call-ID \t : \t spaced@h \t "]))).toBe("spaced@h");
    expect(findCallId(request(["i :x"]))).toBe("x");
  });
  it("does not take other headers that start alike", () => {
    const m = request(["Call-Info: <http://x>", "In-Reply-To: 12@x", "Contact: <sip:c@h>", "Call-ID: real"]);
    expect(findCallId(m)).toBe("real");
  });
  it("is absent: no header, an empty value, or only in the body", () => {
    expect(findCallId(request(["Via: SIP/2.0/UDP h", "CSeq: 1 INVITE"]))).toBeUndefined();
    expect(findCallId(request(["Call-ID:   "]))).toBeUndefined();
    expect(
      findCallId(b("INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\nCall-ID: in-body\r\n")),
    ).toBeUndefined();
    expect(findCallId(b(""))).toBeUndefined();
  });
  it("accepts bare LF line ends and stops at the blank line", () => {
    expect(findCallId(b("OPTIONS sip:x SIP/2.0\nVia: x\ni: lf-only\n\n"))).toBe("lf-only");
    expect(findCallId(b("OPTIONS sip:x SIP/2.0\n\ni: after\n"))).toBeUndefined();
  });
  it("gives byte offsets into the message (no string made)", () => {
    const m = request(["Call-ID: off@x"]);
    const span: Span = { start: 0, end: 0 };
    expect(scanCallId(m, span)).toBe(true);
    expect(m.toString("latin1", span.start, span.end)).toBe("off@x");
  });
  it("agrees with the core parser on the first Call-ID", () => {
    const m = request([
      "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
      "From: <sip:a@h>;tag=1",
      "To: <sip:b@h>",
      "i: same",
      "CSeq: 1 INVITE",
      "Content-Length: 4",
    ]);
    expect(findCallId(m)).toBe(parseMessage(m).callId);
  });
});

describe("FNV-1a hash", () => {
  it("has the published FNV-1a 32-bit values", () => {
    expect(hashString("")).toBe(0x811c9dc5);
    expect(hashString("a")).toBe(0xe40c292c);
    expect(hashString("foobar")).toBe(0xbf9cf968);
  });
  it("is the same over bytes and over the latin1 string", () => {
    for (const s of ["abc@host", "x", "é-latin1\u00ff", newCallId(), newCallId("10.0.0.1")])
      expect(hashBytes(b(s))).toBe(hashString(s));
  });
  it("hashes a range of a buffer", () => {
    const m = b("xxCALLyy");
    expect(hashBytes(m, 2, 6)).toBe(hashString("CALL"));
  });
  it("maps to stable shards", () => {
    // Fixed values: the multi-machine front must compute the same.
    expect(shardOf("a84b4c76e66710@pc33.atlanta.com", 4)).toBe(
      hashString("a84b4c76e66710@pc33.atlanta.com") % 4,
    );
    expect(shardOf("foobar", 7)).toBe(0xbf9cf968 % 7);
    expect(shardOf("anything", 1)).toBe(0);
    expect(shardOf(b("foobar"), 7)).toBe(shardOf("foobar", 7));
  });
  it("spreads random Call-IDs evenly enough", () => {
    const n = 4;
    const counts = new Array<number>(n).fill(0);
    for (let i = 0; i < 4000; i++) counts[shardOf(newCallId(), n)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(700);
  });
});

describe("Via and method scans", () => {
  it("tells responses from requests and finds ACK and CANCEL", () => {
    expect(isResponse(b("SIP/2.0 200 OK\r\n"))).toBe(true);
    expect(isResponse(b("INVITE sip:x SIP/2.0\r\n"))).toBe(false);
    expect(methodKind(b("ACK sip:x SIP/2.0"))).toBe(METHOD_ACK);
    expect(methodKind(b("CANCEL sip:x SIP/2.0"))).toBe(METHOD_CANCEL);
    expect(methodKind(b("ACKX sip:x SIP/2.0"))).toBe(METHOD_OTHER);
    expect(methodKind(b("INVITE sip:x SIP/2.0"))).toBe(METHOD_OTHER);
  });
  it("reads the top Via's branch, port and rport", () => {
    const via = newViaScan();
    const m = request([
      "Via: SIP/2.0/UDP 10.0.0.1:5070 ; rport ; BRANCH = z9hG4bKs2.abc ,SIP/2.0/UDP other;branch=z9hG4bKno",
      "Via: SIP/2.0/UDP third;branch=z9hG4bK3",
    ]);
    expect(scanTopVia(m, via)).toBe(true);
    expect(m.toString("latin1", via.branch.start, via.branch.end)).toBe("z9hG4bKs2.abc");
    expect(via.port).toBe(5070);
    expect(via.rport).toBe(true);
    expect(branchShard(m, via.branch, 4)).toBe(2);
    expect(branchShard(m, via.branch, 2)).toBe(-1);
  });
  it("handles IPv6 sent-by, no port, compact v, no branch", () => {
    const via = newViaScan();
    scanTopVia(request(["v: SIP/2.0/TCP [2001:db8::1]:5080;branch=z9hG4bKx"]), via);
    expect(via.port).toBe(5080);
    expect(via.rport).toBe(false);
    scanTopVia(request(["Via: SIP/2.0/UDP host.example"]), via);
    expect(via.port).toBe(-1);
    expect(via.branch.start).toBe(-1);
    expect(scanTopVia(request(["CSeq: 1 INVITE"]), via)).toBe(false);
  });
  it("reads the shard marker only in our branch format", () => {
    const via = newViaScan();
    const shardOfBranch = (branch: string) => {
      const m = request([`Via: SIP/2.0/UDP h;branch=${branch}`]);
      scanTopVia(m, via);
      return branchShard(m, via.branch, 16);
    };
    expect(shardOfBranch("z9hG4bKs11.Abc_-")).toBe(11);
    expect(shardOfBranch("z9hG4bKs0.x")).toBe(0);
    expect(shardOfBranch("z9hG4bKsX.x")).toBe(-1);
    expect(shardOfBranch("z9hG4bKs1")).toBe(-1);
    expect(shardOfBranch("z9hG4bKabc")).toBe(-1);
    expect(shardOfBranch("1234")).toBe(-1);
  });
});

describe("the coordinator's 503", () => {
  it("copies Via, From, To (with a new tag), Call-ID, CSeq and adds Retry-After", () => {
    const req = request([
      "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1",
      "Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2",
      "From: <sip:a@h>;tag=f",
      "To: <sip:b@h>",
      "Call-ID: c1",
      "CSeq: 7 INVITE",
      "Contact: <sip:a@10.0.0.1>",
      "Content-Length: 4",
    ]);
    const res = parseMessage(buildReject(req, 503, "Service Unavailable", [["Retry-After", "5"]])!);
    expect(res.isRequest).toBe(false);
    if (res.isRequest) return;
    expect(res.status).toBe(503);
    expect(res.viaCount).toBe(2);
    expect(res.callId).toBe("c1");
    expect(res.cseq).toEqual({ seq: 7, method: "INVITE" });
    expect(res.fromTag).toBe("f");
    expect(res.toTag).toBeTruthy();
    expect(res.header("retry-after")).toBe("5");
    expect(res.has("contact")).toBe(false);
    expect(res.body.length).toBe(0);
  });
  it("keeps an existing To tag and answers nothing without a Via", () => {
    const res = parseMessage(
      buildReject(
        request(
          [
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "To: <sip:b@h>;tag=t",
            "Call-ID: c",
            "CSeq: 1 BYE",
            "From: <sip:a@h>;tag=f",
          ],
          "BYE",
        ),
        503,
        "Busy",
      )!,
    );
    expect(res.toTag).toBe("t");
    expect(buildReject(request(["Call-ID: c", "CSeq: 1 BYE"]), 503, "x")).toBeUndefined();
  });
  it("goes to the source address: rport → source port, else the sent-by port or 5060", () => {
    const src = {
      protocol: "UDP" as const,
      address: "1.2.3.4",
      port: 40000,
      localAddress: "127.0.0.1",
      localPort: 5060,
    };
    expect(replyDestination(request(["Via: SIP/2.0/UDP h:5070;rport;branch=z9hG4bK1"]), src).port).toBe(
      40000,
    );
    expect(replyDestination(request(["Via: SIP/2.0/UDP h:5070;branch=z9hG4bK1"]), src).port).toBe(5070);
    expect(replyDestination(request(["Via: SIP/2.0/UDP h;branch=z9hG4bK1"]), src).port).toBe(5060);
    expect(
      replyDestination(request(["Via: SIP/2.0/UDP h"]), { ...src, protocol: "TCP", connectionId: 3 }),
    ).toEqual({
      protocol: "TCP",
      address: "1.2.3.4",
      port: 40000,
      connectionId: 3,
    });
  });
});

describe("batches", () => {
  it("round-trip records in one ArrayBuffer", () => {
    const w = new BatchWriter();
    w.add(REC_IN, 1, 5060, 0, 0, "127.0.0.1", "", b("OPTIONS sip:x SIP/2.0\r\n\r\n"));
    w.add(REC_SEND, 0, 40000, 8, 77, "::1", "id-1", b("SIP/2.0 200 OK\r\n\r\n"));
    w.add(REC_SEND, 255, 65535, 0xffffffff, 0, "", "", undefined);
    expect(w.count).toBe(3);
    const size = w.bytes;
    const ab = w.finish(12, NOT_TOLD);
    expect(ab.byteLength).toBe(size);
    expect(w.count).toBe(0);
    const r = new BatchReader(ab);
    expect([r.count, r.ack, r.live]).toEqual([3, 12, NOT_TOLD]);
    const seen: unknown[] = [];
    while (r.next()) seen.push([r.type, r.b, r.w, r.n0, r.n1, r.s0, r.s1, r.data.toString("latin1")]);
    expect(seen).toEqual([
      [REC_IN, 1, 5060, 0, 0, "127.0.0.1", "", "OPTIONS sip:x SIP/2.0\r\n\r\n"],
      [REC_SEND, 0, 40000, 8, 77, "::1", "id-1", "SIP/2.0 200 OK\r\n\r\n"],
      [REC_SEND, 255, 65535, 0xffffffff, 0, "", "", ""],
    ]);
  });
});
