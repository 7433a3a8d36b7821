//! TLS listeners (`[tls]`): rustls with SNI certificate selection and HTTP/2 via ALPN.
//! The first `[[tls.cert]]` also answers unknown or absent SNI. Files were already checked
//! by the config loader; errors here still name the file.

use crate::config::{CertConfig, TlsConfig};
use crate::error::Error;
use pingora::listeners::tls::TlsSettings;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use std::collections::HashMap;
use std::sync::Arc;

/// Picks a certificate by SNI: exact name, then `*.suffix` (one label), then the default.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(self.default.clone());
        };
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        let parent = name.split_once('.').map(|(_, rest)| rest);
        Some(
            parent
                .and_then(|p| self.wildcard.get(p))
                .unwrap_or(&self.default)
                .clone(),
        )
    }
}

fn load(c: &CertConfig) -> Result<Arc<CertifiedKey>, Error> {
    let fail = |why: String| Error::Runtime(format!("tls.cert {}: {why}", c.cert.display()));
    let (Some(cert), Some(key)) = (c.cert.to_str(), c.key.to_str()) else {
        return Err(fail("paths must be UTF-8".into()));
    };
    let (chain, key) = pingora::tls::load_certs_and_key_files(cert, key)
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail("no certificate or private key found".into()))?;
    pingora::tls::install_default_crypto_provider();
    let provider =
        CryptoProvider::get_default().ok_or_else(|| fail("no crypto provider".into()))?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| fail(e.to_string()))
}

/// Listener settings for `[tls]`: SNI resolver over every certificate, h2 and http/1.1.
pub fn settings(cfg: &TlsConfig) -> Result<TlsSettings, Error> {
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for c in &cfg.certs {
        let key = load(c)?;
        default.get_or_insert_with(|| key.clone());
        for name in &c.server_names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => wildcard
                    .entry(suffix.to_string())
                    .or_insert_with(|| key.clone()),
                None => exact.entry(name).or_insert_with(|| key.clone()),
            };
        }
    }
    let default = default
        .ok_or_else(|| Error::Runtime("tls: at least one [[tls.cert]] is required".into()))?;
    let mut settings =
        TlsSettings::intermediate("", "").map_err(|e| Error::Runtime(format!("tls: {e}")))?;
    settings.set_cert_resolver(Arc::new(SniResolver {
        exact,
        wildcard,
        default,
    }));
    settings.enable_h2();
    Ok(settings)
}
