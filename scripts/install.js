#!/usr/bin/env node
// The install script of the weroll-native package. npm installs the prebuilt binary of this
// platform as an optional dependency (weroll-native-<platform>); then there is nothing to do.
// Without one (a platform with no prebuilt package, or optional dependencies omitted), the addon
// is built from source with cargo when a Rust toolchain is present; with no toolchain either, the
// install goes on and `require("weroll-native")` explains what to do.
// In a git checkout the `prepare` script (scripts/build-if-needed.js) builds the addon instead.
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { platformArchABI, describe, isMusl, missingBindingMessage, root } = require("../lib/platform");

function loads() {
  try {
    require(path.join(root, "binding.js"));
    return true;
  } catch {
    return false;
  }
}

function haveCargo() {
  try {
    execFileSync("cargo", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** `cargo build --release` in a throwaway target folder; the cdylib becomes weroll-native.<abi>.node. */
function buildFromSource(abi) {
  const targetDir = fs.mkdtempSync(path.join(os.tmpdir(), "weroll-native-build-"));
  const env = { ...process.env, CARGO_TARGET_DIR: targetDir };
  // A musl toolchain links statically by default, which a Node addon (a shared library) cannot.
  if (isMusl()) env.RUSTFLAGS = `${env.RUSTFLAGS || ""} -C target-feature=-crt-static`.trim();
  try {
    execFileSync("cargo", ["build", "--release", "--lib", "--locked"], { cwd: root, env, stdio: "inherit" });
    const lib =
      process.platform === "win32"
        ? "weroll_native.dll"
        : process.platform === "darwin"
          ? "libweroll_native.dylib"
          : "libweroll_native.so";
    fs.copyFileSync(path.join(targetDir, "release", lib), path.join(root, `weroll-native.${abi}.node`));
  } finally {
    fs.rmSync(targetDir, { recursive: true, force: true });
  }
}

function main() {
  if (fs.existsSync(path.join(root, ".git"))) return 0; // a checkout: `prepare` builds it
  if (loads()) return 0;
  const abi = platformArchABI();
  if (!haveCargo()) {
    const headline =
      `weroll-native: no prebuilt binary for this platform, ${describe(abi)}, was installed, and there is no ` +
      "Rust toolchain (cargo) to build one. The install goes on, but require(\"weroll-native\") fails until then.";
    console.warn(missingBindingMessage(abi, headline));
    return 0;
  }
  console.log(`weroll-native: no prebuilt binary for ${abi} was installed; building it from source with cargo`);
  buildFromSource(abi);
  if (!loads()) {
    console.error(`weroll-native: built weroll-native.${abi}.node from source, but it does not load`);
    return 1;
  }
  return 0;
}

process.exit(main());
