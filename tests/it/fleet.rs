//! The fleet (interface.md §2 `[cluster]`, §5): purges over NATS JetStream reach every node,
//! with per-node receipts; a node that was down catches up before serving from disk; with
//! the engine down purges apply locally and are delivered later. Needs `nats-server`
//! (installed by tools/test.sh); each test runs its own on a free loopback port.

use crate::support::{ms, Origin, Outpost, Reply, Req, TOKEN};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn versioned(req: &Req) -> Reply {
    Reply::ok(format!("{} v{}", req.path, req.n)).header("cache-control", "max-age=600")
}

/// A nats-server with JetStream on a fixed free port and a temp store; stopped by PID.
struct Nats {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl Nats {
    fn start() -> Option<Nats> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let store = tempfile::tempdir().ok()?;
        let mut n = Nats {
            child: None,
            port,
            store,
        };
        n.spawn()?;
        Some(n)
    }

    fn spawn(&mut self) -> Option<()> {
        let bin = [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nats-server");
        let child = Command::new(bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nats_or_skip() -> Option<Nats> {
    let n = Nats::start();
    if n.is_none() {
        eprintln!("skipped: nats-server not found or not starting (tools/test.sh installs it)");
    }
    n
}

async fn node(name: &str, nats: &Nats, origin: &Origin, disk: Option<&PathBuf>) -> Outpost {
    let mut b = Outpost::builder()
        .token()
        .raw(&format!(
            "[cluster]\nnode = {name:?}\nnats = [{:?}]\npurge_wait = \"3s\"",
            nats.url()
        ))
        .site("*", origin);
    if let Some(d) = disk {
        b = b.raw(&format!(
            "[cache.disk]\npath = {:?}\nsize = \"64MiB\"",
            d.display().to_string()
        ));
    }
    b.start().await
}

/// Waits until `outpost` is connected and sees `others` live nodes.
async fn until_fleet(outpost: &Outpost, others: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = outpost.admin_get("/status").await.json();
        let c = &s["cluster"];
        let live = c["nodes"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|n| n["live"] == true).count());
        if c["engine"] == "connected" && live >= others {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "fleet not formed: {c}\n{}",
            outpost.output()
        );
        tokio::time::sleep(ms(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_one_node_reaches_every_node_with_receipts() {
    let Some(nats) = nats_or_skip() else { return };
    let origin = Origin::new()
        .handler("/p", versioned)
        .handler("/q", versioned)
        .start()
        .await;
    let a = node("edge-a", &nats, &origin, None).await;
    let b = node("edge-b", &nats, &origin, None).await;
    let c = node("edge-c", &nats, &origin, None).await;
    for n in [&a, &b, &c] {
        until_fleet(n, 2).await;
    }
    for n in [&a, &b, &c] {
        assert_eq!(n.get("site.test", "/p").await.status, 200);
        assert!(n.get("site.test", "/p").await.is_hit());
        n.get("site.test", "/q").await;
    }
    let r = a
        .admin_post("/purge", r#"{"urls": ["http://site.test/p"]}"#, Some(TOKEN))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let fleet = &r.json()["fleet"];
    assert_eq!(fleet["complete"], true, "{fleet}");
    for peer in ["edge-b", "edge-c"] {
        assert_eq!(fleet["nodes"][peer]["acked"], true, "{peer}: {fleet}");
    }
    // Once acknowledged, no node serves the purged object; the others are untouched.
    for n in [&a, &b, &c] {
        let p = n.get("site.test", "/p").await;
        assert!(
            !p.is_hit(),
            "purged object served by a node after the receipts: {p:?}"
        );
        assert!(n.get("site.test", "/q").await.is_hit());
    }
    // A tag purge with "wait": false answers at once.
    let r = b
        .admin_post(
            "/purge",
            r#"{"all": true, "soft": true, "wait": false}"#,
            Some(TOKEN),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let s = a.admin_get("/status").await.json();
    assert!(s["cluster"]["cursor"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert_eq!(a.metric("outpost_cluster_up", &[]).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_down_purges_apply_locally_and_arrive_later() {
    let Some(mut nats) = nats_or_skip() else {
        return;
    };
    let origin = Origin::new().handler("/p", versioned).start().await;
    let a = node("edge-a", &nats, &origin, None).await;
    let b = node("edge-b", &nats, &origin, None).await;
    until_fleet(&a, 1).await;
    until_fleet(&b, 1).await;
    for n in [&a, &b] {
        n.get("site.test", "/p").await;
        assert!(n.get("site.test", "/p").await.is_hit());
    }
    nats.stop();
    let r = b
        .admin_post("/purge", r#"{"urls": ["http://site.test/p"]}"#, Some(TOKEN))
        .await;
    assert!(r.status == 202 || r.status == 200, "{r:?}");
    assert!(
        !b.get("site.test", "/p").await.is_hit(),
        "not applied locally"
    );
    assert!(
        a.get("site.test", "/p").await.is_hit(),
        "a reached without an engine?"
    );
    nats.spawn().expect("nats-server restarts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = a.get("site.test", "/p").await;
        if !r.is_hit() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queued purge never arrived\n{}\n{}",
            a.output(),
            b.output()
        );
        tokio::time::sleep(ms(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_purged_while_down_never_serves_the_old_body() {
    let Some(nats) = nats_or_skip() else { return };
    let origin = Origin::new().handler("/p", versioned).start().await;
    let disk = tempfile::tempdir().expect("temp dir");
    let c_disk = disk.path().join("c");
    let a = node("edge-a", &nats, &origin, None).await;
    let mut c = node("edge-c", &nats, &origin, Some(&c_disk)).await;
    until_fleet(&a, 1).await;
    until_fleet(&c, 1).await;
    let old = c.get("site.test", "/p").await;
    assert!(c.get("site.test", "/p").await.is_hit());
    // A first purge, so that c has a cursor to resume from.
    a.admin_post("/purge", r#"{"tags": ["nothing"]}"#, Some(TOKEN))
        .await;
    tokio::time::sleep(ms(500)).await;
    // The object survives a kill -9 on the disk tier (so what follows means something)...
    c.restart(false).await;
    until_fleet(&c, 1).await;
    assert!(c.get("site.test", "/p").await.is_hit(), "not on disk");
    // ...but not a purge sent while the node was down.
    c.kill();
    let r = a
        .admin_post("/purge", r#"{"urls": ["http://site.test/p"]}"#, Some(TOKEN))
        .await;
    assert!(r.status == 200 || r.status == 202, "{r:?}");
    c.restart(false).await;
    let after = c.get("site.test", "/p").await;
    assert_ne!(
        after.body,
        old.body,
        "the old body came back after the restart: {after:?}\n{}",
        c.output()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A node with peering over `peers` (this node is `peers[me]`); no engine needed for peering
/// itself, so the NATS URL may point nowhere.
async fn peer_node(peers: &[u16], me: usize, origin: &Origin) -> Outpost {
    let list: Vec<String> = peers.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    Outpost::builder()
        .set("server", "listen", &format!("[\"127.0.0.1:{}\"]", peers[me]))
        .raw(&format!(
            "[cluster]\nnode = \"peer-{me}\"\nnats = [\"nats://127.0.0.1:1\"]\npeers = [{}]\nself = \"127.0.0.1:{}\"",
            list.join(", "),
            peers[me]
        ))
        .site("*", origin)
        .access_log()
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peering_makes_one_origin_fetch_per_object_for_the_fleet() {
    let origin = Origin::new().start().await;
    for i in 0..12 {
        origin.set_route(
            &format!("/obj{i}"),
            Reply::ok(format!("object {i}")).header("cache-control", "max-age=600"),
        );
    }
    let ports = [free_port(), free_port(), free_port()];
    let a = peer_node(&ports, 0, &origin).await;
    let b = peer_node(&ports, 1, &origin).await;
    let c = peer_node(&ports, 2, &origin).await;

    let mut two_hops = 0;
    for i in 0..12 {
        let path = format!("/obj{i}");
        for n in [&a, &b, &c] {
            let r = n.get("site.test", &path).await;
            assert_eq!((r.status, r.text()), (200, format!("object {i}")), "{r:?}");
            two_hops += usize::from(r.cache_status().matches("outpost").count() == 2);
        }
        assert_eq!(
            origin.hits(&path),
            1,
            "{path}: the origin was asked more than once"
        );
    }
    assert!(
        two_hops >= 12,
        "non-owners did not go through the owner ({two_hops})"
    );
    // A request that already took a hop is not forwarded again.
    let looped = a
        .request("GET", "site.test", "/fresh", &[("cdn-loop", "outpost")])
        .await;
    assert_eq!(
        looped.cache_status().matches("outpost").count(),
        1,
        "{looped:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_is_down_or_fails_is_skipped_for_the_origin() {
    let origin = Origin::new().start().await;
    for i in 0..12 {
        origin.set_route(
            &format!("/o{i}"),
            Reply::ok(format!("o{i}")).header("cache-control", "max-age=600"),
        );
    }
    // Peer 1 answers 500 to everything; peer 2 does not exist.
    let failing = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let failing_port = failing.local_addr().expect("addr").port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = failing.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 6\r\nConnection: close\r\n\r\nbroken")
                    .await;
            });
        }
    });
    let dead = crate::support::dead_addr().await.port();
    let ports = [free_port(), failing_port, dead];
    let a = peer_node(&ports, 0, &origin).await;
    for i in 0..12 {
        let path = format!("/o{i}");
        let r = a.get("site.test", &path).await;
        assert_eq!(
            (r.status, r.text()),
            (200, format!("o{i}")),
            "{path}: {r:?}"
        );
        assert!(a.get("site.test", &path).await.is_hit(), "{path}");
    }
    assert_eq!(origin.hits_total(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_purge_no_node_refills_an_old_copy_from_its_peer() {
    let Some(mut nats) = nats_or_skip() else {
        return;
    };
    let origin = Origin::new().start().await;
    for i in 0..16 {
        origin.set_handler(&format!("/k{i}"), versioned);
    }
    let ports = [free_port(), free_port()];
    let list = format!("[\"127.0.0.1:{}\", \"127.0.0.1:{}\"]", ports[0], ports[1]);
    let make = |me: usize| {
        Outpost::builder()
            .token()
            .set("server", "listen", &format!("[\"127.0.0.1:{}\"]", ports[me]))
            .raw(&format!(
                "[cluster]\nnode = \"n{me}\"\nnats = [{:?}]\npeers = {list}\nself = \"127.0.0.1:{}\"",
                nats.url(),
                ports[me]
            ))
            .site("*", &origin)
    };
    let a = make(0).start().await;
    let b = make(1).start().await;
    until_fleet(&a, 1).await;
    until_fleet(&b, 1).await;
    // A path that b owns: a's answer lists two Cache-Status entries.
    let mut owned_by_b = None;
    for i in 0..16 {
        let path = format!("/k{i}");
        let r = a.get("site.test", &path).await;
        if r.cache_status().matches("outpost").count() == 2 {
            owned_by_b = Some(path);
            break;
        }
    }
    let path = owned_by_b.expect("some key is owned by the other node");
    let first = a.get("site.test", &path).await;
    assert!(first.is_hit() && first.text().ends_with("v1"), "{first:?}");
    // The engine is down: the purge reaches a only; b still holds v1.
    nats.stop();
    let url = format!("{{\"urls\": [\"http://site.test{path}\"]}}");
    let r = a.admin_post("/purge", &url, Some(TOKEN)).await;
    assert!(r.status == 200 || r.status == 202, "{r:?}");
    let after = a.get("site.test", &path).await;
    assert_eq!(after.status, 200, "{after:?}");
    assert!(
        !after.text().ends_with("v1"),
        "a refilled the purged copy from its peer: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_sent_while_the_engine_restarts_are_not_lost() {
    let Some(mut nats) = nats_or_skip() else {
        return;
    };
    let origin = Origin::new().start().await;
    for i in 0..20 {
        origin.set_handler(&format!("/p{i}"), versioned);
    }
    let a = node("edge-a", &nats, &origin, None).await;
    let b = node("edge-b", &nats, &origin, None).await;
    until_fleet(&a, 1).await;
    until_fleet(&b, 1).await;
    for i in 0..20 {
        b.get("site.test", &format!("/p{i}")).await;
    }
    for i in 0..20 {
        if i == 7 {
            nats.stop();
        }
        if i == 14 {
            nats.spawn().expect("nats-server restarts");
        }
        let body = format!("{{\"urls\": [\"http://site.test/p{i}\"], \"wait\": false}}");
        let r = a.admin_post("/purge", &body, Some(TOKEN)).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Every purge reaches b: each path is a miss once (then refilled).
    let mut pending: Vec<usize> = (0..20).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for i in pending {
            let r = b.get("site.test", &format!("/p{i}")).await;
            if r.is_hit() {
                still.push(i);
            }
        }
        pending = still;
        assert!(
            Instant::now() < deadline,
            "purges lost for {pending:?}\n{}",
            a.output()
        );
        tokio::time::sleep(ms(200)).await;
    }
}
