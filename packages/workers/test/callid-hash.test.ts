// The coordinator's byte scans and the Call-ID hash: no parse, stable values.
import { newCallId, parseMessage } from "@siptm/core";
import { describe, expect, it } from "vitest";
import { BatchReader, BatchWriter, NOT_TOLD, REC_IN, REC_SEND } from "../src/batch.js";
import { findCallId, type Span, scanCallId } from "../src/callid.js";
import { defaultHashKey, hashBytes, hashBytes64, hashKey, hashString, shardOf } from "../src/hash.js";
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

/** The unkeyed FNV-1a 32-bit the shard choice used before: what an attacker could aim at offline. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ (s.charCodeAt(i) & 0xff), 0x01000193);
  return h >>> 0;
}

/**
 * SipHash-2-4 reference test vectors (Aumasson & Bernstein, the reference
 * implementation's `vectors_sip64`): key 00 01 … 0f, message i = the bytes
 * 00 01 … (i-1), output as its 8 bytes in little-endian order.
 */
const SIP64 = [
  "310e0edd47db6f72",
  "fd67dc93c539f874",
  "5a4fa9d909806c0d",
  "2d7efbd796666785",
  "b7877127e09427cf",
  "8da699cd64557618",
  "cee3fe586e46c9cb",
  "37d1018bf50002ab",
  "6224939a79f5f593",
  "b0e4a90bdf82009e",
  "f3b9dd94c5bb5d7a",
  "a7ad6b22462fb3f4",
  "fbe50e86bc8f1e75",
  "903d84c02756ea14",
  "eef27a8e90ca23f7",
  "e545be4961ca29a1",
  "db9bc2577fcc2a3f",
  "9447be2cf5e99a69",
  "9cd38d96f0b3c14b",
  "bd6179a71dc96dbb",
  "98eea21af25cd6be",
  "c7673b2eb0cbf2d0",
  "883ea3e395675393",
  "c8ce5ccd8c030ca8",
  "94af49f6c650adb8",
  "eab8858ade92e1bc",
  "f315bb5bb835d817",
  "adcf6b0763612e2f",
  "a5c91da7acaa4dde",
  "716595876650a2a6",
  "28ef495c53a387ad",
  "42c341d8fa92d832",
  "ce7cf2722f512771",
  "e37859f94623f3a7",
  "381205bb1ab0e012",
  "ae97a10fd434e015",
  "b4a31508beff4d31",
  "81396229f0907902",
  "4d0cf49ee5d4dcca",
  "5c73336a76d8bf9a",
  "d0a704536ba93e0e",
  "925958fcd6420cad",
  "a915c29bc8067318",
  "952b79f3bc0aa6d4",
  "f21df2e41d4535f9",
  "87577519048f53a9",
  "10a56cf5dfcd9adb",
  "eb75095ccd986cd0",
  "51a9cb9ecba312e6",
  "96afadfc2ce666c7",
  "72fe52975a4364ee",
  "5a1645b276d592a1",
  "b274cb8ebf87870a",
  "6f9bb4203de7b381",
  "eaecb2a30b22a87f",
  "9924a43cc1315724",
  "bd838d3aafbf8db7",
  "0b1a2a3265d51aea",
  "135079a3231ce660",
  "932b2846e4d70666",
  "e1915f5cb1eca46c",
  "f325965ca16d629f",
  "575ff28e60381be5",
  "724506eb4c328a95",
];

const hex = (u: Uint8Array) => Buffer.from(u).toString("hex");
const KEY = hashKey(Uint8Array.from({ length: 16 }, (_, i) => i));

describe("SipHash-2-4 (the shard hash)", () => {
  it("gives the reference test vectors, message lengths 0 to 63", () => {
    const msg = Uint8Array.from({ length: 64 }, (_, i) => i);
    for (let i = 0; i < 64; i++) expect(hex(hashBytes64(KEY, msg, 0, i)), `length ${i}`).toBe(SIP64[i]);
    // The paper's appendix example: 15 bytes, a129ca6149be45e5 as a 64-bit number.
    expect(hashBytes(KEY, msg, 0, 15)).toBe(0x49be45e5);
  });
  it("is the same over bytes and over the latin1 string", () => {
    for (const s of ["abc@host", "x", "é-latin1\u00ff", newCallId(), newCallId("10.0.0.1")])
      expect(hashBytes(KEY, b(s))).toBe(hashString(KEY, s));
  });
  it("hashes a range of a buffer", () => {
    const m = b("xxCALLyy");
    expect(hashBytes(KEY, m, 2, 6)).toBe(hashString(KEY, "CALL"));
    const vectors = Buffer.concat([b("junk"), Buffer.from(Uint8Array.from({ length: 20 }, (_, i) => i))]);
    expect(hex(hashBytes64(KEY, vectors, 4, 24))).toBe(SIP64[20]);
  });
  it("maps to stable shards for a given key, and the key matters", () => {
    const id = "a84b4c76e66710@pc33.atlanta.com";
    // Same key bytes, another key object (another process, another node): the same shard.
    const again = hashKey(Uint8Array.from({ length: 16 }, (_, i) => i));
    expect(shardOf(id, 4, again)).toBe(shardOf(id, 4, KEY));
    expect(shardOf(id, 4, KEY)).toBe(hashString(KEY, id) % 4);
    expect(shardOf("anything", 1, KEY)).toBe(0);
    expect(shardOf(b("foobar"), 7, KEY)).toBe(shardOf("foobar", 7, KEY));
    const other = hashKey(new Uint8Array(16).fill(0xa5));
    const ids = Array.from({ length: 64 }, (_, i) => `call-${i}@host`);
    expect(ids.map((s) => hashString(other, s))).not.toEqual(ids.map((s) => hashString(KEY, s)));
  });
  it("rejects a key that is not 16 bytes", () => {
    expect(() => hashKey(new Uint8Array(15))).toThrow(RangeError);
  });
  it("spreads random Call-IDs evenly enough", () => {
    const n = 4;
    const counts = new Array<number>(n).fill(0);
    for (let i = 0; i < 4000; i++) counts[shardOf(newCallId(), n, KEY)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(700);
  });
  it("spreads Call-IDs crafted to collide on one shard under the old unkeyed FNV-1a", () => {
    // What a flood aimed at shard 0 of 2 sends: Call-IDs found by brute force against FNV-1a.
    const crafted: string[] = [];
    for (let i = 0; crafted.length < 4000; i++) {
      const id = `flood${i}@attacker.example`;
      if (fnv1a(id) % 2 === 0) crafted.push(id);
    }
    const counts = [0, 0];
    for (const id of crafted) counts[shardOf(id, 2, KEY)]!++;
    // Under the keyed hash they fall like random ones: no shard gets more than 75 %.
    expect(Math.max(...counts)).toBeLessThanOrEqual(3000);
    expect(defaultHashKey()).toHaveLength(16);
    expect(defaultHashKey()).toBe(defaultHashKey());
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
