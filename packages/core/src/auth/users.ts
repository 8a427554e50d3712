/**
 * The users file: one user a line, `user:realm:HA1`, the format Apache's
 * `htdigest` writes (HA1 = MD5(user:realm:password), RFC 7616 §3.4.2),
 * optionally followed by `:HA1-SHA-256` (the same over SHA-256) so SHA-256
 * can be offered without storing passwords. `#` comment lines and blank lines
 * are skipped; CRLF line ends are accepted.
 */
import type { CredentialLookup, DigestAlgorithm } from "./digest.js";
import { isHex } from "./params.js";

export interface UserEntry {
  readonly user: string;
  readonly realm: string;
  /** MD5(user:realm:password), lowercase hex. */
  readonly ha1: string;
  /** SHA-256(user:realm:password), lowercase hex, when the line has it. */
  readonly ha1Sha256?: string;
  /** 1-based line number in the file. */
  readonly line: number;
}

export type UsersFileProblemCode = "syntax" | "empty-user" | "empty-realm" | "bad-ha1" | "duplicate";

export interface UsersFileProblem {
  /** 1-based line number. */
  readonly line: number;
  readonly code: UsersFileProblemCode;
  readonly message: string;
}

/** Thrown by `parseUsers` (unless `skipBad`) when a line is bad; lists every bad line. */
export class UsersFileError extends Error {
  readonly problems: readonly UsersFileProblem[];
  constructor(problems: readonly UsersFileProblem[]) {
    const first = problems[0];
    super(
      `users file: ${problems.length} bad line${problems.length === 1 ? "" : "s"}` +
        (first ? ` (line ${first.line}: ${first.message})` : ""),
    );
    this.name = "UsersFileError";
    this.problems = problems;
  }
}

export interface ParseUsersOptions {
  /** Keep the good lines and report the bad ones in `problems` instead of throwing. Default false. */
  skipBad?: boolean;
}

export interface UsersTable {
  readonly entries: readonly UserEntry[];
  /** Bad lines skipped (only with `skipBad`; otherwise parseUsers threw). */
  readonly problems: readonly UsersFileProblem[];
  readonly size: number;
  /**
   * The algorithms every user has an HA1 for, SHA-256 first: offer these
   * (a user without an SHA-256 HA1 cannot answer an SHA-256 challenge).
   */
  readonly algorithms: readonly DigestAlgorithm[];
  /** The stored HA1 for the user in the realm under the algorithm, or undefined. */
  readonly lookup: CredentialLookup;
  get(user: string, realm: string): UserEntry | undefined;
}

function keyOf(user: string, realm: string): string {
  return `${realm}\u0000${user}`;
}

/** Parses a users file's text. Throws a `UsersFileError` listing every bad line unless `skipBad`. */
export function parseUsers(text: string, opts: ParseUsersOptions = {}): UsersTable {
  const problems: UsersFileProblem[] = [];
  const entries: UserEntry[] = [];
  const byKey = new Map<string, UserEntry>();
  let allSha = true;
  let lineNo = 0;
  let pos = 0;
  const n = text.length;
  while (pos <= n) {
    let end = text.indexOf("\n", pos);
    if (end < 0) end = n;
    lineNo++;
    let line = text.slice(pos, end);
    pos = end + 1;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) {
      if (end === n) break;
      continue;
    }
    const bad = (code: UsersFileProblemCode, message: string) =>
      problems.push({ line: lineNo, code, message });
    const fields = trimmed.split(":");
    if (fields.length !== 3 && fields.length !== 4) {
      bad("syntax", `expected user:realm:HA1[:HA1-SHA-256], found ${fields.length} fields`);
    } else {
      const [user, realm, ha1, sha] = fields as [string, string, string, string | undefined];
      if (user === "") bad("empty-user", "empty user name");
      else if (realm === "") bad("empty-realm", "empty realm");
      else if (!isHex(ha1, 32)) bad("bad-ha1", "HA1 is not 32 hex digits (MD5)");
      else if (sha !== undefined && !isHex(sha, 64)) bad("bad-ha1", "HA1-SHA-256 is not 64 hex digits");
      else {
        const key = keyOf(user, realm);
        const seen = byKey.get(key);
        if (seen) {
          bad("duplicate", `user "${user}" in realm "${realm}" already on line ${seen.line}`);
        } else {
          const entry: UserEntry =
            sha === undefined
              ? { user, realm, ha1: ha1.toLowerCase(), line: lineNo }
              : { user, realm, ha1: ha1.toLowerCase(), ha1Sha256: sha.toLowerCase(), line: lineNo };
          if (sha === undefined) allSha = false;
          byKey.set(key, entry);
          entries.push(entry);
        }
      }
    }
    if (end === n) break;
  }
  if (problems.length > 0 && !opts.skipBad) throw new UsersFileError(problems);
  const algorithms: DigestAlgorithm[] = allSha ? ["SHA-256", "MD5"] : ["MD5"];
  return {
    entries,
    problems,
    size: entries.length,
    algorithms,
    get: (user, realm) => byKey.get(keyOf(user, realm)),
    lookup: (user, realm, algorithm) => {
      const e = byKey.get(keyOf(user, realm));
      if (e === undefined) return undefined;
      return algorithm === "SHA-256" ? e.ha1Sha256 : e.ha1;
    },
  };
}
