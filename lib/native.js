"use strict";
// The native addon, through the generated loader (binding.js), which takes `weroll-native.<abi>.node`
// beside it (a build from source) or else the prebuilt package `weroll-native-<abi>`.
const { missingBindingMessage } = require("./platform");

let binding;
try {
  binding = require("../binding.js");
} catch (err) {
  const error = new Error(missingBindingMessage(), { cause: err });
  error.code = "WEROLL_NATIVE_NO_BINDING";
  throw error;
}

module.exports = binding;
