//! Engine.IO settings (names follow socket.io's server options).

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;

/// Engine.IO settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Request path, with leading and trailing slash: `/socket.io/`.
    pub path: String,
    /// `pingInterval` (ms in the handshake), default 25 s.
    pub ping_interval: Duration,
    /// `pingTimeout`, default 20 s.
    pub ping_timeout: Duration,
    /// How long a polling session may take to finish a websocket upgrade, default 10 s.
    pub upgrade_timeout: Duration,
    /// `maxHttpBufferSize`: largest message / polling body accepted, default 1e6 bytes.
    pub max_payload: usize,
    /// Whether long-polling is offered.
    pub allow_polling: bool,
    /// Whether websocket is offered.
    pub allow_websocket: bool,
    /// Whether Engine.IO v3 clients (socket.io-client 2.x) are accepted.
    pub allow_eio3: bool,
    /// Largest number of frames queued for one client before it is dropped as too slow.
    pub max_queued_frames: usize,
    /// Largest number of bytes queued for one client before it is dropped as too slow (shared
    /// broadcast frames count for every client that holds them).
    pub max_queued_bytes: usize,
    /// CORS for polling requests; `None` sends no CORS headers.
    pub cors: Option<Cors>,
    /// TLS on the engine's own port (`https`/`wss`); `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `httpCompression`: polling responses of at least this many bytes are sent gzip- or
    /// deflate-encoded to clients that accept it (socket.io's default: 1024); `None`: never.
    pub http_compression: Option<usize>,
    /// `perMessageDeflate`: websocket messages of at least this many bytes are sent compressed
    /// to clients that offer `permessage-deflate` (which also lets them compress theirs);
    /// `None` (the default, as socket.io's): the extension is not offered.
    pub per_message_deflate: Option<usize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            allow_polling: true,
            allow_websocket: true,
            allow_eio3: true,
            max_queued_frames: 65_536,
            max_queued_bytes: 32 << 20,
            cors: None,
            tls: None,
            http_compression: Some(1024),
            per_message_deflate: None,
        }
    }
}

/// Which origins may make cross-origin polling requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigin {
    /// `*`
    Any,
    /// Echo the request's `Origin` back (socket.io's `origin: true`).
    Reflect,
    /// Only these exact origins.
    List(Vec<String>),
}

/// CORS answer for polling requests and their OPTIONS preflight.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `Access-Control-Allow-Origin`.
    pub origin: CorsOrigin,
    /// Sends `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Allow-Methods` on preflight; empty means the `cors` package default.
    pub methods: Vec<String>,
    /// `Access-Control-Allow-Headers` on preflight; empty reflects the requested headers.
    pub allowed_headers: Vec<String>,
}

/// A TLS server setting from a PEM certificate chain and its PEM private key (PKCS#8, PKCS#1
/// or SEC1), offering HTTP/1.1 over TLS 1.2 and 1.3. Errors say which part is at fault.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.cert: {e}"))?;
    if certs.is_empty() {
        return Err("tls.cert: no PEM certificate found".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "tls.key: no PEM private key found".into(),
        e => format!("tls.key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_name_the_part_at_fault() {
        assert_eq!(
            tls_config(b"", b"").err().as_deref(),
            Some("tls.cert: no PEM certificate found")
        );
        let cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let err = tls_config(cert, b"not a key").err().unwrap_or_default();
        assert!(err.starts_with("tls."), "{err}");
    }
}
