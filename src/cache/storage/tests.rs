//! Storage tests: drive the pingora `Storage` trait and the purge engine directly.
//! Run with `cargo test --lib cache::storage` (purge parsing: `cache::purge`).

use super::entry::EntryInfo;
use super::fill::Fill;
use super::*;
use crate::cache::purge::PurgeRequest;
use bytes::Bytes;
use futures::FutureExt;
use pingora::http::ResponseHeader;
use pingora_cache::key::hash_key;
use pingora_cache::key::CacheHashKey;
use pingora_cache::storage::{
    HitHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage as StorageTrait,
};
use pingora_cache::trace::Span;
use pingora_cache::trace::SpanHandle;
use pingora_cache::CacheMeta;
use std::time::Instant;

mod disk;
mod passthrough;

fn leak(memory: u64) -> &'static Storage {
    Box::leak(Box::new(Storage::with_memory(memory, false)))
}

fn span() -> SpanHandle {
    Span::inactive().handle()
}

fn meta(headers: &[(&str, &str)], ttl: u64) -> CacheMeta {
    let mut h = ResponseHeader::build(200, None).unwrap();
    for (k, v) in headers {
        h.append_header(k.to_string(), *v).unwrap();
    }
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(ttl), now, 10, 60, h)
}

fn key(url: &str) -> CacheKey {
    CacheKey::new(url, "")
}

fn variant(url: &str, v: &str) -> CacheKey {
    let mut k = key(url);
    k.set_variance_key(hash_key(v));
    k
}

async fn put_key(s: &'static Storage, k: &CacheKey, headers: &[(&str, &str)], body: &[&[u8]]) {
    let mut w = s
        .get_miss_handler(k, &meta(headers, 300), &span())
        .await
        .unwrap();
    for chunk in body {
        w.write_body(Bytes::copy_from_slice(chunk), false)
            .await
            .unwrap();
    }
    w.finish().await.unwrap();
}

async fn put(s: &'static Storage, url: &str, headers: &[(&str, &str)], body: &[u8]) {
    put_key(s, &key(url), headers, &[body]).await;
}

async fn read_all(h: &mut HitHandler) -> pingora::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(b) = h.read_body().await? {
        out.extend_from_slice(&b);
    }
    Ok(out)
}

async fn get_key(s: &'static Storage, k: &CacheKey) -> Option<(CacheMeta, Vec<u8>)> {
    let (m, mut h) = s.lookup(k, &span()).await.unwrap()?;
    Some((m, read_all(&mut h).await.unwrap()))
}

async fn get(s: &'static Storage, url: &str) -> Option<Vec<u8>> {
    get_key(s, &key(url)).await.map(|(_, b)| b)
}

async fn purge(s: &'static Storage, json: &str) -> crate::cache::purge::PurgeResult {
    let req = PurgeRequest::from_json(json.as_bytes()).unwrap();
    let purge = req.resolve(&crate::url::QueryFilter::default()).unwrap();
    crate::cache::purge::run(s, &purge).await
}

#[tokio::test]
async fn miss_then_write_then_finish_is_a_hit_with_the_exact_body() {
    let s = leak(1 << 20);
    assert!(s
        .lookup(&key("http://a.test/x"), &span())
        .await
        .unwrap()
        .is_none());
    put_key(
        s,
        &key("http://a.test/x"),
        &[("x-h", "1")],
        &[b"hello ", b"", b"world"],
    )
    .await;
    let (m, body) = get_key(s, &key("http://a.test/x")).await.unwrap();
    assert_eq!(body, b"hello world");
    assert_eq!(m.headers().get("x-h").unwrap(), "1");
    assert!(m.is_fresh(SystemTime::now()));
    let (_, h) = s
        .lookup(&key("http://a.test/x"), &span())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Storage::hit_tier(&h), Tier::Memory);
    let st = s.stats();
    assert_eq!(
        (st.memory.hits, st.memory.misses, st.memory.objects),
        (2, 1, 1)
    );
    assert!(st.memory.bytes >= 11);
}

#[tokio::test]
async fn streaming_readers_see_chunks_before_finish() {
    let s = leak(1 << 20);
    let k = key("http://a.test/stream");
    let mut w = s
        .get_miss_handler(&k, &meta(&[], 60), &span())
        .await
        .unwrap();
    let tag = w.streaming_write_tag().unwrap().to_vec();
    let (_, mut own) = s
        .lookup_streaming_write(&k, Some(&tag), &span())
        .await
        .unwrap()
        .unwrap();
    let (_, mut other) = s.lookup(&k, &span()).await.unwrap().unwrap();
    assert!(!other.can_seek(), "partial hits cannot seek");
    assert!(
        other.read_body().now_or_never().is_none(),
        "nothing written yet"
    );

    w.write_body(Bytes::from_static(b"one"), false)
        .await
        .unwrap();
    assert_eq!(other.read_body().await.unwrap().unwrap(), "one");
    assert_eq!(own.read_body().await.unwrap().unwrap(), "one");
    assert!(other.read_body().now_or_never().is_none());

    w.write_body(Bytes::from_static(b"two"), false)
        .await
        .unwrap();
    let (_, mut late) = s.lookup(&k, &span()).await.unwrap().unwrap();
    assert_eq!(read_prefix(&mut late, 6).await, b"onetwo");
    w.finish().await.unwrap();
    assert_eq!(other.read_body().await.unwrap().unwrap(), "two");
    assert!(other.read_body().await.unwrap().is_none());
    assert_eq!(read_all(&mut own).await.unwrap(), b"two");
    assert!(late.read_body().await.unwrap().is_none());
    assert_eq!(get(s, "http://a.test/stream").await.unwrap(), b"onetwo");
}

async fn read_prefix(h: &mut HitHandler, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend_from_slice(&h.read_body().await.unwrap().unwrap());
    }
    out
}

#[tokio::test]
async fn dropped_writer_gives_readers_an_error_and_stores_nothing() {
    let s = leak(1 << 20);
    let k = key("http://a.test/fail");
    let mut w = s
        .get_miss_handler(&k, &meta(&[], 60), &span())
        .await
        .unwrap();
    let (_, mut r) = s.lookup(&k, &span()).await.unwrap().unwrap();
    w.write_body(Bytes::from_static(b"partial"), false)
        .await
        .unwrap();
    assert_eq!(r.read_body().await.unwrap().unwrap(), "partial");
    drop(w);
    assert!(
        r.read_body().await.is_err(),
        "a failed fill must not look like a clean EOF"
    );
    assert!(s.lookup(&k, &span()).await.unwrap().is_none());
    assert_eq!(s.stats().memory.objects, 0);
}

#[tokio::test]
async fn byte_bound_holds_after_inserting_four_times_capacity() {
    let capacity = 256 * 1024;
    let s = leak(capacity);
    let body = vec![7u8; 4000];
    for i in 0..(4 * capacity as usize / body.len()) {
        put(s, &format!("http://a.test/{i}"), &[], &body).await;
    }
    s.sync().await;
    let st = s.stats().memory;
    println!("after 4x capacity: {st:?}");
    assert!(
        st.bytes as f64 <= capacity as f64 * 1.05,
        "{} > {capacity} * 1.05",
        st.bytes
    );
    assert!(
        st.bytes > capacity / 2,
        "the tier should stay mostly full: {}",
        st.bytes
    );
    assert_eq!(
        s.index.lock().len() as u64,
        st.objects,
        "index follows evictions"
    );
    // The most recent object survived (LRU).
    let last = 4 * capacity as usize / body.len() - 1;
    assert!(get(s, &format!("http://a.test/{last}")).await.is_some());
}

#[tokio::test]
async fn objects_over_half_the_memory_are_streamed_but_not_kept() {
    let s = leak(10_000);
    put(s, "http://a.test/big", &[], &[1u8; 6000]).await;
    assert!(get(s, "http://a.test/big").await.is_none());
}

#[tokio::test]
async fn complete_hits_seek_single_and_multipart_ranges() {
    let s = leak(1 << 20);
    put_key(s, &key("http://a.test/r"), &[], &[b"0123", b"4567", b"89"]).await;
    let (_, mut h) = s
        .lookup(&key("http://a.test/r"), &span())
        .await
        .unwrap()
        .unwrap();
    assert!(h.can_seek() && h.can_seek_multipart());
    assert!(h.seek(10, None).is_err(), "start past the end");
    h.seek(3, Some(7)).unwrap();
    assert_eq!(read_all(&mut h).await.unwrap(), b"3456");
    h.seek_multipart(0, Some(2)).unwrap();
    assert_eq!(read_all(&mut h).await.unwrap(), b"01");
    h.seek_multipart(8, Some(100)).unwrap();
    assert_eq!(read_all(&mut h).await.unwrap(), b"89");
    h.seek(4, None).unwrap();
    assert_eq!(read_all(&mut h).await.unwrap(), b"456789");
}

#[tokio::test]
async fn update_meta_on_a_missing_key_is_false_not_a_panic() {
    let s = leak(1 << 20);
    let updated = s
        .update_meta(&key("http://a.test/none"), &meta(&[], 60), &span())
        .await;
    assert!(!updated.unwrap());
}

#[tokio::test]
async fn update_meta_replaces_header_and_tags_and_keeps_the_body() {
    let s = leak(1 << 20);
    put(s, "http://a.test/u", &[("cache-tag", "old")], b"body").await;
    let fresh = meta(&[("cache-tag", "new"), ("etag", "\"2\"")], 600);
    assert!(s
        .update_meta(&key("http://a.test/u"), &fresh, &span())
        .await
        .unwrap());
    let (m, body) = get_key(s, &key("http://a.test/u")).await.unwrap();
    assert_eq!(
        (m.headers().get("etag").unwrap().as_bytes(), body.as_slice()),
        (&b"\"2\""[..], &b"body"[..])
    );
    assert_eq!(purge(s, r#"{"tags":["old"]}"#).await.purged, Some(0));
    assert_eq!(purge(s, r#"{"tags":["new"]}"#).await.purged, Some(1));
    assert!(get(s, "http://a.test/u").await.is_none());
}

#[tokio::test]
async fn purge_by_url_removes_every_variant() {
    let s = leak(1 << 20);
    let url = "http://a.test/v";
    put_key(s, &key(url), &[], &[b"primary"]).await;
    put_key(s, &variant(url, "gzip"), &[], &[b"gz"]).await;
    put_key(s, &variant(url, "br"), &[], &[b"br"]).await;
    put(s, "http://a.test/other", &[], b"other").await;
    let r = purge(s, r#"{"urls":["http://A.test/v"]}"#).await;
    assert_eq!(r.purged, Some(3));
    assert_eq!(
        r.counts.url, 2,
        "one URL names the object under both schemes"
    );
    for k in [key(url), variant(url, "gzip"), variant(url, "br")] {
        assert!(s.lookup(&k, &span()).await.unwrap().is_none());
    }
    assert_eq!(get(s, "http://a.test/other").await.unwrap(), b"other");
}

#[tokio::test]
async fn pingora_purge_of_the_primary_key_removes_every_variant() {
    let s = leak(1 << 20);
    let url = "http://a.test/pv";
    put_key(s, &key(url), &[], &[b"primary"]).await;
    put_key(s, &variant(url, "gzip"), &[], &[b"gz"]).await;
    let compact = key(url).to_compact();
    let out = s
        .purge(
            PurgeTarget::Active(&compact),
            PurgeType::Invalidation,
            &span(),
        )
        .await
        .unwrap();
    assert_eq!(out, PurgeOutcome::Purged(None));
    assert!(s
        .lookup(&variant(url, "gzip"), &span())
        .await
        .unwrap()
        .is_none());
    let again = s
        .purge(
            PurgeTarget::Active(&compact),
            PurgeType::Invalidation,
            &span(),
        )
        .await
        .unwrap();
    assert_eq!(again, PurgeOutcome::NotFound);
    s.sync().await;
    assert_eq!(s.stats().memory.objects, 0);
}

#[tokio::test]
async fn purge_by_tag_matches_surrogate_key_and_cache_tag() {
    let s = leak(1 << 20);
    put(
        s,
        "http://a.test/1",
        &[("surrogate-key", "p-1  shared")],
        b"1",
    )
    .await;
    put(s, "http://a.test/2", &[("cache-tag", "p-2, shared")], b"2").await;
    put(s, "http://a.test/3", &[("cache-tag", "p-3")], b"3").await;
    let r = purge(s, r#"{"tags":["shared"]}"#).await;
    assert_eq!((r.purged, r.counts.tag), (Some(2), 1));
    assert!(get(s, "http://a.test/1").await.is_none());
    assert!(get(s, "http://a.test/2").await.is_none());
    assert_eq!(get(s, "http://a.test/3").await.unwrap(), b"3");
}

#[tokio::test]
async fn purge_by_prefix_is_case_insensitive_on_the_host_only() {
    let s = leak(1 << 20);
    put(s, "http://a.test/img/1.png", &[], b"1").await;
    put(s, "http://a.test/img/sub/2.png", &[], b"2").await;
    put(s, "http://a.test/IMG/3.png", &[], b"3").await;
    put(s, "http://a.test/imgs", &[], b"4").await;
    let r = purge(s, r#"{"prefixes":["HTTP://A.TEST/img/"]}"#).await;
    assert_eq!(r.purged, Some(2));
    assert!(get(s, "http://a.test/img/1.png").await.is_none());
    assert!(get(s, "http://a.test/img/sub/2.png").await.is_none());
    assert!(get(s, "http://a.test/IMG/3.png").await.is_some());
    assert!(get(s, "http://a.test/imgs").await.is_some());
}

#[tokio::test]
async fn purge_by_host_matches_any_scheme_and_port() {
    let s = leak(1 << 20);
    put(s, "http://a.test/1", &[], b"1").await;
    put(s, "https://a.test:8443/2", &[], b"2").await;
    put(s, "http://b.test/1", &[], b"3").await;
    let r = purge(s, r#"{"hosts":["A.test"]}"#).await;
    assert_eq!(r.purged, Some(2));
    assert!(get(s, "http://a.test/1").await.is_none());
    assert!(get(s, "https://a.test:8443/2").await.is_none());
    assert_eq!(get(s, "http://b.test/1").await.unwrap(), b"3");
}

#[tokio::test]
async fn purge_all_empties_the_cache_and_later_fills_are_kept() {
    let s = leak(1 << 20);
    put(s, "http://a.test/1", &[], b"1").await;
    put(s, "http://b.test/2", &[], b"2").await;
    let r = purge(s, r#"{"all":true}"#).await;
    assert_eq!((r.purged, r.counts.all), (Some(2), 1));
    assert!(get(s, "http://a.test/1").await.is_none());
    assert!(get(s, "http://b.test/2").await.is_none());
    put(s, "http://a.test/1", &[], b"new").await;
    assert_eq!(get(s, "http://a.test/1").await.unwrap(), b"new");
    s.sync().await;
    assert_eq!(s.stats().memory.objects, 1);
}

#[tokio::test]
async fn soft_purge_keeps_the_body_but_makes_it_stale_until_revalidated() {
    let s = leak(1 << 20);
    put(s, "http://a.test/s", &[("cache-tag", "t")], b"body").await;
    put(s, "http://a.test/fresh", &[], b"f").await;
    let r = purge(s, r#"{"tags":["t"],"soft":true}"#).await;
    assert_eq!(r.purged, Some(1));
    let (m, body) = get_key(s, &key("http://a.test/s")).await.unwrap();
    assert_eq!(body, b"body");
    let now = SystemTime::now();
    assert!(!m.is_fresh(now), "soft-purged object must revalidate");
    assert!(m.serve_stale_while_revalidate(now) && m.serve_stale_if_error(now));
    let (m, _) = get_key(s, &key("http://a.test/fresh")).await.unwrap();
    assert!(m.is_fresh(now), "unrelated object untouched");
    // A 304 revalidation after the purge makes it fresh again.
    assert!(s
        .update_meta(
            &key("http://a.test/s"),
            &meta(&[("cache-tag", "t")], 60),
            &span()
        )
        .await
        .unwrap());
    let (m, _) = get_key(s, &key("http://a.test/s")).await.unwrap();
    assert!(m.is_fresh(SystemTime::now()));
}

#[tokio::test]
async fn pingora_expire_marks_stale_and_keeps_the_body() {
    let s = leak(1 << 20);
    put(s, "http://a.test/e", &[], b"body").await;
    let compact = key("http://a.test/e").to_compact();
    assert_eq!(
        s.expire(PurgeTarget::Active(&compact), &span())
            .await
            .unwrap(),
        PurgeOutcome::Expired
    );
    let (m, body) = get_key(s, &key("http://a.test/e")).await.unwrap();
    assert!(!m.is_fresh(SystemTime::now()));
    assert_eq!(body, b"body");
    let missing = key("http://a.test/none").to_compact();
    assert_eq!(
        s.expire(PurgeTarget::Active(&missing), &span())
            .await
            .unwrap(),
        PurgeOutcome::NotFound
    );
}

#[tokio::test]
async fn a_fill_started_before_a_purge_is_not_stored() {
    let s = leak(1 << 20);
    for (json, url, tag) in [
        (r#"{"urls":["http://a.test/f1"]}"#, "http://a.test/f1", "x"),
        (r#"{"tags":["t2"]}"#, "http://a.test/f2", "t2"),
        (
            r#"{"prefixes":["http://a.test/f"]}"#,
            "http://a.test/f3",
            "x",
        ),
        (r#"{"hosts":["a.test"]}"#, "http://a.test/f4", "x"),
        (r#"{"all":true}"#, "http://a.test/f5", "x"),
    ] {
        let k = key(url);
        let mut w = s
            .get_miss_handler(&k, &meta(&[("cache-tag", tag)], 60), &span())
            .await
            .unwrap();
        w.write_body(Bytes::from_static(b"old"), false)
            .await
            .unwrap();
        purge(s, json).await;
        assert!(
            s.lookup(&k, &span()).await.unwrap().is_none(),
            "{json}: no new reader joins a purged fill"
        );
        w.finish().await.unwrap();
        assert!(
            get(s, url).await.is_none(),
            "{json}: purged content resurrected"
        );
        put(s, url, &[("cache-tag", tag)], b"new").await;
        assert_eq!(
            get(s, url).await.unwrap(),
            b"new",
            "{json}: a fill after the purge is kept"
        );
    }
}

#[tokio::test]
async fn a_purge_epoch_taken_before_the_purge_wins_over_a_later_fill() {
    let s = leak(1 << 20);
    let mut k = key("http://a.test/epoch");
    k.extensions.insert(s.purge_epoch());
    purge(s, r#"{"urls":["http://a.test/epoch"]}"#).await;
    put_key(s, &k, &[], &[b"old"]).await;
    assert!(get(s, "http://a.test/epoch").await.is_none());
}

#[tokio::test]
async fn update_meta_after_a_hard_purge_does_not_resurrect() {
    let s = leak(1 << 20);
    put(s, "http://a.test/h", &[("cache-tag", "big")], b"x").await;
    // Simulate lazy removal not having happened yet: ban only.
    let banned = s.ban(false, SystemTime::now(), |_, w, _| {
        w.tag("big");
        None
    });
    assert!(banned.seq > 0);
    assert!(!s
        .update_meta(&key("http://a.test/h"), &meta(&[], 60), &span())
        .await
        .unwrap());
    assert!(get(s, "http://a.test/h").await.is_none());
}

#[tokio::test]
async fn ban_records_are_collected_once_applied() {
    let mut st = Storage::with_memory(1 << 20, false);
    st.ban_grace = Duration::ZERO;
    let s: &'static Storage = Box::leak(Box::new(st));
    for i in 0..50 {
        put(s, &format!("http://a.test/{i}"), &[], b"x").await;
        purge(s, &format!(r#"{{"urls":["http://a.test/{i}"]}}"#)).await;
    }
    assert!(s.bans.len() >= 50);
    s.gc_bans(true);
    assert_eq!(s.bans.len(), 0);
    put(s, "http://a.test/1", &[], b"y").await;
    assert_eq!(get(s, "http://a.test/1").await.unwrap(), b"y");
}

#[tokio::test]
async fn tag_purge_of_100k_objects_returns_quickly() {
    let s = leak(1 << 30);
    let n = 100_000u64;
    let header = meta(&[("cache-tag", "hot, other")], 600);
    let bin = header.serialize().unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        let url = format!("http://a.test/p/{i}");
        let k = key(&url);
        let info = Arc::new(EntryInfo::new(
            k.primary_bin(),
            &url,
            header.response_header(),
        ));
        let fill = Fill::new(
            s.ids.fetch_add(1, Ordering::Relaxed),
            k.combined_bin(),
            0,
            bin.clone(),
            info,
        );
        s.commit(
            &fill,
            fill::Completed::Memory(vec![Bytes::from_static(b"0123456789")]),
        )
        .await;
    }
    put(s, "http://a.test/keep", &[("cache-tag", "cold")], b"k").await;
    println!("inserted {n} objects in {:?}", t0.elapsed());
    let r = purge(s, r#"{"tags":["hot"]}"#).await;
    println!(
        "tag purge of {n} objects: took {:?}, purged {:?}",
        r.took, r.purged
    );
    assert_eq!(r.purged, Some(n));
    assert!(get(s, "http://a.test/p/0").await.is_none());
    assert!(get(s, "http://a.test/p/99999").await.is_none());
    assert_eq!(get(s, "http://a.test/keep").await.unwrap(), b"k");
    let t1 = Instant::now();
    while s.stats().memory.objects > 1 && t1.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.sync().await;
    }
    println!("background removal finished in {:?}", t1.elapsed());
    assert_eq!(s.stats().memory.objects, 1);
}

#[test]
fn tags_and_hosts_are_parsed_like_a_cdn() {
    let mut h = ResponseHeader::build(200, None).unwrap();
    h.append_header("Surrogate-Key", "a  b a").unwrap();
    h.append_header("Cache-Tag", " c, ,b,d ").unwrap();
    let tags = entry::tags_of(&h);
    let tags: Vec<&str> = tags.iter().map(|t| &**t).collect();
    assert_eq!(tags, ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn memory_only_objects_keep_a_lean_meta_that_hits_and_soft_purges_alike() {
    let s = leak(1 << 20);
    let headers = [("content-type", "text/css"), ("etag", "\"e1\"")];
    put(s, "http://a.test/lean", &headers, b"lean body").await;
    let entry = s
        .memory
        .get(&key("http://a.test/lean").combined_bin())
        .await
        .unwrap();
    assert!(
        entry.meta.1.is_empty(),
        "no zstd copy of the header in memory"
    );
    let (m, body) = get_key(s, &key("http://a.test/lean")).await.unwrap();
    assert_eq!(body, b"lean body");
    assert!(m.is_fresh(SystemTime::now()));
    assert_eq!(m.response_header().headers["etag"], "\"e1\"");
    let hit = s.fresh_hit(&key("http://a.test/lean")).await.unwrap();
    assert_eq!(hit.header.headers["content-type"], "text/css");
    assert_eq!(hit.body.chunks().concat(), b"lean body");
    purge(s, r#"{"urls":["http://a.test/lean"],"soft":true}"#).await;
    assert!(
        s.fresh_hit(&key("http://a.test/lean")).await.is_none(),
        "soft-purged: full path"
    );
    let (m, body) = get_key(s, &key("http://a.test/lean")).await.unwrap();
    assert!(
        !m.is_fresh(SystemTime::now()) && body == b"lean body",
        "stale, body kept"
    );
    assert_eq!(m.response_header().headers["etag"], "\"e1\"");
}
