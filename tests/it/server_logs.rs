//! Server logs on stderr (not the access log): `log.format = "json"` writes one JSON object
//! per line; text logs carry ANSI colours only on a terminal, never into a pipe or a file.

use crate::support::{eventually, Origin, Outpost, Reply};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_server_logs_are_one_object_per_line_on_stderr() {
    let origin = Origin::new()
        .route("/a", Reply::ok("a").header("cache-control", "max-age=60"))
        .start()
        .await;
    let outpost = Outpost::builder()
        .token()
        .set("log", "format", "\"json\"")
        .site("*", &origin)
        .start()
        .await;
    assert_eq!(outpost.get("site.test", "/a").await.status, 200);
    outpost.purge(r#"{"tags": ["t1"]}"#).await;
    let r = outpost
        .admin_post("/config/reload", "", Some(crate::support::TOKEN))
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    let logged = eventually(Duration::from_secs(3), || async {
        outpost.stderr().contains("config swapped")
    })
    .await;
    let stderr = outpost.stderr();
    assert!(logged, "no reload line:\n{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| {
                panic!("not a JSON line ({e}): {l:?}\n--- stderr ---\n{stderr}")
            })
        })
        .collect();
    assert!(lines.len() >= 4, "{stderr}");
    for v in &lines {
        assert!(v.is_object(), "{v}");
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
    }
    let find = |msg: &str| {
        lines
            .iter()
            .find(|v| v["message"].as_str().is_some_and(|m| m.starts_with(msg)))
            .unwrap_or_else(|| panic!("no {msg:?} line:\n{stderr}"))
    };
    let listening = find("listening proxy=");
    assert_eq!(listening["listener"], "proxy");
    assert_eq!(
        listening["addr"].as_str(),
        Some(outpost.proxy_addr().to_string().as_str())
    );
    find("listening admin=");
    let purge = find("purge");
    assert_eq!(
        purge["via"], "admin",
        "audit fields are JSON fields: {purge}"
    );
    assert_eq!(purge["level"], "INFO");
    assert!(find("config swapped")["hash"].is_string());
    assert!(!stderr.contains('\u{1b}'), "ANSI codes in JSON logs");
}

/// Runs `outpost demo` (stdout and stderr on pipes, or through `script` on a pseudo-terminal)
/// with `NO_COLOR` as given, until its admin listener is logged; returns everything printed.
fn demo_output(on_terminal: bool, no_color: Option<&str>) -> String {
    let bin = env!("CARGO_BIN_EXE_outpost");
    let mut cmd = if on_terminal {
        let mut c = Command::new("script");
        c.args(["-q", "-e", "-c", &format!("{bin} demo"), "/dev/null"]);
        c
    } else {
        let mut c = Command::new(bin);
        c.arg("demo");
        c
    };
    cmd.env_remove("NO_COLOR").env_remove("RUST_LOG");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    // The demo takes 8080/9090 when free, else port 0: either is fine here.
    let dir = tempfile::tempdir().expect("temp dir");
    cmd.current_dir(dir.path());
    let (mut child, captured) = crate::support::spawn_capture(cmd);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !captured.text().contains("Stop with Ctrl-C") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("pkill")
        .args(["-TERM", "-P", &child.id().to_string()])
        .status();
    let _ = child.kill();
    let _ = child.wait();
    let text = captured.text();
    assert!(
        text.contains("Stop with Ctrl-C"),
        "demo never ready:\n{text}"
    );
    text
}

#[test]
fn text_logs_have_colour_only_on_a_terminal() {
    let piped = demo_output(false, None);
    assert!(piped.contains("INFO"), "{piped}");
    assert!(
        !piped.contains('\u{1b}'),
        "ANSI codes written to a pipe:\n{piped:?}"
    );
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED the terminal half: no `script` (util-linux) to make a pseudo-terminal");
        return;
    }
    let tty = demo_output(true, None);
    assert!(tty.contains("\u{1b}["), "no colour on a terminal:\n{tty}");
    let tty_no_color = demo_output(true, Some("1"));
    assert!(
        tty_no_color.contains("INFO") && !tty_no_color.contains('\u{1b}'),
        "NO_COLOR=1 ignored on a terminal:\n{tty_no_color:?}"
    );
}
