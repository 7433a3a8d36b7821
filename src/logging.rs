//! tracing setup: server logs on stderr at `log.level`, as text (colour only on a
//! terminal) or one JSON object per line (`log.format`); Pingora's `log` records bridged.

use crate::config::LogFormat;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;

/// Whether the server log is JSON (`log.format = "json"`).
static JSON: AtomicBool = AtomicBool::new(false);

/// Colour in text logs: only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>); never in a file or a pipe (`outpost demo > demo.log 2>&1`).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber once; `RUST_LOG` overrides `level`.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Writes the `listening KIND=ADDR` line of interface.md §1 on stderr, whatever `log.level`
/// says: plain text, or in JSON mode a JSON object whose `message` is that text (so
/// stderr stays one JSON object per line).
#[allow(clippy::print_stderr)]
pub fn announce_listening(kind: &str, addr: std::net::SocketAddr) {
    let message = format!("listening {kind}={addr}");
    if JSON.load(Ordering::Relaxed) {
        let line = serde_json::json!({
            "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            "level": "INFO",
            "message": message,
            "listener": kind,
            "addr": addr.to_string(),
        });
        eprintln!("{line}");
    } else {
        eprintln!("{message}");
    }
}
