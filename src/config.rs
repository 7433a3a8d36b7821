//! Configuration: TOML file → file shape (`raw`, read through `reader`'s typed getters)
//! → cross-field rules (`validate`, `routing`, `certs`) → validated types (`types`).
//! `check` and `run` share `load`; every problem is reported at once with its dotted path.

mod certs;
mod raw;
mod reader;
mod routing;
#[cfg(test)]
mod tests;
mod types;
mod units;
mod validate;

pub use types::*;
pub use validate::ConfigErrors;

use std::path::Path;

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::single(format!("{}: cannot read: {e}", path.display())))?;
    let mut cfg = parse(&text, path.parent().unwrap_or(Path::new(".")))?;
    cfg.source = Some(path.to_path_buf());
    Ok(cfg)
}

/// Validates TOML text; relative file paths (certs, disk) resolve against `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
    validate::parse(text, base)
}

/// The one line `outpost check` prints for a valid file, e.g.
/// `config ok: 1 listener(s), 2 origin(s) with 3 server(s), 2 route(s), cache memory 256MiB, disk off, hash 1a2b3c4d5e6f7a8b`.
pub fn summary(cfg: &Config) -> String {
    let tls_listeners = cfg.tls.as_ref().map_or(0, |t| t.listen.len());
    let listeners = cfg.server.listen.len() + tls_listeners;
    let tls = match tls_listeners {
        0 => String::new(),
        n => format!(" ({n} TLS)"),
    };
    let servers: usize = cfg.origins.iter().map(|o| o.servers.len()).sum();
    let disk = match &cfg.cache.disk {
        Some(d) if d.size / 8 < cfg.cache.max_object => format!(
            "{} at {} (holds objects up to {} = size/8, below cache.max_object {}: larger ones are streamed through)",
            format_size(d.size),
            d.path.display(),
            format_size(d.size / 8),
            format_size(cfg.cache.max_object)
        ),
        Some(d) => format!("{} at {}", format_size(d.size), d.path.display()),
        None => "off".to_string(),
    };
    let cluster = match &cfg.cluster {
        Some(c) if c.peers.is_empty() => format!(", cluster node {} (no peering)", c.node),
        Some(c) => format!(
            ", cluster node {} peering with {} node(s)",
            c.node,
            c.peers.len()
        ),
        None => String::new(),
    };
    format!(
        "config ok: {listeners} listener(s){tls}, {} origin(s) with {servers} server(s), {} route(s){}, \
         cache memory {}, disk {disk}{cluster}, hash {}",
        cfg.origins.len(),
        cfg.routes.len(),
        sliced_routes(cfg),
        format_size(cfg.cache.memory),
        cfg.hash,
    )
}

/// ` (N sliced)`, naming the routes whose `slice` is larger than any tier stores (they are
/// served unsliced); empty without sliced routes.
fn sliced_routes(cfg: &Config) -> String {
    let sliced: Vec<(usize, u64)> = cfg
        .routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.slice > 0)
        .map(|(i, r)| (i, r.slice))
        .collect();
    if sliced.is_empty() {
        return String::new();
    }
    // As the storage computes it: max_object, or less when no tier keeps objects that large.
    let c = &cfg.cache;
    let memory = if c.disk.is_some() {
        c.memory / 8
    } else {
        c.memory / 2
    };
    let disk = c
        .disk
        .as_ref()
        .map_or(0, |d| (d.size / 8).min(c.max_object.max(1 << 20)));
    let limit = c.max_object.min(memory.max(disk));
    let mut out = format!(" ({} sliced", sliced.len());
    for (i, size) in sliced.into_iter().filter(|(_, s)| *s > limit) {
        out.push_str(&format!(
            "; route[{i}].slice {} is over the {} a tier stores: served unsliced",
            format_size(size),
            format_size(limit)
        ));
    }
    out.push(')');
    out
}

/// A byte count in the config's own notation: `268435456` → `"256MiB"`.
pub fn format_size(bytes: u64) -> String {
    units::format_size(bytes)
}
