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
