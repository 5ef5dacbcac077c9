"use strict";
// Which prebuilt binary this machine needs, named as binding.js (the generated loader) names it:
// `weroll-native.<abi>.node` in the package folder, or the package `weroll-native-<abi>`.
// Used by the install script (to build a missing binary from source under the right name) and by
// lib/native.js (to say what is missing when the addon cannot be loaded).
const fs = require("node:fs");
const path = require("node:path");

const root = path.join(__dirname, "..");

function isMusl() {
  if (process.platform !== "linux") return false;
  try {
    return fs.readFileSync("/usr/bin/ldd", "utf8").includes("musl");
  } catch {
    // no ldd script: ask the running Node which C library it links
  }
  const report = process.report && typeof process.report.getReport === "function" ? process.report.getReport() : null;
  if (!report) return false;
  if (report.header && report.header.glibcVersionRuntime) return false;
  return Array.isArray(report.sharedObjects) && report.sharedObjects.some((f) => /libc\.musl-|ld-musl-/.test(f));
}

/** The platform-arch-abi suffix binding.js looks for first on this machine, e.g. `linux-x64-gnu`. */
function platformArchABI(platform = process.platform, arch = process.arch, musl = isMusl()) {
  if (platform === "linux") {
    if (arch === "arm") return musl ? "linux-arm-musleabihf" : "linux-arm-gnueabihf";
    if (arch === "ppc64" || arch === "s390x") return `linux-${arch}-gnu`;
    return `linux-${arch}-${musl ? "musl" : "gnu"}`;
  }
  if (platform === "win32") return `win32-${arch}-msvc`;
  if (platform === "android") return arch === "arm" ? "android-arm-eabi" : `android-${arch}`;
  return `${platform}-${arch}`;
}

/** Rust target triple -> platform-arch-abi, for the triples package.json's `napi.targets` lists. */
function abiOfTriple(triple) {
  const [cpu, , sys, abi] = triple.split("-");
  const arch = { x86_64: "x64", aarch64: "arm64", i686: "ia32", armv7: "arm" }[cpu] || cpu;
  if (sys === "linux") return `linux-${arch}-${abi}`;
  if (sys === "darwin") return `darwin-${arch}`;
  if (sys === "windows") return `win32-${arch}-${abi}`;
  return `${sys}-${arch}`;
}

function packageJson() {
  return JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
}

/** The platform-arch-abi of every prebuilt package (package.json `napi.targets`). */
function prebuiltABIs(pkg = packageJson()) {
  return ((pkg.napi && pkg.napi.targets) || []).map(abiOfTriple);
}

/** `linux-x64-gnu (linux x64, glibc)`: the platform in words. */
function describe(abi = platformArchABI()) {
  const libc = process.platform === "linux" ? (isMusl() ? ", musl libc" : ", glibc") : "";
  return `${abi} (${process.platform} ${process.arch}${libc})`;
}

/**
 * The text of the error when no binary can be loaded: the platform, and both ways out.
 * `headline` replaces the first line (the install script says what it found).
 */
function missingBindingMessage(abi = platformArchABI(), headline) {
  const pkg = packageJson();
  const name = `${pkg.name}-${abi}`;
  const prebuilt = prebuiltABIs(pkg).includes(abi);
  return [
    headline ||
      `weroll-native: no native binary could be loaded for this platform, ${describe(abi)}; the loader's errors are in the cause.`,
    "Either:",
    prebuilt
      ? `  1. install the prebuilt binary: \`npm install ${name}@${pkg.version}\` (npm installs it as an optional ` +
        "dependency of weroll-native; if it was skipped, install without --omit=optional / --no-optional, or " +
        "remove node_modules and package-lock.json and run `npm install` again), or"
      : `  1. there is no prebuilt package for ${abi} (prebuilt: ${prebuiltABIs(pkg).join(", ")}): use one of those platforms, or`,
    "  2. build it from source: install Rust (https://rustup.rs), then run `npm rebuild weroll-native` " +
      "(in a git checkout of weroll-native: `npm run build`).",
  ].join("\n");
}

module.exports = { isMusl, platformArchABI, describe, abiOfTriple, prebuiltABIs, missingBindingMessage, root };
