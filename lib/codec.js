"use strict";
// Event arguments <-> the wire form the native layer uses: the JSON text of the data array,
// binaries replaced by {"_placeholder":true,"num":N}, plus the binaries in order.

function isBinary(v) {
  return Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

function toBuffer(v) {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function hasBinary(v, depth = 0) {
  if (v === null || typeof v !== "object" || depth > 64) return false;
  if (isBinary(v)) return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (hasBinary(v[i], depth + 1)) return true;
    return false;
  }
  if (typeof v.toJSON === "function") return false;
  for (const k in v) {
    if (Object.prototype.hasOwnProperty.call(v, k) && hasBinary(v[k], depth + 1)) return true;
  }
  return false;
}

/** Encodes an array of values (event name first, or ack arguments). */
function encode(list) {
  // No replacer here: V8 only takes its fast path without one, and an array's `undefined`,
  // function and symbol elements become null by themselves.
  if (!hasBinary(list)) return { data: JSON.stringify(list), attachments: undefined };
  const attachments = [];
  const data = JSON.stringify(list, function (key, value) {
    const orig = this[key];
    if (orig !== null && typeof orig === "object" && isBinary(orig)) {
      attachments.push(toBuffer(orig));
      return { _placeholder: true, num: attachments.length - 1 };
    }
    return value === undefined && Array.isArray(this) ? null : value;
  });
  return { data, attachments };
}

function revive(v, attachments) {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = revive(v[i], attachments);
    return v;
  }
  if (v._placeholder === true && typeof v.num === "number") {
    const b = attachments[v.num];
    if (b === undefined) throw new Error("invalid attachment index " + v.num);
    return b;
  }
  for (const k of Object.keys(v)) v[k] = revive(v[k], attachments);
  return v;
}

/** Decodes the wire form (JSON text, or the array already parsed) back into an array. */
function decode(data, attachments) {
  const list = typeof data === "string" ? JSON.parse(data) : data;
  if (attachments && attachments.length) revive(list, attachments);
  return list;
}

module.exports = { encode, decode, hasBinary, isBinary };
