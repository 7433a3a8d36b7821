//! `[[tls.cert]]` checks done at load time, so that `check` catches what would
//! otherwise fail at the first handshake: both files readable, PEM with a
//! certificate and a private key, and the key belonging to the certificate.
//! Only reads files; building the rustls acceptor is `tls.rs`'s job.

use super::reader::{Errors, KeyPath};
use super::types::CertConfig;
use pingora::tls::{self, sign::CertifiedKey, CryptoProvider, RusTlsError};
use std::path::Path;

/// Records every problem of one cert/key pair under `at` (`tls.cert[0]`).
pub(super) fn check_pair(c: &CertConfig, at: &KeyPath, errs: &Errors) {
    let cert_at = at.field("cert");
    let key_at = at.field("key");
    // Both reads happen, so a missing cert and a missing key are reported together.
    let cert_ok = readable(&c.cert, &cert_at, errs);
    let key_ok = readable(&c.key, &key_at, errs);
    if !(cert_ok && key_ok) {
        return;
    }
    let (Some(cert), Some(key)) = (c.cert.to_str(), c.key.to_str()) else {
        errs.add(at, "certificate and key paths must be valid UTF-8");
        return;
    };
    match tls::load_certs_and_key_files(cert, key) {
        Err(e) => errs.add(
            at,
            format!(
                "invalid PEM in {} or {}: {e}",
                quoted(&c.cert),
                quoted(&c.key)
            ),
        ),
        Ok(None) => {
            let has_cert =
                tls::load_pem_file_ca(&cert.to_string()).is_ok_and(|der| !der.is_empty());
            match has_cert {
                false => errs.add(
                    &cert_at,
                    format!("no PEM certificate found in {}", quoted(&c.cert)),
                ),
                true => errs.add(
                    &key_at,
                    format!("no PEM private key found in {}", quoted(&c.key)),
                ),
            }
        }
        Ok(Some((chain, key))) => {
            tls::install_default_crypto_provider();
            let Some(provider) = CryptoProvider::get_default() else {
                return;
            };
            match CertifiedKey::from_der(chain, key, provider) {
                Ok(_) => {}
                Err(RusTlsError::InconsistentKeys(_)) => errs.add(
                    &key_at,
                    format!(
                        "private key does not match the certificate in {}",
                        quoted(&c.cert)
                    ),
                ),
                Err(e) => errs.add(
                    &key_at,
                    format!("unusable private key in {}: {e}", quoted(&c.key)),
                ),
            }
        }
    }
}

fn readable(path: &Path, at: &KeyPath, errs: &Errors) -> bool {
    match std::fs::read(path) {
        Ok(_) => true,
        Err(e) => {
            errs.add(at, format!("cannot read {}: {e}", quoted(path)));
            false
        }
    }
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// `origin[N].ca`: a readable PEM file holding at least one certificate.
pub(super) fn check_ca(path: &Path, key: &str, errs: &Errors) {
    let at = KeyPath::default().field(key);
    if !readable(path, &at, errs) {
        return;
    }
    let has_cert = path
        .to_str()
        .is_some_and(|p| tls::load_pem_file_ca(&p.to_string()).is_ok_and(|der| !der.is_empty()));
    errs.require(
        has_cert,
        &at,
        format!("no PEM certificate found in {}", quoted(path)),
    );
}
