"use strict";
// `--name N` settings of the small benchmark scripts (bench/polling.js, tls.js, recovery-memory.js).

/** `defaults` with every `--key N` of the command line applied; anything else throws `usage`. */
function numericArgs(defaults, usage) {
  const o = { ...defaults };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i += 2) {
    const k = a[i].replace(/^--/, "");
    if (!(k in o) || !Number.isFinite(Number(a[i + 1]))) throw new Error(`usage: ${usage}`);
    o[k] = Number(a[i + 1]);
  }
  return o;
}

module.exports = { numericArgs };
