//! `GET /dashboard` (interface.md §5): the page and its data endpoint, and the page itself
//! run in a real headless browser (Debian's `chromium`, installed by tools/test.sh): it
//! renders, the numbers it shows agree with `/status`, and they move when requests are sent.

use crate::support::{dead_addr, eventually, Health, Origin, OriginSpec, Outpost, Reply};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An outpost with one origin of two servers (the second dead, taken out by health checks),
/// a cacheable route, a token and a `[cluster]` section (its engine unreachable: "down").
async fn dashboard_outpost() -> (Origin, Outpost, String) {
    let origin = Origin::named("a")
        .route(
            "/c",
            Reply::ok("cached").header("cache-control", "max-age=60"),
        )
        .start()
        .await;
    let dead = dead_addr().await;
    let outpost = Outpost::builder()
        .token()
        .origin(
            OriginSpec::new("app")
                .server(&origin)
                .server_addr(dead, 1)
                .health(Health::every("100ms").fails(1)),
        )
        .route("*", "/", "app")
        .disk("64MiB")
        .raw("[cluster]\nnode = \"edge-dash\"\nnats = [\"nats://127.0.0.1:1\"]")
        .start()
        .await;
    let dead_label = dead.to_string();
    let out = eventually(Duration::from_secs(5), || async {
        let s = outpost.admin_get("/status").await.json();
        server(&s, &dead_label).is_some_and(|v| v["healthy"] == false)
    })
    .await;
    assert!(out, "dead server never out:\n{}", outpost.output());
    (origin, outpost, dead_label)
}

fn server<'a>(status: &'a Value, addr: &str) -> Option<&'a Value> {
    status["origins"][0]["servers"]
        .as_array()?
        .iter()
        .find(|s| s["addr"] == addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_page_is_self_contained_and_its_data_matches_status() {
    let (_origin, outpost, dead) = dashboard_outpost().await;
    let page = outpost.admin_get("/dashboard").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{page:?}"
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{page:?}"
    );
    let html = page.text();
    assert!(html.contains("<canvas") && html.contains("/dashboard/data"));
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
        "url(",
    ] {
        assert!(!html.contains(external), "page loads {external}…");
    }

    for _ in 0..3 {
        assert_eq!(outpost.get("site.test", "/c").await.status, 200);
    }
    let r = outpost.purge(r#"{"tags": ["nothing-tagged"]}"#).await;
    let purge_id = r.json()["id"].as_str().expect("purge id").to_string();

    let d = outpost.admin_get("/dashboard/data").await;
    assert_eq!(d.status, 200, "{d:?}");
    assert_eq!(d.header("cache-control").as_deref(), Some("no-store"));
    let d = d.json();
    let s = outpost.admin_get("/status").await.json();
    assert_eq!(d["config_hash"], s["config_hash"]);
    let mem = &d["tiers"][0];
    assert_eq!(mem["tier"], "memory");
    for k in ["objects", "hits", "misses"] {
        assert_eq!(mem[k], s["cache"]["memory"][k], "{k}: {d} vs {s}");
    }
    assert_eq!(mem["bound"], 256 << 20, "the default cache.memory: {d}");
    assert!(d["requests"]["total"].as_u64() >= Some(3), "{d}");
    assert!(d["sent_bytes"].as_u64() >= Some(18), "{d}");
    assert_eq!(d["origins"][0]["healthy"], 1);
    let dead_row = d["origins"][0]["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["addr"] == dead.as_str()))
        .expect("dead server listed");
    assert_eq!(dead_row["healthy"], false);
    let p = &d["purges"][0];
    assert_eq!(p["id"], purge_id.as_str(), "{d}");
    assert_eq!(p["via"], "admin");
    assert!(
        p["took_ms"].is_number() && p["what"] == "tags: nothing-tagged",
        "{p}"
    );
    assert_eq!(d["cluster"]["node"], "edge-dash");
    assert_eq!(d["cluster"]["engine"], "down");

    // The sampler adds one point a second; `since` returns only newer ones.
    let got = eventually(Duration::from_secs(5), || async {
        outpost.admin_get("/dashboard/data").await.json()["history"]
            .as_array()
            .is_some_and(|h| h.len() >= 2)
    })
    .await;
    assert!(got, "no history after 5 s");
    let h = outpost.admin_get("/dashboard/data").await.json()["history"].clone();
    let last_t = h.as_array().and_then(|a| a.last()).expect("a sample")["t"].clone();
    let newer = outpost
        .admin_get(&format!("/dashboard/data?since={last_t}"))
        .await
        .json();
    assert!(
        newer["history"]
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x["t"].as_u64() > last_t.as_u64())),
        "{newer}"
    );
    let r = outpost.admin_post("/dashboard", "", None).await;
    assert_eq!(r.status, 405, "{r:?}");
}

/// `chromium` (Debian), `chromium-browser` or `google-chrome` on PATH.
fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Loads `url` in headless chromium, lets its scripts run for `budget_ms` of virtual time
/// and returns the DOM (bounded: killed after 60 s).
fn dump_dom(chromium: &Path, url: &str, budget_ms: u64) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut out = child.stdout.take().expect("chromium stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium --dump-dom {url} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap_or_default()
}

/// The `data-value` of the element with `id` in a dumped DOM.
fn value(dom: &str, id: &str) -> Option<f64> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[at..tag_end];
    let v = tag.split("data-value=\"").nth(1)?.split('"').next()?;
    v.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_in_headless_chromium_and_follows_traffic() {
    let Some(chromium) = find_chromium() else {
        eprintln!(
            "SKIPPED: no chromium on PATH (tools/test.sh installs Debian's `chromium`); \
             the dashboard was not tested in a browser"
        );
        return;
    };
    let (_origin, outpost, dead) = dashboard_outpost().await;
    for _ in 0..4 {
        assert_eq!(outpost.get("site.test", "/c").await.status, 200);
    }
    outpost.purge(r#"{"urls": ["http://site.test/c"]}"#).await;
    // The disk tier has written the object (its counts are settled), and the sampler is
    // past its first sample, so the charts have points.
    let written = eventually(Duration::from_secs(5), || async {
        outpost.admin_get("/status").await.json()["cache"]["disk"]["objects"].as_u64() >= Some(1)
    })
    .await;
    assert!(written, "disk tier never counted the object");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let url = format!("http://{}/dashboard", outpost.admin_addr());

    let dom = {
        let (chromium, url) = (chromium.clone(), url.clone());
        tokio::task::spawn_blocking(move || dump_dom(&chromium, &url, 2500))
            .await
            .expect("chromium thread")
    };
    let s = outpost.admin_get("/status").await.json();
    assert!(
        dom.contains("id=\"live\" class=\"on\""),
        "page never got its data:\n{dom}"
    );
    for (id, key) in [
        ("mem-objects", "objects"),
        ("mem-hits", "hits"),
        ("mem-misses", "misses"),
        ("mem-bytes", "bytes"),
    ] {
        assert_eq!(
            value(&dom, id),
            s["cache"]["memory"][key].as_f64(),
            "#{id} vs /status cache.memory.{key}: {s}\n{dom}"
        );
    }
    for key in ["objects", "hits", "misses", "bytes"] {
        assert_eq!(
            value(&dom, &format!("disk-{key}")),
            s["cache"]["disk"][key].as_f64(),
            "#disk-{key} vs /status cache.disk.{key}: {s}\n{dom}"
        );
    }
    assert!(dom.contains("id=\"disk-state\">ok<"), "{dom}");
    let hits_before = value(&dom, "mem-hits").unwrap_or(0.0);
    let total_before = value(&dom, "req-total").expect("#req-total");
    assert!(total_before >= 4.0, "{dom}");
    let uptime = value(&dom, "uptime").expect("#uptime");
    assert!(
        (uptime - s["uptime_s"].as_f64().unwrap_or(0.0)).abs() <= 3.0,
        "uptime {uptime} vs {s}"
    );
    // Every origin server, with the health /status reports.
    for srv in s["origins"][0]["servers"].as_array().expect("servers") {
        let addr = srv["addr"].as_str().expect("addr");
        let row = format!("data-server=\"{addr}\" data-healthy=\"{}\"", srv["healthy"]);
        assert!(dom.contains(&row), "no row {row}:\n{dom}");
    }
    assert!(dom.contains(&format!("data-server=\"{dead}\" data-healthy=\"false\"")));
    // The purge, the cluster section, the purge form.
    assert!(dom.contains("class=\"purge\"") && dom.contains("urls: http://site.test/c"));
    assert!(dom.contains("id=\"cluster-node\">edge-dash<"), "{dom}");
    assert!(dom.contains("id=\"cluster-engine\">down<"), "{dom}");
    assert!(dom.contains("id=\"pf-token\" type=\"password\""));
    assert_eq!(dom.matches("<canvas").count(), 5);

    for _ in 0..10 {
        assert_eq!(outpost.get("site.test", "/c").await.status, 200);
    }
    let dom = tokio::task::spawn_blocking(move || dump_dom(&chromium, &url, 2500))
        .await
        .expect("chromium thread");
    let total_after = value(&dom, "req-total").expect("#req-total");
    let hits_after = value(&dom, "mem-hits").expect("#mem-hits");
    assert!(
        total_after >= total_before + 10.0,
        "requests {total_before} -> {total_after}"
    );
    assert!(
        hits_after >= hits_before + 9.0,
        "hits {hits_before} -> {hits_after}"
    );
    let s = outpost.admin_get("/status").await.json();
    assert_eq!(
        value(&dom, "mem-hits"),
        s["cache"]["memory"]["hits"].as_f64()
    );
}

/// The browser's DevTools WebSocket URL from its `DevTools listening on ws://...` line.
fn devtools_url(stderr: impl std::io::Read) -> Option<String> {
    use std::io::BufRead;
    std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split_once("DevTools listening on ")
                .map(|(_, url)| url.trim().to_string())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_purge_form_sends_the_token_and_purges() {
    let (Some(chromium), Ok(_)) = (
        find_chromium(),
        Command::new("node").arg("--version").output(),
    ) else {
        eprintln!("SKIPPED: needs chromium and node (tools/test.sh installs both)");
        return;
    };
    let (origin, outpost, _) = dashboard_outpost().await;
    assert_eq!(outpost.get("site.test", "/c").await.status, 200);
    let r = outpost.get("site.test", "/c").await;
    assert!(r.cache_status().contains("hit"), "{r:?}");

    let profile = tempfile::tempdir().expect("profile dir");
    let mut browser = Command::new(&chromium)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let stderr = browser.stderr.take().expect("chromium stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(devtools_url(stderr));
    });
    let ws = rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
    let Some(ws) = ws else {
        let _ = browser.kill();
        let _ = browser.wait();
        panic!("chromium printed no DevTools URL");
    };
    // Traffic while the page runs, so its charts have data to draw.
    let traffic = {
        let (client, url) = (outpost.client().clone(), outpost.url("/c"));
        tokio::spawn(async move {
            for _ in 0..300 {
                let _ = client.get(&url).header("host", "site.test").send().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/dashboard_form.mjs");
    let page = format!("http://{}/dashboard", outpost.admin_addr());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("60")
            .arg("node")
            .arg("--experimental-websocket")
            .arg("--no-warnings")
            .arg(script)
            .args([
                ws.as_str(),
                page.as_str(),
                "http://site.test/c",
                "wrong-token",
            ])
            .arg(crate::support::TOKEN)
            .output()
            .expect("run node")
    })
    .await
    .expect("node thread");
    traffic.abort();
    let _ = browser.kill();
    let _ = browser.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "form driver failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("driver JSON");
    let results = v["results"].as_array().expect("results");
    assert!(
        results[0].as_str().is_some_and(|r| r.starts_with("403")),
        "wrong token: {v}"
    );
    assert!(
        results[1]
            .as_str()
            .is_some_and(|r| r.starts_with("200") && r.contains("\"purged\"")),
        "right token: {v}"
    );
    assert!(v["listed"].as_u64() >= Some(1), "{v}");
    assert!(v["drawn"]["rps"].as_u64() > Some(10), "{v}");
    // Purged for real: the purge went through the API (one purge by URL counted) and the
    // origin was asked again after it (the traffic above kept requesting /c).
    let purged = outpost
        .metric("outpost_purges_total", &[("kind", "url")])
        .await;
    assert_eq!(purged, 1.0, "one purge by URL");
    assert!(origin.hits("/c") >= 2, "{}", origin.hits("/c"));
}
