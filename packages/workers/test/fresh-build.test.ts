// The shards run packages/workers/dist/shard.js against packages/core/dist (and the server
// tests spawn packages/server/dist/cli.js): what these tests check is the build, so the build
// must be as new as the sources. The global setup (test/setup/fresh-build.ts) builds before the
// tests when it is not; this fails when a run got past it with sources newer than their build.
import { describe, expect, it } from "vitest";
import { staleBuilds } from "../../../test/setup/fresh-build.js";

describe("the build the tests run on", () => {
  it("is at least as new as the sources of every package the tests load from dist", () => {
    expect(staleBuilds(), "packages whose src is newer than their dist").toEqual([]);
  });
});
