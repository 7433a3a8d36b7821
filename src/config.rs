//! Configuration: TOML file → raw serde shape (`raw`) → validated types (`types`).
//! `check` and `run` share `load`; every problem is reported at once with its dotted path.

mod raw;
mod types;
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
