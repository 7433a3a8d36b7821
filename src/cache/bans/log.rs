//! The purge log: ban records of a disk-backed cache, one JSON object per line in
//! `<cache.disk.path>/outpost-purges.log`, appended and fsynced before a purge returns, so a
//! purge survives a restart (clean or `kill -9`). Replayed and compacted at startup. Also
//! keeps a boot counter (`outpost-boot`) that puts each run's purge numbers above every
//! number a previous run could have stamped an object with.

use super::Bans;
use crate::cache::files::set_aside;
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
    /// The disk floor (its `seq`): records folded into one number, see `bans.rs`.
    Floor,
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

/// [`PurgeLog::open`]'s answer.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) log: PurgeLog,
    /// The log could not be trusted: the objects on disk must be discarded.
    pub(crate) reset: bool,
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
    ///
    /// A log or boot counter that cannot be trusted (unreadable, not a file, garbage in the
    /// middle of the log, a counter that is not a number) is set aside, and the answer says
    /// `reset`: without them purge order is unknown, so the caller must discard the objects
    /// on disk (they become misses) rather than risk serving a purged one.
    pub(crate) fn open(dir: &Path, bans: &Bans) -> Result<Opened, String> {
        let path = dir.join(LOG_FILE);
        let boot_path = dir.join(BOOT_FILE);
        fn named(p: &Path) -> impl Fn(io::Error) -> String + '_ {
            move |e| format!("{}: {e}", p.display())
        }
        let lines = read_log(&path);
        let prev = read_boot(&boot_path);
        let reset = match (&lines, &prev) {
            (Ok(_), Ok(_)) => None,
            (Err(why), _) => Some(format!("{}: {why}", path.display())),
            (_, Err(why)) => Some(format!("{}: {why}", boot_path.display())),
        };
        if let Some(why) = &reset {
            tracing::warn!(
                "purge log cannot be trusted ({why}): set aside; the disk tier starts empty"
            );
            set_aside(&path);
            set_aside(&boot_path);
        } else if let Ok(lines) = &lines {
            for l in lines {
                bans.restore(l);
            }
        }
        let boot = prev.unwrap_or(0) + 1;
        write_boot(&boot_path, boot).map_err(named(&boot_path))?;
        bans.resume(boot << BOOT_SHIFT);
        let tmp = dir.join(format!("{LOG_FILE}.tmp"));
        if !tmp.is_file() {
            set_aside(&tmp);
        }
        write_synced(&tmp, &render(&bans.snapshot())).map_err(named(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(named(&path))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(named(&path))?;
        Ok(Opened {
            log: PurgeLog {
                path,
                file: Arc::new(Mutex::new(file)),
            },
            reset: reset.is_some(),
        })
    }

    /// Rewrites the log as `bans` has it now (after records were folded), on a blocking
    /// thread. The file lock is held from the snapshot to the swap: a purge appends either
    /// to the old file before the snapshot (and is in it) or to the new file after.
    pub(crate) async fn compact(&self, bans: Arc<Bans>) -> Result<(), String> {
        let file = self.file.clone();
        let path = self.path.clone();
        self.blocking(move || {
            let mut f = file.lock();
            let tmp = path.with_extension("log.tmp");
            write_synced(&tmp, &render(&bans.snapshot()))?;
            std::fs::rename(&tmp, &path)?;
            *f = OpenOptions::new().append(true).open(&path)?;
            Ok(())
        })
        .await
    }

    /// Runs file work on a blocking thread; errors name the log.
    async fn blocking(
        &self,
        work: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> Result<(), String> {
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{}: {e}", self.path.display())),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// Appends and fsyncs (on a blocking thread).
    pub(crate) async fn append(&self, lines: Vec<LogLine>) -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let file = self.file.clone();
        let text = render(&lines);
        self.blocking(move || {
            let mut f = file.lock();
            f.write_all(text.as_bytes())?;
            f.sync_data()
        })
        .await
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

/// The log's records. A torn last line (a crash mid-append) is skipped; an unparsable line
/// before it, or a log that cannot be read, is an error (a ban could be lost).
fn read_log(path: &Path) -> Result<Vec<LogLine>, String> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_slice::<LogLine>(line) {
            Ok(l) => out.push(l),
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => return Err(format!("damaged record on line {} ({e})", i + 1)),
        }
    }
    Ok(out)
}

/// The stored boot counter (0 when there is none).
fn read_boot(path: &Path) -> Result<u64, String> {
    match std::fs::read(path) {
        Ok(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&n| n < (1 << (64 - BOOT_SHIFT)) - 1)
            .ok_or_else(|| "not a boot counter".to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.to_string()),
    }
}

/// Durably stores the boot counter.
fn write_boot(path: &Path, boot: u64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    if tmp.exists() && !tmp.is_file() {
        set_aside(&tmp);
    }
    write_synced(&tmp, &format!("{boot}\n"))?;
    std::fs::rename(&tmp, path)
}
