//! TLS listeners (`[tls]`): rustls with SNI certificate selection and HTTP/2 via ALPN.
//! The first `[[tls.cert]]` also answers unknown or absent SNI. Files were already checked
//! by the config loader; errors here still name the file. The certificates live in a
//! [`CertStore`] shared by every TLS listener: a config reload swaps them, so new
//! connections get the new certificates and open ones keep theirs.

use crate::config::{CertConfig, TlsConfig};
use crate::error::Error;
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use std::collections::HashMap;
use std::sync::Arc;

/// The certificates by SNI: exact name, then `*.suffix` (one label), then the default.
#[derive(Debug)]
struct SniTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

/// The live certificates of the TLS listeners (cheap to clone; clones share them).
#[derive(Debug, Clone)]
pub struct CertStore(Arc<ArcSwap<SniTable>>);

impl CertStore {
    /// Loads every `[[tls.cert]]` (errors name the file).
    pub fn load(cfg: &TlsConfig) -> Result<Self, Error> {
        Ok(CertStore(Arc::new(ArcSwap::from_pointee(table(cfg)?))))
    }

    /// Loads `cfg`'s certificates and, when all load, makes them the ones new handshakes get.
    pub fn reload(&self, cfg: &TlsConfig) -> Result<(), Error> {
        self.0.store(Arc::new(table(cfg)?));
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let t = self.0.load();
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(t.default.clone());
        };
        if let Some(k) = t.exact.get(&name) {
            return Some(k.clone());
        }
        let parent = name.split_once('.').map(|(_, rest)| rest);
        Some(
            parent
                .and_then(|p| t.wildcard.get(p))
                .unwrap_or(&t.default)
                .clone(),
        )
    }
}

fn load(c: &CertConfig) -> Result<Arc<CertifiedKey>, Error> {
    let context = format!("tls.cert {}", c.cert.display());
    let fail = |why: &str| Error::tls(context.clone(), why.to_string());
    let (Some(cert), Some(key)) = (c.cert.to_str(), c.key.to_str()) else {
        return Err(fail("paths must be UTF-8"));
    };
    let (chain, key) = pingora::tls::load_certs_and_key_files(cert, key)
        .map_err(|e| Error::tls(context.clone(), e))?
        .ok_or_else(|| fail("no certificate or private key found"))?;
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or_else(|| fail("no crypto provider"))?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| Error::tls(context.clone(), e))
}

fn table(cfg: &TlsConfig) -> Result<SniTable, Error> {
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
    Ok(SniTable {
        exact,
        wildcard,
        default,
    })
}

/// Listener settings for `[tls]`: the store's SNI resolver, h2 and http/1.1.
pub fn settings(store: &CertStore) -> Result<TlsSettings, Error> {
    let mut settings = TlsSettings::intermediate("", "").map_err(|e| Error::tls("tls", e))?;
    settings.set_cert_resolver(Arc::new(store.clone()));
    settings.enable_h2();
    Ok(settings)
}
