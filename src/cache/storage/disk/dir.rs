//! The disk tier's directory outside foyer's records: making any directory usable (what is
//! outpost's by name but not a regular file is set aside), fitting the tier to its
//! filesystem and allocating foyer's files in full, and discarding a previous run's objects.

use super::upkeep::Counts;
use super::{unusable, MIB};
use crate::cache::files::set_aside;
use crate::cache::storage::StorageError;
use std::path::Path;

/// Prefix of the files foyer's `FsDevice` keeps in the directory.
const FOYER_FILES: &str = "foyer-storage-";

/// Makes `path` usable as a cache directory, or says why it cannot be (the only reason to
/// refuse to start): created if missing, a writable directory. Anything in it that is
/// outpost's or foyer's by name but not a regular file (a directory, a socket) is set
/// aside; damaged contents of regular files are dealt with by their readers (foyer's
/// recovery skips what does not verify, records carry checksums). True when the purge
/// log or boot counter was among them: the objects on disk must then be discarded.
pub(crate) fn prepare_dir(path: &Path) -> Result<bool, StorageError> {
    std::fs::create_dir_all(path).map_err(|e| unusable(path, e))?;
    if !path.is_dir() {
        return Err(unusable(path, "not a directory"));
    }
    let probe = path.join(".outpost-write-test");
    if std::fs::symlink_metadata(&probe).is_ok_and(|m| !m.is_file()) {
        set_aside(&probe);
    }
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| unusable(path, format!("not writable: {e}")))?;
    let entries =
        std::fs::read_dir(path).map_err(|e| unusable(path, format!("not readable: {e}")))?;
    let mut purge_state_lost = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with(FOYER_FILES) || name.starts_with("outpost-");
        if ours && !name.contains(".discarded-") && !entry.file_type().is_ok_and(|t| t.is_file()) {
            set_aside(&entry.path());
            purge_state_lost |=
                name.starts_with("outpost-purges") || name.starts_with("outpost-boot");
        }
    }
    Ok(purge_state_lost)
}

/// `want` bytes, or less when the filesystem of `path` cannot hold them: its free space plus
/// what foyer's files already occupy, minus a reserve for outpost's own small files.
pub(super) fn fit_to_filesystem(path: &Path, want: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    const RESERVE: u64 = 4 * MIB;
    let Ok(free) = fs4::available_space(path) else {
        return want;
    };
    let mut ours = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(FOYER_FILES) {
                ours += e.metadata().map_or(0, |m| m.blocks() * 512);
            }
        }
    }
    let fits = (free + ours).saturating_sub(RESERVE);
    if fits < want {
        tracing::warn!(
            path = %path.display(),
            size = %crate::config::format_size(want),
            usable = %crate::config::format_size(fits),
            "cache.disk.size is more than its filesystem can hold: the disk tier uses what fits"
        );
        return fits;
    }
    want
}

/// Allocates foyer's files in full (they are created sparse), so that writes into them
/// cannot fail for lack of space later. A file that cannot be allocated is logged; the
/// periodic write probe takes the tier out if the filesystem is really full.
pub(super) fn allocate_files(path: &Path) {
    use fs4::fs_std::FileExt;
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(FOYER_FILES)
            || name.to_string_lossy().contains(".discarded-")
        {
            continue;
        }
        let done = std::fs::OpenOptions::new()
            .write(true)
            .open(e.path())
            .and_then(|f| {
                let len = f.metadata()?.len();
                f.allocate(len)
            });
        if let Err(err) = done {
            tracing::warn!(file = %e.path().display(), error = %err, "cannot allocate disk cache file");
        }
    }
}

/// Removes the objects of a previous run (foyer's files and the counts), logging how many.
pub(super) fn discard_objects(path: &Path) {
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.starts_with(FOYER_FILES) || name.starts_with(Counts::FILE);
            if ours && !name.contains(".discarded-") && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    tracing::warn!(path = %path.display(), files = removed, "disk cache discarded: its objects are misses");
}
