//! Ban records retire with a disk tier: past the durable limit the oldest half is folded
//! into the disk floor, the purge log shrinks with them, and a purged object never returns.

use super::*;

async fn open_small_limit(dir: &Path, limit: usize) -> &'static Storage {
    let disk = DiskConfig {
        path: dir.to_path_buf(),
        size: 64 * MIB,
    };
    let mut s = Storage::open_parts(MIB, 16 * MIB, Some(&disk))
        .await
        .unwrap();
    s.ban_grace = Duration::ZERO;
    s.bans.set_durable_limit(limit);
    Box::leak(Box::new(s))
}

fn log_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("outpost-purges.log"))
        .unwrap()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_fold_into_the_disk_floor_and_the_log_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_small_limit(dir.path(), 200).await;
    put(s, "http://a.test/old", &[], b"old").await;
    put(s, "http://a.test/purged", &[("cache-tag", "p")], b"purged").await;
    purge(s, r#"{"urls":["http://a.test/purged"]}"#).await;
    for i in 0..400 {
        purge(s, &format!(r#"{{"tags":["t{i}"]}}"#)).await;
    }
    let before = log_lines(dir.path());
    assert!(before > 400, "one log line per purge ({before})");
    assert!(s.bans.len() > 400);
    s.retire_bans(true).await;
    let kept = s.bans.len();
    assert!((1..=200).contains(&kept), "kept {kept} records");
    let after = log_lines(dir.path());
    assert!(after <= kept + 2, "log compacted to {after} lines");
    // Memory objects are indexed: the fold does not touch them.
    assert_eq!(get(s, "http://a.test/old").await.unwrap(), b"old");
    put(s, "http://a.test/new", &[], b"new").await;
    purge(s, r#"{"tags":["after-fold"]}"#).await;
    s.close().await;

    // After a restart only the disk is left: below the floor is a miss (never the purged
    // body), what was stored after the fold is a hit.
    let s = open_small_limit(dir.path(), 200).await;
    assert!(
        get(s, "http://a.test/purged").await.is_none(),
        "purged stays purged"
    );
    assert!(
        get(s, "http://a.test/old").await.is_none(),
        "below the disk floor: refetched"
    );
    assert_eq!(get(s, "http://a.test/new").await.unwrap(), b"new");
    assert!(
        s.bans.len() <= kept + 1,
        "the log replays only what was kept"
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_limit_nothing_is_folded() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_small_limit(dir.path(), 1000).await;
    put(s, "http://a.test/old", &[], b"old").await;
    for i in 0..300 {
        purge(s, &format!(r#"{{"prefixes":["http://a.test/p{i}/"]}}"#)).await;
    }
    s.retire_bans(true).await;
    assert_eq!(
        s.bans.len(),
        300,
        "with a disk tier records stay until the limit"
    );
    s.close().await;
    let s = open_small_limit(dir.path(), 1000).await;
    assert_eq!(get(s, "http://a.test/old").await.unwrap(), b"old");
    s.close().await;
}
