//! Ban records: what makes a purge O(1) instead of a scan. Every object carries the purge
//! sequence number current when its fill started (its stamp); a purge takes the next number
//! and records it per URL / host / tag / prefix / "all". A lookup compares the object's stamp
//! with the records that match it, so purged objects die lazily and in-flight fills that
//! started before a purge can never resurrect it. With a disk tier the records are also
//! written to the purge log (`log.rs`) and replayed at startup.
//!
//! Records retire. Memory objects are indexed, so a purge removes them eagerly and its
//! record is only kept for fills still in flight ([`Bans::gc`]). Disk objects are not
//! indexed (a restart forgets which is where), so their records cannot simply go: once more
//! than [`DURABLE_RECORDS`] are kept, the oldest half is folded into the *disk floor*, one
//! number: a disk object stamped before it is a miss ([`Bans::verdict_disk`]). That loses
//! some unpurged disk objects (they are fetched again), never serves a purged one, and
//! keeps both the records and the log bounded. The check per lookup is flat in the number
//! of records: hash lookups for URL, host and tags, one per distinct prefix *length*.

pub(crate) mod log;

use log::{BanKind, LogLine};
use parking_lot::RwLock;
use pingora_cache::key::HashBinary;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// What the bans say about an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not purged since it was stored.
    Keep,
    /// Soft-purged: serve it as stale as of this time (it revalidates on next use).
    Expire(SystemTime),
    /// Hard-purged: a miss.
    Gone,
}

/// The latest hard and soft purge of one URL, host, tag or prefix.
#[derive(Debug, Clone, Copy)]
struct Record {
    hard: u64,
    soft: u64,
    soft_at: SystemTime,
    updated: Instant,
}

impl Record {
    fn new() -> Self {
        Record {
            hard: 0,
            soft: 0,
            soft_at: SystemTime::UNIX_EPOCH,
            updated: Instant::now(),
        }
    }

    fn set(&mut self, seq: u64, soft: bool, at: SystemTime) {
        if soft && seq > self.soft {
            self.soft = seq;
            self.soft_at = at;
        } else if !soft && seq > self.hard {
            self.hard = seq;
        }
        self.updated = Instant::now();
    }

    fn newest(&self) -> u64 {
        self.hard.max(self.soft)
    }

    fn judge(&self, stamp: u64, verdict: &mut Verdict) {
        if stamp < self.hard {
            *verdict = Verdict::Gone;
        } else if stamp < self.soft {
            *verdict = match *verdict {
                Verdict::Gone => Verdict::Gone,
                Verdict::Expire(t) => Verdict::Expire(t.min(self.soft_at)),
                Verdict::Keep => Verdict::Expire(self.soft_at),
            };
        }
    }

    /// Log lines that recreate this record.
    fn lines(&self, kind: BanKind, value: &str, out: &mut Vec<LogLine>) {
        if self.hard > 0 {
            out.push(LogLine::new(
                self.hard,
                false,
                SystemTime::UNIX_EPOCH,
                kind,
                value,
            ));
        }
        if self.soft > 0 {
            out.push(LogLine::new(self.soft, true, self.soft_at, kind, value));
        }
    }
}

/// With a disk tier: records kept before the oldest half is folded into the disk floor.
pub(crate) const DURABLE_RECORDS: usize = 100_000;

#[derive(Debug, Default)]
struct Records {
    all: Option<Record>,
    urls: HashMap<HashBinary, Record>,
    hosts: HashMap<Box<str>, Record>,
    tags: HashMap<Box<str>, Record>,
    prefixes: HashMap<Box<str>, Record>,
    /// Distinct prefix lengths (bytes) → how many prefixes have it: a lookup probes
    /// `prefixes` once per length, not once per prefix.
    prefix_lens: BTreeMap<usize, usize>,
}

impl Records {
    fn len(&self) -> usize {
        self.urls.len() + self.hosts.len() + self.tags.len() + self.prefixes.len()
    }

    /// Drops every record `keep` refuses; returns the newest purge number dropped.
    fn retain(&mut self, keep: impl Fn(&Record) -> bool) -> u64 {
        let mut dropped = 0;
        let mut judge = |rec: &Record| {
            let k = keep(rec);
            if !k {
                dropped = dropped.max(rec.newest());
            }
            k
        };
        self.urls.retain(|_, rec| judge(rec));
        self.hosts.retain(|_, rec| judge(rec));
        self.tags.retain(|_, rec| judge(rec));
        self.prefixes.retain(|_, rec| judge(rec));
        self.prefix_lens.clear();
        for p in self.prefixes.keys() {
            *self.prefix_lens.entry(p.len()).or_default() += 1;
        }
        dropped
    }

    fn newest_of_each(&self) -> Vec<u64> {
        let all = self.urls.values().chain(self.hosts.values());
        all.chain(self.tags.values())
            .chain(self.prefixes.values())
            .map(Record::newest)
            .collect()
    }

    /// Records a purge of `kind`/`value`; false if `value` is not valid for `kind`.
    fn set(&mut self, kind: BanKind, value: &str, seq: u64, soft: bool, at: SystemTime) -> bool {
        let rec = match kind {
            BanKind::All => self.all.get_or_insert_with(Record::new),
            BanKind::Url => match unhex(value) {
                Some(pk) => self.urls.entry(pk).or_insert_with(Record::new),
                None => return false,
            },
            BanKind::Host => self.hosts.entry(value.into()).or_insert_with(Record::new),
            BanKind::Tag => self.tags.entry(value.into()).or_insert_with(Record::new),
            BanKind::Prefix => {
                if !self.prefixes.contains_key(value) {
                    *self.prefix_lens.entry(value.len()).or_default() += 1;
                }
                self.prefixes
                    .entry(value.into())
                    .or_insert_with(Record::new)
            }
            BanKind::Floor => return false,
        };
        rec.set(seq, soft, at);
        true
    }
}

/// What a ban is matched against: one stored object's names (the storage hands these over;
/// bans know nothing of entries or tiers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// `key.primary_bin()` of the object (all Vary variants share it).
    pub(crate) primary: &'a HashBinary,
    /// Its canonical URL (the primary key string).
    pub(crate) url: &'a str,
    /// Its host, lower-cased, without port.
    pub(crate) host: &'a str,
    /// Its surrogate keys / cache tags.
    pub(crate) tags: &'a [Box<str>],
}

/// Lower-case hex of a primary key (how URL bans are logged).
pub(crate) fn hex(pk: &HashBinary) -> String {
    pk.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<HashBinary> {
    let mut out = [0u8; 16];
    if s.len() != 32 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// All ban records plus the global purge sequence.
#[derive(Debug)]
pub(crate) struct Bans {
    /// The current sequence number; objects are stamped with it, a purge increments it.
    seq: AtomicU64,
    /// Sequence number of the latest purge: objects stamped at or after it skip the check.
    last: AtomicU64,
    records: RwLock<Records>,
    /// Record count after the last garbage collection (amortises `gc`).
    gc_mark: AtomicU64,
    /// Whether purges produce log lines (a disk tier keeps them across restarts).
    persist: AtomicBool,
    /// Disk objects stamped below this are misses (folded records, see the module doc).
    disk_floor: AtomicU64,
    /// Records kept with a disk tier before folding ([`DURABLE_RECORDS`]; tests lower it).
    durable_limit: AtomicU64,
}

impl Default for Bans {
    fn default() -> Self {
        Bans {
            seq: AtomicU64::new(0),
            last: AtomicU64::new(0),
            records: RwLock::new(Records::default()),
            gc_mark: AtomicU64::new(0),
            persist: AtomicBool::new(false),
            disk_floor: AtomicU64::new(0),
            durable_limit: AtomicU64::new(DURABLE_RECORDS as u64),
        }
    }
}

/// A purge being recorded: holds the write lock, so the lookups it races see all or nothing.
pub(crate) struct BanWriter<'a> {
    bans: &'a Bans,
    records: parking_lot::RwLockWriteGuard<'a, Records>,
    /// The sequence number of this purge.
    pub(crate) seq: u64,
    soft: bool,
    at: SystemTime,
    /// Lines for the purge log, when persisting.
    log: Option<Vec<LogLine>>,
}

impl BanWriter<'_> {
    fn set(&mut self, kind: BanKind, value: &str) {
        if self.records.set(kind, value, self.seq, self.soft, self.at) {
            if let Some(log) = &mut self.log {
                log.push(LogLine::new(self.seq, self.soft, self.at, kind, value));
            }
        }
    }

    pub(crate) fn url(&mut self, primary: HashBinary) {
        self.set(BanKind::Url, &hex(&primary));
    }

    pub(crate) fn host(&mut self, host: &str) {
        self.set(BanKind::Host, host);
    }

    pub(crate) fn tag(&mut self, tag: &str) {
        self.set(BanKind::Tag, tag);
    }

    pub(crate) fn prefix(&mut self, prefix: &str) {
        self.set(BanKind::Prefix, prefix);
    }

    pub(crate) fn all(&mut self) {
        self.set(BanKind::All, "");
    }

    /// Ends the purge (releases the lock) and returns its log lines.
    pub(crate) fn finish(mut self) -> Vec<LogLine> {
        self.log.take().unwrap_or_default()
    }
}

impl Drop for BanWriter<'_> {
    fn drop(&mut self) {
        // Published while the write lock is still held: a lookup that sees the new `last`
        // blocks on the read lock until every record of this purge is in place.
        self.bans.last.fetch_max(self.seq, Ordering::SeqCst);
    }
}

impl Bans {
    /// The stamp for an object whose fill starts now.
    pub(crate) fn current(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Whether purges are logged (then records are never collected).
    pub(crate) fn persistent(&self) -> bool {
        self.persist.load(Ordering::Relaxed)
    }

    /// Starts recording a purge (one sequence number for everything in it).
    pub(crate) fn begin(&self, soft: bool, at: SystemTime) -> BanWriter<'_> {
        let records = self.records.write();
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let log = self.persistent().then(Vec::new);
        BanWriter {
            bans: self,
            records,
            seq,
            soft,
            at,
            log,
        }
    }

    /// Replays one purge-log line (at startup).
    pub(crate) fn restore(&self, line: &LogLine) {
        if line.kind == BanKind::Floor {
            self.disk_floor.fetch_max(line.seq, Ordering::SeqCst);
            return;
        }
        let at = line.at();
        if self
            .records
            .write()
            .set(line.kind, &line.value, line.seq, line.soft, at)
        {
            self.last.fetch_max(line.seq, Ordering::SeqCst);
        }
    }

    /// After a restore: numbering continues at `base` or above every restored purge, and
    /// from now on purges produce log lines.
    pub(crate) fn resume(&self, base: u64) {
        let floor = base.max(self.last.load(Ordering::SeqCst));
        self.seq.fetch_max(floor, Ordering::SeqCst);
        self.persist.store(true, Ordering::Relaxed);
    }

    /// Every record as log lines, oldest first (to compact the log). Records that an `all`
    /// purge made redundant are left out.
    pub(crate) fn snapshot(&self) -> Vec<LogLine> {
        let r = self.records.read();
        let all_hard = r.all.map_or(0, |a| a.hard);
        let live = |rec: &Record| rec.newest() > all_hard;
        let mut out = Vec::new();
        if let Some(all) = &r.all {
            all.lines(BanKind::All, "", &mut out);
        }
        for (pk, rec) in r.urls.iter().filter(|(_, rec)| live(rec)) {
            rec.lines(BanKind::Url, &hex(pk), &mut out);
        }
        for (h, rec) in r.hosts.iter().filter(|(_, rec)| live(rec)) {
            rec.lines(BanKind::Host, h, &mut out);
        }
        for (t, rec) in r.tags.iter().filter(|(_, rec)| live(rec)) {
            rec.lines(BanKind::Tag, t, &mut out);
        }
        for (p, rec) in r.prefixes.iter().filter(|(_, rec)| live(rec)) {
            rec.lines(BanKind::Prefix, p, &mut out);
        }
        let floor = self.disk_floor.load(Ordering::SeqCst);
        if floor > 0 {
            out.push(LogLine::new(
                floor,
                false,
                SystemTime::UNIX_EPOCH,
                BanKind::Floor,
                "",
            ));
        }
        out.sort_by_key(|l| l.seq);
        out
    }

    /// Judges an object read from the disk tier: below the disk floor it is gone.
    pub(crate) fn verdict_disk(&self, stamp: u64, info: Subject<'_>) -> Verdict {
        if stamp < self.disk_floor.load(Ordering::Relaxed) {
            return Verdict::Gone;
        }
        self.verdict(stamp, info)
    }

    /// Judges an object stamped `stamp`.
    pub(crate) fn verdict(&self, stamp: u64, info: Subject<'_>) -> Verdict {
        if stamp >= self.last.load(Ordering::SeqCst) {
            return Verdict::Keep;
        }
        let r = self.records.read();
        let mut v = Verdict::Keep;
        if let Some(all) = &r.all {
            all.judge(stamp, &mut v);
        }
        if let Some(rec) = r.urls.get(info.primary) {
            rec.judge(stamp, &mut v);
        }
        if let Some(rec) = r.hosts.get(info.host) {
            rec.judge(stamp, &mut v);
        }
        for tag in info.tags.iter() {
            if let Some(rec) = r.tags.get(tag) {
                rec.judge(stamp, &mut v);
            }
        }
        for &len in r.prefix_lens.keys() {
            let Some(head) = info.url.get(..len) else {
                // Longer than the URL (lengths are sorted) or not at a character boundary.
                if len > info.url.len() {
                    break;
                }
                continue;
            };
            if let Some(rec) = r.prefixes.get(head) {
                rec.judge(stamp, &mut v);
            }
        }
        v
    }

    /// Number of records (excluding "all").
    pub(crate) fn len(&self) -> usize {
        self.records.read().len()
    }

    /// Drops records no object can need any more: every one whose newest purge is at or
    /// below `floor` (no fill older than it is in flight and its eager removal finished)
    /// and older than `grace` (a request that started before it may still be on its way to
    /// the storage). Amortised: it does nothing until the record count doubled, unless
    /// `force`. With a disk tier (objects on disk are not indexed, only bans reach them),
    /// records go only when more than the durable limit are kept: the oldest half of those
    /// that may go is folded into the disk floor. Returns true when it folded (the purge log
    /// should then be compacted).
    pub(crate) fn gc(&self, floor: u64, grace: Duration, force: bool) -> bool {
        let mark = self.gc_mark.load(Ordering::Relaxed) as usize;
        let len = self.len();
        if !force && len < (mark * 2).max(1024) {
            return false;
        }
        let may_go = |rec: &Record| rec.newest() <= floor && rec.updated.elapsed() >= grace;
        if !self.persistent() {
            let mut r = self.records.write();
            r.retain(|rec| !may_go(rec));
            self.gc_mark.store(r.len() as u64, Ordering::Relaxed);
            return false;
        }
        let limit = self.durable_limit.load(Ordering::Relaxed) as usize;
        if len <= limit {
            return false;
        }
        let mut r = self.records.write();
        let mut newest = r.newest_of_each();
        let excess = newest.len().saturating_sub(limit / 2);
        if excess == 0 {
            return false;
        }
        // The cut: the `excess`-th oldest record. Everything at or below it that may go is
        // folded; the floor bans (on disk) what those records banned, and possibly more.
        let (_, &mut cut, _) = newest.select_nth_unstable(excess - 1);
        let cut = cut.min(floor);
        let dropped = r.retain(|rec| !(rec.newest() <= cut && may_go(rec)));
        self.gc_mark.store(r.len() as u64, Ordering::Relaxed);
        if dropped == 0 {
            return false;
        }
        self.disk_floor.fetch_max(dropped, Ordering::SeqCst);
        tracing::info!(
            kept = r.len(),
            disk_floor = dropped,
            "purge records folded: disk objects stored before purge {dropped} are misses now"
        );
        true
    }

    /// Lowers the durable limit (tests).
    #[cfg(test)]
    pub(crate) fn set_durable_limit(&self, n: usize) {
        self.durable_limit.store(n as u64, Ordering::Relaxed);
    }
}
