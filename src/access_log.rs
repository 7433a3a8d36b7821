//! JSON access log (interface.md §7): one object per request, written by a dedicated
//! thread so the request path never blocks on stdout or a file.

use crate::config;
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};

/// Sends finished log lines to the writer thread; cheap to clone. `None` = logging off.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: Option<SyncSender<String>>,
}

impl AccessLog {
    /// Opens the destination; fails with the path when a file cannot be opened.
    pub fn open(cfg: &config::AccessLog) -> std::io::Result<Self> {
        let mut out: Box<dyn Write + Send> = match cfg {
            config::AccessLog::Off => return Ok(Self { tx: None }),
            config::AccessLog::Stdout => Box::new(std::io::stdout()),
            config::AccessLog::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("log.access: cannot open {}: {e}", p.display()),
                        )
                    })?,
            ),
        };
        let (tx, rx) = sync_channel::<String>(8192);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                while let Ok(mut line) = rx.recv() {
                    line.push('\n');
                    if out.write_all(line.as_bytes()).is_err() {
                        continue;
                    }
                    // Flush when the queue is drained, so lines appear promptly without a syscall each.
                    let mut pending = true;
                    while let Ok(mut more) = rx.try_recv() {
                        more.push('\n');
                        let _ = out.write_all(more.as_bytes());
                        pending = true;
                    }
                    if pending {
                        let _ = out.flush();
                    }
                }
            })?;
        Ok(Self { tx: Some(tx) })
    }

    /// A logger that drops everything.
    pub fn off() -> Self {
        Self { tx: None }
    }

    /// Whether lines are written at all (skip building them otherwise).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line; dropped (never blocks) when the writer is behind.
    pub fn write(&self, line: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(line);
        }
    }
}
