//! Helpers for files in the cache directory, shared by the disk tier and the ban log
//! (the bottom of the cache layer: names no other module).

use std::path::Path;
use std::time::SystemTime;

/// Moves `path` (whatever it is) out of the way as `<name>.discarded-<unix time>`, so that a
/// file outpost owns can be written again; nothing is deleted. Logs what it did.
pub(crate) fn set_aside(path: &Path) {
    if std::fs::symlink_metadata(path).is_err() {
        return;
    }
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".discarded-{stamp}"));
    match std::fs::rename(path, &aside) {
        Ok(()) => {
            tracing::warn!(from = %path.display(), to = %Path::new(&aside).display(), "set aside a damaged cache file")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot set aside a damaged cache file")
        }
    }
}
