//! Whether the disk tier is in use. Like passive ejection of an origin server: after
//! `trip` consecutive disk reads that fail with an I/O error, with no successful one in
//! between, the tier is taken out for `pause` and the cache runs on
//! memory only (lookups skip the disk, fills are not written to it). A failed write probe
//! of the directory (read-only remount, full filesystem, device gone: foyer's own write
//! errors are only logged) takes it out at once. After the pause the
//! tier is tried again: the next successful read brings it back, the next failure takes it
//! out for another pause. Records that read fine but do not verify (corrupt,
//! or from an older format version) are misses, never failures of the device.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Consecutive failures that take the tier out.
pub(crate) const TRIP: u32 = 8;
/// How long the tier stays out before it is tried again.
pub(crate) const PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct Health {
    trip: u32,
    pause: Duration,
    /// Failed reads since the last successful one.
    failures: AtomicU32,
    /// While out: milliseconds after `epoch` when it may be tried again (0 = in use).
    out_until: AtomicU64,
    /// Times the tier was taken out.
    trips: AtomicU64,
    epoch: Instant,
}

impl Health {
    pub(crate) fn new(trip: u32, pause: Duration) -> Self {
        Health {
            trip: trip.max(1),
            pause,
            failures: AtomicU32::new(0),
            out_until: AtomicU64::new(0),
            trips: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether lookups and writes may use the tier now (out, but past the pause: trying).
    pub(crate) fn usable(&self) -> bool {
        let until = self.out_until.load(Ordering::Relaxed);
        until == 0 || self.now_ms() >= until
    }

    /// Takes the tier out for good (it is being closed: lookups and writes skip it).
    pub(crate) fn retire(&self) {
        self.out_until.store(u64::MAX, Ordering::Relaxed);
    }

    /// Whether the tier is out (memory-only) right now.
    pub(crate) fn degraded(&self) -> bool {
        !self.usable()
    }

    /// Times the tier was taken out since start.
    pub(crate) fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// A successful read. Cheap when nothing is wrong (two relaxed loads).
    pub(crate) fn ok(&self, path: &std::path::Path) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        let until = self.out_until.load(Ordering::Relaxed);
        // Only once the pause is over: a read that was already in flight does not count.
        if until != 0
            && self.now_ms() >= until
            && self
                .out_until
                .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(path = %path.display(), "disk cache readable again: back in use");
        }
    }

    /// A failure that is enough on its own (the directory cannot be written): takes the
    /// tier out now unless it is out already. True when it did.
    pub(crate) fn failed_now(&self, path: &std::path::Path, error: &dyn std::fmt::Display) -> bool {
        self.failures.fetch_max(self.trip - 1, Ordering::Relaxed);
        self.failed(path, error)
    }

    /// A failed read. True when this failure took the tier out.
    pub(crate) fn failed(&self, path: &std::path::Path, error: &dyn std::fmt::Display) -> bool {
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let until = self.out_until.load(Ordering::Relaxed);
        let now = self.now_ms();
        // Out already (a read that was in flight): nothing to change.
        if until != 0 && now < until {
            return false;
        }
        // In use and under the threshold: count it. Being tried again: one failure is enough.
        if until == 0 && n < self.trip {
            return false;
        }
        let next = now
            .saturating_add(u64::try_from(self.pause.as_millis()).unwrap_or(u64::MAX))
            .max(1);
        if self
            .out_until
            .compare_exchange(until, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.trips.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            path = %path.display(),
            consecutive_failures = n,
            retry_in_s = self.pause.as_secs(),
            last_error = %error,
            "disk cache failing: degraded to memory-only"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn consecutive_failures_take_the_tier_out_and_a_success_resets_the_count() {
        let h = Health::new(3, Duration::from_secs(60));
        let p = Path::new("/d");
        assert!(!h.failed(p, &"e1"));
        assert!(!h.failed(p, &"e2"));
        h.ok(p);
        assert!(!h.failed(p, &"e3"));
        assert!(!h.failed(p, &"e4"));
        assert!(
            h.usable(),
            "two failures after a success are under the threshold"
        );
        assert!(h.failed(p, &"e5"), "third consecutive failure trips");
        assert!(h.degraded());
        assert!(!h.failed(p, &"e6"), "already out");
        assert_eq!(h.trips(), 1);
    }

    #[test]
    fn a_probe_failure_trips_at_once_and_a_success_during_the_pause_does_not_end_it() {
        let h = Health::new(8, Duration::from_secs(60));
        let p = Path::new("/d");
        assert!(h.failed_now(p, &"read-only file system"));
        assert!(h.degraded());
        h.ok(p);
        assert!(
            h.degraded(),
            "a read in flight during the pause does not bring it back"
        );
        assert!(!h.failed_now(p, &"again"), "already out");
        assert_eq!(h.trips(), 1);
    }

    #[test]
    fn after_the_pause_one_success_brings_it_back_and_one_failure_takes_it_out_again() {
        let h = Health::new(2, Duration::from_millis(30));
        let p = Path::new("/d");
        h.failed(p, &"a");
        assert!(h.failed(p, &"b"));
        assert!(!h.usable());
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.usable(), "tried again after the pause");
        assert!(
            h.failed(p, &"c"),
            "a failure while being tried takes it out at once"
        );
        assert!(!h.usable());
        std::thread::sleep(Duration::from_millis(60));
        h.ok(p);
        assert!(h.usable() && !h.degraded());
        assert!(
            !h.failed(p, &"d"),
            "back in use: the threshold applies again"
        );
        assert!(h.usable());
        assert_eq!(h.trips(), 2);
    }
}
