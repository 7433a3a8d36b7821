//! The stored object: serialized `CacheMeta`, the body as a list of `Bytes` chunks, and
//! what purges match on (URL, host, tags, purge stamp). Shared by the memory tier and
//! in-flight fills. Pure data: no locking, no I/O.

mod wire;

pub(crate) use wire::HeaderWire;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// At most this many tags are recorded per object (an origin could send thousands).
const MAX_TAGS: usize = 256;
/// Longer tags are ignored rather than truncated (a truncated tag would match the wrong purge).
const MAX_TAG_LEN: usize = 1024;

/// `CacheMeta::serialize()` output: (internal meta, response header).
pub(crate) type MetaBin = (Vec<u8>, Vec<u8>);

/// What purges match an object on. Shared (`Arc`) between a fill and the entry it becomes.
/// Fixed per-object memory outside the object's own bytes (see [`Entry::weight`]): moka's
/// node, the index slots, the `Entry` and `EntryInfo`, allocator rounding. Measured at
/// 1.2 to 1.6 KB (RSS growth per stored 1 KiB object, minus its body, header and meta).
pub(crate) const ENTRY_OVERHEAD: usize = 1280;

#[derive(Debug)]
pub(crate) struct EntryInfo {
    /// `key.primary_bin()`: every Vary variant of a URL has the same one.
    pub(crate) primary: HashBinary,
    /// The primary key string, a canonical URL such as `http://example.test/a.css?x=1`.
    pub(crate) url: Arc<str>,
    /// Where the lower-cased host (no port) is: inside `url` for every canonical key (no
    /// allocation per object), its own string for keys older versions spelled otherwise.
    host: HostName,
    /// From the stored `Surrogate-Key` and `Cache-Tag` headers.
    pub(crate) tags: Box<[Box<str>]>,
}

#[derive(Debug, Clone)]
enum HostName {
    In(u32, u32),
    Own(Arc<str>),
}

impl HostName {
    fn of(url: &str) -> Self {
        match crate::url::host_of_key(url) {
            Cow::Borrowed(h) => {
                // A borrowed host is a slice of `url`: its offset is the pointer difference.
                let start = (h.as_ptr() as usize).wrapping_sub(url.as_ptr() as usize);
                match (u32::try_from(start), u32::try_from(start + h.len())) {
                    (Ok(a), Ok(b)) if url.get(start..start + h.len()) == Some(h) => {
                        HostName::In(a, b)
                    }
                    _ => HostName::Own(Arc::from(h)),
                }
            }
            Cow::Owned(h) => HostName::Own(Arc::from(h)),
        }
    }
}

impl EntryInfo {
    /// The names a ban matches on.
    pub(crate) fn subject(&self) -> crate::cache::bans::Subject<'_> {
        crate::cache::bans::Subject {
            primary: &self.primary,
            url: &self.url,
            host: self.host(),
            tags: &self.tags,
        }
    }

    /// Lower-cased host of `url`, without port.
    pub(crate) fn host(&self) -> &str {
        match &self.host {
            HostName::In(a, b) => self.url.get(*a as usize..*b as usize).unwrap_or(""),
            HostName::Own(h) => h,
        }
    }

    pub(crate) fn new(primary: HashBinary, url: &str, header: &ResponseHeader) -> Self {
        Self::from_parts(primary, url, tags_of(header))
    }

    /// From stored parts (a disk head).
    pub(crate) fn from_parts(primary: HashBinary, url: &str, tags: Box<[Box<str>]>) -> Self {
        let url: Arc<str> = Arc::from(url);
        EntryInfo {
            primary,
            host: HostName::of(&url),
            url,
            tags,
        }
    }

    /// Same object, tags re-read from a new header (a 304 may change `Cache-Tag`).
    pub(crate) fn with_header(&self, header: &ResponseHeader) -> Self {
        EntryInfo {
            primary: self.primary,
            url: self.url.clone(),
            host: self.host.clone(),
            tags: tags_of(header),
        }
    }
}

/// An immutable body: chunks as received from the origin (never copied) and their offsets.
/// Most bodies are one contiguous buffer (see [`COALESCE_MAX`]): those keep it inline, with
/// no chunk list and no offset list (two allocations fewer per stored object).
#[derive(Debug)]
pub(crate) enum Body {
    One(Bytes),
    /// Boxed, so that a `Body` is no larger than its common case.
    Many(Box<Pieces>),
}

/// A body kept in several pieces (larger than [`COALESCE_MAX`]).
#[derive(Debug)]
pub(crate) struct Pieces {
    chunks: Vec<Bytes>,
    /// `starts[i]` is the offset of `chunks[i]` in the body.
    starts: Vec<usize>,
    len: usize,
}

impl Default for Body {
    fn default() -> Self {
        Body::new(Vec::new())
    }
}

/// Bodies up to this size are stored as one contiguous buffer: one copy when stored saves
/// a write per origin read piece on every hit (a 100 KiB object arrives in several pieces).
const COALESCE_MAX: usize = 4 << 20;

impl Body {
    pub(crate) fn new(mut chunks: Vec<Bytes>) -> Self {
        let total: usize = chunks.iter().map(Bytes::len).sum();
        if chunks.len() > 1 && total <= COALESCE_MAX {
            let mut one = bytes::BytesMut::with_capacity(total);
            for c in &chunks {
                one.extend_from_slice(c);
            }
            return Body::One(one.freeze());
        }
        if chunks.len() == 1 {
            if let Some(one) = chunks.pop() {
                // A piece as read from the origin may be a slice of a larger read buffer
                // (the header's, or a 64 KiB body buffer): keeping it would keep all of that.
                // One exact-size copy instead.
                return Body::One(Bytes::copy_from_slice(&one));
            }
        }
        let mut starts = Vec::with_capacity(chunks.len());
        let mut len = 0;
        for c in &chunks {
            starts.push(len);
            len += c.len();
        }
        Body::Many(Box::new(Pieces {
            chunks,
            starts,
            len,
        }))
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Body::One(b) => b.len(),
            Body::Many(p) => p.len,
        }
    }

    /// The chunk holding byte `offset` (which must be `< len`) and the chunk's start offset.
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        match self {
            Body::One(_) => (0, 0),
            Body::Many(p) => {
                let i = p.starts.partition_point(|&s| s <= offset).saturating_sub(1);
                (i, p.starts.get(i).copied().unwrap_or(0))
            }
        }
    }

    pub(crate) fn chunk(&self, i: usize) -> Option<&Bytes> {
        self.chunks().get(i)
    }

    pub(crate) fn chunks(&self) -> &[Bytes] {
        match self {
            Body::One(b) => std::slice::from_ref(b),
            Body::Many(p) => &p.chunks,
        }
    }
}

/// One stored object (one Vary variant of one URL).
#[derive(Debug)]
pub(crate) struct Entry {
    /// Unique per stored generation: index slots and lazy removals compare it so that a
    /// newer object under the same key is never removed by mistake.
    pub(crate) id: u64,
    /// The purge sequence number when its fill started (or its last revalidation): a ban
    /// with a higher sequence number applies to it.
    pub(crate) stamp: u64,
    pub(crate) meta: MetaBin,
    pub(crate) body: Arc<Body>,
    pub(crate) info: Arc<EntryInfo>,
    /// The response header in wire form: what hits rebuild it from (see `entry/wire.rs`).
    /// Charged in [`Entry::weight`].
    pub(crate) header: HeaderWire,
}

/// `CacheMeta::serialize()` header bytes of an empty header: deserializing the internal
/// meta with it is cheap, and the decoded header is put in afterwards.
pub(crate) fn empty_header_bin() -> Option<&'static [u8]> {
    static EMPTY: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    EMPTY
        .get_or_init(|| {
            let header = ResponseHeader::build(200, None).ok()?;
            let meta = CacheMeta::new(SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH, 0, 0, header);
            meta.serialize().ok().map(|(_, h)| h)
        })
        .as_deref()
}

/// `meta` as a `CacheMeta` with the header `header` gives (only the small internal part of
/// `meta` is deserialized); the whole of `meta` when `header` gives none.
pub(crate) fn cache_meta_with(
    meta: &MetaBin,
    header: impl FnOnce() -> Option<ResponseHeader>,
) -> pingora::Result<CacheMeta> {
    if let Some(empty) = empty_header_bin() {
        if let Some(h) = header() {
            let mut m = CacheMeta::deserialize(&meta.0, empty)?;
            *m.response_header_mut() = h;
            return Ok(m);
        }
    }
    CacheMeta::deserialize(&meta.0, &meta.1)
}

impl Entry {
    /// Bytes charged to the memory tier: serialized meta, the header's wire form, the body,
    /// plus the bookkeeping each object costs besides its bytes ([`ENTRY_OVERHEAD`], URL and
    /// tag strings), so `cache.memory` bounds the process, not just the payload.
    pub(crate) fn weight(&self) -> u64 {
        let strings = self.info.url.len() * 2
            + self.info.host().len()
            + self.info.tags.iter().map(|t| t.len() * 2).sum::<usize>();
        let bytes = self.meta.0.len() + self.meta.1.len() + self.header.len() + self.body.len();
        (bytes + ENTRY_OVERHEAD + strings) as u64
    }

    pub(crate) fn cache_meta(&self) -> pingora::Result<CacheMeta> {
        cache_meta_with(&self.meta, || self.header.decode().ok())
    }

    /// A copy whose meta is stale as of `at` (soft purge). Keeps id, stamp and body.
    pub(crate) fn expired_at(&self, at: SystemTime) -> pingora::Result<Entry> {
        Ok(Entry {
            id: self.id,
            stamp: self.stamp,
            meta: expire_bin(&self.meta, at)?,
            body: self.body.clone(),
            info: self.info.clone(),
            header: self.header.clone(),
        })
    }
}

/// Re-serializes `meta` with `fresh_until` moved to at most `at` (a lean meta stays lean:
/// only its internal part changes).
pub(crate) fn expire_bin(meta: &MetaBin, at: SystemTime) -> pingora::Result<MetaBin> {
    if meta.1.is_empty() {
        let empty = empty_header_bin().ok_or_else(|| {
            pingora::Error::explain(pingora::ErrorType::InternalError, "no empty header")
        })?;
        let mut m = CacheMeta::deserialize(&meta.0, empty)?;
        m.expire_at(at);
        return Ok((m.serialize()?.0, Vec::new()));
    }
    let mut m = CacheMeta::deserialize(&meta.0, &meta.1)?;
    m.expire_at(at);
    m.serialize()
}

/// The meta a memory-only object keeps: its internal part alone when the header's wire form
/// decodes (the header is rebuilt from that form on every hit, so pingora's zstd copy of it,
/// about 170 bytes for six fields, would only be weight). Objects that are also written to
/// a disk tier keep both parts: the disk head needs them.
pub(crate) fn lean_meta(meta: MetaBin, header: &HeaderWire) -> MetaBin {
    if header.decode().is_ok() {
        let mut internal = meta.0;
        internal.shrink_to_fit();
        (internal, Vec::new())
    } else {
        meta
    }
}

/// Tags from `Surrogate-Key` (space separated) and `Cache-Tag` (comma separated), deduplicated,
/// in header order. Case is kept: tags match exactly.
pub(crate) fn tags_of(header: &ResponseHeader) -> Box<[Box<str>]> {
    let mut seen = HashSet::new();
    let mut tags: Vec<Box<str>> = Vec::new();
    let surrogate = header.headers.get_all("surrogate-key").into_iter();
    let cache_tag = header.headers.get_all("cache-tag").into_iter();
    let words = surrogate
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split_ascii_whitespace());
    let items = cache_tag
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(',').map(str::trim));
    for tag in words.chain(items) {
        if tags.len() >= MAX_TAGS {
            break;
        }
        if !tag.is_empty() && tag.len() <= MAX_TAG_LEN && seen.insert(tag) {
            tags.push(tag.into());
        }
    }
    tags.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_found_inside_canonical_urls_and_kept_apart_for_old_spellings() {
        let cases = [
            ("http://example.test/a?x=1", "example.test", true),
            ("https://[::1]/p", "[::1]", true),
            ("http://example.test", "example.test", true),
            // Keys older versions wrote: a port or upper case is canonicalised.
            ("http://Example.TEST:8080/a", "example.test", false),
            // A port alone needs no copy: the host is still a slice of the key.
            ("http://example.test:80/a", "example.test", true),
        ];
        for (url, host, inside) in cases {
            let info = EntryInfo::from_parts([0; 16], url, Box::default());
            assert_eq!(info.host(), host, "{url}");
            assert_eq!(matches!(info.host, HostName::In(..)), inside, "{url}");
            assert_eq!(info.subject().host, host);
            let again = info.with_header(&ResponseHeader::build(200, None).expect("header"));
            assert_eq!(again.host(), host);
        }
    }

    #[test]
    fn bodies_do_not_keep_the_buffers_they_were_read_into() {
        let read = Bytes::from(vec![7u8; 4096]);
        let body = Body::new(vec![read.slice(100..1124)]);
        assert_eq!(body.len(), 1024);
        let Body::One(b) = &body else {
            panic!("one piece stays one piece");
        };
        // A copy, not a view into the 4 KiB read buffer.
        assert!(!std::ptr::eq(b.as_ptr(), read[100..].as_ptr()));
        assert_eq!(&b[..], &read[100..1124]);
    }
}
