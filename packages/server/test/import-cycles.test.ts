// No import cycle among the server's own modules: every relative import of
// src (type-only ones too, `export … from` included) is an edge, and the graph
// must have none. A cycle makes module order matter and hides a type in the
// wrong place (local.ts once imported BoundSocket from route.ts, which imports
// local.ts).
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL("../src", import.meta.url));

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** The relative imports of one file, as absolute .ts paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/\b(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)\.js"/g))
    out.push(resolve(dirname(file), `${m[1]}.ts`));
  return out;
}

/** Every cycle's files, in import order (one per strongly connected set found by depth-first search). */
function findCycles(graph: Map<string, string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (f: string): void => {
    state.set(f, "open");
    path.push(f);
    for (const g of graph.get(f) ?? []) {
      if (!graph.has(g)) continue;
      const s = state.get(g);
      if (s === "open") cycles.push([...path.slice(path.indexOf(g)), g]);
      else if (s === undefined) visit(g);
    }
    path.pop();
    state.set(f, "done");
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return cycles;
}

describe("packages/server/src imports", () => {
  const graph = new Map(sources(SRC).map((f) => [f, importsOf(f)]));

  it("reads the modules and their relative imports", () => {
    const name = (f: string) => relative(SRC, f);
    expect(graph.size).toBeGreaterThan(10);
    expect((graph.get(join(SRC, "route.ts")) ?? []).map(name)).toContain("local.ts");
    expect((graph.get(join(SRC, "server.ts")) ?? []).map(name)).toContain("route.ts");
  });

  it("have no cycle", () => {
    const cycles = findCycles(graph).map((c) => c.map((f) => relative(SRC, f)).join(" → "));
    expect(cycles).toEqual([]);
  });

  it("the check finds a cycle when there is one", () => {
    const g = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a"]],
      ["d", ["a"]],
    ]);
    expect(findCycles(g)).toEqual([["a", "b", "c", "a"]]);
  });
});
