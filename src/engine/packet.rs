//! Engine.IO packets and polling payloads, v3 and v4.
//!
//! Types: `0` open, `1` close, `2` ping, `3` pong, `4` message, `5` upgrade, `6` noop.
//! v4 payload: packets joined by `\x1e`, binary as `b<base64>`.
//! v3 payload: `<len>:<packet>` with len in UTF-16 code units; binary either `<len>:b4<base64>`
//! (b64=1) or the XHR2 binary form (`0x00`/`0x01`, decimal length digits, `0xFF`, packet).
