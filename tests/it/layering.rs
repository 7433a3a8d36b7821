//! The layering check (README "How a request flows"): the seams between modules run one way,
//! proxy → cache → storage → bans, purge → storage, and the neutral modules name nothing. It
//! reads the `crate::` paths of every source file (test modules exempt: `tests.rs`, `tests/`
//! and what follows `#[cfg(test)]`) and fails on a forbidden one, naming file and line.

use std::path::{Path, PathBuf};

/// (files whose path starts with this, crate paths they must not name)
const RULES: &[(&str, &[&str])] = &[
    // The cache layer knows nothing above it.
    (
        "cache",
        &[
            "crate::proxy",
            "crate::admin",
            "crate::ops",
            "crate::fleet",
            "crate::app",
            "crate::front",
            "crate::state",
            "crate::dashboard",
            "crate::cli",
            "crate::purge_cli",
            "crate::upstream",
            "crate::tls",
            "crate::access_log",
        ],
    ),
    // Storage sits below purge and slicing; bans and the cache files below storage.
    (
        "cache/storage",
        &["crate::cache::purge", "crate::cache::slice"],
    ),
    (
        "cache/bans",
        &[
            "crate::cache::storage",
            "crate::cache::purge",
            "crate::cache::slice",
        ],
    ),
    (
        "cache/files",
        &[
            "crate::cache::storage",
            "crate::cache::purge",
            "crate::cache::bans",
        ],
    ),
    // Pure rules: no storage, no purge.
    (
        "cache/policy",
        &[
            "crate::cache::storage",
            "crate::cache::purge",
            "crate::cache::bans",
        ],
    ),
    (
        "cache/key",
        &[
            "crate::cache::storage",
            "crate::cache::purge",
            "crate::cache::bans",
        ],
    ),
    // Neutral modules: used by everyone, name nobody.
    ("message", &["crate::"]),
    ("url", &["crate::"]),
    // Upstream pools and health checks serve the proxy, never call into it.
    (
        "upstream",
        &["crate::proxy", "crate::cache", "crate::admin", "crate::ops"],
    ),
    // Config is read by everyone and reads nobody.
    (
        "config",
        &[
            "crate::proxy",
            "crate::cache",
            "crate::admin",
            "crate::ops",
            "crate::state",
            "crate::upstream",
        ],
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "tests") {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs")
            && p.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(p);
        }
    }
}

/// Every `crate::…` path in `text`, with its line number; `crate::{a, b::c}` groups expanded.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + 7..];
            if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    out.push((n + 1, format!("crate::{name}")));
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                out.push((n + 1, format!("crate::{name}")));
            }
            rest = after;
        }
    }
    out
}

/// Whether `path` names `forbidden` (a module or anything in it).
fn names(path: &str, forbidden: &str) -> bool {
    if forbidden == "crate::" {
        return true;
    }
    path == forbidden
        || path
            .strip_prefix(forbidden)
            .is_some_and(|rest| rest.starts_with("::"))
}

#[test]
fn modules_only_depend_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .to_string_lossy()
            .replace('\\', "/");
        let module = rel.trim_end_matches(".rs");
        let rules: Vec<&[&str]> = RULES
            .iter()
            .filter(|(prefix, _)| module == *prefix || module.starts_with(&format!("{prefix}/")))
            .map(|(_, forbidden)| *forbidden)
            .collect();
        if rules.is_empty() {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (line, path) in crate_paths(text) {
            for forbidden in rules.iter().flat_map(|r| r.iter()) {
                if names(&path, forbidden) {
                    violations.push(format!(
                        "src/{rel}:{line}: names {path} ({forbidden} is above it)"
                    ));
                }
            }
        }
    }
    assert!(checked > 30, "the rules matched only {checked} files");
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_grouped_and_nested_paths() {
    let found = crate_paths("use crate::{proxy::ctx, cache};\nlet x = crate::ops::run();");
    let paths: Vec<&str> = found.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["crate::proxy::ctx", "crate::cache", "crate::ops::run"]
    );
    assert!(names("crate::proxy::ctx", "crate::proxy"));
    assert!(!names("crate::proxy_x", "crate::proxy"));
}

#[test]
fn cache_status_has_one_writer() {
    // Every `Cache-Status` value is a typed `cache::status::CacheStatus` rendered by its
    // Display; nobody formats "outpost; ..." by hand.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let writers: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("cache/status.rs"))
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .split("#[cfg(test)]")
                .next()
                .is_some_and(|t| t.contains("\"outpost;"))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        writers.is_empty(),
        "Cache-Status written by hand in {writers:?}"
    );
}
