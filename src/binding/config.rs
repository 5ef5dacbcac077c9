//! The server settings JavaScript passes (already validated there; re-checked here).

use std::time::Duration;

use serde::Deserialize;

use crate::engine::{Cors, CorsOrigin, EngineConfig};
use crate::server::{RecoveryConfig, ServerConfig};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Raw {
    path: Option<String>,
    ping_interval: Option<u64>,
    ping_timeout: Option<u64>,
    upgrade_timeout: Option<u64>,
    max_http_buffer_size: Option<f64>,
    connect_timeout: Option<u64>,
    transports: Option<Vec<String>>,
    allow_eio3: Option<bool>,
    max_queued_frames: Option<usize>,
    max_queued_bytes: Option<usize>,
    cors: Option<RawCors>,
    bind_retry_ms: Option<u64>,
    redis: Option<serde_json::Value>,
    public_address: Option<String>,
    presence_interval: Option<u64>,
    tls: Option<RawTls>,
    connection_state_recovery: Option<RawRecovery>,
    http_compression: Option<serde_json::Value>,
    per_message_deflate: Option<serde_json::Value>,
}

/// socket.io's `connectionStateRecovery`, plus the bounds of what is kept.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawRecovery {
    max_disconnection_duration: Option<u64>,
    skip_middlewares: Option<bool>,
    max_packets: Option<usize>,
    max_bytes: Option<usize>,
}

/// `tls: {key, cert}`: PEM text.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawTls {
    key: String,
    cert: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawCors {
    origin: Option<serde_json::Value>,
    credentials: Option<bool>,
    methods: Option<Vec<String>>,
    allowed_headers: Option<Vec<String>>,
}

/// Parsed settings.
pub struct NativeConfig {
    pub server: ServerConfig,
    pub bind_retry_ms: u64,
    pub redis: Option<serde_json::Value>,
    pub public_address: Option<String>,
    /// How often this worker reports its load to the presence registry (the entry lives
    /// three periods), default 5 s.
    pub presence_interval: Duration,
}

fn positive(name: &str, v: Option<u64>, default: u64) -> Result<Duration, String> {
    match v {
        None => Ok(Duration::from_millis(default)),
        Some(0) => Err(format!("{name} must be a positive number of milliseconds")),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

/// Parses the JSON settings; errors name the key at fault.
pub fn parse(json: &str) -> Result<NativeConfig, String> {
    let raw: Raw =
        serde_json::from_str(json).map_err(|e| format!("invalid server options: {e}"))?;
    let mut engine = EngineConfig::default();
    if let Some(path) = raw.path {
        let trimmed = path.trim_end_matches('/');
        if !trimmed.starts_with('/') {
            return Err(format!("path must start with '/': {path:?}"));
        }
        engine.path = format!("{trimmed}/");
    }
    engine.ping_interval = positive("pingInterval", raw.ping_interval, 25_000)?;
    engine.ping_timeout = positive("pingTimeout", raw.ping_timeout, 20_000)?;
    engine.upgrade_timeout = positive("upgradeTimeout", raw.upgrade_timeout, 10_000)?;
    if let Some(max) = raw.max_http_buffer_size {
        if !(max.is_finite() && max >= 1.0) {
            return Err(format!(
                "maxHttpBufferSize must be a positive number: {max}"
            ));
        }
        engine.max_payload = max as usize;
    }
    if let Some(t) = raw.transports {
        engine.allow_polling = t.iter().any(|t| t == "polling");
        engine.allow_websocket = t.iter().any(|t| t == "websocket");
        if !engine.allow_polling && !engine.allow_websocket {
            return Err("transports must contain \"polling\" and/or \"websocket\"".into());
        }
    }
    engine.http_compression = http_compression(raw.http_compression.as_ref())?;
    engine.per_message_deflate = per_message_deflate(raw.per_message_deflate.as_ref())?;
    if let Some(v) = raw.allow_eio3 {
        engine.allow_eio3 = v;
    }
    if let Some(n) = raw.max_queued_frames {
        engine.max_queued_frames = n.max(16);
    }
    if let Some(n) = raw.max_queued_bytes {
        engine.max_queued_bytes = n.max(64 * 1024);
    }
    if let Some(c) = raw.cors {
        let origin = match c.origin {
            None | Some(serde_json::Value::Bool(true)) => CorsOrigin::Reflect,
            Some(serde_json::Value::String(s)) if s == "*" => CorsOrigin::Any,
            Some(serde_json::Value::String(s)) => CorsOrigin::List(vec![s]),
            Some(serde_json::Value::Array(a)) => CorsOrigin::List(
                a.into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => Ok(s),
                        other => Err(format!("cors.origin entries must be strings: {other}")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(other) => {
                return Err(format!(
                    "cors.origin must be a string, array or true: {other}"
                ))
            }
        };
        engine.cors = Some(Cors {
            origin,
            credentials: c.credentials.unwrap_or(false),
            methods: c
                .methods
                .unwrap_or_else(|| vec!["GET".into(), "POST".into(), "OPTIONS".into()]),
            allowed_headers: c.allowed_headers.unwrap_or_default(),
        });
    }
    if let Some(tls) = raw.tls {
        engine.tls = Some(crate::engine::tls_config(
            tls.cert.as_bytes(),
            tls.key.as_bytes(),
        )?);
    }
    let recovery = match raw.connection_state_recovery {
        None => None,
        Some(r) => {
            let d = RecoveryConfig::default();
            Some(RecoveryConfig {
                max_disconnection: positive(
                    "connectionStateRecovery.maxDisconnectionDuration",
                    r.max_disconnection_duration,
                    120_000,
                )?,
                skip_middlewares: r.skip_middlewares.unwrap_or(d.skip_middlewares),
                max_packets: r.max_packets.unwrap_or(d.max_packets).max(1),
                max_bytes: r.max_bytes.unwrap_or(d.max_bytes).max(1024),
            })
        }
    };
    Ok(NativeConfig {
        server: ServerConfig {
            recovery,
            engine,
            connect_timeout: positive("connectTimeout", raw.connect_timeout, 45_000)?,
            // A few ms of writes: a broadcast to thousands holds JavaScript no longer.
            fanout_slices: (super::node_loop::mode() == super::node_loop::LoopMode::Node)
                .then_some(crate::server::FanoutSlices {
                    size: 128,
                    turn: super::node_loop::next_turn,
                }),
        },
        bind_retry_ms: raw.bind_retry_ms.unwrap_or(5_000),
        redis: raw.redis,
        public_address: raw.public_address,
        presence_interval: positive("presenceInterval", raw.presence_interval, 5_000)?,
    })
}
/// `httpCompression`: `true` or missing (socket.io's default threshold, 1024 bytes), `false`
/// (off), or `{threshold}` in bytes.
fn http_compression(v: Option<&serde_json::Value>) -> Result<Option<usize>, String> {
    compression(
        "httpCompression",
        v,
        EngineConfig::default().http_compression,
    )
}

/// `perMessageDeflate`: `false` or missing (off, socket.io's default), `true` (threshold 1024
/// bytes, as ws's), or `{threshold}`; ws's other settings in the object are not used.
fn per_message_deflate(v: Option<&serde_json::Value>) -> Result<Option<usize>, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        v => compression("perMessageDeflate", v, Some(1024)),
    }
}

/// A compression setting named `name`: a boolean or `{threshold}`; `on` is its threshold when
/// turned on without one.
fn compression(
    name: &str,
    v: Option<&serde_json::Value>,
    on: Option<usize>,
) -> Result<Option<usize>, String> {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) | Some(Value::Bool(true)) => Ok(on),
        Some(Value::Bool(false)) => Ok(None),
        Some(Value::Object(o)) => match o.get("threshold") {
            None | Some(Value::Null) => Ok(on),
            Some(t) => match t.as_f64() {
                Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n as usize)),
                _ => Err(format!("{name}.threshold must be a number of bytes: {t}")),
            },
        },
        Some(other) => Err(format!(
            "{name} must be true, false or {{threshold}}: {other}"
        )),
    }
}
