//! `outpost check`, `run` on a bad file, and `--version` (interface.md §1): exit codes 0/2,
//! every problem on its own line with its dotted path, did-you-mean for unknown keys, and every
//! file shipped in `config/` passing.

use crate::support::{run_outpost, CliOutput};
use std::path::Path;
use std::time::Duration;

const GOOD: &str = r#"
[server]
listen = ["192.0.2.1:0"]

[admin]
listen = "127.0.0.1:0"

[cache]
memory = "16MiB"

[[origin]]
name = "app"
servers = ["192.0.2.10:80", { addr = "192.0.2.11:80", weight = 2 }]
selection = "weighted"

[origin.health]
path = "/health"
interval = "1s"

[[route]]
host = "*.example.test"
prefix = "/"
origin = "app"
"#;

/// The three example problems of interface.md §1, in one file.
const THREE_ERRORS: &str = r#"
[cache]
memory = "lots"

[[origin]]
name = "app"
servers = ["192.0.2.10:80"]

[[origin]]
name = "api"
servers = ["10.0.0.1:http"]

[[route]]
host = "*"
prefix = "/"
origin = "apps"
"#;

fn check_text(text: &str) -> CliOutput {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("outpost.toml");
    std::fs::write(&file, text).expect("write config");
    check_file(&file)
}

fn check_file(file: &Path) -> CliOutput {
    let file = file.to_str().expect("utf-8 path");
    run_outpost(&["check", "-c", file], &[], Duration::from_secs(10))
}

/// The output line that mentions `path` (panics with the whole output if none does).
fn line_with<'a>(out: &'a CliOutput, path: &str) -> &'a str {
    out.all
        .lines()
        .find(|l| l.contains(path))
        .unwrap_or_else(|| panic!("no line mentions {path:?}:\n{}", out.all))
}

#[test]
fn check_valid_file_exits_zero_with_summary() {
    let out = check_text(GOOD);
    assert_eq!(out.code, Some(0), "{}", out.all);
    assert!(!out.all.trim().is_empty(), "want a one-line summary");
}

#[test]
fn check_invalid_file_lists_every_error_with_dotted_path() {
    let out = check_text(THREE_ERRORS);
    assert_eq!(out.code, Some(2), "{}", out.all);
    let addr = line_with(&out, "origin[1].servers[0]");
    assert!(addr.contains("10.0.0.1:http"), "{addr}");
    let mem = line_with(&out, "cache.memory");
    assert!(mem.contains("lots"), "{mem}");
    let route = line_with(&out, "route[0].origin");
    assert!(route.contains("apps"), "{route}");
    assert!(route.contains("did you mean \"app\""), "{route}");
}

#[test]
fn check_unknown_key_is_an_error_with_did_you_mean() {
    let out = check_text(&format!("{GOOD}\n[log]\nlevle = \"debug\"\n"));
    assert_eq!(out.code, Some(2), "{}", out.all);
    let line = line_with(&out, "levle");
    assert!(line.contains("log"), "want the dotted path: {line}");
    assert!(
        line.contains("did you mean") && line.contains("level"),
        "{line}"
    );
}

#[test]
fn check_semantic_errors_are_all_reported() {
    let text = r#"
[[origin]]
name = "app"
servers = []

[[origin]]
name = "app"
servers = [{ addr = "192.0.2.10:80", weight = 0 }]

[origin.health]
path = "health"
fails = 0
"#;
    let out = check_text(text);
    assert_eq!(out.code, Some(2), "{}", out.all);
    line_with(&out, "origin[0].servers");
    line_with(&out, "origin[1].name");
    line_with(&out, "origin[1].servers[0]");
    line_with(&out, "origin[1].health.path");
    line_with(&out, "origin[1].health.fails");
}

#[test]
fn run_refuses_an_invalid_file_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("outpost.toml");
    std::fs::write(&file, THREE_ERRORS).expect("write config");
    let file = file.to_str().expect("utf-8 path");
    let out = run_outpost(&["run", "-c", file], &[], Duration::from_secs(10));
    assert_eq!(out.code, Some(2), "{}", out.all);
    line_with(&out, "cache.memory");
}

#[test]
fn check_passes_on_every_shipped_config_file() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("config/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("outpost.toml")),
        "config/outpost.toml (the documented reference) is missing: {files:?}"
    );
    for file in files {
        let out = check_file(&file);
        assert_eq!(out.code, Some(0), "{}:\n{}", file.display(), out.all);
    }
}

#[test]
fn version_flag_prints_the_crate_version() {
    let out = run_outpost(&["--version"], &[], Duration::from_secs(10));
    assert_eq!(out.code, Some(0), "{}", out.all);
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        out.all
    );
}
