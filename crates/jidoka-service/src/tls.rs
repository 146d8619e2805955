//! TLS on the listener: the plant's certificate chain and key (PEM files), served with rustls
//! (ring), TLS 1.2 and 1.3. With TLS on, every response carries `Strict-Transport-Security` and
//! every cookie the service sets is `Secure`, so a tablet on the plant LAN never sends its
//! session in clear.

use axum::http::{HeaderValue, header};
use axum::response::Response;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// `[api.tls]`: where the certificate chain and its private key are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsConfig {
    /// Every problem with the files, each under its path (`api.tls.cert: ...`).
    pub fn validate(&self, path: &str, errors: &mut Vec<(String, String)>) {
        if let Err((field, reason)) = self.acceptor() {
            errors.push((format!("{path}.{field}"), reason));
        }
    }

    /// The acceptor for the listener, or the file (`cert` or `key`) and what is wrong with it.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, (&'static str, String)> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| ("cert", format!("cannot read {}: {e}", self.cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| ("cert", format!("{}: not a PEM certificate chain: {e}", self.cert.display())))?;
        if certs.is_empty() {
            return Err(("cert", format!("{} holds no certificate", self.cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| ("key", format!("{}: no readable PEM private key: {e}", self.key.display())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ("cert", format!("TLS setup: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ("key", format!("the key does not fit the certificate: {e}")))?;
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// What a response gets when it goes out over TLS: HSTS, and `Secure` on every cookie.
pub fn secure_response(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    let cookies: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().cloned().collect();
    if !cookies.is_empty() {
        headers.remove(header::SET_COOKIE);
        for c in cookies {
            let text = c.to_str().unwrap_or("");
            let secured = if text.to_ascii_lowercase().contains("; secure") {
                text.to_string()
            } else {
                format!("{text}; Secure")
            };
            if let Ok(v) = HeaderValue::from_str(&secured) {
                headers.append(header::SET_COOKIE, v);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_unreadable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TlsConfig { cert: dir.path().join("none.pem"), key: dir.path().join("none.key") };
        let mut errors = Vec::new();
        cfg.validate("api.tls", &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "api.tls.cert");
        std::fs::write(dir.path().join("none.pem"), "not pem").unwrap();
        let Err((field, _)) = cfg.acceptor() else { panic!("garbage accepted") };
        assert_eq!(field, "cert");
    }

    #[test]
    fn cookies_become_secure_and_hsts_is_set() {
        let mut r = Response::new(axum::body::Body::empty());
        r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static("jidoka_session=x; Path=/; HttpOnly"));
        r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static("other=1; Secure"));
        let r = secure_response(r);
        let cookies: Vec<&str> = r.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cookies, vec!["jidoka_session=x; Path=/; HttpOnly; Secure", "other=1; Secure"]);
        assert!(r.headers().contains_key(header::STRICT_TRANSPORT_SECURITY));
    }
}
