//! Upkeep of the disk tier outside requests: the written-objects/bytes counters, saved in
//! the directory so the `/status` estimates survive a restart, and the periodic write probe
//! that takes the tier out when the directory can no longer be written.

use super::health::Health;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The written-objects and written-bytes counters, saved in the disk directory so the
/// estimates survive a restart (every 10 s when they changed, and on close; after a crash
/// the last 10 s of writes are not counted).
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) objects: AtomicU64,
    pub(super) bytes: AtomicU64,
}

impl Counts {
    pub(super) const FILE: &'static str = "outpost-disk-counts";
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    pub(super) fn get(&self) -> (u64, u64) {
        (
            self.objects.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// The saved counts, or zeros when there are none (or they do not parse).
    pub(super) fn load(dir: &Path) -> Counts {
        let text = std::fs::read_to_string(dir.join(Self::FILE)).unwrap_or_default();
        let mut nums = text.split_ascii_whitespace().map(str::parse::<u64>);
        match (nums.next(), nums.next()) {
            (Some(Ok(objects)), Some(Ok(bytes))) => Counts {
                objects: AtomicU64::new(objects),
                bytes: AtomicU64::new(bytes),
            },
            _ => Counts::default(),
        }
    }

    /// Writes the counts (a temporary file renamed over the old one). Blocking.
    pub(super) fn save(&self, dir: &Path) {
        let (objects, bytes) = self.get();
        let tmp = dir.join(format!("{}.tmp", Self::FILE));
        let done = std::fs::write(&tmp, format!("{objects} {bytes}\n"))
            .and_then(|()| std::fs::rename(&tmp, dir.join(Self::FILE)));
        if let Err(e) = done {
            tracing::debug!(path = %dir.display(), error = %e, "disk cache counts not saved");
        }
    }
}

/// Every [`Counts::EVERY`]: saves the counts when they changed, and probes that the
/// directory can still be written (foyer only logs its write errors). Runs on the disk
/// tier's own runtime, so it ends with it.
pub(super) async fn maintain(counts: Arc<Counts>, health: Arc<Health>, dir: PathBuf) {
    let mut saved = counts.get();
    loop {
        tokio::time::sleep(Counts::EVERY).await;
        let now = counts.get();
        let (c, d) = (counts.clone(), dir.clone());
        let save = now != saved;
        let probe = tokio::task::spawn_blocking(move || {
            if save {
                c.save(&d);
            }
            write_probe(&d)
        })
        .await;
        saved = now;
        if let Ok(Err(e)) = probe {
            health.failed_now(&dir, &format!("cannot write in the cache directory: {e}"));
        }
    }
}

/// Writes, syncs and removes a small file in `dir`. Blocking.
pub(super) fn write_probe(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".outpost-probe");
    let mut f = std::fs::File::create(&path)?;
    f.write_all(b"ok")?;
    f.sync_data()?;
    drop(f);
    std::fs::remove_file(&path)
}
