//! The purge log: ban records of a disk-backed cache, one JSON object per line in
//! `<cache.disk.path>/outpost-purges.log`, appended and fsynced before a purge returns, so a
//! purge survives a restart (clean or `kill -9`). Replayed and compacted at startup. Also
//! keeps a boot counter (`outpost-boot`) that puts each run's purge numbers above every
//! number a previous run could have stamped an object with.

use super::bans::Bans;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const LOG_FILE: &str = "outpost-purges.log";
const BOOT_FILE: &str = "outpost-boot";
/// Purge numbers of one run live in `[boot << 40, (boot + 1) << 40)`.
const BOOT_SHIFT: u32 = 40;

/// What a ban record is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BanKind {
    /// Hex of the primary key hash.
    Url,
    Tag,
    Host,
    Prefix,
    All,
}

/// One ban record as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogLine {
    pub(crate) seq: u64,
    pub(crate) soft: bool,
    /// Soft purges: when it happened (milliseconds since the epoch).
    pub(crate) at_ms: u64,
    pub(crate) kind: BanKind,
    pub(crate) value: String,
}

impl LogLine {
    pub(crate) fn new(seq: u64, soft: bool, at: SystemTime, kind: BanKind, value: &str) -> Self {
        let at_ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        LogLine {
            seq,
            soft,
            at_ms,
            kind,
            value: value.to_string(),
        }
    }

    pub(crate) fn at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.at_ms)
    }
}

/// The open purge log.
#[derive(Debug, Clone)]
pub(crate) struct PurgeLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl PurgeLog {
    /// Replays the log in `dir` into `bans`, bumps the boot counter, rewrites the log
    /// compacted, and opens it for appending. Errors name the file.
    pub(crate) fn open(dir: &Path, bans: &Bans) -> Result<PurgeLog, String> {
        let path = dir.join(LOG_FILE);
        fn named(p: &Path) -> impl Fn(io::Error) -> String + '_ {
            move |e| format!("{}: {e}", p.display())
        }
        match std::fs::read(&path) {
            Ok(text) => {
                // A torn last line (crash mid-append) just fails to parse and is skipped.
                for line in text.split(|&b| b == b'\n') {
                    if let Ok(l) = serde_json::from_slice::<LogLine>(line) {
                        bans.restore(&l);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(named(&path)(e)),
        }
        let boot = bump_boot(&dir.join(BOOT_FILE)).map_err(named(&dir.join(BOOT_FILE)))?;
        bans.resume(boot << BOOT_SHIFT);
        let tmp = dir.join(format!("{LOG_FILE}.tmp"));
        write_synced(&tmp, &render(&bans.snapshot())).map_err(named(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(named(&path))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(named(&path))?;
        Ok(PurgeLog {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Appends and fsyncs (on a blocking thread).
    pub(crate) async fn append(&self, lines: Vec<LogLine>) -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let file = self.file.clone();
        let text = render(&lines);
        let done = tokio::task::spawn_blocking(move || {
            let mut f = file.lock();
            f.write_all(text.as_bytes())?;
            f.sync_data()
        })
        .await;
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{}: {e}", self.path.display())),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }
}

fn render(lines: &[LogLine]) -> String {
    let mut out = String::new();
    for l in lines {
        if let Ok(s) = serde_json::to_string(l) {
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}

fn write_synced(path: &Path, text: &str) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Reads, increments and durably stores the boot counter; returns the new value.
fn bump_boot(path: &Path) -> io::Result<u64> {
    let prev = match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let boot = prev + 1;
    let tmp = path.with_extension("tmp");
    write_synced(&tmp, &format!("{boot}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(boot)
}
