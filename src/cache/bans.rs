//! Ban records: what makes a purge O(1) instead of a scan. Every object carries the purge
//! sequence number current when its fill started (its stamp); a purge takes the next number
//! and records it per URL / host / tag / prefix / "all". A lookup compares the object's stamp
//! with the records that match it, so purged objects die lazily and in-flight fills that
//! started before a purge can never resurrect it. With a disk tier the records are also
//! written to the purge log (`log.rs`) and replayed at startup.

pub(crate) mod log;

use log::{BanKind, LogLine};
use parking_lot::RwLock;
use pingora_cache::key::HashBinary;
use std::collections::HashMap;
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

#[derive(Debug, Default)]
struct Records {
    all: Option<Record>,
    urls: HashMap<HashBinary, Record>,
    hosts: HashMap<Box<str>, Record>,
    tags: HashMap<Box<str>, Record>,
    /// Checked by a linear scan: prefix purges are rare (and collected without a disk tier).
    prefixes: Vec<(Box<str>, Record)>,
}

impl Records {
    fn len(&self) -> usize {
        self.urls.len() + self.hosts.len() + self.tags.len() + self.prefixes.len()
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
                let i = match self.prefixes.iter().position(|(p, _)| &**p == value) {
                    Some(i) => i,
                    None => {
                        self.prefixes.push((value.into(), Record::new()));
                        self.prefixes.len() - 1
                    }
                };
                &mut self.prefixes[i].1
            }
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
#[derive(Debug, Default)]
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
        out.sort_by_key(|l| l.seq);
        out
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
        for (prefix, rec) in &r.prefixes {
            if info.url.starts_with(&**prefix) {
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
    /// `force`. Never with a disk tier: objects on disk are not indexed, only bans reach them.
    pub(crate) fn gc(&self, floor: u64, grace: Duration, force: bool) {
        let mark = self.gc_mark.load(Ordering::Relaxed) as usize;
        if self.persistent() || (!force && self.len() < (mark * 2).max(1024)) {
            return;
        }
        let mut r = self.records.write();
        let keep = |rec: &Record| rec.newest() > floor || rec.updated.elapsed() < grace;
        r.urls.retain(|_, rec| keep(rec));
        r.hosts.retain(|_, rec| keep(rec));
        r.tags.retain(|_, rec| keep(rec));
        r.prefixes.retain(|(_, rec)| keep(rec));
        self.gc_mark.store(r.len() as u64, Ordering::Relaxed);
    }
}
