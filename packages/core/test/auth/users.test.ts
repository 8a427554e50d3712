import { describe, expect, it } from "vitest";
import { DigestAuth, digestHa1, parseUsers, UsersFileError } from "../../src/index.js";
import { authorize, readChallenge } from "./client.js";

const R = "siptm.example";
const md5 = (u: string, p: string, r = R) => digestHa1("MD5", u, r, p);
const sha = (u: string, p: string, r = R) => digestHa1("SHA-256", u, r, p);

describe("parseUsers (htdigest users file)", () => {
  it("reads user:realm:HA1 and user:realm:HA1:HA1-SHA-256; skips comments and blank lines; CRLF", () => {
    const text = [
      "# siptm users",
      "",
      `alice:${R}:${md5("alice", "a")}:${sha("alice", "a")}`,
      "   ",
      `  # indented comment`,
      `bob:${R}:${md5("bob", "b").toUpperCase()}\r`,
      `bob:other.example:${md5("bob", "b", "other.example")}`,
    ].join("\n");
    const t = parseUsers(text);
    expect(t.size).toBe(3);
    expect(t.entries.map((e) => [e.user, e.realm, e.line])).toEqual([
      ["alice", R, 3],
      ["bob", R, 6],
      ["bob", "other.example", 7],
    ]);
    expect(t.lookup("alice", R, "MD5")).toBe(md5("alice", "a"));
    expect(t.lookup("alice", R, "SHA-256")).toBe(sha("alice", "a"));
    expect(t.lookup("bob", R, "MD5")).toBe(md5("bob", "b")); // stored lowercase
    expect(t.lookup("bob", R, "SHA-256")).toBeUndefined();
    expect(t.lookup("carol", R, "MD5")).toBeUndefined();
    expect(t.lookup("alice", "other.example", "MD5")).toBeUndefined();
    // bob has no SHA-256 HA1: only MD5 can be offered to everyone.
    expect(t.algorithms).toEqual(["MD5"]);
    expect(parseUsers(`alice:${R}:${md5("alice", "a")}:${sha("alice", "a")}\n`).algorithms).toEqual([
      "SHA-256",
      "MD5",
    ]);
    expect(parseUsers("").size).toBe(0);
  });

  it("bad lines are reported with their line numbers, all of them, as a typed error", () => {
    const text = [
      `alice:${R}:${md5("alice", "a")}`,
      "no-colons-here",
      `:${R}:${md5("x", "y")}`,
      `carol::${md5("carol", "c")}`,
      `dave:${R}:xyz`,
      `erin:${R}:${md5("erin", "e")}:short`,
      `alice:${R}:${md5("alice", "other")}`,
      `a:b:c:d:e`,
    ].join("\n");
    let err: unknown;
    try {
      parseUsers(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsersFileError);
    const problems = (err as UsersFileError).problems;
    expect(problems.map((p) => [p.line, p.code])).toEqual([
      [2, "syntax"],
      [3, "empty-user"],
      [4, "empty-realm"],
      [5, "bad-ha1"],
      [6, "bad-ha1"],
      [7, "duplicate"],
      [8, "syntax"],
    ]);
    expect(problems[5]!.message).toContain("line 1");
    expect((err as Error).message).toMatch(/7 bad lines \(line 2: /);
  });

  it("skipBad keeps the good lines and lists the bad ones", () => {
    const t = parseUsers(`oops\nalice:${R}:${md5("alice", "a")}\n`, { skipBad: true });
    expect(t.size).toBe(1);
    expect(t.problems).toEqual([expect.objectContaining({ line: 1, code: "syntax" })]);
    expect(t.get("alice", R)?.line).toBe(2);
  });

  it("its lookup verifies a UA's answer, for MD5 and SHA-256; a user with no SHA-256 HA1 fails SHA-256 as wrong", async () => {
    const t = parseUsers(
      `alice:${R}:${md5("alice", "a")}:${sha("alice", "a")}\nbob:${R}:${md5("bob", "b")}\n`,
    );
    const auth = new DigestAuth({ realm: R });
    const ch = auth.challenge({ status: 401 });
    for (const [i, alg] of [
      [0, "SHA-256"],
      [1, "MD5"],
    ] as const) {
      const c = readChallenge(ch.values[i]!);
      const v = authorize(c, {
        user: "alice",
        password: "a",
        method: "REGISTER",
        uri: `sip:${R}`,
        nc: i + 1,
      });
      expect(
        await auth.verify(
          { method: "REGISTER", uri: `sip:${R}`, authorization: v, header: "authorization" },
          t.lookup,
        ),
      ).toMatchObject({ ok: true, user: "alice", algorithm: alg });
    }
    const c = readChallenge(ch.values[0]!);
    const v = authorize(c, { user: "bob", password: "b", method: "REGISTER", uri: `sip:${R}` });
    expect(
      await auth.verify(
        { method: "REGISTER", uri: `sip:${R}`, authorization: v, header: "authorization" },
        t.lookup,
      ),
    ).toEqual({ ok: false, reason: "wrong" });
  });
});
