#!/usr/bin/env node
// `npm run package`: the tarballs to publish, written into one folder (default dist/):
//   weroll-native-<version>.tgz             the main package: JS, types, the loader, and the Rust
//                                           sources for a build on a platform with no prebuilt
//                                           binary; no .node. Its optionalDependencies name every
//                                           weroll-native-<platform> of napi.targets at <version>.
//   weroll-native-<platform>-<version>.tgz  the prebuilt binary of one platform (npm/<platform>/)
//
// Options:
//   --out DIR   where the tarballs go (default dist/)
//   --no-build  do not build; take the binaries already there (weroll-native.<platform>.node in
//               the package folder or in npm/<platform>/, e.g. put there by `napi artifacts`)
//   --all       pack every platform of napi.targets (fails if a binary is missing); the default
//               is this machine's platform only
//
// The optionalDependencies are written into the packed package.json only: in the repository they
// would make `npm ci` fail until the platform packages are published (npm wants them in the lock
// file). Publish the platform tarballs first, then the main one: `npm publish <tarball>`.
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { platformArchABI, prebuiltABIs, root } = require("../lib/platform");

const npm = process.platform === "win32" ? "npm.cmd" : "npm";

function parseArgs(argv) {
  const opts = { out: path.join(root, "dist"), build: true, all: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--out") opts.out = path.resolve(argv[++i]);
    else if (a.startsWith("--out=")) opts.out = path.resolve(a.slice(6));
    else if (a === "--no-build") opts.build = false;
    else if (a === "--all") opts.all = true;
    else throw new Error(`package: unknown option ${a}`);
  }
  return opts;
}

function run(cmd, args, options = {}) {
  return execFileSync(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", shell: process.platform === "win32", ...options });
}

function build() {
  const napi = path.join(root, "node_modules", ".bin", process.platform === "win32" ? "napi.cmd" : "napi");
  if (!fs.existsSync(napi)) throw new Error("package: @napi-rs/cli is missing; run `npm install` first");
  console.log("package: building the addon for this machine (napi build --platform --release)");
  run(napi, ["build", "--platform", "--release", "--js", "binding.js", "--dts", "binding.d.ts"], { stdio: "inherit" });
}

/** npm pack of `dir` into `out`; returns the tarball's path. */
function pack(dir, out) {
  const [info] = JSON.parse(run(npm, ["pack", "--json", "--ignore-scripts", "--pack-destination", out], { cwd: dir }));
  return path.join(out, info.filename);
}

/** Copies this platform's binary into npm/<abi>/ and checks that package's name and version. */
function preparePlatformPackage(pkg, abi) {
  const dir = path.join(root, "npm", abi);
  const file = `${pkg.napi.binaryName}.${abi}.node`;
  const manifestPath = path.join(dir, "package.json");
  if (!fs.existsSync(manifestPath)) throw new Error(`package: npm/${abi}/package.json is missing (napi create-npm-dirs makes it)`);
  const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
  if (manifest.name !== `${pkg.name}-${abi}`) throw new Error(`package: npm/${abi} is named ${manifest.name}, not ${pkg.name}-${abi}`);
  if (manifest.version !== pkg.version) {
    throw new Error(`package: npm/${abi} is at version ${manifest.version}, the main package at ${pkg.version} (run \`npx napi version\`)`);
  }
  const built = path.join(root, file);
  if (fs.existsSync(built)) fs.copyFileSync(built, path.join(dir, file));
  if (!fs.existsSync(path.join(dir, file))) throw new Error(`package: no ${file}, neither built here nor in npm/${abi}/`);
  return dir;
}

/** A copy of the main package's files with the package.json that is published. */
function stageMainPackage(pkg, abis) {
  const files = JSON.parse(run(npm, ["pack", "--dry-run", "--json", "--ignore-scripts"]))[0].files.map((f) => f.path);
  const binaries = files.filter((f) => f.endsWith(".node"));
  if (binaries.length) throw new Error(`package: the main package would carry ${binaries.join(", ")}`);
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), "weroll-native-package-"));
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(stage, f)), { recursive: true });
    fs.copyFileSync(path.join(root, f), path.join(stage, f));
  }
  const published = { ...pkg };
  published.optionalDependencies = Object.fromEntries(abis.map((abi) => [`${pkg.name}-${abi}`, pkg.version]));
  // What a user's install runs; the build, test and release scripts need the repository.
  published.scripts = { install: pkg.scripts.install };
  delete published.devDependencies;
  fs.writeFileSync(path.join(stage, "package.json"), `${JSON.stringify(published, null, 2)}\n`);
  return stage;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
  const abis = prebuiltABIs(pkg);
  const here = platformArchABI();
  if (opts.build) build();
  const packed = opts.all ? abis : [here];
  if (!abis.includes(here) && !opts.all) throw new Error(`package: ${here} is not in napi.targets (${abis.join(", ")})`);

  fs.mkdirSync(opts.out, { recursive: true });
  const names = [`${pkg.name}-${pkg.version}.tgz`, ...abis.map((abi) => `${pkg.name}-${abi}-${pkg.version}.tgz`)];
  for (const name of names) fs.rmSync(path.join(opts.out, name), { force: true });

  const tarballs = packed.map((abi) => pack(preparePlatformPackage(pkg, abi), opts.out));
  const stage = stageMainPackage(pkg, abis);
  try {
    tarballs.push(pack(stage, opts.out));
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
  console.log(`package: ${tarballs.length} tarballs in ${opts.out}`);
  for (const t of tarballs) console.log(`  ${path.basename(t)}`);
  console.log("publish the platform tarballs first, then the main one: npm publish <tarball>");
}

try {
  main();
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
