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

/// Combined keys of a URL's Vary variants (the primary slot included): usually one, kept
/// inline. (The URL and host are those of any variant's slot.)
type Variants = SmallVec<[HashBinary; 1]>;

/// See the module docs. Lives behind one mutex; every operation is O(1) or O(result).
#[derive(Debug, Default)]
pub(crate) struct Index {
    slots: Map<HashBinary, Slot>,
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
        let variants = self.primaries.entry(info.primary).or_default();
        if !variants.contains(&key) {
            variants.push(key);
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
        let empty = match self.primaries.get_mut(&pk) {
            Some(variants) => {
                variants.retain(|v| v != key);
                variants.is_empty()
            }
            None => false,
        };
        if empty && self.primaries.remove(&pk).is_some() {
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
    pub(crate) fn variants(&self, primary: &HashBinary) -> &[HashBinary] {
        self.primaries.get(primary).map_or(&[], |v| v.as_slice())
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
                out.extend(self.variants(pk).iter().copied());
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
            out.extend(self.variants(pk).iter().copied());
        }
    }

    /// Every object (only used to count an `all` purge).
    /// Empties the index and hands back the old contents, so the caller can free them
    /// after releasing its locks (dropping millions of entries takes a while).
    pub(crate) fn take(&mut self) -> Index {
        std::mem::take(self)
    }
}
