//! Disk faults: corrupt records, entries of another format version, chunks that are gone
//! when a streamed hit needs them, a directory that can no longer be written, and paths
//! that cannot be used at all.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_entries_are_misses_and_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await;
    let disk = s.disk.as_ref().unwrap();
    let k = key("http://a.test/head").combined_bin();
    disk.put(DiskKey::head(k), b"OPH\x01garbage".to_vec());
    assert!(get(s, "http://a.test/head").await.is_none());

    // A body chunk that does not match its head: the object is a miss, never a bad body.
    put(s, "http://a.test/chunk", &[], &big_body(20_000)).await;
    let k = key("http://a.test/chunk").combined_bin();
    let head = disk.head(k).await.unwrap();
    // Overwrite the chunk only once it is flushed, and wait for the overwrite to land: a
    // record in foyer's write queue can briefly shadow a newer one for the same key.
    let chunk0 = DiskKey::chunk(k, head.gen, 0);
    disk.wait_flushed(&chunk0).await;
    disk.put(
        chunk0.clone(),
        crate::cache::storage::disk::encode_chunk_for_tests(b"tampered"),
    );
    disk.wait_flushed(&chunk0).await;
    let found = s
        .lookup(&key("http://a.test/chunk"), &span())
        .await
        .unwrap();
    if let Some((_, mut h)) = found {
        assert!(
            read_all(&mut h).await.is_err(),
            "a streamed corrupt chunk is an error"
        );
    }
    assert!(
        get(s, "http://a.test/chunk").await.is_none(),
        "removed after detection"
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_another_format_version_are_misses_and_never_degrade_the_tier() {
    // After an upgrade, every entry on disk may be of the old format: each is a miss, is
    // removed, and none of it looks like a failing device.
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await;
    let disk = s.disk.as_ref().unwrap();
    put(s, "http://a.test/current", &[], b"current").await;
    let current = disk
        .head(key("http://a.test/current").combined_bin())
        .await
        .unwrap();
    let mut old = current.encode();
    old[3] = 0; // format version 0
    let errors = s.disk_errors();
    for i in 0..20 {
        let url = format!("http://a.test/old{i}");
        let k = key(&url).combined_bin();
        disk.put(DiskKey::head(k), old.clone());
        assert!(
            get(s, &url).await.is_none(),
            "{url}: an old-format entry was served"
        );
        assert!(disk.head(k).await.is_none(), "{url}: not removed");
    }
    assert!(
        s.disk_errors() >= errors + 20,
        "old-format entries are counted"
    );
    let st = s.stats().disk.unwrap();
    assert_eq!((st.state, st.degraded_total), ("ok", 0), "{st:?}");
    assert_eq!(get(s, "http://a.test/current").await.unwrap(), b"current");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_cannot_be_written_takes_the_tier_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await;
    let disk = s.disk.as_ref().unwrap();
    put(s, "http://a.test/before", &[], &big_body(20_000)).await;
    let before = key("http://a.test/before").combined_bin();
    assert!(disk.head(before).await.is_some());
    disk.probe_now().await;
    assert_eq!(
        s.stats().disk.unwrap().state,
        "ok",
        "a writable directory passes"
    );

    // The probe file's name taken by a directory: creating the file fails, as it would on
    // a read-only or full filesystem.
    std::fs::create_dir(dir.path().join(".outpost-probe")).unwrap();
    disk.probe_now().await;
    let st = s.stats().disk.unwrap();
    assert_eq!((st.state, st.degraded_total), ("degraded", 1), "{st:?}");
    assert!(
        disk.head(before).await.is_none(),
        "lookups skip the tier while it is out"
    );
    // Small enough for memory (with a disk tier it would also be written through).
    put(s, "http://a.test/after", &[], &big_body(1000)).await;
    assert_eq!(
        get(s, "http://a.test/after").await.unwrap(),
        big_body(1000),
        "memory still serves"
    );
    disk.wait_all().await;
    let after = key("http://a.test/after").combined_bin();
    assert!(disk.holds_head(before), "still on disk, only skipped");
    assert!(!disk.holds_head(after), "nothing written while it is out");
    s.close().await;
}

#[tokio::test]
async fn an_unusable_disk_path_is_an_error_naming_it() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let disk = DiskConfig {
        path: file.path().join("sub"),
        size: 64 * MIB,
    };
    let err = Storage::open_parts(MIB, MIB, Some(&disk))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&file.path().display().to_string()), "{err}");
    let tiny = DiskConfig {
        path: file.path().with_extension("d"),
        size: MIB,
    };
    let err = Storage::open_parts(MIB, MIB, Some(&tiny))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("too small"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_disk_hit_with_a_missing_chunk_is_a_miss_never_a_partial_body() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await; // memory keeps objects up to 8 KiB
    let body = big_body(700_000); // 3 disk chunks of 256 KiB
    put(s, "http://a.test/big", &[], &body).await;
    let k = key("http://a.test/big").combined_bin();
    let head = s.disk.as_ref().unwrap().head(k).await.unwrap();
    assert_eq!(head.chunk_crcs.len(), 3);
    lose_chunks(s, k, head.gen, 1..2).await;

    let errors = s.disk_errors();
    assert!(
        s.lookup(&key("http://a.test/big"), &span())
            .await
            .unwrap()
            .is_none(),
        "an object that cannot be served whole is a miss"
    );
    // Process-wide counter (other tests run in parallel): at least this one.
    assert!(s.disk_errors() > errors, "counted as a disk error");
    assert!(get(s, "http://a.test/big").await.is_none(), "and removed");

    // The same object stored again is served whole.
    put(s, "http://a.test/big", &[], &body).await;
    assert!(get(s, "http://a.test/big").await.unwrap() == body);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_disk_hit_that_loses_a_chunk_mid_body_fails_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * 1024).await;
    let body = big_body(700_000);
    put(s, "http://a.test/big", &[], &body).await;
    let k = key("http://a.test/big").combined_bin();
    let head = s.disk.as_ref().unwrap().head(k).await.unwrap();
    s.disk.as_ref().unwrap().wait_all().await;
    let (_, mut h) = s
        .lookup(&key("http://a.test/big"), &span())
        .await
        .unwrap()
        .unwrap();
    let first = h.read_body().await.unwrap().unwrap();
    assert!(first[..] == body[..first.len()]);
    lose_chunks(s, k, head.gen, 2..3).await;
    let errors = s.disk_errors();
    assert!(
        read_all(&mut h).await.is_err(),
        "an error, never a clean EOF"
    );
    assert!(s.disk_errors() > errors);
    assert!(get(s, "http://a.test/big").await.is_none(), "removed");
    s.close().await;
}
