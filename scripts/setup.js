#!/usr/bin/env node
// Makes sure the system programs the tests and the demo start (redis-server, redis-cli, nginx,
// chromium, openssl) are installed, then that the native addon is built. Run by `npm test` and
// `npm run demo`.
//
// A missing program is installed with apt-get when we are root on Debian/Ubuntu; otherwise the
// command to run is printed. Only what the current task cannot do without is fatal: redis-server
// for the demo (unless REDIS_URL points at a running Redis); for the tests nothing, since tests
// that need a missing program skip with a message — except in CI (CI=true), where every missing
// program is an error. System services are never started, stopped or disabled: tests and the
// demo run their own redis-server/nginx processes on free ports.
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

/** Program, its Debian package, the tasks that use it, and those that cannot run without it. */
const PROGRAMS = [
  { bin: "redis-server", pkg: "redis-server", usedBy: ["demo", "test"], requiredBy: ["demo"] },
  // creates and reshards the Redis Cluster of the topology tests
  { bin: "redis-cli", pkg: "redis-tools", usedBy: ["test"], requiredBy: [] },
  { bin: "nginx", pkg: "nginx", usedBy: ["test"], requiredBy: [] },
  { bin: "chromium", pkg: "chromium", usedBy: ["test"], requiredBy: [] },
  // makes the certificates of the Redis-over-TLS test
  { bin: "openssl", pkg: "openssl", usedBy: ["test"], requiredBy: [] },
];

// nginx lives in sbin, which a normal user's PATH often lacks.
const EXTRA_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/** Absolute path of an executable named `name` in `dirs` (default: PATH and sbin), else null. */
function findBinary(name, dirs = [...(process.env.PATH || "").split(path.delimiter), ...EXTRA_DIRS]) {
  for (const dir of dirs) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return null;
}

/** The chromium binary the browser test drives: CHROMIUM_PATH, else `chromium` on PATH. */
function findChromium() {
  const env = process.env.CHROMIUM_PATH;
  return env ? (path.isAbsolute(env) ? findBinary(path.basename(env), [path.dirname(env)]) : findBinary(env)) : findBinary("chromium");
}

function isCI() {
  return /^(1|true|yes)$/i.test(process.env.CI || "");
}

/** `demo` or `test`: from the npm script that runs us, or `--for=<task>`. */
function currentTask(argv) {
  const flag = argv.find((a) => a.startsWith("--for="));
  if (flag) return flag.slice("--for=".length);
  return process.env.npm_lifecycle_event === "demo" ? "demo" : "test";
}

function aptInstall(pkgs) {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const run = (args) => execFileSync("apt-get", args, { stdio: "inherit", env });
  console.log(`setup: installing ${pkgs.join(" ")} with apt-get`);
  run(["update"]);
  run(["install", "-y", "--no-install-recommends", ...pkgs]);
}

function installed(program) {
  return program.bin === "chromium" ? findChromium() : findBinary(program.bin);
}

function ensurePrograms(task) {
  const wanted = PROGRAMS.filter((p) => p.usedBy.includes(task));
  // The demo can use an existing Redis instead of starting its own.
  const skip = (p) => p.bin === "redis-server" && task === "demo" && process.env.REDIS_URL;
  let missing = wanted.filter((p) => !skip(p) && !installed(p));
  if (!missing.length) return true;

  const pkgs = missing.map((p) => p.pkg);
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  if (root && findBinary("apt-get")) {
    try {
      aptInstall(pkgs);
    } catch (err) {
      console.error(`setup: apt-get failed: ${err.message}`);
    }
    missing = missing.filter((p) => !installed(p));
    if (!missing.length) return true;
  }

  const names = missing.map((p) => p.pkg).join(" ");
  console.error(
    `setup: missing ${missing.map((p) => p.bin).join(", ")}. Install with:\n` +
      `  sudo apt-get install -y --no-install-recommends ${names}\n` +
      "(on other systems install the same programs with your package manager; " +
      "CHROMIUM_PATH may name a Chromium/Chrome binary elsewhere)",
  );
  const fatal = isCI() ? missing : missing.filter((p) => p.requiredBy.includes(task));
  if (fatal.length) {
    console.error(`setup: cannot run the ${task} without ${fatal.map((p) => p.bin).join(", ")}${isCI() ? " (CI=true)" : ""}`);
    return false;
  }
  console.error(`setup: the parts of the ${task} that need ${missing.map((p) => p.bin).join(", ")} will be skipped`);
  return true;
}

function ensureAddon() {
  try {
    execFileSync(process.execPath, [path.join(__dirname, "build-if-needed.js")], { stdio: "inherit" });
    return true;
  } catch {
    console.error("setup: the native addon could not be built (see above)");
    return false;
  }
}

function main() {
  const task = currentTask(process.argv.slice(2));
  if (task !== "demo" && task !== "test") {
    console.error(`setup: unknown task ${JSON.stringify(task)} (use --for=demo or --for=test)`);
    process.exit(2);
  }
  const programs = ensurePrograms(task);
  const addon = ensureAddon();
  if (!programs || !addon) process.exit(1);
}

if (require.main === module) main();

module.exports = { findBinary, findChromium, isCI };
