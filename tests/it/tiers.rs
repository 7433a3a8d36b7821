//! The disk tier (interface.md §4 "Tiers", §5 purge, §1 exit codes): objects survive clean
//! and unclean restarts, a purge holds across a restart, corrupt files are misses (never a
//! wrong body), read errors while running degrade the cache to memory only (no request
//! fails), objects larger than memory are served byte-exact (Range too), disk hits are
//! promoted, the tier stays within its size, and an unusable path makes `run` exit 1.

use crate::support::{
    eventually, ms, parse_metric, run_outpost, Origin, OriginSpec, Outpost, Reply, Req,
};
use std::time::Duration;

fn versioned(req: &Req) -> Reply {
    Reply::ok(format!("{} v{}", req.path, req.n)).header("cache-control", "max-age=600")
}

async fn disk_site(origin: &Origin) -> Outpost {
    Outpost::builder()
        .token()
        .disk("64MiB")
        .site("*", origin)
        .start()
        .await
}

async fn assert_hit(outpost: &Outpost, origin: &Origin, path: &str, when: &str) {
    let r = outpost.get("site.test", path).await;
    assert!(
        r.is_hit(),
        "{path} not a hit {when}: {r:?}\n{}",
        outpost.output()
    );
    assert_eq!(r.text(), format!("{path} v1"), "{when}");
    assert_eq!(origin.hits(path), 1, "{path} {when}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_survives_clean_restart() {
    let origin = Origin::new().handler("/d", versioned).start().await;
    let mut outpost = disk_site(&origin).await;

    assert_eq!(outpost.get("site.test", "/d").await.text(), "/d v1");
    outpost.restart(true).await;
    assert_hit(&outpost, &origin, "/d", "after SIGTERM and restart").await;
    // The disk tier's counts carry over the restart.
    let status = outpost.admin_get("/status").await.json();
    let disk = &status["cache"]["disk"];
    assert_eq!(disk["objects"], 1, "{status}");
    assert!(disk["bytes"].as_u64().is_some_and(|b| b > 0), "{status}");
    let metric = outpost
        .metric("outpost_cache_objects", &[("tier", "disk")])
        .await;
    assert_eq!(metric, 1.0);
    // A hard purge of everything starts them over.
    outpost.purge(r#"{"all": true}"#).await;
    let status = outpost.admin_get("/status").await.json();
    assert_eq!(status["cache"]["disk"]["objects"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_survives_unclean_restart() {
    let origin = Origin::new().handler("/d", versioned).start().await;
    let mut outpost = disk_site(&origin).await;

    assert_eq!(outpost.get("site.test", "/d").await.text(), "/d v1");
    // Slack for a write-behind disk tier; the contract has no explicit flush.
    tokio::time::sleep(ms(1000)).await;
    outpost.restart(false).await;
    assert_hit(&outpost, &origin, "/d", "after SIGKILL and restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_purge_holds_across_restart() {
    let origin = Origin::new()
        .handler("/gone", versioned)
        .handler("/kept", versioned)
        .start()
        .await;
    let mut outpost = disk_site(&origin).await;
    for path in ["/gone", "/kept"] {
        outpost.get("site.test", path).await;
    }

    outpost
        .purge(r#"{"urls": ["http://site.test/gone"]}"#)
        .await;
    outpost.restart(true).await;
    let r = outpost.get("site.test", "/gone").await;
    assert_eq!(
        r.text(),
        "/gone v2",
        "purged object came back after a restart: {r:?}"
    );
    assert_hit(&outpost, &origin, "/kept", "after a restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_tier_stays_within_its_byte_bound() {
    let origin = Origin::new()
        .handler("/obj", |r| {
            Reply::ok(vec![b'm'; 100 * 1024])
                .header("cache-control", "max-age=600")
                .header("x-n", r.n.to_string())
        })
        .start()
        .await;
    let outpost = Outpost::builder()
        .set("cache", "memory", r#""1MiB""#)
        .site("*", &origin)
        .start()
        .await;

    // 30 distinct objects of 100 KiB: three times the memory bound.
    for i in 0..30 {
        let r = outpost.get("site.test", &format!("/obj?i={i}")).await;
        assert_eq!(r.body.len(), 100 * 1024);
    }
    let bounded = eventually(Duration::from_secs(3), || async {
        let status = outpost.admin_get("/status").await.json();
        status["cache"]["memory"]["bytes"]
            .as_u64()
            .is_some_and(|b| b > 0 && b <= 1024 * 1024)
    })
    .await;
    let status = outpost.admin_get("/status").await.json();
    assert!(bounded, "memory tier over 1MiB: {}", status["cache"]);
    let gauge = outpost
        .metric("outpost_cache_bytes", &[("tier", "memory")])
        .await;
    assert!(
        gauge <= 1024.0 * 1024.0,
        "outpost_cache_bytes{{tier=memory}} = {gauge}"
    );
    // The newest object is still served from memory.
    let newest = outpost.get("site.test", "/obj?i=29").await;
    assert!(newest.is_hit(), "{newest:?}");
    assert_eq!(origin.hits("/obj"), 30);
}

// --- disk tier: corruption, large objects, promotion, size bound, unusable path ---

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// `len` deterministic pseudo-random bytes (xorshift64), distinct for each `seed`, so any
/// 64-byte window of one body is found nowhere else on disk.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The foyer data files of a disk tier directory.
fn foyer_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("foyer-storage-direct-fs-"))
        })
        .collect();
    files.sort();
    files
}

/// Inverts `len` bytes at every place `needle` occurs in the foyer files of `dir`; returns
/// how many places were corrupted.
fn corrupt_where_found(dir: &std::path::Path, needle: &[u8], len: usize) -> usize {
    use std::os::unix::fs::FileExt;
    let mut corrupted = 0;
    for path in foyer_files(dir) {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut at = 0;
        while let Some(pos) = find(&data[at..], needle).map(|p| p + at) {
            let end = (pos + len).min(data.len());
            let flipped: Vec<u8> = data[pos..end].iter().map(|b| !b).collect();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open foyer file for writing");
            file.write_all_at(&flipped, pos as u64)
                .expect("corrupt foyer file");
            file.sync_all().expect("sync foyer file");
            corrupted += 1;
            at = end;
        }
    }
    corrupted
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(p) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + p;
        if haystack.len() - at < needle.len() {
            return None;
        }
        if &haystack[at..at + needle.len()] == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `outpost_cache_lookups_total{result="hit",tier}` for tiers disk and memory.
async fn tier_hits(outpost: &Outpost) -> (f64, f64) {
    let name = "outpost_cache_lookups_total";
    let disk = outpost
        .metric(name, &[("result", "hit"), ("tier", "disk")])
        .await;
    let memory = outpost
        .metric(name, &[("result", "hit"), ("tier", "memory")])
        .await;
    (disk, memory)
}

/// The (disk, memory) hit counts once they are `before + added` (the counters are updated
/// when a request is logged, just after its response went out), or after 3 s.
async fn tier_hits_reach(outpost: &Outpost, before: (f64, f64), added: (f64, f64)) -> (f64, f64) {
    let want = (before.0 + added.0, before.1 + added.1);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let now = tier_hits(outpost).await;
        if now == want || std::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(ms(50)).await;
    }
}

/// An origin serving `/c0`..`/c{n-1}`: 300 KiB of [`noise`] each, fresh for 10 minutes.
async fn noise_origin(n: u64) -> Origin {
    let mut builder = Origin::new();
    for i in 0..n {
        let b = noise(i + 1, 300 * KIB);
        builder = builder.handler(&format!("/c{i}"), move |_| {
            Reply::ok(b.clone())
                .header("content-type", "application/octet-stream")
                .header("cache-control", "max-age=600")
        });
    }
    builder.start().await
}

/// GETs `/c0`..`/c{n-1}` of a [`noise_origin`], checking every body.
async fn get_noise(outpost: &Outpost, n: u64) {
    for i in 0..n {
        let r = outpost.get("site.test", &format!("/c{i}")).await;
        assert!(
            r.status == 200 && r.body[..] == noise(i + 1, 300 * KIB)[..],
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_corrupt_file_is_a_miss_with_the_right_body() {
    // Six 300 KiB objects (two disk chunks each); the even ones get corrupted.
    const N: u64 = 6;
    let body = |path: &str| -> Vec<u8> {
        let i: u64 = path.trim_start_matches("/c").parse().expect("/cN");
        noise(i + 1, 300 * KIB)
    };
    let origin = noise_origin(N).await;
    let mut outpost = disk_site(&origin).await;
    get_noise(&outpost, N).await;
    let disk = outpost.dir().join("disk-cache");
    outpost.terminate();
    let stopped = outpost.wait_exit(Duration::from_secs(10)).await;
    assert!(
        stopped.is_some_and(|e| e.success()),
        "graceful stop failed ({stopped:?}):\n{}",
        outpost.output()
    );

    // Invert 4 KiB inside the first chunk of each even object (found by its content, so the
    // corruption hits object data, not foyer's block indexes).
    for i in (0..N).step_by(2) {
        let b = body(&format!("/c{i}"));
        let n = corrupt_where_found(&disk, &b[100_000..100_064], 4 * KIB);
        assert!(n >= 1, "object /c{i} not found in {:?}", foyer_files(&disk));
    }

    // Already stopped: this only starts it again on the same config and disk directory.
    outpost.restart(false).await;
    for i in 0..N {
        let path = format!("/c{i}");
        let r = outpost.get("site.test", &path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(
            r.body[..] == body(&path)[..],
            "{path}: wrong body ({} bytes) after corruption: {r:?}",
            r.body.len()
        );
        let corrupted = i % 2 == 0;
        if corrupted {
            assert!(!r.is_hit(), "{path} corrupted but a hit: {r:?}");
            assert_eq!(origin.hits(&path), 2, "{path} corrupted: must be refetched");
        } else {
            assert!(r.is_hit(), "{path} intact but not a hit: {r:?}");
            assert_eq!(origin.hits(&path), 1, "{path} intact");
        }
    }
    // Refetched objects are stored again.
    let again = outpost.get("site.test", "/c0").await;
    assert!(
        again.is_hit() && again.body[..] == body("/c0")[..],
        "{again:?}"
    );
    assert_eq!(outpost.wait_exit(ms(1)).await, None, "outpost died");
    assert_eq!(outpost.admin_get("/healthz").await.status, 200);
    let errors = outpost.metric("outpost_cache_disk_errors_total", &[]).await;
    assert!(
        errors >= 1.0,
        "outpost_cache_disk_errors_total = {errors} after reading corrupt entries\n{}",
        outpost.metrics_text().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_garbled_and_truncated_files_never_give_a_wrong_body() {
    const N: u64 = 8;
    let origin = noise_origin(N).await;
    let mut outpost = disk_site(&origin).await;
    get_noise(&outpost, N).await;
    let disk = outpost.dir().join("disk-cache");
    outpost.terminate();
    let stopped = outpost.wait_exit(Duration::from_secs(10)).await;
    assert!(stopped.is_some_and(|e| e.success()), "{}", outpost.output());

    // Every third file truncated to nothing, every third inverted whole, the rest inverted
    // after their first 4 KiB (block indexes and entry headers included).
    let files = foyer_files(&disk);
    assert!(!files.is_empty(), "no foyer files in {}", disk.display());
    for (n, path) in files.iter().enumerate() {
        let mut data = std::fs::read(path).expect("read foyer file");
        match n % 3 {
            0 => data.clear(),
            1 => data.iter_mut().for_each(|b| *b = !*b),
            _ => data.iter_mut().skip(4 * KIB).for_each(|b| *b = !*b),
        }
        std::fs::write(path, &data).expect("rewrite foyer file");
    }

    outpost.restart(false).await;
    for round in 0..2 {
        for i in 0..N {
            let path = format!("/c{i}");
            let r = outpost.get("site.test", &path).await;
            assert_eq!(r.status, 200, "round {round} {path}: {r:?}");
            assert!(
                r.body[..] == noise(i + 1, 300 * KIB)[..],
                "round {round} {path}: wrong body ({} bytes): {r:?}",
                r.body.len()
            );
        }
    }
    assert!(
        origin.hits_total() >= (N + 1) as usize,
        "nothing was refetched after garbling every file"
    );
    assert_eq!(outpost.wait_exit(ms(1)).await, None, "outpost died");
    assert_eq!(outpost.admin_get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_read_errors_degrade_to_memory_only_without_failing_a_request() {
    // 12 objects on disk, then every foyer file is truncated under the running process:
    // each disk read is an I/O error (read past the end of the file).
    const N: u64 = 12;
    let origin = noise_origin(N).await;
    let mut outpost = disk_site(&origin).await;
    get_noise(&outpost, N).await;
    outpost.restart(true).await; // memory empty: lookups go to the disk
    let status = outpost.admin_get("/status").await.json();
    assert_eq!(status["cache"]["disk"]["state"], "ok", "{status}");
    let disk = outpost.dir().join("disk-cache");
    let files = foyer_files(&disk);
    assert!(!files.is_empty(), "no foyer files in {}", disk.display());
    truncate_all(&files);

    for i in 0..N {
        let path = format!("/c{i}");
        let r = outpost.get("site.test", &path).await;
        assert_eq!(
            r.status,
            200,
            "{path} with a failing disk: {r:?}\n{}",
            outpost.output()
        );
        assert!(
            r.body[..] == noise(i + 1, 300 * KIB)[..],
            "{path}: wrong body ({} bytes) with a failing disk: {r:?}",
            r.body.len()
        );
        assert!(!r.is_hit(), "{path}: unreadable, yet a hit: {r:?}");
        assert_eq!(origin.hits(&path), 2, "{path}: refetched once");
    }
    let status = outpost.admin_get("/status").await.json();
    let d = &status["cache"]["disk"];
    assert_eq!(d["state"], "degraded", "{status}");
    assert_eq!(d["degraded_total"], 1, "{status}");
    assert!(d["errors"].as_u64().is_some_and(|e| e >= 8), "{status}");
    let metrics = outpost.metrics_text().await;
    assert_eq!(
        parse_metric(&metrics, "outpost_cache_disk_up", &[]),
        0.0,
        "{metrics}"
    );
    assert!(
        parse_metric(&metrics, "outpost_cache_disk_errors_total", &[]) >= 8.0,
        "{metrics}"
    );
    assert!(
        outpost.output().contains("degraded to memory-only"),
        "no error log:\n{}",
        outpost.output()
    );

    // Memory-only from here: the refetched objects are memory hits, nothing is refetched.
    let before = tier_hits(&outpost).await;
    for i in 0..N {
        let path = format!("/c{i}");
        let r = outpost.get("site.test", &path).await;
        assert!(
            r.is_hit() && r.body[..] == noise(i + 1, 300 * KIB)[..],
            "{path} after degrading: {r:?}"
        );
        assert_eq!(origin.hits(&path), 2, "{path}");
    }
    let after = tier_hits_reach(&outpost, before, (0.0, N as f64)).await;
    assert_eq!(after.0, before.0, "no disk hits while degraded");
    assert_eq!(outpost.wait_exit(ms(1)).await, None, "outpost died");
    assert_eq!(outpost.admin_get("/healthz").await.status, 200);
}

/// `body` as an origin that honours `Range` when `If-Range` matches its current `etag`
/// (RFC 9110 §13.1.5); anything else gets the whole body.
fn ranged(body: std::sync::Arc<Vec<u8>>, etag: &'static str) -> impl Fn(&Req) -> Reply {
    move |req: &Req| {
        let whole = || {
            Reply::ok(body.to_vec())
                .header("content-type", "application/octet-stream")
                .header("cache-control", "max-age=600")
                .header("etag", etag)
        };
        let range = req.header("range").and_then(|r| {
            let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
            Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
        });
        match range {
            Some((a, b))
                if req.header("if-range").as_deref() == Some(etag) && a <= b && b < body.len() =>
            {
                Reply::status(206, body[a..=b].to_vec())
                    .header("content-type", "application/octet-stream")
                    .header("cache-control", "max-age=600")
                    .header("etag", etag)
                    .header("content-range", format!("bytes {a}-{b}/{}", body.len()))
            }
            _ => whole(),
        }
    }
}

/// GETs `path` from `outpost`, reads 1 MiB of the body, runs `meanwhile`, then reads the
/// rest: (status, body read, whether the body ended in an error).
async fn read_with_pause(
    outpost: &Outpost,
    path: &str,
    meanwhile: impl FnOnce(),
) -> (u16, Vec<u8>, bool) {
    let mut resp = outpost
        .client()
        .get(outpost.url(path))
        .header("host", "site.test")
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    let mut meanwhile = Some(meanwhile);
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            Ok(None) => return (status, body, false),
            Err(_) => return (status, body, true),
        }
        if body.len() >= MIB {
            if let Some(f) = meanwhile.take() {
                f();
            }
        }
    }
}

fn truncate_all(files: &[std::path::PathBuf]) {
    for f in files {
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .and_then(|h| h.set_len(0))
            .unwrap_or_else(|e| panic!("truncate {}: {e}", f.display()));
    }
}

/// Memory 4 MiB (it keeps objects up to 512 KiB), a 256 MiB disk: larger objects stream
/// from disk.
async fn large_object_site(origin: &Origin) -> Outpost {
    Outpost::builder()
        .set("cache", "memory", r#""4MiB""#)
        .set("cache", "max_object", r#""64MiB""#)
        .disk("256MiB")
        .site("*", origin)
        .start()
        .await
}

/// An origin serving 24 MiB of noise from `seed` on `/big` with ETag `"v1"` and Range
/// support (see [`ranged`]), and an outpost where `/big` is stored and streams from disk.
async fn resumable_big(seed: u64) -> (Origin, Outpost, std::sync::Arc<Vec<u8>>) {
    let body = std::sync::Arc::new(noise(seed, 24 * MIB));
    let origin = Origin::new()
        .handler("/big", ranged(body.clone(), "\"v1\""))
        .start()
        .await;
    let outpost = large_object_site(&origin).await;
    let first = outpost.get("site.test", "/big").await;
    assert!(
        first.status == 200 && first.body[..] == body[..],
        "{first:?}"
    );
    (origin, outpost, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_read_error_mid_body_resumes_from_the_origin_with_if_range() {
    const LEN: usize = 24 * MIB;
    let (origin, mut outpost, body) = resumable_big(11).await;
    let files = foyer_files(&outpost.dir().join("disk-cache"));

    // The client stalls after 1 MiB (outpost has read at most what socket buffers hold),
    // the disk files lose everything, then the client reads on.
    let (status, got, failed) = read_with_pause(&outpost, "/big", || truncate_all(&files)).await;
    assert_eq!(status, 200);
    assert!(
        !failed,
        "body failed after {} bytes\n{}",
        got.len(),
        outpost.output()
    );
    assert_eq!(got.len(), LEN, "short body\n{}", outpost.output());
    assert!(got[..] == body[..], "resumed body differs");
    let resumed = origin.last("/big").expect("origin request");
    assert_eq!(origin.hits("/big"), 2, "one fill, one resume");
    let range = resumed.header("range").unwrap_or_default();
    assert!(
        range.starts_with("bytes=")
            && range.ends_with(&format!("-{}", LEN - 1))
            && range != format!("bytes=0-{}", LEN - 1),
        "resume asked for {range:?}"
    );
    assert_eq!(resumed.header("if-range").as_deref(), Some("\"v1\""));
    assert_eq!(outpost.wait_exit(ms(1)).await, None, "outpost died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_read_error_mid_body_never_splices_a_changed_representation() {
    const LEN: usize = 24 * MIB;
    let (origin, mut outpost, body) = resumable_big(12).await;
    // The origin now has another version: If-Range "v1" no longer matches, it sends 200.
    let changed = std::sync::Arc::new(noise(13, LEN));
    origin.set_handler("/big", ranged(changed, "\"v2\""));
    let files = foyer_files(&outpost.dir().join("disk-cache"));
    let (status, got, failed) = read_with_pause(&outpost, "/big", || truncate_all(&files)).await;
    assert_eq!(status, 200);
    assert!(
        failed && got.len() < LEN,
        "a cut body must fail, never look complete ({} bytes, failed {failed})",
        got.len()
    );
    assert!(
        got[..] == body[..got.len()],
        "bytes of another version were spliced in"
    );
    assert_eq!(origin.hits("/big"), 2, "one fill, one refused resume");
    assert_eq!(outpost.wait_exit(ms(1)).await, None, "outpost died");
    assert_eq!(outpost.admin_get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_object_larger_than_memory_is_served_byte_exact_with_ranges() {
    const LEN: usize = 20 * MIB;
    let body = noise(7, LEN); // aperiodic: a slice at a wrong offset cannot match
    let origin = Origin::new()
        .route(
            "/big",
            Reply::ok(body.clone())
                .header("content-type", "application/octet-stream")
                .header("cache-control", "max-age=600"),
        )
        .start()
        .await;
    let outpost = large_object_site(&origin).await;

    let first = outpost.get("site.test", "/big").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(!first.is_hit(), "{first:?}");
    assert!(first.body[..] == body[..], "first GET: body differs");
    let hits = tier_hits(&outpost).await;

    let second = outpost.get("site.test", "/big").await;
    assert_eq!(second.status, 200, "{second:?}");
    assert!(
        second.is_hit(),
        "20 MiB object not served from cache: {second:?}"
    );
    assert_eq!(
        second.body.len(),
        LEN,
        "second GET: length differs: {second:?}"
    );
    assert_eq!(
        crc32fast::hash(&second.body),
        crc32fast::hash(&body),
        "second GET: content differs"
    );
    let after = tier_hits_reach(&outpost, hits, (1.0, 0.0)).await;
    assert_eq!(
        (after.0 - hits.0, after.1 - hits.1),
        (1.0, 0.0),
        "want one disk hit (disk, memory)\n{}",
        outpost.metrics_text().await
    );

    let total = LEN as u64;
    let cases = [
        ("bytes=0-99", 0usize, 99usize),
        ("bytes=10485760-10485859", 10_485_760, 10_485_859),
        ("bytes=-100", LEN - 100, LEN - 1),
    ];
    for (range, start, end) in cases {
        let r = outpost
            .request("GET", "site.test", "/big", &[("range", range)])
            .await;
        assert_eq!(r.status, 206, "{range}: {r:?}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/{total}")),
            "{range}: {r:?}"
        );
        assert!(
            r.body[..] == body[start..=end],
            "{range}: wrong slice ({} bytes): {r:?}",
            r.body.len()
        );
    }
    assert_eq!(origin.hits("/big"), 1, "cached object refetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_hit_is_promoted_to_memory() {
    let origin = Origin::new().handler("/p", versioned).start().await;
    let mut outpost = disk_site(&origin).await;
    assert_eq!(outpost.get("site.test", "/p").await.text(), "/p v1");
    outpost.restart(true).await;

    let before = tier_hits(&outpost).await;
    assert_hit(&outpost, &origin, "/p", "first GET after restart").await;
    let first = tier_hits_reach(&outpost, before, (1.0, 0.0)).await;
    assert_eq!(
        (first.0 - before.0, first.1 - before.1),
        (1.0, 0.0),
        "first GET after a restart: want one disk hit (disk, memory)\n{}",
        outpost.metrics_text().await
    );
    assert_hit(&outpost, &origin, "/p", "second GET after restart").await;
    let second = tier_hits_reach(&outpost, first, (0.0, 1.0)).await;
    assert_eq!(
        (second.0 - first.0, second.1 - first.1),
        (0.0, 1.0),
        "second GET: want a memory hit, the object promoted (disk, memory)\n{}",
        outpost.metrics_text().await
    );
}

/// Apparent size of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// 1 MiB that differs for every `i` (and at every offset).
fn fill_body(i: u64) -> Vec<u8> {
    (0..MIB as u64)
        .map(|j| ((j * 31 + i * 7919 + j / 251) % 251) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_stays_within_its_size() {
    const SIZE: u64 = 64 * MIB as u64;
    let origin = Origin::new()
        .handler("/fill", |r| {
            let i = r
                .query
                .as_deref()
                .and_then(|q| q.strip_prefix("i="))
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            Reply::ok(fill_body(i))
                .header("content-type", "application/octet-stream")
                .header("cache-control", "max-age=600")
        })
        .start()
        .await;
    // Memory keeps objects up to 8MiB/8 = 1 MiB with a disk tier: these (1 MiB + headers)
    // live on disk only.
    let outpost = Outpost::builder()
        .set("cache", "memory", r#""8MiB""#)
        .set("cache", "max_object", r#""4MiB""#)
        .disk("64MiB")
        .site("*", &origin)
        .start()
        .await;

    // 128 distinct objects of 1 MiB: twice the disk size.
    for i in 0..128 {
        let r = outpost.get("site.test", &format!("/fill?i={i}")).await;
        assert_eq!((r.status, r.body.len()), (200, MIB), "object {i}: {r:?}");
    }
    let disk = outpost.dir().join("disk-cache");
    let on_disk = dir_bytes(&disk);
    assert!(
        on_disk <= SIZE + SIZE / 10,
        "disk directory holds {on_disk} bytes for a {SIZE}-byte tier"
    );
    // Still serving: the newest object is a (disk) hit, a new one is fetched.
    let newest = outpost.get("site.test", "/fill?i=127").await;
    assert!(
        newest.is_hit() && newest.body[..] == fill_body(127)[..],
        "{newest:?}"
    );
    let fresh = outpost.get("site.test", "/fill?i=1000").await;
    assert!(
        fresh.status == 200 && fresh.body[..] == fill_body(1000)[..],
        "{fresh:?}"
    );
    assert_eq!(origin.hits("/fill"), 129);
    // Evicted or not, every object comes back whole and right.
    for i in (0..128).step_by(4) {
        let r = outpost.get("site.test", &format!("/fill?i={i}")).await;
        assert!(
            r.status == 200 && r.body[..] == fill_body(i)[..],
            "object {i} after eviction ({} bytes): {r:?}",
            r.body.len()
        );
    }
    // The tier's accounting must agree with what it can hold.
    let status = outpost.admin_get("/status").await.json();
    let bytes = status["cache"]["disk"]["bytes"].as_u64();
    assert!(
        bytes.is_some_and(|b| b > 0 && b <= SIZE),
        "/status cache.disk.bytes {bytes:?} for a {SIZE}-byte tier: {}",
        status["cache"]
    );
    let gauge = outpost
        .metric("outpost_cache_bytes", &[("tier", "disk")])
        .await;
    assert!(
        gauge <= SIZE as f64,
        "outpost_cache_bytes{{tier=disk}} = {gauge}"
    );
}

#[test]
fn run_with_unusable_disk_path_exits_1_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").expect("write file");
    let unusable = file.join("sub");
    let unusable = unusable.to_str().expect("utf-8 temp path");
    let text = Outpost::builder()
        .origin(OriginSpec::new("app").server_addr(([127, 0, 0, 1], 9).into(), 1))
        .route("*", "/", "app")
        .raw(&format!(
            "[cache.disk]\npath = {unusable:?}\nsize = \"64MiB\""
        ))
        .config_text();
    let config = dir.path().join("outpost.toml");
    std::fs::write(&config, &text).expect("write config");
    let config = config.to_str().expect("utf-8 temp path");

    let check = run_outpost(&["check", "-c", config], &[], Duration::from_secs(15));
    assert_eq!(
        check.code,
        Some(0),
        "check binds nothing and must accept the file:\n{text}\n{}",
        check.all
    );
    let run = run_outpost(&["run", "-c", config], &[], Duration::from_secs(15));
    assert_eq!(run.code, Some(1), "run:\n{text}\n{}", run.all);
    assert!(
        run.all.contains(unusable),
        "the message does not name {unusable}:\n{}",
        run.all
    );
}

/// A small tmpfs mounted on a temp dir for the test's life (needs root; `None` otherwise).
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_larger_than_its_filesystem_never_cuts_a_body_or_panics() {
    let Some(fs) = SmallFs::mount("24m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut builder = Origin::new();
    for i in 0..40 {
        let path = format!("/o{i}");
        let body: Vec<u8> = path.bytes().cycle().take(600 * 1024).collect();
        builder = builder.route(
            &path,
            Reply::ok(body).header("cache-control", "max-age=600"),
        );
    }
    let origin = builder.start().await;
    let cache = fs.dir.path().join("cache");
    let mut outpost = Outpost::builder()
        .set("cache", "memory", "\"4MiB\"")
        .set("cache", "max_object", "\"2MiB\"")
        .raw(&format!(
            "[cache.disk]\npath = {:?}\nsize = \"256MiB\"",
            cache.display().to_string()
        ))
        .site("*", &origin)
        .start()
        .await;
    assert!(
        outpost
            .output()
            .contains("more than its filesystem can hold"),
        "{}",
        outpost.output()
    );
    // Another process takes what is left of the filesystem while outpost runs.
    let filler = fs.dir.path().join("filler");
    let _ = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=1M",
            "count=64",
            &format!("of={}", filler.display()),
        ])
        .stderr(std::process::Stdio::null())
        .status();
    for round in 0..2 {
        for i in 0..40 {
            let path = format!("/o{i}");
            let r = outpost.get("site.test", &path).await;
            let want: Vec<u8> = path.bytes().cycle().take(600 * 1024).collect();
            assert_eq!(r.status, 200, "round {round} {path}: {r:?}");
            assert!(
                r.body == want,
                "round {round} {path}: body of {} bytes, not the origin's",
                r.body.len()
            );
        }
    }
    outpost.terminate();
    let exit = outpost.wait_exit(std::time::Duration::from_secs(10)).await;
    let output = outpost.output();
    assert!(
        exit.is_some_and(|e| e.code() == Some(0)),
        "{exit:?}\n{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
    let _ = std::fs::remove_file(filler);
}
