"use strict";
// The hand-written declarations: examples/typescript type-checks against them, and they declare
// exactly the values each entry point exports at runtime.
const test = require("node:test");
const assert = require("node:assert");
const { execFile } = require("node:child_process");
const path = require("node:path");
const ts = require("typescript");

const root = path.join(__dirname, "..");

test("examples/typescript type-checks (tsc --noEmit, strict)", async () => {
  const tsc = path.join(root, "node_modules", ".bin", "tsc");
  const result = await new Promise((resolve) => {
    execFile(tsc, ["-p", "examples/typescript", "--noEmit"], { cwd: root }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, out: stdout + stderr }));
  });
  assert.strictEqual(result.code, 0, result.out);
});

/** Names of the values (not types) a declaration file exports (`export =`: the members). */
function declaredValues(file) {
  const program = ts.createProgram([file], { strict: true, noEmit: true, types: ["node"] });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  const exported = checker.getExportsOfModule(checker.getSymbolAtLocation(source));
  return exported
    .map((s) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s))
    .filter((s) => s.flags & ts.SymbolFlags.Value)
    .map((s) => s.escapedName)
    .sort();
}

for (const [entry, dts] of [
  ["index.js", "index.d.ts"],
  ["web/Realtime.js", "web/Realtime.d.ts"],
  ["cluster.js", "cluster.d.ts"],
]) {
  test(`${dts} declares what ${entry} exports`, () => {
    const runtime = Object.keys(require(path.join(root, entry))).sort();
    assert.deepStrictEqual(declaredValues(path.join(root, dts)), runtime);
  });
}
