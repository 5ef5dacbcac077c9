"use strict";
// examples/docker/Dockerfile: a build stage with Rust, a run stage without. Its shape is checked
// everywhere; the image is built and run where a docker daemon answers.
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.join(__dirname, "..");
const dockerfile = path.join(root, "examples", "docker", "Dockerfile");
const text = fs.readFileSync(dockerfile, "utf8");
/** The stages: the lines from one FROM to the next. */
const stages = text.split(/^(?=FROM )/m).filter((s) => s.startsWith("FROM "));

test("the Dockerfile builds on node:20 with Rust and runs on node:20-slim without it", () => {
  assert.equal(stages.length, 2);
  const [build, run] = stages;
  assert.match(build, /^FROM node:20 AS build$/m);
  assert.match(build, /cargo/);
  assert.match(build, /npm run package -- --out \/packages/);
  assert.match(run, /^FROM node:20-slim$/m);
  assert.match(run, /npm install [^\n]*\/packages\/\*\.tgz/, "the run stage installs the packed tarballs");
  const runCode = run.replace(/^\s*#.*$/gm, "").replace("if command -v cargo; then exit 1; fi", "");
  assert.doesNotMatch(runCode, /cargo|rustup|rustc/, "no Rust in the run stage");
  assert.match(run, /if command -v cargo; then exit 1; fi/, "the run stage checks that there is no cargo");
  assert.match(run, /CMD \["node", "cluster\.js"\]/);
  for (const f of ["app.js", "cluster.js", "public/index.html"]) assert.ok(fs.existsSync(path.join(root, "examples", f)), f);
});

function dockerWorks() {
  const r = spawnSync("docker", ["info", "--format", "{{.ServerVersion}}"], { encoding: "utf8", timeout: 20000 });
  return !r.error && r.status === 0;
}

test("docker build of the demo image, then weroll-native loads in it without Rust", { timeout: 45 * 60 * 1000 }, (t) => {
  if (!dockerWorks()) {
    t.skip("no docker daemon answers `docker info`: the image is not built here");
    return;
  }
  const tag = `weroll-native-demo-test:${process.pid}`;
  t.after(() => spawnSync("docker", ["image", "rm", "-f", tag], { stdio: "ignore" }));
  const built = spawnSync("docker", ["build", "-f", dockerfile, "-t", tag, root], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DOCKER_BUILDKIT: "1" } });
  assert.equal(built.status, 0, `docker build failed:\n${built.stdout}\n${built.stderr}`);
  const script =
    "if command -v cargo || command -v rustc; then exit 3; fi; " +
    "node -e 'const { Realtime } = require(\"weroll-native\"); " +
    "const s = Realtime.createServer({ port: 0, shakehand: false }, true); " +
    "s.start().then((p) => { console.log(\"listening\", p); return s.close(); }).then(() => process.exit(0), (e) => { console.error(e); process.exit(1); })'";
  const ran = spawnSync("docker", ["run", "--rm", tag, "sh", "-c", script], { encoding: "utf8", timeout: 120000 });
  assert.equal(ran.status, 0, `${ran.stdout}\n${ran.stderr}`);
  assert.match(ran.stdout, /listening \d+/);
});
