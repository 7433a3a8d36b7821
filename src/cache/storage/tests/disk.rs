//! Disk tier tests on tempdirs: write-through, restart, promotion, streaming of large
//! objects, purges that survive a restart, spilling fills; faults in `disk/faults.rs`.

use super::super::disk::DiskKey;
use super::*;
use crate::config::DiskConfig;
use pingora_cache::key::HashBinary;
use pingora_cache::storage::streaming_write::U64WriteId;
use std::path::Path;

mod faults;
mod retire;

const MIB: u64 = 1 << 20;

async fn open(dir: &Path, memory: u64) -> &'static Storage {
    let disk = DiskConfig {
        path: dir.to_path_buf(),
        size: 64 * MIB,
    };
    let s = Storage::open_parts(memory, 16 * MIB, Some(&disk))
        .await
        .unwrap();
    Box::leak(Box::new(s))
}

async fn tier_of(s: &'static Storage, url: &str) -> Option<Tier> {
    let (_, h) = s.lookup(&key(url), &span()).await.unwrap()?;
    Some(Storage::hit_tier(&h))
}

fn big_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_a_restart_and_are_promoted_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), MIB).await;
    put(s, "http://a.test/x", &[("cache-tag", "t")], b"persisted").await;
    assert_eq!(s.stats().disk.unwrap().tier.objects, 1, "written through");
    s.close().await;

    let s = open(dir.path(), MIB).await;
    assert_eq!(tier_of(s, "http://a.test/x").await, Some(Tier::Disk));
    assert_eq!(get(s, "http://a.test/x").await.unwrap(), b"persisted");
    assert_eq!(
        tier_of(s, "http://a.test/x").await,
        Some(Tier::Memory),
        "promoted"
    );
    let st = s.stats();
    assert_eq!((st.disk.unwrap().tier.hits, st.memory.hits), (1, 2));
    assert!(get(s, "http://a.test/none").await.is_none());
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_too_big_for_memory_stream_from_disk_and_seek() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await; // memory keeps objects up to 8 KiB
    let body = big_body(700_000); // 3 disk chunks of 256 KiB
    put_key(
        s,
        &key("http://a.test/big"),
        &[],
        &[&body[..100_000], &body[100_000..]],
    )
    .await;
    assert_eq!(s.stats().memory.objects, 0);
    let (_, mut h) = s
        .lookup(&key("http://a.test/big"), &span())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Storage::hit_tier(&h), Tier::Disk);
    assert!(read_all(&mut h).await.unwrap() == body);
    assert!(h.can_seek());
    h.seek(262_000, Some(530_000)).unwrap();
    assert!(read_all(&mut h).await.unwrap() == body[262_000..530_000]);
    h.seek_multipart(699_990, None).unwrap();
    assert!(read_all(&mut h).await.unwrap() == body[699_990..]);
    assert!(h.seek(700_000, None).is_err());
    assert_eq!(
        tier_of(s, "http://a.test/big").await,
        Some(Tier::Disk),
        "never promoted"
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), MIB).await;
    put(s, "http://a.test/tagged", &[("surrogate-key", "t")], b"1").await;
    put(s, "http://a.test/url", &[], b"2").await;
    put(s, "http://a.test/soft", &[], b"3").await;
    put(s, "http://b.test/keep", &[], b"4").await;
    let r = purge(s, r#"{"tags":["t"]}"#).await;
    assert_eq!(r.purged, None, "counts are unknown with a disk tier");
    purge(s, r#"{"urls":["http://a.test/url"]}"#).await;
    purge(s, r#"{"urls":["http://a.test/soft"],"soft":true}"#).await;
    s.close().await;

    let s = open(dir.path(), MIB).await;
    assert!(get(s, "http://a.test/tagged").await.is_none());
    assert!(get(s, "http://a.test/url").await.is_none());
    let (m, body) = get_key(s, &key("http://a.test/soft")).await.unwrap();
    assert!(
        !m.is_fresh(SystemTime::now()) && body == b"3",
        "soft purge: stale, body kept"
    );
    assert_eq!(get(s, "http://b.test/keep").await.unwrap(), b"4");
    // A purge after the restart still reaches objects stamped by the previous run.
    purge(s, r#"{"hosts":["b.test"]}"#).await;
    assert!(get(s, "http://b.test/keep").await.is_none());
    put(s, "http://a.test/tagged", &[("surrogate-key", "t")], b"new").await;
    s.close().await;

    let s = open(dir.path(), MIB).await;
    assert!(get(s, "http://b.test/keep").await.is_none());
    assert_eq!(
        get(s, "http://a.test/tagged").await.unwrap(),
        b"new",
        "refilled after the purge"
    );
    s.close().await;
}

const CRASH_DIR: &str = "OUTPOST_TEST_CRASH_DIR";

/// The child half of `objects_and_purges_survive_kill_9`: fills, purges, reports, waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by objects_and_purges_survive_kill_9 in a child process"]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let s = open(Path::new(&dir), MIB).await;
    for i in 0..20 {
        put(
            s,
            &format!("http://a.test/{i}"),
            &[("cache-tag", &format!("t{i}"))],
            &big_body(100_000),
        )
        .await;
    }
    purge(s, r#"{"tags":["t3"]}"#).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("CRASH-CHILD-READY");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_purges_survive_kill_9() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cache::storage::tests::disk::crash_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("CRASH-CHILD-READY"));
    child.kill().unwrap(); // SIGKILL: no close, no flush on exit
    child.wait().unwrap();
    assert!(ready, "child did not get ready");

    let s = open(dir.path(), MIB).await;
    let mut found = 0;
    for i in 0..20 {
        match get(s, &format!("http://a.test/{i}")).await {
            Some(body) => {
                assert!(body == big_body(100_000), "object {i} came back damaged");
                found += 1;
            }
            None => assert_eq!(i, 3, "object {i} lost"),
        }
    }
    assert!(
        get(s, "http://a.test/3").await.is_none(),
        "purge lost by kill -9"
    );
    assert_eq!(found, 19);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_larger_than_memory_spills_to_disk_and_still_streams() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await; // memory keeps objects up to 8 KiB
    let body = big_body(600_000); // disk chunks of 256 KiB
    let k = key("http://a.test/spill");
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
    let mut seen = Vec::new();
    for (i, piece) in body.chunks(4096).enumerate() {
        w.write_body(Bytes::copy_from_slice(piece), false)
            .await
            .unwrap();
        if i == 10 {
            let (_, mut early) = s.lookup(&k, &span()).await.unwrap().unwrap();
            // What was in memory before the spill is readable at once.
            assert_eq!(read_prefix(&mut early, 8192).await[..8192], body[..8192]);
        }
        while let Some(Ok(Some(b))) = own.read_body().now_or_never() {
            seen.extend_from_slice(&b);
        }
    }
    assert!(
        seen.len() >= 512 * 1024,
        "readers get each chunk as it is spilled: {}",
        seen.len()
    );
    let fill = s
        .fills
        .by_id(u64::from(U64WriteId::try_from(&tag[..]).unwrap()))
        .unwrap();
    assert!(
        fill.mem_bytes() <= 8 * 1024 + 4096,
        "memory stays bounded: {}",
        fill.mem_bytes()
    );
    let (_, mut late) = s.lookup(&k, &span()).await.unwrap().unwrap();
    w.finish().await.unwrap();
    seen.extend(read_all(&mut own).await.unwrap());
    assert!(seen == body, "the writer's own reader gets the exact body");
    assert!(
        read_all(&mut late).await.unwrap() == body,
        "a late reader too"
    );
    assert_eq!(tier_of(s, "http://a.test/spill").await, Some(Tier::Disk));
    assert!(get(s, "http://a.test/spill").await.unwrap() == body);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_spilling_fill_stops_writing_to_disk_and_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskConfig {
        path: dir.path().to_path_buf(),
        size: 64 * MIB,
    };
    // Memory keeps objects up to 8 KiB, max_object 1 MiB, disk chunks of 256 KiB.
    let s = Storage::open_parts(64 * 1024, MIB, Some(&disk))
        .await
        .unwrap();
    let s: &'static Storage = Box::leak(Box::new(s));
    let tier = s.disk.as_ref().unwrap();
    let chunk = tier.chunk_size();
    let body = big_body(3 * MIB as usize + 1000);
    let k = key("http://a.test/oversized");
    let mut w = s
        .get_miss_handler(&k, &meta(&[], 60), &span())
        .await
        .unwrap();
    let tag = w.streaming_write_tag().unwrap().to_vec();
    let id = u64::from(U64WriteId::try_from(&tag[..]).unwrap());
    let (_, mut own) = s
        .lookup_streaming_write(&k, Some(&tag), &span())
        .await
        .unwrap()
        .unwrap();
    let fill = s.fills.by_id(id).unwrap();
    let mut seen = Vec::new();
    for piece in body.chunks(64 * 1024) {
        w.write_body(Bytes::copy_from_slice(piece), false)
            .await
            .unwrap();
        while let Some(Ok(Some(b))) = own.read_body().now_or_never() {
            seen.extend_from_slice(&b);
        }
    }
    assert!(fill.passing());
    let done = w.finish().await.unwrap();
    assert!(matches!(
        done,
        pingora_cache::storage::MissFinishType::Created(0)
    ));
    seen.extend(read_all(&mut own).await.unwrap());
    assert_eq!(seen.len(), body.len());
    assert!(seen == body, "the reader gets the exact body");
    assert!(fill.retained_bytes() <= 64 * 1024);
    drop(own);
    assert!(s.lookup(&k, &span()).await.unwrap().is_none(), "not stored");
    assert_eq!(s.stats().disk.unwrap().tier.objects, 0);
    // Nothing past max_object was ever written to disk.
    let k = k.combined_bin();
    for part in (MIB as usize / chunk)..(body.len() / chunk + 1) {
        let loaded = tier.load_chunk(k, id, part, 0, chunk).await;
        assert_eq!(
            loaded.err().map(|e| e.0),
            Some("missing chunk"),
            "part {part}"
        );
    }
    drop(fill);
    // Chunks spilled before the switch are dropped too (one still in foyer's write queue
    // stays readable until flushed, then the newer tombstone wins).
    let t0 = std::time::Instant::now();
    for part in 0..(MIB as usize / chunk) {
        loop {
            let loaded = tier.load_chunk(k, id, part, 0, chunk).await;
            if loaded.err().map(|e| e.0) == Some("missing chunk") {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "part {part} kept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    s.close().await;
}

/// Forgets disk chunks `parts` of generation `gen` as if foyer had dropped them, and waits
/// until lookups no longer find them.
async fn lose_chunks(s: &'static Storage, k: HashBinary, gen: u64, parts: std::ops::Range<usize>) {
    let tier = s.disk.as_ref().unwrap();
    tier.wait_all().await;
    for part in parts.clone() {
        tier.remove_chunk(k, gen, part);
    }
    tier.wait_all().await;
    for part in parts {
        let loaded = tier.load_chunk(k, gen, part, 0, 1).await;
        assert_eq!(
            loaded.err().map(|e| e.0),
            Some("missing chunk"),
            "part {part}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_a_spilling_fill_do_not_depend_on_the_spilled_copy() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await; // memory keeps objects up to 8 KiB
    let body = big_body(1_200_000); // disk chunks of 256 KiB
    let k = key("http://a.test/spill-lost");
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
    let (_, mut early) = s.lookup(&k, &span()).await.unwrap().unwrap();
    let id = u64::from(U64WriteId::try_from(&tag[..]).unwrap());
    for piece in body.chunks(4096) {
        w.write_body(Bytes::copy_from_slice(piece), false)
            .await
            .unwrap();
    }
    // Every chunk spilled so far is lost; the readers have not read any of it yet.
    lose_chunks(s, k.combined_bin(), id, 0..4).await;
    w.finish().await.unwrap();
    assert!(
        read_all(&mut own).await.unwrap() == body,
        "the writer's own reader gets the exact body from memory"
    );
    assert!(
        read_all(&mut early).await.unwrap() == body,
        "so does another"
    );
    assert!(
        get(s, "http://a.test/spill-lost").await.is_none(),
        "not stored"
    );
    assert_eq!(s.stats().disk.unwrap().tier.objects, 0);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reader_never_joins_a_fill_whose_spilled_chunk_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await;
    let body = big_body(1_200_000);
    let k = key("http://a.test/spill-late");
    let mut w = s
        .get_miss_handler(&k, &meta(&[], 60), &span())
        .await
        .unwrap();
    let tag = w.streaming_write_tag().unwrap().to_vec();
    let id = u64::from(U64WriteId::try_from(&tag[..]).unwrap());
    let (_, mut own) = s
        .lookup_streaming_write(&k, Some(&tag), &span())
        .await
        .unwrap()
        .unwrap();
    let fill = s.fills.by_id(id).unwrap();
    let mut seen = Vec::new();
    let (first, rest) = body.split_at(800_000);
    for piece in first.chunks(4096) {
        w.write_body(Bytes::copy_from_slice(piece), false)
            .await
            .unwrap();
        while let Some(Ok(Some(b))) = own.read_body().now_or_never() {
            seen.extend_from_slice(&b);
        }
    }
    assert!(
        fill.retained_bytes() <= 8 * 1024 + 4096,
        "what every reader read is dropped from memory: {}",
        fill.retained_bytes()
    );
    lose_chunks(s, k.combined_bin(), id, 1..2).await;
    let errors = s.disk_errors();
    assert!(
        s.lookup(&k, &span()).await.unwrap().is_none(),
        "a reader that would read the lost chunk back does not join"
    );
    assert!(s.disk_errors() > errors);
    assert!(fill.passing(), "the fill is no longer stored");
    for piece in rest.chunks(4096) {
        w.write_body(Bytes::copy_from_slice(piece), false)
            .await
            .unwrap();
    }
    assert!(matches!(
        w.finish().await.unwrap(),
        pingora_cache::storage::MissFinishType::Created(0)
    ));
    seen.extend(read_all(&mut own).await.unwrap());
    assert!(seen == body, "the attached reader still gets every byte");
    drop((own, fill));
    assert!(get(s, "http://a.test/spill-late").await.is_none());
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_writes_in_a_row_wait_for_the_flushers_and_are_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await; // disk objects up to 8 MiB, budget 8 MiB
    let body = big_body(6 * MIB as usize);
    for i in 0..4 {
        let k = key(&format!("http://a.test/large/{i}"));
        let mut w = s
            .get_miss_handler(&k, &meta(&[], 60), &span())
            .await
            .unwrap();
        for piece in body.chunks(64 * 1024) {
            w.write_body(Bytes::copy_from_slice(piece), false)
                .await
                .unwrap();
        }
        w.finish().await.unwrap();
    }
    for i in 0..4 {
        let url = format!("http://a.test/large/{i}");
        assert_eq!(tier_of(s, &url).await, Some(Tier::Disk), "{url}");
        assert!(get(s, &url).await.unwrap() == body, "{url}");
    }
    let tier = s.disk.as_ref().unwrap();
    assert!(
        tier.submitted() <= 8 * MIB + 2 * MIB,
        "writers waited for the flushers: {} bytes outstanding",
        tier.submitted()
    );
    s.close().await;
}

#[test]
fn max_storable_is_the_largest_body_a_tier_takes() {
    let mut s = Storage::with_memory(64 * MIB, false);
    s.max_object = 16 * MIB;
    assert_eq!(s.max_storable(), 16 * MIB);
    s.max_object = u64::MAX;
    assert_eq!(
        s.max_storable(),
        32 * MIB,
        "memory only: half the memory tier"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_storable_is_bounded_by_the_disk_tier() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskConfig {
        path: dir.path().to_path_buf(),
        size: 64 * MIB,
    };
    let s = Storage::open_parts(MIB, 2048 * MIB, Some(&disk))
        .await
        .unwrap();
    assert_eq!(s.max_storable(), 8 * MIB, "cache.disk.size / 8");
    s.close().await;
    let s = Storage::open_parts(MIB, 4 * MIB, Some(&disk))
        .await
        .unwrap();
    assert_eq!(s.max_storable(), 4 * MIB, "cache.max_object");
    s.close().await;
}

/// Problem A of benches/RESULTS.md: concurrent writers could queue records out of sequence
/// order, and foyer's recovery drops the rest of a block at the first such record (this
/// lost 300 to 550 of the 3200 objects before `DiskTier::put` serialized submissions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_fills_at_once_all_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), MIB).await;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            tokio::spawn(async move {
                for i in 0..400 {
                    let url = format!("http://a.test/small/{t}/{i}");
                    put(s, &url, &[], url.as_bytes()).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    s.close().await;
    let s = open(dir.path(), 64 * 1024).await;
    let mut lost = 0;
    for t in 0..8 {
        for i in 0..400 {
            let url = format!("http://a.test/small/{t}/{i}");
            match get(s, &url).await {
                Some(b) => assert_eq!(b, url.as_bytes()),
                None => lost += 1,
            }
        }
    }
    assert_eq!(lost, 0, "objects lost across a restart");
    s.close().await;
}
