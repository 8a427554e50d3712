import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { digestResponse } from "../../src/auth/digest.js";
import { parseCredentials } from "../../src/auth/params.js";
import {
  type CredentialLookup,
  type DigestAlgorithm,
  DigestAuth,
  type DigestRequest,
  digestHa1,
  MemoryNonceCounts,
} from "../../src/index.js";
import { authorize, readChallenge, responseFor } from "./client.js";

const REALM = "siptm.example";
const KEY = "0123456789abcdef0123456789abcdef";
const USERS: Record<string, string> = { alice: "wonderland", bob: "builder" };

/** The lookup a users file would give: HA1s only, no passwords. */
const lookup: CredentialLookup = (user, realm, algorithm) => {
  const pw = USERS[user];
  return pw === undefined || realm !== REALM ? undefined : digestHa1(algorithm, user, realm, pw);
};

function setup(opts: Partial<ConstructorParameters<typeof DigestAuth>[0]> = {}) {
  let t = 1_765_000_000_000;
  const clock = {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
  const auth = new DigestAuth({ realm: REALM, key: KEY, now: clock.now, ...opts });
  return { auth, clock };
}

const REGISTER_URI = "sip:siptm.example";

function req(authorization: string | string[] | undefined, over: Partial<DigestRequest> = {}): DigestRequest {
  return { method: "REGISTER", uri: REGISTER_URI, authorization, header: "authorization", ...over };
}

/** Alice's answer to `c` (REGISTER, her password), with `a` over it. */
function asAlice(
  c: Parameters<typeof authorize>[0],
  a: Partial<Parameters<typeof authorize>[1]> = {},
): string {
  return authorize(c, { user: "alice", password: "wonderland", method: "REGISTER", uri: REGISTER_URI, ...a });
}

/** Alice's answer to a fresh challenge, verified on a request that `over` changes: refused with exactly `reason`. */
async function expectChangedRefused(
  auth: DigestAuth,
  over: Partial<DigestRequest>,
  reason: string,
): Promise<void> {
  const { value } = answer(auth);
  expect(await auth.verify(req(value, over), lookup)).toEqual({ ok: false, reason });
}

/** Challenge, then the UA's answer for the algorithm offered at `which`. */
function answer(
  auth: DigestAuth,
  a: Partial<Parameters<typeof authorize>[1]> & { which?: number } = {},
): { value: string; nonce: string } {
  const ch = auth.challenge({ status: 401 });
  const c = readChallenge(ch.values[a.which ?? 0]!);
  return {
    nonce: c.nonce,
    value: asAlice(c, a),
  };
}

describe("RFC 7616 §3.9.1 known answers", () => {
  // The RFC's example: Mufasa, "Circle of Life" (lowercase "of", RFC 7616 errata 4495).
  // The RFC's values, written as they stand there (alike in form with other constant blocks, e.g. bench/src/micro.ts's).
  const nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
  const cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
  const base = {
    user: "Mufasa",
    password: "Circle of Life",
    method: "GET",
    uri: "/dir/index.html",
    nc: "00000001",
    cnonce,
    qop: "auth" as const,
  };
  it.each([
    ["MD5", "8ca523f5e9506fed4657c9700eebdbec"],
    ["SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"],
  ] as const)("%s response", (algorithm, expected) => {
    // The server's computation: the HA1 it stores (digestHa1), then the response verify recomputes.
    const ha1 = digestHa1(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life");
    expect(ha1).toHaveLength(algorithm === "MD5" ? 32 : 64);
    expect(digestResponse(algorithm, ha1, { ...base, nonce })).toBe(expected);
    // The test client's, written apart: the same.
    const c = { realm: "http-auth@example.org", nonce, algorithm, stale: false };
    expect(responseFor(c, base)).toBe(expected);
  });

  it("verify accepts the RFC's MD5 and SHA-256 Authorization values (our nonce in place of the RFC's)", async () => {
    const { auth } = setup({ realm: "http-auth@example.org" });
    const lk: CredentialLookup = (u, r, alg) =>
      u === "Mufasa" ? digestHa1(alg, u, r, "Circle of Life") : undefined;
    for (const alg of ["MD5", "SHA-256"] as const) {
      const c = readChallenge(auth.challenge({ status: 401, algorithms: [alg] }).values[0]!);
      const value = authorize(c, { ...base, nc: 1 });
      expect(value).toContain(`algorithm=${alg}`);
      const r = await auth.verify(
        { method: "GET", uri: "/dir/index.html", authorization: value, header: "authorization" },
        lk,
      );
      expect(r).toMatchObject({ ok: true, user: "Mufasa", algorithm: alg, realm: "http-auth@example.org" });
    }
  });
});

describe("challenge", () => {
  it("401 → WWW-Authenticate, one value per algorithm, SHA-256 first, qop=auth (RFC 8760 §2)", () => {
    const { auth } = setup();
    const ch = auth.challenge({ status: 401 });
    expect(ch.header).toBe("WWW-Authenticate");
    expect(ch.values).toHaveLength(2);
    expect(ch.values[0]).toBe(
      `Digest realm="siptm.example", nonce="${ch.nonce}", algorithm=SHA-256, qop="auth"`,
    );
    expect(ch.values[1]).toBe(`Digest realm="siptm.example", nonce="${ch.nonce}", algorithm=MD5, qop="auth"`);
    expect(ch.headers).toEqual(ch.values.map((v) => ["WWW-Authenticate", v]));
    expect(ch.nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("407 → Proxy-Authenticate; stale=true when asked; opaque when configured; the realm quoted", () => {
    const { auth } = setup({ opaque: "op-1" });
    const ch = auth.challenge({ status: 407, stale: true, realm: 'odd "realm"', algorithms: ["MD5"] });
    expect(ch.header).toBe("Proxy-Authenticate");
    expect(ch.values).toEqual([
      `Digest realm="odd \\"realm\\"", nonce="${ch.nonce}", opaque="op-1", algorithm=MD5, qop="auth", stale=true`,
    ]);
  });

  it("each challenge has a fresh nonce; algorithms outside the instance's are refused", () => {
    const { auth } = setup({ algorithms: ["MD5"] });
    expect(auth.challenge({ status: 401 }).nonce).not.toBe(auth.challenge({ status: 401 }).nonce);
    expect(() => auth.challenge({ status: 401, algorithms: ["SHA-256"] })).toThrow(RangeError);
    expect(() => new DigestAuth({ realm: "r", key: "short" })).toThrow(RangeError);
    expect(() => new DigestAuth({ realm: "bad\r\nrealm" })).toThrow(TypeError);
  });
});

describe("verify", () => {
  it.each(["SHA-256", "MD5"] as const)(
    "a SIP round trip with %s: challenge → Authorization → ok",
    async (alg) => {
      const { auth } = setup();
      const { value } = answer(auth, { which: alg === "SHA-256" ? 0 : 1 });
      const r = await auth.verify(req(value), lookup);
      expect(r).toEqual({
        ok: true,
        user: "alice",
        realm: REALM,
        algorithm: alg,
        header: "authorization",
        index: 0,
      });
    },
  );

  it("a 407 round trip with Proxy-Authorization among credentials for another realm and another scheme", async () => {
    const { auth } = setup();
    const c = readChallenge(auth.challenge({ status: 407 }).values[0]!);
    const value = authorize(c, {
      user: "bob",
      password: "builder",
      method: "INVITE",
      uri: "sip:carol@elsewhere.example",
    });
    const other = value.replace(`realm="${REALM}"`, 'realm="other.example"');
    const r = await auth.verify(
      {
        method: "INVITE",
        uri: "sip:carol@elsewhere.example",
        authorization: ["Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", other, value],
        header: "proxy-authorization",
      },
      lookup,
    );
    expect(r).toMatchObject({ ok: true, user: "bob", header: "proxy-authorization", index: 2 });
  });

  it("an async lookup works the same", async () => {
    const { auth } = setup();
    const { value } = answer(auth);
    expect(await auth.verify(req(value), async (u, r, a) => lookup(u, r, a))).toMatchObject({ ok: true });
  });

  it("a wrong password and an unknown user give the same result (no user enumeration)", async () => {
    const { auth } = setup();
    const wrongPw = await auth.verify(req(answer(auth, { password: "guess" }).value), lookup);
    const noUser = await auth.verify(req(answer(auth, { user: "mallory", password: "x" }).value), lookup);
    expect(wrongPw).toEqual({ ok: false, reason: "wrong" });
    expect(noUser).toEqual(wrongPw);
    // A lookup that returns garbage (no HA1 of the right length) is an unknown user too.
    const garbage = await auth.verify(req(answer(auth).value), () => "not-hex");
    expect(garbage).toEqual(wrongPw);
  });

  it("an unknown user is hashed like a known one: the lookup is asked, for the algorithm used", async () => {
    const { auth } = setup();
    const asked: string[] = [];
    await auth.verify(req(answer(auth, { user: "mallory", which: 1 }).value), (u, r, a) => {
      asked.push(`${u}:${r}:${a}`);
      return undefined;
    });
    expect(asked).toEqual(["mallory:siptm.example:MD5"]);
  });

  it("no credentials → missing; credentials of another scheme only → missing", async () => {
    const { auth } = setup();
    expect(await auth.verify(req(undefined), lookup)).toEqual({ ok: false, reason: "missing" });
    expect(await auth.verify(req([]), lookup)).toEqual({ ok: false, reason: "missing" });
    expect(await auth.verify(req("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="), lookup)).toEqual({
      ok: false,
      reason: "missing",
    });
  });

  it("a tampered nonce → bad-nonce; a nonce for another realm → bad-nonce", async () => {
    const { auth } = setup();
    const { value, nonce } = answer(auth);
    const flipped = nonce.slice(0, 5) + (nonce[5] === "A" ? "B" : "A") + nonce.slice(6);
    expect(await auth.verify(req(value.replace(nonce, flipped)), lookup)).toMatchObject({
      reason: "bad-nonce",
    });
    expect(await auth.verify(req(value.replace(nonce, "abc")), lookup)).toMatchObject({
      reason: "bad-nonce",
    });
    // A nonce made by a node with another key is not ours.
    const other = new DigestAuth({ realm: REALM, key: "ffffffffffffffffffffffffffffffff" });
    const foreign = answer(other).value;
    expect(await auth.verify(req(foreign), lookup)).toMatchObject({ reason: "bad-nonce" });
    // A nonce issued for realm A, answered for realm B.
    const chA = readChallenge(auth.challenge({ status: 401, realm: "a.example" }).values[0]!);
    const asB = asAlice({ ...chA, realm: "b.example" });
    expect(await auth.verify(req(asB, { realm: "b.example" }), lookup)).toMatchObject({
      reason: "bad-nonce",
    });
  });

  it("a cluster node with the same key accepts another node's nonce", async () => {
    const a = setup().auth;
    const b = setup().auth;
    expect(await b.verify(req(answer(a).value), lookup)).toMatchObject({ ok: true });
  });

  it("expired (right digest) → stale; then a fresh challenge with stale=true works", async () => {
    const { auth, clock } = setup({ nonceLifetimeMs: 60_000 });
    const { value } = answer(auth);
    clock.advance(60_000);
    expect(await auth.verify(req(value), lookup)).toMatchObject({ ok: true }); // the last millisecond of its life
    const second = answer(auth);
    clock.advance(60_001);
    expect(await auth.verify(req(second.value), lookup)).toMatchObject({ ok: false, reason: "stale" });
    // An expired nonce with a wrong password is "wrong", not "stale" (RFC 7616 §3.3).
    const wrong = answer(auth, { password: "guess" });
    clock.advance(60_001);
    expect(await auth.verify(req(wrong.value), lookup)).toEqual({ ok: false, reason: "wrong" });
    const ch = auth.challenge({ status: 401, stale: true });
    expect(ch.values[0]).toContain("stale=true");
    const c = readChallenge(ch.values[0]!);
    expect(c.stale).toBe(true);
    const fresh = asAlice(c);
    expect(await auth.verify(req(fresh), lookup)).toMatchObject({ ok: true });
  });

  it("the default lifetime is 300 s", async () => {
    const { auth, clock } = setup();
    expect(auth.nonceLifetimeMs).toBe(300_000);
    const { value } = answer(auth);
    clock.advance(300_001);
    expect(await auth.verify(req(value), lookup)).toMatchObject({ reason: "stale" });
  });

  it("a nonce from the future (beyond the allowed skew) → bad-nonce", async () => {
    const { auth, clock } = setup({ maxClockSkewMs: 1000 });
    const { value } = answer(auth);
    clock.advance(-1001);
    expect(await auth.verify(req(value), lookup)).toMatchObject({ reason: "bad-nonce" });
    clock.advance(2);
    expect(await auth.verify(req(value), lookup)).toMatchObject({ ok: true });
  });

  it("a replayed nc → replay; increasing counts accepted; a late count within the window once", async () => {
    const { auth } = setup();
    const ch = readChallenge(auth.challenge({ status: 401 }).values[0]!);
    const with_ = (nc: number) => asAlice(ch, { nc });
    expect(await auth.verify(req(with_(1)), lookup)).toMatchObject({ ok: true });
    expect(await auth.verify(req(with_(1)), lookup)).toEqual({ ok: false, reason: "replay" });
    expect(await auth.verify(req(with_(2)), lookup)).toMatchObject({ ok: true });
    expect(await auth.verify(req(with_(5)), lookup)).toMatchObject({ ok: true });
    expect(await auth.verify(req(with_(4)), lookup)).toMatchObject({ ok: true }); // reordered, first time
    expect(await auth.verify(req(with_(4)), lookup)).toEqual({ ok: false, reason: "replay" });
    expect(await auth.verify(req(with_(2)), lookup)).toEqual({ ok: false, reason: "replay" });
    expect(await auth.verify(req(with_(100)), lookup)).toMatchObject({ ok: true });
    expect(await auth.verify(req(with_(3)), lookup)).toEqual({ ok: false, reason: "replay" }); // below the window
  });

  it("a failed attempt does not use up the count (no denial of service on the real client)", async () => {
    const { auth } = setup();
    const ch = readChallenge(auth.challenge({ status: 401 }).values[0]!);
    const bad = asAlice(ch, { password: "guess", nc: 1 });
    expect(await auth.verify(req(bad), lookup)).toMatchObject({ reason: "wrong" });
    const good = asAlice(ch);
    expect(await auth.verify(req(good), lookup)).toMatchObject({ ok: true });
  });

  it("a count store that forgot the nonce → stale (the client takes a fresh one)", async () => {
    const { auth, clock } = setup({ nonceCounts: new MemoryNonceCounts({ maxNonces: 1 }) });
    const first = answer(auth);
    const firstAgain = asAlice(readChallenge(auth.challenge({ status: 401 }).values[0]!));
    clock.advance(1);
    const second = answer(auth);
    expect(await auth.verify(req(first.value), lookup)).toMatchObject({ ok: true });
    expect(await auth.verify(req(second.value), lookup)).toMatchObject({ ok: true }); // evicts the first
    expect(await auth.verify(req(first.value), lookup)).toMatchObject({ reason: "stale" }); // not a replay that passes
    // A nonce issued before the eviction and never used: also stale (it could have been forgotten).
    expect(await auth.verify(req(firstAgain), lookup)).toMatchObject({ reason: "stale" });
  });

  it("the uri must be the Request-URI (RFC 3261 §22.4); an equivalent SIP URI is accepted", async () => {
    const { auth } = setup();
    await expectChangedRefused(auth, { uri: "sip:other.example" }, "uri-mismatch");
    const ch = readChallenge(auth.challenge({ status: 401 }).values[0]!);
    const v = asAlice(ch, { uri: "sip:SIPTM.example" });
    expect(await auth.verify(req(v), lookup)).toMatchObject({ ok: true });
  });

  it("the method is part of the digest: an Authorization for REGISTER does not pass for INVITE", async () => {
    await expectChangedRefused(setup().auth, { method: "INVITE" }, "wrong");
  });

  it("a realm not ours → unknown-realm", async () => {
    await expectChangedRefused(setup().auth, { realm: "elsewhere.example" }, "unknown-realm");
  });

  it("an algorithm not offered → bad-algorithm (by the instance, or in this nonce's challenge)", async () => {
    const { auth } = setup({ algorithms: ["SHA-256"] });
    const { value } = answer(auth);
    expect(await auth.verify(req(value.replace("algorithm=SHA-256", "algorithm=MD5")), lookup)).toMatchObject(
      {
        reason: "bad-algorithm",
      },
    );
    expect(
      await auth.verify(req(value.replace("algorithm=SHA-256", "algorithm=MD5-sess")), lookup),
    ).toMatchObject({
      reason: "bad-algorithm",
    });
    expect(await auth.verify(req(value.replace(", algorithm=SHA-256", "")), lookup)).toMatchObject({
      reason: "bad-algorithm", // absent means MD5 (RFC 7616 §3.3)
    });
    const both = setup().auth;
    const onlyMd5 = readChallenge(both.challenge({ status: 401, algorithms: ["MD5"] }).values[0]!);
    const asSha = asAlice({ ...onlyMd5, algorithm: "SHA-256" });
    expect(await both.verify(req(asSha), lookup)).toMatchObject({ reason: "bad-algorithm" });
  });

  it("qop missing → bad-qop; qop=auth-int → bad-qop; cnonce or nc missing with qop → malformed", async () => {
    const { auth } = setup();
    const noQop = answer(auth, { noQop: true }).value;
    expect(await auth.verify(req(noQop), lookup)).toMatchObject({ ok: false, reason: "bad-qop" });
    const { value } = answer(auth);
    expect(await auth.verify(req(value.replace("qop=auth", "qop=auth-int")), lookup)).toMatchObject({
      reason: "bad-qop",
    });
    expect(
      await auth.verify(req(answer(auth, { override: { cnonce: undefined } }).value), lookup),
    ).toMatchObject({
      reason: "malformed",
    });
    expect(await auth.verify(req(answer(auth, { override: { nc: undefined } }).value), lookup)).toMatchObject(
      {
        reason: "malformed",
      },
    );
    expect(await auth.verify(req(answer(auth, { override: { nc: "1" } }).value), lookup)).toMatchObject({
      reason: "malformed",
    });
    expect(await auth.verify(req(answer(auth, { nc: 0 }).value), lookup)).toMatchObject({
      reason: "malformed",
    });
  });

  it("the RFC 2069 form (no qop) only when allowed", async () => {
    const { auth } = setup({ allowRfc2069: true });
    expect(await auth.verify(req(answer(auth, { noQop: true }).value), lookup)).toMatchObject({ ok: true });
    expect(await auth.verify(req(answer(auth, { noQop: true, password: "x" }).value), lookup)).toMatchObject({
      reason: "wrong",
    });
  });

  it("the opaque, when configured, must come back unchanged", async () => {
    const { auth } = setup({ opaque: "o-42" });
    expect(await auth.verify(req(answer(auth).value), lookup)).toMatchObject({ ok: true });
    expect(
      await auth.verify(req(answer(auth, { override: { opaque: '"o-43"' } }).value), lookup),
    ).toMatchObject({
      reason: "bad-nonce",
    });
    expect(
      await auth.verify(req(answer(auth, { override: { opaque: undefined } }).value), lookup),
    ).toMatchObject({
      reason: "bad-nonce",
    });
  });

  it("lenient on what UAs write: quoted qop/nc/algorithm, uppercase hex, scheme case, folded whitespace", async () => {
    const { auth } = setup();
    const { value } = answer(auth);
    const odd = value
      .replace("Digest ", "dIgEsT  \r\n ")
      .replace("qop=auth", 'qop="auth"')
      .replace(/response="([0-9a-f]+)"/, (_, x: string) => `response = "${x.toUpperCase()}"`);
    expect(await auth.verify(req(odd), lookup)).toMatchObject({ ok: true });
  });

  it("malformed credentials → malformed, never a throw", async () => {
    const { auth } = setup();
    const { value } = answer(auth);
    for (const bad of [
      "",
      "Digest",
      "Digest ",
      'Digest realm="siptm.example"',
      'Digest realm="siptm.example", username="alice',
      'Digest realm="siptm.example", username=',
      'Digest realm="siptm.example" username="alice"',
      `${value}, realm="again"`,
      value.replace(/response="[0-9a-f]+"/, 'response="zz"'),
      value.replace(/response="([0-9a-f]+)"/, 'response="$1ab"'),
      value.replace(", algorithm=SHA-256", ", userhash=true, algorithm=SHA-256"),
      `Digest ${"a=b,".repeat(40)} realm="siptm.example"`,
      `${value}${" ".repeat(9000)}`,
      "Digest\u0000realm=x",
      'Digest realm="a\u0001b"',
    ]) {
      const r = await auth.verify(req(bad), lookup);
      expect(r.ok, bad).toBe(false);
      expect(r, JSON.stringify(bad)).toMatchObject({ reason: "malformed" });
    }
  });

  it("fuzz: random strings never throw and never pass", async () => {
    const { auth } = setup();
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), fc.string({ unit: "binary" })), async (s) => {
        const r = await auth.verify(req(s), lookup);
        expect(r.ok).toBe(false);
        const r2 = await auth.verify(req(`Digest ${s}`), lookup);
        expect(r2.ok).toBe(false);
      }),
      { numRuns: 500, seed: 18 },
    );
  });

  it("fuzz: a valid Authorization with one character changed, dropped or added never passes and never throws", async () => {
    const { auth } = setup();
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 1 }),
        fc.nat(),
        fc.constantFrom("drop", "change", "add"),
        fc.integer({ min: 32, max: 126 }),
        async (which, at, how, code) => {
          const { value } = answer(auth, { which });
          const i = at % value.length;
          const ch = String.fromCharCode(code);
          const mutated =
            how === "drop"
              ? value.slice(0, i) + value.slice(i + 1)
              : how === "add"
                ? value.slice(0, i) + ch + value.slice(i)
                : value.slice(0, i) + ch + value.slice(i + 1);
          const r = await auth.verify(req(mutated), lookup);
          if (r.ok) {
            // Only a change that leaves the meaning as it was may pass (whitespace, case of a
            // case-insensitive name or of the hex response, a parameter the digest ignores).
            expect(normal(mutated)).toBe(normal(value));
          }
        },
      ),
      { numRuns: 1000, seed: 7616 },
    );
  });
});

/**
 * What the digest means once read: the parameters it hashes, with the
 * defaults and case folding of RFC 7616 §3.4 (algorithm absent = MD5; an
 * unknown parameter is ignored).
 */
function normal(v: string): string {
  const p = parseCredentials(v);
  if (!p.ok) return `unparsed: ${p.error}`;
  const g = (k: string) => p.params.get(k);
  return JSON.stringify([
    p.scheme.toLowerCase(),
    ...["username", "realm", "nonce", "uri", "cnonce", "nc", "opaque"].map(g),
    g("response")?.toLowerCase(),
    (g("algorithm") ?? "MD5").toUpperCase(),
    g("qop")?.toLowerCase(),
  ]);
}

describe("users and algorithms together", () => {
  it.each(["SHA-256", "MD5"] as DigestAlgorithm[])(
    "the HA1 a users file stores verifies with %s",
    async (alg) => {
      const { auth } = setup({ algorithms: [alg] });
      const { value } = answer(auth);
      expect(await auth.verify(req(value), lookup)).toMatchObject({ ok: true, algorithm: alg });
    },
  );
});
