//! Secondary indexes over the memory tier: URL → Vary variants, host → URLs, tag → objects,
//! and an ordered URL set for prefix ranges. Purges use them to count and eagerly remove
//! matching objects in O(matching); they are never scanned whole. Kept in step with moka by
//! its eviction listener (slots carry the entry id so a stale removal never hits a newer one).

use super::entry::EntryInfo;
use pingora_cache::key::HashBinary;
use smallvec::SmallVec;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

/// Seeded per process like std's `RandomState`, several times faster than SipHash on the
/// 16-byte keys every fill and eviction inserts or removes.
type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;
type Set<K> = HashSet<K, foldhash::quality::RandomState>;

/// A set of combined keys (what a purge matched).
pub(crate) type KeySet = Set<HashBinary>;

#[derive(Debug)]
struct Slot {
    id: u64,
    info: Arc<EntryInfo>,
}

/// Combined keys of a URL's Vary variants (the primary slot included), inline for one. (The
/// URL and host are those of any variant's slot.)
pub(crate) type Variants = SmallVec<[HashBinary; 1]>;

/// See the module docs. Lives behind one mutex; every operation is O(1) or O(result).
#[derive(Debug, Default)]
pub(crate) struct Index {
    slots: Map<HashBinary, Slot>,
    /// Variant lists of URLs stored with Vary. A URL stored once under its primary key (no
    /// Vary: the common case) has none: its one object is the slot under that key.
    primaries: Map<HashBinary, Variants>,
    urls: BTreeSet<(Arc<str>, HashBinary)>,
    /// Host → primary keys: one string per host, not per object.
    hosts: Map<Box<str>, Set<HashBinary>>,
    tags: Map<Box<str>, Set<HashBinary>>,
}

impl Index {
    /// Number of indexed objects.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Records object `key` (a combined key), replacing what was there.
    pub(crate) fn insert(&mut self, key: HashBinary, id: u64, info: &Arc<EntryInfo>) {
        if let Some(old) = self.slots.get(&key) {
            let old_id = old.id;
            self.remove(&key, Some(old_id));
        }
        for tag in info.tags.iter() {
            self.tags.entry(tag.clone()).or_default().insert(key);
        }
        let pk = info.primary;
        if key != pk || self.primaries.contains_key(&pk) {
            let slots = &self.slots;
            let variants = self.primaries.entry(pk).or_insert_with(|| {
                // The URL's object under its primary key, if stored, was its implicit variant.
                let mut v = Variants::new();
                if slots.contains_key(&pk) {
                    v.push(pk);
                }
                v
            });
            if !variants.contains(&key) {
                variants.push(key);
            }
        }
        self.urls.insert((info.url.clone(), info.primary));
        match self.hosts.get_mut(info.host()) {
            Some(set) => {
                set.insert(info.primary);
            }
            None => {
                let mut set = Set::default();
                set.insert(info.primary);
                self.hosts.insert(info.host().into(), set);
            }
        }
        self.slots.insert(
            key,
            Slot {
                id,
                info: info.clone(),
            },
        );
    }

    /// Forgets object `key` if its id is `id` (any id when `None`). True if removed.
    pub(crate) fn remove(&mut self, key: &HashBinary, id: Option<u64>) -> bool {
        match self.slots.get(key) {
            Some(slot) if id.is_none_or(|id| id == slot.id) => {}
            _ => return false,
        }
        let Some(slot) = self.slots.remove(key) else {
            return false;
        };
        self.untag(key, &slot.info);
        let pk = slot.info.primary;
        let gone = match self.primaries.get_mut(&pk) {
            Some(variants) => {
                variants.retain(|v| v != key);
                variants.is_empty() && self.primaries.remove(&pk).is_some()
            }
            // No list: the URL's one object was this one, under its primary key.
            None => *key == pk,
        };
        if gone {
            // Every variant of a URL has its URL and host: the last one's name them.
            self.urls.remove(&(slot.info.url.clone(), pk));
            let host = slot.info.host();
            if let Some(set) = self.hosts.get_mut(host) {
                set.remove(&pk);
                if set.is_empty() {
                    self.hosts.remove(host);
                }
            }
        }
        true
    }

    /// Replaces the tags of object `key` (a 304 may bring a new `Cache-Tag`).
    pub(crate) fn retag(&mut self, key: &HashBinary, id: u64, info: &Arc<EntryInfo>) {
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        if slot.id != id || slot.info.tags == info.tags {
            return;
        }
        let old = slot.info.clone();
        self.untag(key, &old);
        for tag in info.tags.iter() {
            self.tags.entry(tag.clone()).or_default().insert(*key);
        }
        if let Some(slot) = self.slots.get_mut(key) {
            slot.info = info.clone();
        }
    }

    fn untag(&mut self, key: &HashBinary, info: &EntryInfo) {
        for tag in info.tags.iter() {
            if let Some(set) = self.tags.get_mut(tag) {
                set.remove(key);
                if set.is_empty() {
                    self.tags.remove(tag);
                }
            }
        }
    }

    /// The object keys of every variant of URL `primary`.
    pub(crate) fn variants(&self, primary: &HashBinary) -> Variants {
        match self.primaries.get(primary) {
            Some(v) => v.clone(),
            None if self.slots.contains_key(primary) => smallvec::smallvec![*primary],
            None => Variants::new(),
        }
    }

    /// The primary keys indexed under exactly this URL.
    pub(crate) fn primaries_of_url(&self, url: &str) -> Vec<HashBinary> {
        let start: (Arc<str>, HashBinary) = (Arc::from(url), [0; 16]);
        self.urls
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(|(u, _)| &**u == url)
            .map(|(_, p)| *p)
            .collect()
    }

    /// Objects tagged `tag`. With `take`, the tag's set is moved out (hard purge: the objects
    /// are about to go, their other index entries are dropped as they are evicted).
    pub(crate) fn tagged(&mut self, tag: &str, take: bool, out: &mut KeySet) {
        if take {
            if let Some(set) = self.tags.remove(tag) {
                if out.is_empty() {
                    *out = set;
                } else {
                    out.extend(set);
                }
            }
        } else if let Some(set) = self.tags.get(tag) {
            out.extend(set.iter().copied());
        }
    }

    /// Objects of every URL on `host` (lower-cased, no port).
    pub(crate) fn on_host(&self, host: &str, out: &mut KeySet) {
        if let Some(set) = self.hosts.get(host) {
            for pk in set {
                out.extend(self.variants(pk));
            }
        }
    }

    /// Objects whose URL starts with `prefix`: an ordered range, O(log n + matches).
    pub(crate) fn with_prefix(&self, prefix: &str, out: &mut KeySet) {
        let start: (Arc<str>, HashBinary) = (Arc::from(prefix), [0; 16]);
        for (url, pk) in self.urls.range((Bound::Included(start), Bound::Unbounded)) {
            if !url.starts_with(prefix) {
                break;
            }
            out.extend(self.variants(pk));
        }
    }

    /// Every object (only used to count an `all` purge).
    /// Empties the index and hands back the old contents, so the caller can free them
    /// after releasing its locks (dropping millions of entries takes a while).
    pub(crate) fn take(&mut self) -> Index {
        std::mem::take(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(primary: u8, url: &str, tags: &[&str]) -> Arc<EntryInfo> {
        let tags = tags.iter().map(|t| Box::from(*t)).collect();
        Arc::new(EntryInfo::from_parts([primary; 16], url, tags))
    }

    fn found(f: impl FnOnce(&mut KeySet)) -> Vec<HashBinary> {
        let mut out = KeySet::default();
        f(&mut out);
        let mut v: Vec<_> = out.into_iter().collect();
        v.sort();
        v
    }

    /// Everything the index answers about `a` (primary [1; 16]) and `b` ([2; 16]).
    fn answers(idx: &mut Index) -> (usize, Vec<HashBinary>, Vec<HashBinary>, Vec<HashBinary>) {
        (
            idx.len(),
            idx.variants(&[1; 16]).to_vec(),
            found(|o| idx.on_host("a.test", o)),
            found(|o| idx.with_prefix("http://a.test/", o)),
        )
    }

    #[test]
    fn plain_urls_and_vary_variants_are_indexed_and_forgotten_in_any_order() {
        let a = info(1, "http://a.test/x", &["t"]);
        let (pa, v1, v2) = ([1; 16], [11; 16], [12; 16]);
        let mut idx = Index::default();
        // A plain object: its primary key is its only variant.
        idx.insert(pa, 1, &a);
        idx.insert([2; 16], 2, &info(2, "http://b.test/y", &[]));
        assert_eq!(answers(&mut idx), (2, vec![pa], vec![pa], vec![pa]));
        assert!(
            idx.primaries.is_empty(),
            "plain objects need no variant list"
        );
        assert_eq!(idx.primaries_of_url("http://a.test/x"), vec![pa]);
        // Two Vary variants join it.
        idx.insert(v1, 3, &a);
        idx.insert(v2, 4, &a);
        assert_eq!(
            answers(&mut idx),
            (4, vec![pa, v1, v2], vec![pa, v1, v2], vec![pa, v1, v2])
        );
        // The primary object goes first: the URL stays while a variant does.
        assert!(idx.remove(&pa, Some(1)));
        assert_eq!(answers(&mut idx).1, vec![v1, v2]);
        assert!(!idx.remove(&v1, Some(99)), "a stale id removes nothing");
        assert!(idx.remove(&v1, Some(3)));
        assert_eq!(answers(&mut idx), (2, vec![v2], vec![v2], vec![v2]));
        assert!(idx.remove(&v2, None));
        assert_eq!(answers(&mut idx), (1, vec![], vec![], vec![]));
        assert!(idx.primaries_of_url("http://a.test/x").is_empty());
        assert!(found(|o| idx.tagged("t", false, o)).is_empty());
        // A variant first, then the plain object, then removed the other way round.
        idx.insert(v1, 5, &a);
        idx.insert(pa, 6, &a);
        assert_eq!(answers(&mut idx).1, vec![v1, pa]);
        assert!(idx.remove(&v1, None));
        assert_eq!(answers(&mut idx), (2, vec![pa], vec![pa], vec![pa]));
        // Replacing the plain object keeps it indexed once.
        idx.insert(pa, 7, &a);
        assert_eq!(answers(&mut idx), (2, vec![pa], vec![pa], vec![pa]));
        assert!(!idx.remove(&pa, Some(6)));
        assert!(idx.remove(&pa, Some(7)));
        assert_eq!(answers(&mut idx), (1, vec![], vec![], vec![]));
        assert!(idx.primaries.is_empty());
        assert_eq!(found(|o| idx.on_host("b.test", o)), vec![[2; 16]]);
    }
}
