#!/usr/bin/env node
// Builds the native addon from source when no binary for this platform is present
// (a git checkout has none). Set WEROLL_NATIVE_REBUILD=1 to force a rebuild.
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.join(__dirname, "..");
const have = fs.readdirSync(root).some((f) => /^weroll-native\..+\.node$/.test(f));
const sources = [path.join(root, "src"), path.join(root, "Cargo.toml")];

function newestSource(p) {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...fs.readdirSync(p).map((f) => newestSource(path.join(p, f))));
}

function builtAt() {
  const bins = fs.readdirSync(root).filter((f) => /^weroll-native\..+\.node$/.test(f));
  return Math.min(...bins.map((f) => fs.statSync(path.join(root, f)).mtimeMs));
}

const stale = have && Math.max(...sources.map(newestSource)) > builtAt();
if (have && !stale && !process.env.WEROLL_NATIVE_REBUILD) process.exit(0);

try {
  execFileSync("cargo", ["--version"], { stdio: "ignore" });
} catch {
  console.error(
    "weroll-native: no prebuilt binary for this platform and no Rust toolchain found.\n" +
      "Install Rust (https://rustup.rs) and run `npm run build`.",
  );
  process.exit(1);
}
const napi = path.join(root, "node_modules", ".bin", process.platform === "win32" ? "napi.cmd" : "napi");
const args = ["build", "--platform", "--release", "--js", "binding.js", "--dts", "binding.d.ts"];
execFileSync(fs.existsSync(napi) ? napi : "npx", fs.existsSync(napi) ? args : ["napi", ...args], {
  cwd: root,
  stdio: "inherit",
});
