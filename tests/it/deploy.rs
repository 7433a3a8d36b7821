//! deploy/: the Grafana dashboard and the Prometheus alert rules use only metrics (and label
//! names) that outpost's `/metrics` exports, or, for the cluster metrics not emitted yet,
//! that interface.md §6 names; `promtool check rules` passes when promtool is installed.

use crate::support::{Origin, Outpost, Reply};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Contract metrics (interface.md §6) that only a node with a cluster engine exports.
const CLUSTER_ONLY: [&str; 3] = [
    "outpost_cluster_up",
    "outpost_cluster_purge_lag",
    "outpost_cluster_purge_seconds",
];

/// Labels Prometheus adds to every series it scrapes.
const SCRAPE_LABELS: [&str; 2] = ["instance", "job"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `outpost_*` metric name in `text`, with the label names of its `{...}` selectors.
fn used_metrics(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rest = text;
    while let Some(at) = rest.find("outpost_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..len];
        let labels = out.entry(name.to_string()).or_default();
        let after = &tail[len..];
        if let Some(sel) = after.strip_prefix('{') {
            let body = &sel[..sel.find('}').unwrap_or(0)];
            for matcher in body.split(',') {
                let key: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !key.is_empty() {
                    labels.insert(key);
                }
            }
        }
        rest = &tail[len..];
    }
    out
}

/// Sample names in a Prometheus/OpenMetrics text with their label names, plus the series
/// names every declared family can have (`_total`, `_bucket`, `_sum`, `_count`).
fn exported(metrics: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut parts = decl.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                let suffixes: &[&str] = match kind {
                    "counter" => &["", "_total"],
                    "histogram" => &["", "_bucket", "_sum", "_count"],
                    _ => &[""],
                };
                for s in suffixes {
                    out.entry(format!("{name}{s}")).or_default();
                }
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_string()).or_default();
        if let Some(body) = line[end..]
            .strip_prefix('{')
            .and_then(|b| b.split_once('}'))
        {
            for pair in body.0.split("\",") {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.trim().to_string());
                }
            }
        }
    }
    out
}

fn cluster_metric(name: &str) -> bool {
    CLUSTER_ONLY.iter().any(|c| {
        name == *c
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name == format!("{c}{s}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_dashboard_and_alert_rules_use_exported_metrics() {
    let origin = Origin::new()
        .route("/a", Reply::ok("a").header("cache-control", "max-age=60"))
        .start()
        .await;
    let outpost = Outpost::builder()
        .token()
        .disk("64MiB")
        .site("*", &origin)
        .start()
        .await;
    outpost.get("site.test", "/a").await;
    outpost.get("site.test", "/a").await;
    outpost.purge(r#"{"tags": ["x"]}"#).await;
    let exported = exported(&outpost.metrics_text().await);

    let contract = std::fs::read_to_string(repo("../shared/design/interface.md")).ok();
    if let Some(c) = &contract {
        for name in CLUSTER_ONLY {
            assert!(c.contains(name), "interface.md §6 no longer names {name}");
        }
    }

    let grafana_text = std::fs::read_to_string(repo("deploy/grafana/outpost.json"))
        .expect("deploy/grafana/outpost.json");
    let grafana: serde_json::Value = serde_json::from_str(&grafana_text).expect("valid JSON");
    let panels = grafana["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut exprs = 0;
    for p in panels {
        assert!(ids.insert(p["id"].as_u64()), "duplicate panel id: {p}");
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{p}");
            assert!(
                t["expr"].as_str().is_some_and(|e| e.contains("outpost_")),
                "{t}"
            );
            exprs += 1;
        }
    }
    assert!(panels.len() >= 10 && exprs >= 15, "{} panels", panels.len());
    let alerts = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml"))
        .expect("deploy/prometheus/alerts.yml");
    for alert in [
        "OutpostOriginDown",
        "OutpostHitRatioDrop",
        "OutpostDiskTierDegraded",
        "OutpostClusterPurgeLag",
    ] {
        assert!(alerts.contains(&format!("alert: {alert}")), "no {alert}");
    }

    let mut checked = 0;
    for (file, text) in [
        ("deploy/grafana/outpost.json", &grafana_text),
        ("deploy/prometheus/alerts.yml", &alerts),
    ] {
        let used = used_metrics(text);
        assert!(used.len() >= 8, "{file}: only {used:?}");
        for (name, labels) in used {
            checked += 1;
            if cluster_metric(&name) {
                continue;
            }
            let have = exported
                .get(&name)
                .unwrap_or_else(|| panic!("{file} uses {name}, not in /metrics"));
            for l in labels {
                assert!(
                    have.contains(&l) || SCRAPE_LABELS.contains(&l.as_str()),
                    "{file}: {name} has no label {l} (has {have:?})"
                );
            }
        }
    }
    assert!(checked >= 20, "{checked}");

    match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo("deploy/prometheus/alerts.yml"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            eprintln!("SKIPPED promtool check rules: no promtool (Debian package prometheus)")
        }
    }
}

#[test]
fn metric_names_and_selector_labels_are_found() {
    let used = used_metrics(
        r#"sum by (tier) (rate(outpost_cache_lookups_total{result=~"hit|stale",tier!="none"}[5m])) / outpost_up"#,
    );
    assert_eq!(
        used.get("outpost_cache_lookups_total").map(|l| l.len()),
        Some(2)
    );
    assert!(used.contains_key("outpost_up"));
    let exp = exported(
        "# TYPE outpost_x counter\n# TYPE outpost_h histogram\noutpost_y{a=\"1\",b=\"x,y\"} 1\n",
    );
    assert!(exp.contains_key("outpost_x_total") && exp.contains_key("outpost_h_bucket"));
    assert_eq!(exp["outpost_y"].len(), 2);
}

/// The Debian package's inputs (Cargo.toml `[package.metadata.deb]`, built by
/// tools/package.sh): every asset exists, the conffiles are installed assets, the unit
/// reloads with SIGHUP, and the packaged config passes `outpost check`.
#[test]
fn debian_package_metadata_points_at_real_files() {
    use std::os::unix::fs::PermissionsExt;
    let manifest: toml::Value = std::fs::read_to_string(repo("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("valid TOML");
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("assets");
    let mut installed = BTreeSet::new();
    for a in assets {
        let a = a.as_array().expect("[source, dest, mode]");
        let (src, dest) = (a[0].as_str().expect("src"), a[1].as_str().expect("dest"));
        if !src.starts_with("target/") {
            assert!(repo(src).is_file(), "asset {src} missing");
        }
        let dest = if dest.ends_with('/') {
            format!("/{dest}{}", src.rsplit('/').next().unwrap_or(src))
        } else {
            format!("/{dest}")
        };
        installed.insert(dest);
    }
    assert!(installed.contains("/usr/bin/outpost"), "{installed:?}");
    for conf in deb["conf-files"].as_array().expect("conf-files") {
        let conf = conf.as_str().expect("path");
        assert!(installed.contains(conf), "conffile {conf} is not installed");
    }
    assert!(deb["conf-files"].as_array().is_some_and(|c| c
        .iter()
        .any(|v| v.as_str() == Some("/etc/outpost/outpost.toml"))));
    let scripts = deb["maintainer-scripts"]
        .as_str()
        .expect("maintainer-scripts");
    for s in ["postinst", "postrm"] {
        let path = repo(scripts).join(s);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{s} not executable");
        let text = std::fs::read_to_string(&path).expect("script");
        assert!(
            text.contains("#DEBHELPER#"),
            "{s}: no #DEBHELPER# (systemd snippets)"
        );
    }
    let postinst = std::fs::read_to_string(repo(scripts).join("postinst")).expect("postinst");
    assert!(postinst.contains("adduser --system") && postinst.contains("/var/cache/outpost"));
    let units = deb["systemd-units"]["unit-scripts"]
        .as_str()
        .expect("unit-scripts");
    let unit = std::fs::read_to_string(repo(units).join("outpost.service")).expect("unit");
    for line in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/bin/outpost run -c /etc/outpost/outpost.toml",
        "User=outpost",
        "CacheDirectory=outpost",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
    let config = repo("deploy/debian/outpost.toml");
    let out = crate::support::run_outpost(
        &["check", "-c", config.to_str().expect("utf-8 path")],
        &[],
        std::time::Duration::from_secs(10),
    );
    assert_eq!(out.code, Some(0), "{}", out.all);
    assert!(out.stdout.contains("/var/cache/outpost"), "{}", out.stdout);
}
