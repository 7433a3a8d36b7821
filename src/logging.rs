//! tracing setup: human-readable logs on stderr at `log.level`; Pingora's `log` records bridged.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; `RUST_LOG` overrides `level`.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
