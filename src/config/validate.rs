//! Raw → validated config, collecting every problem with its dotted path.

use super::types::Config;
use std::fmt;
use std::path::Path;

/// Every problem found in a config file, one per line, each starting with its dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl ConfigErrors {
    /// One problem.
    pub fn single(msg: impl Into<String>) -> Self {
        Self(vec![msg.into()])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub(super) fn parse(_text: &str, _base: &Path) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors::single("config: not implemented yet"))
}
