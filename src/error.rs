//! The crate's top-level error, mapped to exit codes by the CLI.

use crate::config::ConfigErrors;

/// What can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration or usage (exit 2).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// Invalid usage (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A runtime failure such as a port in use or an unusable disk path (exit 1).
    #[error("error: {0}")]
    Runtime(String),
}

impl Error {
    /// The process exit status for this error (interface.md §1).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            Error::Runtime(_) => 1,
        }
    }
}
