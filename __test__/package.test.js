"use strict";
// The published form: `npm run package` tarballs installed into a fresh folder with no Rust
// toolchain on PATH, as a production machine or a container image installs weroll-native.
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync, spawnSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { platformArchABI, prebuiltABIs } = require("../lib/platform");

const root = path.join(__dirname, "..");
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const abi = platformArchABI();
const binaryName = `${pkg.napi.binaryName}.${abi}.node`;
const platformName = `${pkg.name}-${abi}`;
const smoke = path.join(__dirname, "fixtures", "package-smoke.js");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

let tmp;
let dist;
let mainTgz;
let platformTgz;

/** PATH without any folder that holds cargo or rustc. */
function pathWithoutRust() {
  return (process.env.PATH || "")
    .split(path.delimiter)
    .filter((dir) => dir && !["cargo", "rustc"].some((bin) => fs.existsSync(path.join(dir, bin))))
    .join(path.delimiter);
}

/**
 * The environment of a user's install: no npm settings inherited from `npm test`, and no Rust
 * unless `rust` is set.
 */
function userEnv({ rust = false } = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k) && (rust || !/^(CARGO|RUSTUP)_/.test(k))) env[k] = v;
  }
  if (!rust) env.PATH = pathWithoutRust();
  env.npm_config_cache = path.join(tmp, "npm-cache"); // empty: nothing can come from a cache
  env.npm_config_update_notifier = "false";
  return env;
}

function sha256(file) {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

function tarList(tgz) {
  return execFileSync("tar", ["-tzf", tgz], { encoding: "utf8" }).split("\n").filter(Boolean).map((f) => f.replace(/^package\//, ""));
}

function tarFile(tgz, file) {
  return execFileSync("tar", ["-xzOf", tgz, `package/${file}`], { encoding: "utf8" });
}

/** A fresh app folder with `manifest` as its package.json. */
function app(name, manifest = {}) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true, ...manifest }, null, 2));
  return dir;
}

/**
 * `npm install` in `dir` as a user would, offline with an empty cache: the platform package can
 * only come from the local tarball, and npm must skip every optional dependency it cannot fetch.
 */
function install(dir, args = [], { rust = false, timeout = 120000 } = {}) {
  const started = Date.now();
  const r = spawnSync(npm, ["install", "--offline", "--no-audit", "--no-fund", "--foreground-scripts", ...args], {
    cwd: dir,
    env: userEnv({ rust }),
    encoding: "utf8",
    timeout,
    shell: process.platform === "win32",
  });
  const ms = Date.now() - started;
  assert.equal(r.status, 0, `npm install failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return { ms, output: `${r.stdout}\n${r.stderr}` };
}

/** Runs the smoke app (a Realtime server and a socket.io-client 4.8) against `dir`'s install. */
function runSmoke(dir) {
  const r = spawnSync(process.execPath, [smoke, dir], { cwd: dir, env: userEnv(), encoding: "utf8", timeout: 30000 });
  assert.equal(r.status, 0, `the smoke app failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

/** Every folder named `target` under `dir` (a cargo build leaves one). */
function targetDirs(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isDirectory() && entry.name === "target") found.push(path.join(entry.parentPath ?? entry.path, entry.name));
  }
  return found;
}

/** What an install of the main and platform packages must have produced, and the smoke run. */
function checkPrebuiltInstall(dir, { ms, output }) {
  assert.ok(ms < 30000, `the install took ${ms} ms: it must not build anything`);
  assert.doesNotMatch(output, /Compiling|cargo build|building it from source/);
  assert.deepEqual(targetDirs(dir), [], "no cargo target/ folder may appear");
  const installed = path.join(dir, "node_modules", pkg.name);
  assert.deepEqual(fs.readdirSync(installed).filter((f) => f.endsWith(".node")), [], "the main package holds no binary");
  const platformDir = path.join(dir, "node_modules", platformName);
  assert.equal(JSON.parse(fs.readFileSync(path.join(platformDir, "package.json"), "utf8")).version, pkg.version);
  assert.equal(sha256(path.join(platformDir, binaryName)), sha256(path.join(root, binaryName)));

  const result = runSmoke(dir);
  assert.equal(result.entry, path.join(fs.realpathSync(installed), "index.js"));
  assert.equal(result.binary, path.join(fs.realpathSync(platformDir), binaryName), "the binary comes from the platform package");
  assert.match(result.clientVersion, /^4\.8\./);
  assert.deepEqual(result.answer, { got: { n: 42, text: "hé" }, from: "server" });
}

before(() => {
  assert.ok(fs.existsSync(path.join(root, binaryName)), `${binaryName} is built before the tests (scripts/setup.js)`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "weroll-native-package-test-"));
  dist = path.join(tmp, "dist");
  // The binary the test setup built; `npm run package` builds it first, then does the same.
  execFileSync(process.execPath, [path.join(root, "scripts", "package.js"), "--no-build", "--out", dist], { cwd: root, stdio: "pipe" });
  mainTgz = path.join(dist, `${pkg.name}-${pkg.version}.tgz`);
  platformTgz = path.join(dist, `${platformName}-${pkg.version}.tgz`);
  assert.deepEqual(fs.readdirSync(dist).sort(), [path.basename(mainTgz), path.basename(platformTgz)].sort());
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test("the user's environment has no cargo or rustc", () => {
  for (const bin of ["cargo", "rustc"]) {
    const r = spawnSync(bin, ["--version"], { env: userEnv(), encoding: "utf8" });
    assert.ok(r.error || r.status !== 0, `${bin} is still reachable`);
  }
});

test("npm pack --dry-run lists exactly what a user needs", () => {
  const out = execFileSync(npm, ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd: root,
    encoding: "utf8",
    shell: process.platform === "win32",
  });
  const files = JSON.parse(out)[0].files.map((f) => f.path).sort();
  const needed = [
    "package.json",
    "README.md",
    "index.js",
    "index.d.ts", // types
    "binding.js", // the generated loader
    "binding.d.ts",
    "cluster.js",
    "cluster.d.ts",
    "web/Realtime.js",
    "web/Realtime.d.ts",
    "lib/io.js",
    "lib/realtime.js",
    "lib/worker.js",
    "lib/codec.js",
    "lib/native.js",
    "lib/platform.js",
    "scripts/install.js", // the install script: nothing, or a build from source
    // what a build from source needs on a platform with no prebuilt package
    "Cargo.toml",
    "Cargo.lock",
    "build.rs",
    ".cargo/config.toml",
    "src/lib.rs",
  ];
  for (const f of needed) assert.ok(files.includes(f), `the package lacks ${f}`);
  const allowed = (f) => needed.includes(f) || /^lib\/[\w-]+\.js$/.test(f) || /^src\/[\w/]+\.rs$/.test(f);
  assert.deepEqual(files.filter((f) => !allowed(f)), [], "nothing else: no tests, fuzz, bench, examples, npm/ or binaries");
  assert.ok(!files.some((f) => /^(__test__|tests|fuzz|bench|examples|npm|target|scripts\/(?!install))/.test(f)));
});

test("the main tarball: no .node, the same files, optionalDependencies on every platform package", () => {
  const files = tarList(mainTgz);
  assert.deepEqual(files.filter((f) => f.endsWith(".node")), []);
  assert.ok(files.includes("binding.js") && files.includes("index.d.ts") && files.includes("scripts/install.js"));
  assert.ok(!files.some((f) => /^(__test__|tests|fuzz|bench|examples|npm)\//.test(f)), files.join(", "));

  const packed = JSON.parse(tarFile(mainTgz, "package.json"));
  assert.equal(packed.version, pkg.version);
  const expected = Object.fromEntries(pkg.napi.targets.map((t) => [`${pkg.name}-${prebuiltABIs({ napi: { targets: [t] } })[0]}`, pkg.version]));
  assert.deepEqual(packed.optionalDependencies, expected);
  for (const triple of ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl", "x86_64-pc-windows-msvc"]) {
    assert.ok(pkg.napi.targets.includes(triple), `napi.targets lists ${triple}`);
  }
  assert.deepEqual(packed.scripts, { install: "node scripts/install.js" });
  assert.equal(packed.devDependencies, undefined);
  // In the repository they stay out: `npm ci` would want the unpublished packages in the lock file.
  assert.equal(pkg.optionalDependencies, undefined);
});

test("the platform tarball holds this platform's binary and nothing else", () => {
  assert.deepEqual(tarList(platformTgz).sort(), ["README.md", binaryName, "package.json"].sort());
  const manifest = JSON.parse(tarFile(platformTgz, "package.json"));
  assert.equal(manifest.name, platformName);
  assert.equal(manifest.version, pkg.version);
  assert.equal(manifest.main, binaryName);
});

test("every npm/ platform folder is at the main package's version, one per napi target", () => {
  const dirs = fs.readdirSync(path.join(root, "npm")).sort();
  assert.deepEqual(dirs, [...prebuiltABIs(pkg)].sort());
  for (const dir of dirs) {
    const manifest = JSON.parse(fs.readFileSync(path.join(root, "npm", dir, "package.json"), "utf8"));
    assert.equal(manifest.name, `${pkg.name}-${dir}`);
    assert.equal(manifest.version, pkg.version, `npm/${dir}`);
  }
});

test("npm install of the main and platform tarballs, no Rust: no build, a Realtime server talks to socket.io-client 4.8", { timeout: 120000 }, () => {
  const dir = app("app-tarballs");
  const res = install(dir, [mainTgz, platformTgz]);
  checkPrebuiltInstall(dir, res);
});

test("npm install of the main tarball, the platform package through a file: override", { timeout: 120000 }, () => {
  const dir = app("app-override", {
    dependencies: { [pkg.name]: `file:${mainTgz}` },
    overrides: { [platformName]: `file:${platformTgz}` },
  });
  const res = install(dir);
  checkPrebuiltInstall(dir, res);
  const lock = JSON.parse(fs.readFileSync(path.join(dir, "package-lock.json"), "utf8"));
  const others = Object.keys(lock.packages).filter((p) => p.startsWith(`node_modules/${pkg.name}-`) && p !== `node_modules/${platformName}`);
  assert.deepEqual(others, [], "npm skipped the platform packages it could not fetch");
});

test("the main tarball alone, no Rust: the install goes on, require() names the platform and both ways out", { timeout: 120000 }, () => {
  const dir = app("app-main-only");
  const { output } = install(dir, [mainTgz]);
  assert.ok(!fs.existsSync(path.join(dir, "node_modules", platformName)));
  assert.match(output, /no Rust toolchain \(cargo\)/);
  assert.deepEqual(targetDirs(dir), []);

  const r = spawnSync(process.execPath, ["-e", 'require("weroll-native")'], { cwd: dir, env: userEnv(), encoding: "utf8" });
  assert.notEqual(r.status, 0, "require must fail");
  for (const text of [
    `for this platform, ${abi} (${process.platform} ${process.arch}`,
    `npm install ${platformName}@${pkg.version}`, // way out 1: the prebuilt package
    "install Rust (https://rustup.rs)", // way out 2: a build from source
    "npm rebuild weroll-native",
  ]) {
    assert.ok(r.stderr.includes(text), `the error says ${JSON.stringify(text)}:\n${r.stderr}`);
  }
  assert.match(r.stderr, /code: 'WEROLL_NATIVE_NO_BINDING'/);
});

const sourceBuild = /^(1|true|yes)$/i.test(process.env.WEROLL_NATIVE_TEST_SOURCE_BUILD || "");
test(
  "the main tarball alone, with Rust: the install builds the addon from source",
  {
    timeout: 30 * 60 * 1000,
    skip: !sourceBuild && "a full cargo build takes minutes: set WEROLL_NATIVE_TEST_SOURCE_BUILD=1 to run it",
  },
  () => {
    const dir = app("app-source-build");
    const { output } = install(dir, [mainTgz], { rust: true, timeout: 30 * 60 * 1000 });
    assert.match(output, /building it from source with cargo/);
    assert.ok(!fs.existsSync(path.join(dir, "node_modules", platformName)));
    assert.deepEqual(targetDirs(dir), [], "the cargo target folder is removed after the build");
    const built = path.join(fs.realpathSync(path.join(dir, "node_modules", pkg.name)), binaryName);
    assert.ok(fs.existsSync(built), `${binaryName} was built`);
    const result = runSmoke(dir);
    assert.equal(result.binary, built);
    assert.deepEqual(result.answer, { got: { n: 42, text: "hé" }, from: "server" });
  },
);

test("in a git checkout the install script leaves the build to `prepare`", () => {
  const r = spawnSync(process.execPath, [path.join(root, "scripts", "install.js")], { cwd: root, env: userEnv(), encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout + r.stderr, "");
});

test("npm version moves every platform package along", { timeout: 60000 }, () => {
  const repo = path.join(tmp, "version-repo");
  fs.mkdirSync(repo);
  fs.copyFileSync(path.join(root, "package.json"), path.join(repo, "package.json"));
  fs.cpSync(path.join(root, "npm"), path.join(repo, "npm"), { recursive: true, filter: (f) => !f.endsWith(".node") });
  fs.symlinkSync(path.join(root, "node_modules"), path.join(repo, "node_modules"), "junction");
  fs.writeFileSync(path.join(repo, ".gitignore"), "node_modules\n");
  const env = { ...userEnv(), GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.com", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.com" };
  const git = (...args) => execFileSync("git", args, { cwd: repo, env, encoding: "utf8" });
  git("init", "-q");
  git("add", "-A");
  git("commit", "-qm", "start");
  execFileSync(npm, ["version", "9.8.7"], { cwd: repo, env, stdio: "pipe", shell: process.platform === "win32" });
  for (const dir of fs.readdirSync(path.join(repo, "npm"))) {
    assert.equal(JSON.parse(fs.readFileSync(path.join(repo, "npm", dir, "package.json"), "utf8")).version, "9.8.7", `npm/${dir}`);
  }
  assert.equal(git("status", "--porcelain"), "", "the version commit holds the platform packages too");
  assert.match(git("show", "--stat", "HEAD"), /npm\/linux-x64-gnu\/package\.json/);
});
