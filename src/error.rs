//! The crate's top-level error, mapped to exit codes by the CLI. Failures keep their source
//! (`std::error::Error::source`) instead of being flattened to text.

use crate::cache::storage::StorageError;
use crate::config::ConfigErrors;

/// A boxed lower-level error (TLS libraries, pingora).
pub type Source = Box<dyn std::error::Error + Send + Sync>;

/// What can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration or usage (exit 2).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// Invalid usage (exit 2).
    #[error("{0}")]
    Usage(String),
    /// An I/O failure, such as a port in use (exit 1); `context` names the key and address.
    #[error("error: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The cache storage could not be opened (exit 1).
    #[error("error: {0}")]
    Storage(#[from] StorageError),
    /// A TLS certificate or listener could not be set up (exit 1).
    #[error("error: {context}: {source}")]
    Tls {
        context: String,
        #[source]
        source: Source,
    },
    /// Any other runtime failure (exit 1).
    #[error("error: {0}")]
    Runtime(String),
}

impl Error {
    /// The process exit status for this error (interface.md §1).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            Error::Io { .. } | Error::Storage(_) | Error::Tls { .. } | Error::Runtime(_) => 1,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A TLS error with what was being set up.
    pub fn tls(context: impl Into<String>, source: impl Into<Source>) -> Error {
        Error::Tls {
            context: context.into(),
            source: source.into(),
        }
    }
}
