//! Operations (interface.md §1): SIGHUP reloads like `POST /config/reload` and never exits;
//! `run --upgrade` + SIGQUIT hands the sockets and the disk tier to a new process without a
//! failed request; a cache directory in any state is no reason to refuse to start.

use crate::support::{ms, Origin, OriginSpec, Outpost, Reply};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn served_by(outpost: &Outpost) -> String {
    let r = outpost.get("site.test", "/x").await;
    assert_eq!(r.status, 200, "{r:?}");
    r.header("x-origin").unwrap_or_default()
}

/// Polls until `served_by` answers `want` (a reload is applied asynchronously), up to 10 s.
async fn until_served_by(outpost: &Outpost, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = served_by(outpost).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still served by {got:?}, want {want:?}\n{}",
            outpost.output()
        );
        tokio::time::sleep(ms(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_refuses_a_bad_one_and_never_exits() {
    let a = Origin::named("a").start().await;
    let b = Origin::named("b").start().await;
    let base = Outpost::builder();
    let with = |server: &Origin, route_to: &str| {
        base.clone()
            .origin(OriginSpec::new("app").server(server))
            .route_uncached("*", "/", route_to)
            .config_text()
    };
    let mut outpost = base
        .clone()
        .origin(OriginSpec::new("app").server(&a))
        .route_uncached("*", "/", "app")
        .start()
        .await;
    assert_eq!(served_by(&outpost).await, "a");

    outpost.write_config(&with(&b, "app"));
    outpost.signal("HUP");
    until_served_by(&outpost, "b").await;
    assert!(outpost.running(), "SIGHUP stopped the process");

    // An invalid file: every error logged with its dotted path, the running config stays.
    outpost.write_config(&with(&a, "apps"));
    outpost.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outpost.output().contains("route[0].origin") {
        assert!(
            Instant::now() < deadline,
            "reload errors not logged:\n{}",
            outpost.output()
        );
        tokio::time::sleep(ms(50)).await;
    }
    assert!(outpost.running(), "a refused reload stopped the process");
    assert_eq!(served_by(&outpost).await, "b");

    // Repeated signals (systemd `ExecReload` on every deploy) are fine too.
    for _ in 0..3 {
        outpost.signal("HUP");
    }
    tokio::time::sleep(ms(300)).await;
    assert!(outpost.running(), "repeated SIGHUP stopped the process");
    assert_eq!(served_by(&outpost).await, "b");
}

/// A port nobody listens on now (the upgrade needs fixed ports: both processes name them).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_hands_over_sockets_and_disk_without_a_failed_request() {
    let origin = Origin::new()
        .route(
            "/cached",
            Reply::ok("cached body").header("cache-control", "max-age=600"),
        )
        .route("/slow", Reply::ok("slow done").delay(ms(800)))
        .route(
            "/warm",
            Reply::ok("warm body").header("cache-control", "max-age=600"),
        )
        .start()
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("upgrade.sock");
    let mut outpost = Outpost::builder()
        .set(
            "server",
            "listen",
            &format!("[\"127.0.0.1:{}\"]", free_port()),
        )
        .set("admin", "listen", &format!("\"127.0.0.1:{}\"", free_port()))
        .set(
            "server",
            "upgrade_sock",
            &format!("{:?}", sock.display().to_string()),
        )
        .disk("64MiB")
        .site("*", &origin)
        .start()
        .await;
    let proxy = outpost.proxy_addr();
    let first = outpost.get("site.test", "/cached").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(outpost.get("site.test", "/cached").await.is_hit());
    assert_eq!(outpost.get("site.test", "/warm").await.status, 200); // not asked again until the end
    tokio::time::sleep(ms(300)).await; // the disk write is asynchronous

    // Load during the hand-over: sequential requests on fresh connections, bounded.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let url = format!("http://{proxy}/cached");
        load.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                let good = match client.get(&url).header("host", "site.test").send().await {
                    Ok(r) => r.status() == 200 && r.text().await.is_ok_and(|t| t == "cached body"),
                    Err(_) => false,
                };
                let counter = if good { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(ms(5)).await;
            }
        }));
    }
    // A request in flight on the old process when the signal comes finishes there.
    let slow = tokio::spawn({
        let url = format!("http://{proxy}/slow");
        async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client");
            match client.get(url).header("host", "site.test").send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        }
    });
    tokio::time::sleep(ms(300)).await;
    let (mut old, old_output) = outpost.upgrade().await;
    let (status, body) = slow.await.expect("join");
    assert_eq!(
        (status, body.as_str()),
        (200, "slow done"),
        "in-flight request cut off"
    );

    // The old process exits 0 once it handed over and drained.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Ok(Some(s)) = old.try_wait() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "old process still running:\n{}",
            old_output.text()
        );
        tokio::time::sleep(ms(50)).await;
    };
    assert_eq!(exit.code(), Some(0), "{exit}\n{}", old_output.text());
    tokio::time::sleep(ms(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.expect("join");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 20, "too little load to mean anything: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the upgrade\n--- old ---\n{}\n--- new ---\n{}",
        ok + failed,
        old_output.text(),
        outpost.output()
    );

    // Same address, the new process, and its memory tier is warm: the old process's hot
    // set was read back from disk before any request asked for it.
    assert_eq!(outpost.proxy_addr(), proxy);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = outpost.admin_get("/status").await.json();
        // /cached came back through the load; /warm only through the warm-up.
        if status["cache"]["memory"]["objects"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "memory tier not warmed: {status}\n{}",
            outpost.output()
        );
        tokio::time::sleep(ms(100)).await;
    }
    let after = outpost.get("site.test", "/cached").await;
    assert!(
        after.is_hit(),
        "cached object lost in the upgrade: {after:?}"
    );
    assert_eq!(after.text(), "cached body");
    assert_eq!(
        origin.hits("/cached"),
        1,
        "the new process went to the origin"
    );
}

/// Stops the process (SIGTERM, exit 0), damages the cache directory with `damage`, and starts
/// again: it must serve, with the object either a miss (fetched again) or an intact hit.
async fn survives(damage: impl Fn(&Path), what: &str) {
    let origin = Origin::new()
        .route(
            "/o",
            Reply::ok("object body").header("cache-control", "max-age=600"),
        )
        .start()
        .await;
    let mut outpost = Outpost::builder()
        .disk("64MiB")
        .site("*", &origin)
        .start()
        .await;
    assert_eq!(outpost.get("site.test", "/o").await.status, 200);
    tokio::time::sleep(ms(300)).await;
    outpost.terminate();
    let exit = outpost.wait_exit(Duration::from_secs(10)).await;
    assert!(exit.is_some_and(|e| e.success()), "{what}: stop failed");
    damage(&outpost.dir().join("disk-cache"));
    outpost.restart(false).await; // panics when it does not start
    let r = outpost.get("site.test", "/o").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "object body"),
        "{what}: {r:?}"
    );
    let again = outpost.get("site.test", "/o").await;
    assert!(again.is_hit(), "{what}: not cached again: {again:?}");
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write damage");
}

fn replace_with_dir(path: &Path) {
    let _ = std::fs::remove_file(path);
    std::fs::create_dir_all(path.join("inside")).expect("mkdir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_cache_directory_starts() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    survives(
        |d| write(&d.join("outpost-boot"), &garbage),
        "binary boot counter",
    )
    .await;
    survives(
        |d| write(&d.join("outpost-boot"), b"-7\n"),
        "negative boot counter",
    )
    .await;
    survives(
        |d| replace_with_dir(&d.join("outpost-boot")),
        "boot counter is a directory",
    )
    .await;
    survives(
        |d| write(&d.join("outpost-purges.log"), &garbage),
        "binary purge log",
    )
    .await;
    survives(
        |d| replace_with_dir(&d.join("outpost-purges.log")),
        "purge log is a directory",
    )
    .await;
    survives(
        |d| write(&d.join("outpost-disk-counts"), &garbage),
        "binary counts",
    )
    .await;
    survives(
        |d| replace_with_dir(&d.join("outpost-disk-counts")),
        "counts is a directory",
    )
    .await;
    survives(
        |d| replace_with_dir(&d.join("foyer-storage-direct-fs-00000000")),
        "a foyer file is a directory",
    )
    .await;
    survives(
        |d| {
            for e in std::fs::read_dir(d).expect("read dir").flatten() {
                if e.file_name().to_string_lossy().starts_with("foyer-") {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(e.path())
                        .expect("open");
                    f.set_len(100).expect("truncate");
                }
            }
        },
        "every foyer file truncated",
    )
    .await;
    survives(
        |d| write(&d.join("README.not-outpost"), b"someone else's file"),
        "a foreign file",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_before_a_damaged_boot_counter_still_holds() {
    // The boot counter orders purges across runs; when it is lost, the disk's objects are
    // discarded rather than risk serving one that was purged.
    let origin = Origin::new()
        .route("/p", Reply::ok("v1").header("cache-control", "max-age=600"))
        .start()
        .await;
    let mut outpost = Outpost::builder()
        .token()
        .disk("64MiB")
        .site("*", &origin)
        .start()
        .await;
    assert_eq!(outpost.get("site.test", "/p").await.text(), "v1");
    let purged = outpost.purge(r#"{"urls": ["http://site.test/p"]}"#).await;
    assert_eq!(purged.status, 200, "{purged:?}");
    origin.set_route("/p", Reply::ok("v2").header("cache-control", "max-age=600"));
    assert_eq!(outpost.get("site.test", "/p").await.text(), "v2");
    origin.set_route("/p", Reply::ok("v3").header("cache-control", "max-age=600"));
    tokio::time::sleep(ms(300)).await;
    outpost.terminate();
    assert!(outpost.wait_exit(Duration::from_secs(10)).await.is_some());
    write(
        &outpost.dir().join("disk-cache").join("outpost-boot"),
        b"not a number",
    );
    outpost.restart(false).await;
    let r = outpost.get("site.test", "/p").await;
    assert_ne!(r.text(), "v1", "a purged body came back: {r:?}");
    assert!(
        outpost.output().contains("set aside"),
        "{}",
        outpost.output()
    );
}
