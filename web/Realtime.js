"use strict";
// Drop-in for `require("weroll/web/Realtime")`.
module.exports = require("../index.js").Realtime;
