//! Ban records: what makes a purge O(1) instead of a scan. Every object carries the purge
//! sequence number current when its fill started (its stamp); a purge takes the next number
//! and records it per URL / host / tag / prefix / "all". A lookup compares the object's stamp
//! with the records that match it, so purged objects die lazily and in-flight fills that
//! started before a purge can never resurrect it.

use crate::cache::storage::entry::EntryInfo;
use parking_lot::RwLock;
use pingora_cache::key::HashBinary;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
pub(crate) struct Record {
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
        if soft {
            self.soft = seq;
            self.soft_at = at;
        } else {
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
}

#[derive(Debug, Default)]
struct Records {
    all: Option<Record>,
    urls: HashMap<HashBinary, Record>,
    hosts: HashMap<Box<str>, Record>,
    tags: HashMap<Box<str>, Record>,
    /// Checked by a linear scan: prefix purges are rare and garbage-collected.
    prefixes: Vec<(Box<str>, Record)>,
}

impl Records {
    fn len(&self) -> usize {
        self.urls.len() + self.hosts.len() + self.tags.len() + self.prefixes.len()
    }
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
}

/// A purge being recorded: holds the write lock, so the lookups it races see all or nothing.
pub(crate) struct BanWriter<'a> {
    bans: &'a Bans,
    records: parking_lot::RwLockWriteGuard<'a, Records>,
    /// The sequence number of this purge.
    pub(crate) seq: u64,
    soft: bool,
    at: SystemTime,
}

impl BanWriter<'_> {
    pub(crate) fn url(&mut self, primary: HashBinary) {
        let (seq, soft, at) = (self.seq, self.soft, self.at);
        self.records
            .urls
            .entry(primary)
            .or_insert_with(Record::new)
            .set(seq, soft, at);
    }

    pub(crate) fn host(&mut self, host: &str) {
        let (seq, soft, at) = (self.seq, self.soft, self.at);
        self.records
            .hosts
            .entry(host.into())
            .or_insert_with(Record::new)
            .set(seq, soft, at);
    }

    pub(crate) fn tag(&mut self, tag: &str) {
        let (seq, soft, at) = (self.seq, self.soft, self.at);
        self.records
            .tags
            .entry(tag.into())
            .or_insert_with(Record::new)
            .set(seq, soft, at);
    }

    pub(crate) fn prefix(&mut self, prefix: &str) {
        let (seq, soft, at) = (self.seq, self.soft, self.at);
        let prefixes = &mut self.records.prefixes;
        match prefixes.iter_mut().find(|(p, _)| &**p == prefix) {
            Some((_, r)) => r.set(seq, soft, at),
            None => {
                let mut r = Record::new();
                r.set(seq, soft, at);
                prefixes.push((prefix.into(), r));
            }
        }
    }

    pub(crate) fn all(&mut self) {
        let (seq, soft, at) = (self.seq, self.soft, self.at);
        self.records
            .all
            .get_or_insert_with(Record::new)
            .set(seq, soft, at);
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

    /// Starts recording a purge (one sequence number for everything in it).
    pub(crate) fn begin(&self, soft: bool, at: SystemTime) -> BanWriter<'_> {
        let records = self.records.write();
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        BanWriter {
            bans: self,
            records,
            seq,
            soft,
            at,
        }
    }

    /// Judges an object stamped `stamp`.
    pub(crate) fn verdict(&self, stamp: u64, info: &EntryInfo) -> Verdict {
        if stamp >= self.last.load(Ordering::SeqCst) {
            return Verdict::Keep;
        }
        let r = self.records.read();
        let mut v = Verdict::Keep;
        if let Some(all) = &r.all {
            all.judge(stamp, &mut v);
        }
        if let Some(rec) = r.urls.get(&info.primary) {
            rec.judge(stamp, &mut v);
        }
        if let Some(rec) = r.hosts.get(&*info.host) {
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
    /// the storage). Amortised: it does nothing until the record count doubled, unless `force`.
    pub(crate) fn gc(&self, floor: u64, grace: Duration, force: bool) {
        let mark = self.gc_mark.load(Ordering::Relaxed) as usize;
        if !force && self.len() < (mark * 2).max(1024) {
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
