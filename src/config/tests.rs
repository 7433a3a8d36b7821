//! Loader tests: defaults of a minimal file, every validation rule with its exact
//! message, several problems reported together, and the files in `config/`.
//! Messages are part of the contract (interface.md §1), so tests compare full lines.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const MIN: &str = r#"
[[origin]]
name = "app"
servers = ["127.0.0.1:9001"]

[[route]]
origin = "app"
"#;

fn ok(text: &str) -> Config {
    parse(text, Path::new("/etc/outpost"))
        .unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, Path::new("/etc/outpost")) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0,
    }
}

/// Exactly one problem, and it is `want`.
fn assert_error(text: &str, want: &str) {
    assert_eq!(errors(text), vec![want.to_string()], "config:\n{text}");
}

/// `extra` (whole sections) in front of the minimal origin + route.
fn with(extra: &str) -> String {
    format!("{extra}\n{MIN}")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// === defaults and shapes ===

#[test]
fn minimal_file_gets_documented_defaults() {
    let cfg = ok(MIN);
    assert_eq!(cfg.server.listen, vec![addr("127.0.0.1:8080")]);
    assert!(
        cfg.server.threads >= 1,
        "threads = 0 resolves to the core count"
    );
    assert_eq!(cfg.server.grace_period, Duration::from_secs(10));
    assert!(cfg.server.trusted_proxies.is_empty());
    assert_eq!(cfg.server.max_request_header, 64 * 1024);
    assert!(cfg.tls.is_none());
    assert_eq!(cfg.admin.listen, addr("127.0.0.1:9090"));
    assert_eq!(cfg.admin.token_env, "OUTPOST_ADMIN_TOKEN");

    let c = &cfg.cache;
    assert_eq!(c.memory, 256 << 20);
    assert_eq!(c.max_object, 64 << 20);
    assert_eq!(c.lock_timeout, Duration::from_secs(5));
    let ttl: Vec<(u16, u64)> = c
        .default_ttl
        .iter()
        .map(|(k, v)| (*k, v.as_secs()))
        .collect();
    assert_eq!(ttl, vec![(200, 600), (301, 3600), (404, 60)]);
    assert_eq!(c.stale_while_revalidate, Duration::from_secs(10));
    assert_eq!(c.stale_if_error, Duration::from_secs(300));
    assert_eq!(c.ignore_query_params, vec!["utm_*", "fbclid", "gclid"]);
    let allow: Vec<String> = c.purge_allow.iter().map(ToString::to_string).collect();
    assert_eq!(allow, vec!["127.0.0.1/32", "::1/128"]);
    assert_eq!(c.client_cache_control, ClientCacheControl::Honor);
    assert!(c.disk.is_none());

    let z = &cfg.compression;
    assert!(z.enabled);
    assert_eq!(
        z.types,
        vec![
            "text/*",
            "application/json",
            "application/javascript",
            "application/xml",
            "image/svg+xml"
        ]
    );
    assert_eq!(z.min_size, 1024);
    assert_eq!(
        z.algorithms,
        vec![Algorithm::Br, Algorithm::Zstd, Algorithm::Gzip]
    );
    assert_eq!(cfg.log.access, AccessLog::Stdout);
    assert_eq!(cfg.log.level, "info");

    let o = &cfg.origins[0];
    assert_eq!(o.name, "app");
    assert_eq!(
        o.servers,
        vec![ServerAddr {
            addr: addr("127.0.0.1:9001"),
            weight: 1
        }]
    );
    assert_eq!(o.selection, Selection::RoundRobin);
    assert_eq!(o.connect_timeout, Duration::from_secs(2));
    assert_eq!(o.read_timeout, Duration::from_secs(30));
    assert_eq!(o.retries, 1);
    assert!(!o.tls);
    assert_eq!(o.sni, "");
    assert_eq!(o.host, "");
    assert!(o.health.is_none());

    let r = &cfg.routes[0];
    assert_eq!(r.host, HostMatch::Any);
    assert_eq!(r.prefix, "/");
    assert_eq!(r.origin, 0);
    assert!(r.cache);
    assert_eq!(cfg.source, None);
}

#[test]
fn health_section_gets_documented_defaults() {
    let cfg = ok(&format!("{MIN}\n[origin.health]\n"));
    let h = cfg.origins[0].health.clone().unwrap();
    assert_eq!(h.path, "/health");
    assert_eq!(h.interval, Duration::from_secs(5));
    assert_eq!(h.timeout, Duration::from_secs(1));
    assert_eq!((h.fails, h.passes), (2, 2));
    assert_eq!(h.expect_status, vec![200]);
}

#[test]
fn disk_and_tls_sections_get_documented_defaults() {
    let dir = certs_dir();
    let text =
        format!("[tls]\n[[tls.cert]]\ncert = \"a.pem\"\nkey = \"a.key\"\n[cache.disk]\n{MIN}");
    let cfg = parse(&text, dir.path()).unwrap();
    let tls = cfg.tls.unwrap();
    assert_eq!(tls.listen, vec![addr("127.0.0.1:8443")]);
    assert_eq!(
        tls.certs[0].cert,
        dir.path().join("a.pem"),
        "relative to the file's directory"
    );
    assert!(tls.certs[0].server_names.is_empty());
    let disk = cfg.cache.disk.unwrap();
    assert_eq!(disk.path, PathBuf::from("/var/cache/outpost"));
    assert_eq!(disk.size, 10 << 30);
}

#[test]
fn threads_zero_is_core_count_and_other_values_stay() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(ok(&with("[server]\nthreads = 0")).server.threads, cores);
    assert_eq!(ok(&with("[server]\nthreads = 3")).server.threads, 3);
}

#[test]
fn servers_accept_strings_and_weighted_tables() {
    let cfg = ok(r#"
        [[origin]]
        name = "app"
        servers = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 2 }, { addr = "[::1]:9003" }]
        selection = "weighted"
        [[route]]
        origin = "app"
    "#);
    let o = &cfg.origins[0];
    let got: Vec<(String, usize)> = o
        .servers
        .iter()
        .map(|s| (s.addr.to_string(), s.weight))
        .collect();
    assert_eq!(
        got,
        vec![
            ("127.0.0.1:9001".into(), 1),
            ("127.0.0.1:9002".into(), 2),
            ("[::1]:9003".into(), 1)
        ]
    );
    assert_eq!(
        o.selection,
        Selection::RoundRobin,
        "weighted = round_robin with weights"
    );
}

#[test]
fn selections_map_to_their_variants() {
    for (word, want) in [
        ("round_robin", Selection::RoundRobin),
        ("consistent", Selection::Consistent),
        ("random", Selection::Random),
        ("least_conn", Selection::LeastConn),
    ] {
        let text = MIN.replace(
            "name = \"app\"",
            &format!("name = \"app\"\nselection = \"{word}\""),
        );
        assert_eq!(ok(&text).origins[0].selection, want, "{word}");
    }
}

#[test]
fn sizes_durations_and_cidrs_parse() {
    let cfg = ok(&with(
        r#"
        [server]
        grace_period = "500ms"
        trusted_proxies = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "10.1.2.3/16"]
        max_request_header = 32768
        [cache]
        memory = "512KiB"
        max_object = "1MiB"
        lock_timeout = "1h"
        stale_if_error = "0s"
        default_ttl = { "200" = "10m", "410" = "1h 30m" }
        purge_allow = ["::1"]
        client_cache_control = "ignore"
        [cache.disk]
        path = "cache"
        size = "10GiB"
        [compression]
        algorithms = ["gzip"]
        [log]
        access = "logs/access.log"
        level = "outpost=debug,warn"
        "#,
    ));
    assert_eq!(cfg.server.grace_period, Duration::from_millis(500));
    let proxies: Vec<String> = cfg
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        proxies,
        vec!["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "10.1.0.0/16"]
    );
    assert_eq!(cfg.server.max_request_header, 32768);
    assert_eq!(cfg.cache.memory, 512 << 10);
    assert_eq!(cfg.cache.lock_timeout, Duration::from_secs(3600));
    assert_eq!(cfg.cache.stale_if_error, Duration::ZERO);
    let ttl: Vec<(u16, u64)> = cfg
        .cache
        .default_ttl
        .iter()
        .map(|(k, v)| (*k, v.as_secs()))
        .collect();
    assert_eq!(
        ttl,
        vec![(200, 600), (410, 5400)],
        "a table in the file replaces the defaults"
    );
    assert_eq!(cfg.cache.purge_allow[0].to_string(), "::1/128");
    assert_eq!(cfg.cache.client_cache_control, ClientCacheControl::Ignore);
    let disk = cfg.cache.disk.unwrap();
    assert_eq!(
        (disk.path, disk.size),
        (PathBuf::from("/etc/outpost/cache"), 10 << 30)
    );
    assert_eq!(cfg.compression.algorithms, vec![Algorithm::Gzip]);
    assert_eq!(
        cfg.log.access,
        AccessLog::File(PathBuf::from("/etc/outpost/logs/access.log"))
    );
    assert_eq!(cfg.log.level, "outpost=debug,warn");
}

#[test]
fn log_access_off_is_a_keyword() {
    assert_eq!(
        ok(&with("[log]\naccess = \"off\"")).log.access,
        AccessLog::Off
    );
}

#[test]
fn route_hosts_become_matches_and_origins_indices() {
    let cfg = ok(r#"
        [[origin]]
        name = "app"
        servers = ["127.0.0.1:9001"]
        [[origin]]
        name = "media"
        servers = ["127.0.0.1:9002"]
        [[route]]
        host = "*.Example.test"
        origin = "media"
        [[route]]
        host = "Shop.EXAMPLE.test"
        prefix = "/api/"
        origin = "app"
        cache = false
        [[route]]
        origin = "app"
    "#);
    let got: Vec<(HostMatch, &str, usize, bool)> = cfg
        .routes
        .iter()
        .map(|r| (r.host.clone(), r.prefix.as_str(), r.origin, r.cache))
        .collect();
    assert_eq!(
        got,
        vec![
            (HostMatch::Suffix(".example.test".into()), "/", 1, true),
            (
                HostMatch::Exact("shop.example.test".into()),
                "/api/",
                0,
                false
            ),
            (HostMatch::Any, "/", 0, true),
        ]
    );
}

#[test]
fn hash_is_16_hex_digits_and_follows_the_text() {
    let a = ok(MIN).hash;
    assert_eq!(a.len(), 16);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(ok(MIN).hash, a, "same text, same hash");
    assert_ne!(ok(&format!("{MIN}\n# changed")).hash, a);
}

#[test]
fn admin_token_is_read_from_the_named_env_var() {
    // PATH is set in every test environment; no need to mutate the process env.
    let cfg = ok(&with(
        "[admin]\nlisten = \"0.0.0.0:9090\"\ntoken_env = \"PATH\"",
    ));
    assert_eq!(cfg.admin.token, std::env::var("PATH").ok());
    let cfg = ok(&with(
        "[admin]\ntoken_env = \"OUTPOST_TEST_SURELY_UNSET_VAR\"",
    ));
    assert_eq!(cfg.admin.token, None);
}

#[test]
fn summary_is_one_line_with_counts() {
    let cfg = ok(&with("[cache]\nmemory = \"128MiB\""));
    let s = summary(&cfg);
    assert_eq!(
        s,
        format!("config ok: 1 listener(s), 1 origin(s) with 1 server(s), 1 route(s), cache memory 128MiB, disk off, hash {}", cfg.hash)
    );
}

#[test]
fn summary_mentions_tls_listeners_and_disk() {
    let dir = certs_dir();
    let text = with("[tls]\n[[tls.cert]]\ncert = \"a.pem\"\nkey = \"a.key\"\n[cache.disk]\npath = \"/srv/cache\"\nsize = \"2GiB\"");
    let s = summary(&parse(&text, dir.path()).unwrap());
    assert!(s.starts_with("config ok: 2 listener(s) (1 TLS), "), "{s}");
    assert!(s.contains(", disk 2GiB at /srv/cache, "), "{s}");
}

#[test]
fn format_size_uses_binary_units() {
    assert_eq!(format_size(256 << 20), "256MiB");
    assert_eq!(format_size(10 << 30), "10GiB");
    assert_eq!(format_size(1536), "1.5KiB");
    assert_eq!(format_size(100), "100B");
}

// === one rule, one exact message ===

#[test]
fn unknown_keys_are_errors_with_did_you_mean() {
    assert_error(
        &with("[cache]\nmemroy = \"1MiB\""),
        r#"cache.memroy: unknown key (did you mean "memory"?)"#,
    );
    assert_error(
        &with("[serverr]"),
        r#"serverr: unknown key (did you mean "server"?)"#,
    );
    assert_error(
        &with("[server]\nbananas = 1"),
        "server.bananas: unknown key",
    );
    assert_error(
        &MIN.replace("origin = \"app\"", "origin = \"app\"\ncahce = false"),
        r#"route[0].cahce: unknown key (did you mean "cache"?)"#,
    );
    assert_error(
        &MIN.replace(
            "\"127.0.0.1:9001\"",
            "{ addr = \"127.0.0.1:9001\", wieght = 2 }",
        ),
        r#"origin[0].servers[0].wieght: unknown key (did you mean "weight"?)"#,
    );
    assert_error(
        &format!("{MIN}\n[origin.health]\nintervall = \"1s\""),
        r#"origin[0].health.intervall: unknown key (did you mean "interval"?)"#,
    );
}

#[test]
fn wrong_types_name_what_was_expected() {
    assert_error(
        &with("[server]\nthreads = \"4\""),
        r#"server.threads: expected a non-negative integer, got "4""#,
    );
    assert_error(
        &with("[server]\nthreads = -1"),
        "server.threads: expected a non-negative integer, got -1",
    );
    assert_error(
        &with("[compression]\nenabled = \"yes\""),
        r#"compression.enabled: expected true or false, got "yes""#,
    );
    assert_error(
        &with("[server]\nlisten = \"127.0.0.1:8080\""),
        r#"server.listen: expected an array, got "127.0.0.1:8080""#,
    );
    assert_error(&with("server = 5"), "server: expected a table, got 5");
    assert_error(
        "[origin]\nname = \"app\"\nservers = [\"127.0.0.1:1\"]\n[[route]]\norigin = \"app\"",
        "origin: expected [[origin]] sections, got a table",
    );
    assert_error(
        &MIN.replace("\"127.0.0.1:9001\"", "9001"),
        r#"origin[0].servers[0]: expected "ip:port" or { addr = "ip:port", weight = N }, got 9001"#,
    );
}

#[test]
fn bad_addresses_sizes_and_durations() {
    let text = r#"
        [[origin]]
        name = "app"
        servers = ["127.0.0.1:9001"]
        [[origin]]
        name = "api"
        servers = ["10.0.0.1:http"]
        [[route]]
        origin = "app"
    "#;
    assert_error(
        text,
        r#"origin[1].servers[0]: invalid socket address "10.0.0.1:http""#,
    );
    assert_error(
        &with("[cache]\nmemory = \"lots\""),
        r#"cache.memory: expected a size like "256MiB", got "lots""#,
    );
    assert_error(
        &with("[cache]\nmemory = true"),
        r#"cache.memory: expected a size like "256MiB", got true"#,
    );
    assert_error(
        &with("[server]\ngrace_period = \"10 parsecs\""),
        r#"server.grace_period: expected a duration like "5s", got "10 parsecs""#,
    );
    assert_error(
        &with("[server]\ngrace_period = 10"),
        r#"server.grace_period: expected a duration like "5s", got 10"#,
    );
    assert_error(
        &with("[admin]\nlisten = \"localhost:9090\""),
        r#"admin.listen: invalid socket address "localhost:9090""#,
    );
    assert_error(
        &MIN.replace("\"127.0.0.1:9001\"", "{ weight = 2 }"),
        "origin[0].servers[0].addr: required key is missing",
    );
}

#[test]
fn origin_names_must_be_unique_and_present() {
    let dup = format!("{MIN}\n[[origin]]\nname = \"app\"\nservers = [\"127.0.0.1:9002\"]");
    assert_error(
        &dup,
        r#"origin[1].name: duplicate origin name "app" (also origin[0])"#,
    );
    assert_eq!(
        errors(&MIN.replace("name = \"app\"", "")),
        vec!["origin[0].name: required key is missing"],
        "no echo on the route: the origin's name is unknown, not wrong"
    );
}

#[test]
fn routes_must_name_a_known_origin() {
    assert_error(
        &MIN.replace("origin = \"app\"", "origin = \"apps\""),
        r#"route[0].origin: no origin named "apps" (did you mean "app"?)"#,
    );
    assert_error(
        &MIN.replace("origin = \"app\"", "origin = \"zzz\""),
        r#"route[0].origin: no origin named "zzz""#,
    );
    assert_error(
        &MIN.replace("origin = \"app\"", "cache = true"),
        "route[0].origin: required key is missing",
    );
}

#[test]
fn routes_need_a_slash_prefix_a_sane_host_and_no_twin() {
    let route =
        |body: &str| format!("[[origin]]\nname = \"app\"\nservers = [\"127.0.0.1:9001\"]\n{body}");
    assert_error(
        &route("[[route]]\norigin = \"app\"\nprefix = \"api\""),
        "route[0].prefix: must start with '/'",
    );
    assert_error(
        &route("[[route]]\norigin = \"app\"\nhost = \"a*.example.test\""),
        r#"route[0].host: expected an exact host, "*.example.test" or "*", got "a*.example.test""#,
    );
    assert_error(
        &route("[[route]]\norigin = \"app\"\n[[route]]\norigin = \"app\"\nhost = \"*\""),
        "route[1]: same host and prefix as route[0], so it can never match",
    );
}

#[test]
fn origins_need_servers_with_positive_weights() {
    assert_error(
        &MIN.replace("[\"127.0.0.1:9001\"]", "[]"),
        "origin[0].servers: must list at least one server",
    );
    assert_error(
        &MIN.replace("servers = [\"127.0.0.1:9001\"]", ""),
        "origin[0].servers: must list at least one server",
    );
    assert_error(
        &MIN.replace(
            "\"127.0.0.1:9001\"",
            "\"127.0.0.1:9001\", { addr = \"127.0.0.1:9002\", weight = 0 }",
        ),
        "origin[0].servers[1].weight: must be at least 1",
    );
    assert_error(
        &MIN.replace(
            "\"127.0.0.1:9001\"",
            "\"127.0.0.1:9001\", \"127.0.0.1:9001\"",
        ),
        "origin[0].servers[1]: duplicate server 127.0.0.1:9001 (also origin[0].servers[0])",
    );
    assert_error(
        &MIN.replace("name = \"app\"", "name = \"app\"\nconnect_timeout = \"0s\""),
        "origin[0].connect_timeout: must be greater than 0s",
    );
}

#[test]
fn selection_must_be_a_known_algorithm() {
    assert_error(
        &MIN.replace(
            "name = \"app\"",
            "name = \"app\"\nselection = \"roundrobin\"",
        ),
        r#"origin[0].selection: expected one of "round_robin", "weighted", "consistent", "random", "least_conn", got "roundrobin" (did you mean "round_robin"?)"#,
    );
}

#[test]
fn closed_sets_offer_did_you_mean() {
    assert_error(
        &with("[cache]\nclient_cache_control = \"honour\""),
        r#"cache.client_cache_control: expected one of "honor", "ignore", got "honour" (did you mean "honor"?)"#,
    );
    assert_error(
        &with("[compression]\nalgorithms = [\"br\", \"gzp\"]"),
        r#"compression.algorithms[1]: expected one of "br", "zstd", "gzip", got "gzp" (did you mean "gzip"?)"#,
    );
    assert_error(
        &with("[log]\naccess = \"stdot\""),
        r#"log.access: expected "stdout", "off" or a file path, got "stdot" (did you mean "stdout"?)"#,
    );
    assert_error(
        &with("[compression]\ntypes = [\"html\"]"),
        r#"compression.types[0]: expected a MIME type like "text/html" or "text/*", got "html""#,
    );
}

#[test]
fn log_level_must_be_a_tracing_filter() {
    assert_error(
        &with("[log]\nlevel = \"debg\""),
        r#"log.level: expected a level (trace, debug, info, warn, error, off) or a tracing filter, got "debg" (did you mean "debug"?)"#,
    );
    let errs = errors(&with("[log]\nlevel = \"outpost=loud\""));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(r#"log.level: invalid tracing filter "outpost=loud": "#),
        "{errs:?}"
    );
    assert_eq!(ok(&with("[log]\nlevel = \"WARN\"")).log.level, "WARN");
}

#[test]
fn default_ttl_keys_are_status_codes() {
    assert_eq!(
        errors(&with(
            "[cache]\ndefault_ttl = { \"abc\" = \"1m\", \"600\" = \"1m\", \"200\" = \"soon\" }"
        )),
        vec![
            r#"cache.default_ttl.200: expected a duration like "5s", got "soon""#,
            "cache.default_ttl.600: expected an HTTP status code (100-599) as the key",
            "cache.default_ttl.abc: expected an HTTP status code (100-599) as the key",
        ]
    );
}

#[test]
fn cidr_lists_reject_non_cidrs() {
    assert_error(
        &with("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.local\"]"),
        r#"server.trusted_proxies[1]: expected a CIDR like "10.0.0.0/8" or an IP address, got "proxy.local""#,
    );
    assert_error(
        &with("[cache]\npurge_allow = [\"10.0.0.0/33\"]"),
        r#"cache.purge_allow[0]: expected a CIDR like "10.0.0.0/8" or an IP address, got "10.0.0.0/33""#,
    );
}

#[test]
fn file_needs_origins_and_routes() {
    assert_eq!(
        errors(""),
        vec![
            "origin: at least one [[origin]] is required",
            "route: at least one [[route]] is required"
        ]
    );
}

#[test]
fn health_settings_must_be_usable() {
    let health = |body: &str| format!("{MIN}\n[origin.health]\n{body}");
    assert_error(
        &health("path = \"health\""),
        "origin[0].health.path: must start with '/'",
    );
    assert_error(
        &health("interval = \"0s\""),
        "origin[0].health.interval: must be greater than 0s",
    );
    assert_error(
        &health("timeout = \"0ms\""),
        "origin[0].health.timeout: must be greater than 0s",
    );
    assert_error(
        &health("fails = 0"),
        "origin[0].health.fails: must be at least 1",
    );
    assert_error(
        &health("passes = 0"),
        "origin[0].health.passes: must be at least 1",
    );
    assert_error(
        &health("expect_status = []"),
        "origin[0].health.expect_status: must list at least one status",
    );
    assert_error(
        &health("expect_status = [200, 700]"),
        "origin[0].health.expect_status[1]: expected an HTTP status code (100-599), got 700",
    );
}

#[test]
fn disk_must_hold_the_largest_object() {
    assert_error(
        &with("[cache]\nmax_object = \"64MiB\"\n[cache.disk]\npath = \"/tmp/x\"\nsize = \"1MiB\""),
        "cache.disk.size: 1MiB is smaller than cache.max_object (64MiB)",
    );
    assert_error(
        &with("[cache.disk]\nsize = 0"),
        "cache.disk.size: must be greater than 0",
    );
}

#[test]
fn exposed_admin_needs_a_token() {
    assert_error(
        &with("[admin]\nlisten = \"0.0.0.0:9090\"\ntoken_env = \"OUTPOST_TEST_SURELY_UNSET_VAR\""),
        "admin.listen: 0.0.0.0:9090 is not a loopback address, so the admin API needs a token: \
         set the environment variable OUTPOST_TEST_SURELY_UNSET_VAR (admin.token_env) or listen on 127.0.0.1",
    );
    assert_error(
        &with("[admin]\ntoken_env = \"A=B\""),
        r#"admin.token_env: not a valid environment variable name: "A=B""#,
    );
    ok(&with("[admin]\nlisten = \"[::1]:9090\""));
}

#[test]
fn listeners_must_not_collide() {
    assert_error(
        &with("[server]\nlisten = [\"127.0.0.1:9090\"]"),
        "admin.listen: 127.0.0.1:9090 is already used by server.listen[0]",
    );
    assert_error(
        &with("[server]\nlisten = [\"127.0.0.1:8080\", \"0.0.0.0:8080\"]"),
        "server.listen[1]: 0.0.0.0:8080 overlaps server.listen[0] (127.0.0.1:8080)",
    );
    let dir = certs_dir();
    let text = with("[server]\nlisten = [\"127.0.0.1:8443\"]\n[tls]\n[[tls.cert]]\ncert = \"a.pem\"\nkey = \"a.key\"");
    let errs = parse(&text, dir.path()).unwrap_err().0;
    assert_eq!(
        errs,
        vec!["tls.listen[0]: 127.0.0.1:8443 is already used by server.listen[0]"]
    );
    ok(&with(
        "[server]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"",
    ));
}

#[test]
fn some_listener_is_required() {
    assert_error(
        &with("[server]\nlisten = []"),
        "server.listen: no listener: list at least one address here or add a [tls] section",
    );
}

// === TLS files ===

// Throwaway self-signed P-256 pairs made for these tests (`openssl req -x509 -newkey ec`).
const CERT_A: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUCNRj0TXOBArQFOiO/+QuWyoyse0wCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOYS5leGFtcGxlLnRlc3QwIBcNMjYxMTI3MTAxMzEyWhgPMjEy
NjExMDMxMDEzMTJaMBkxFzAVBgNVBAMMDmEuZXhhbXBsZS50ZXN0MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAE6dfl19jRfEc48uS2bWkrJwuezhgayHrca048BXoB
clfPJhmK1m5m3zpGBLpsd0plJbfJJiSMeM4QtPH4JegA7aNTMFEwHQYDVR0OBBYE
FC5IYBeomWrrV3J2yY9P1hFPR2RtMB8GA1UdIwQYMBaAFC5IYBeomWrrV3J2yY9P
1hFPR2RtMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgdwrSy4LZ
OxWRabQ7zQoctixcB46eeoYjYE17xy8tpYgCIQDW2RI8ikuZaJePvRiKT8luJ75O
h8ACBAfolcWNjmqACQ==
-----END CERTIFICATE-----
";
const KEY_A: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDsbeOCBI9DBYNgk6
AGB1IN/ylgI8NDvuVeuZmp3XeaWhRANCAATp1+XX2NF8Rzjy5LZtaSsnC57OGBrI
etxrTjwFegFyV88mGYrWbmbfOkYEumx3SmUlt8kmJIx4zhC08fgl6ADt
-----END PRIVATE KEY-----
";
const KEY_B: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTI5gElkXYJlQJT/f
HA4ohrfAwOG52DviNFe9FQZDdP+hRANCAASSVhtAYVomZp0Zu+8+EQunh2FRmTRD
Zn/liy9xSWCmzac9K8fVWWvAYZQXy417YxLmqXIm30nmh+GnnNgHBobf
-----END PRIVATE KEY-----
";

/// A temp dir with `a.pem`/`a.key` (a matching pair), `b.key` (another key) and `junk.pem`.
fn certs_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("a.pem", CERT_A),
        ("a.key", KEY_A),
        ("b.key", KEY_B),
        ("junk.pem", "not pem\n"),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn tls_config(cert: &str, key: &str) -> String {
    with(&format!("[tls]\nlisten = [\"127.0.0.1:8443\"]\n[[tls.cert]]\ncert = \"{cert}\"\nkey = \"{key}\"\nserver_names = [\"Example.test\", \"*.example.test\"]"))
}

#[test]
fn matching_cert_and_key_load_relative_to_the_file() {
    let dir = certs_dir();
    let cfg = parse(&tls_config("a.pem", "a.key"), dir.path()).unwrap();
    let cert = &cfg.tls.unwrap().certs[0];
    assert_eq!(cert.key, dir.path().join("a.key"));
    assert_eq!(cert.server_names, vec!["example.test", "*.example.test"]);
    let abs = dir.path().join("a.pem");
    parse(&tls_config(&abs.display().to_string(), "a.key"), dir.path()).unwrap();
}

#[test]
fn unreadable_cert_files_are_reported_with_their_path() {
    let dir = certs_dir();
    let d = dir.path().display();
    assert_eq!(
        parse(&tls_config("missing.pem", "missing.key"), dir.path()).unwrap_err().0,
        vec![
            format!("tls.cert[0].cert: cannot read \"{d}/missing.pem\": No such file or directory (os error 2)"),
            format!("tls.cert[0].key: cannot read \"{d}/missing.key\": No such file or directory (os error 2)"),
        ]
    );
    assert_eq!(
        parse(&tls_config("junk.pem", "a.key"), dir.path())
            .unwrap_err()
            .0,
        vec![format!(
            "tls.cert[0].cert: no PEM certificate found in \"{d}/junk.pem\""
        )]
    );
    assert_eq!(
        parse(&tls_config("a.pem", "a.pem"), dir.path())
            .unwrap_err()
            .0,
        vec![format!(
            "tls.cert[0].key: no PEM private key found in \"{d}/a.pem\""
        )]
    );
}

#[test]
fn key_that_does_not_match_its_cert_is_an_error() {
    let dir = certs_dir();
    let d = dir.path().display();
    assert_eq!(
        parse(&tls_config("a.pem", "b.key"), dir.path())
            .unwrap_err()
            .0,
        vec![format!(
            "tls.cert[0].key: private key does not match the certificate in \"{d}/a.pem\""
        )]
    );
}

#[test]
fn tls_needs_a_cert_with_both_files() {
    assert_error(
        &with("[tls]"),
        "tls.cert: at least one [[tls.cert]] is required",
    );
    assert_eq!(
        errors(&with("[tls]\n[[tls.cert]]\nserver_names = [\"bad name\"]")),
        vec![
            "tls.cert[0].cert: required key is missing",
            "tls.cert[0].key: required key is missing",
            r#"tls.cert[0].server_names[0]: expected a host name like "example.test" or "*.example.test", got "bad name""#,
        ]
    );
}

// === reporting ===

#[test]
fn syntax_errors_give_the_line() {
    let errs = errors("[server]\nthreads = 1\nlisten = [\"127.0.0.1:8080\" \"x\"]\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("line 3, column 28: "), "{errs:?}");
    assert!(errs[0].contains("invalid TOML"), "{errs:?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        [server]
        listen = ["127.0.0.1:8080"]
        [cache]
        memory = "lots"
        memroy = "1MiB"
        [[origin]]
        name = "app"
        servers = ["10.0.0.1:http"]
        [[origin]]
        name = "app"
        servers = []
        [[route]]
        origin = "apps"
    "#;
    let e = parse(text, Path::new(".")).unwrap_err();
    assert_eq!(
        e.0,
        vec![
            r#"cache.memory: expected a size like "256MiB", got "lots""#,
            r#"cache.memroy: unknown key (did you mean "memory"?)"#,
            r#"origin[0].servers[0]: invalid socket address "10.0.0.1:http""#,
            r#"origin[1].name: duplicate origin name "app" (also origin[0])"#,
            "origin[1].servers: must list at least one server",
            r#"route[0].origin: no origin named "apps" (did you mean "app"?)"#,
        ]
    );
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), 6);
    assert!(shown.lines().all(|l| l.starts_with("error: ")), "{shown}");
}

#[test]
fn problems_are_listed_in_file_order() {
    let text = r#"
        [admin]
        listen = "0.0.0.0:9090"
        token_env = "OUTPOST_TEST_SURELY_UNSET_VAR"
        [server]
        threads = "many"
        [[origin]]
        name = "a"
        servers = []
        [[origin]]
        name = "b"
        servers = ["nowhere"]
        [[route]]
        origin = "c"
    "#;
    let heads: Vec<String> = errors(text)
        .iter()
        .map(|e| e.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(
        heads,
        vec![
            "server.threads",
            "admin.listen",
            "origin[0].servers",
            "origin[1].servers[0]",
            "route[0].origin"
        ]
    );
}

#[test]
fn shipped_config_files_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for name in [
        "outpost.toml",
        "dev.toml",
        "fleet-a.toml",
        "fleet-b.toml",
        "fleet-c.toml",
    ] {
        let path = dir.join(name);
        let cfg = load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        assert_eq!(cfg.source.as_deref(), Some(path.as_path()));
    }
    let dev = load(&dir.join("dev.toml")).unwrap();
    assert_eq!(dev.server.listen, vec![addr("127.0.0.1:8080")]);
    assert_eq!(dev.admin.listen, addr("127.0.0.1:9090"));
    assert_eq!(dev.origins[0].name, "app");
    assert_eq!(dev.origins[0].servers[0].addr, addr("127.0.0.1:9001"));
    assert_eq!(dev.routes[0].host, HostMatch::Any);
}

// === second-wave keys: limits, ACLs, rate limits, slicing, log format, cluster ===

#[test]
fn new_keys_get_documented_defaults() {
    let cfg = ok(MIN);
    let s = &cfg.server;
    assert_eq!((s.max_headers, s.max_uri), (100, 8 * 1024));
    assert_eq!(s.header_timeout, Duration::from_secs(10));
    assert_eq!(s.idle_timeout, Duration::from_secs(60));
    assert_eq!((s.max_connections, s.max_connections_per_ip), (10_000, 0));
    assert_eq!(s.upgrade_sock, PathBuf::from("/tmp/outpost-upgrade.sock"));
    assert!(cfg.cache.forward_cdn_cache_control);
    assert_eq!(cfg.log.format, LogFormat::Text);
    let r = &cfg.routes[0];
    assert!(r.allow.is_empty() && r.deny.is_empty());
    assert_eq!((r.rate_limit, r.slice), (None, 0));
    assert!(cfg.origins[0].verify && cfg.origins[0].ca.is_none());
    assert!(cfg.cluster.is_none());
}

#[test]
fn route_acl_rate_limit_and_slice_parse() {
    let cfg = ok(r#"
[[origin]]
name = "app"
servers = ["127.0.0.1:9001"]
[[route]]
origin = "app"
allow = ["10.0.0.0/8", "::1"]
deny = ["10.1.0.0/16"]
rate_limit = { requests = 5, per = "10s", burst = 2 }
slice = "4MiB"
"#);
    let r = &cfg.routes[0];
    assert_eq!(r.allow.len(), 2);
    assert_eq!(r.deny[0].to_string(), "10.1.0.0/16");
    assert_eq!(
        r.rate_limit,
        Some(RateLimitConfig {
            requests: 5,
            per: Duration::from_secs(10),
            burst: 2
        })
    );
    assert_eq!(r.slice, 4 << 20);
}

#[test]
fn cluster_defaults_and_self_inferred_from_listen() {
    let cfg = ok(&with(
        "[server]\nlisten = [\"127.0.0.1:8081\"]\n[cluster]\nnode = \"edge-1\"\npeers = [\"127.0.0.1:8081\", \"127.0.0.1:8082\"]",
    ));
    let c = cfg.cluster.unwrap();
    assert_eq!(c.node, "edge-1");
    assert_eq!(c.nats, vec!["nats://127.0.0.1:4222".to_string()]);
    assert_eq!(c.stream, "OUTPOST_PURGES");
    assert_eq!(c.purge_wait, Duration::from_secs(2));
    assert_eq!(c.self_addr, Some(addr("127.0.0.1:8081")));
    let plain = ok(&with("[cluster]")).cluster.unwrap();
    assert!(!plain.node.is_empty(), "defaults to the host name");
    assert!(plain.peers.is_empty() && plain.self_addr.is_none());
}

#[test]
fn second_wave_rules_name_their_keys() {
    assert_error(
        &with("[cluster]\npeers = [\"127.0.0.1:8081\"]\nself = \"127.0.0.1:8090\""),
        "cluster.self: 127.0.0.1:8090 is not one of cluster.peers",
    );
    assert_error(
        &with("[cluster]\npeers = [\"127.0.0.1:8081\"]"),
        "cluster.self: required when cluster.peers is set (this node's own entry in peers)",
    );
    assert_error(
        &with("[log]\nformat = \"jsn\""),
        "log.format: expected one of \"text\", \"json\", got \"jsn\" (did you mean \"json\"?)",
    );
    assert_error(
        &with("[server]\nmax_headers = 0"),
        "server.max_headers: must be greater than 0",
    );
    let text = r#"
[[origin]]
name = "app"
servers = ["127.0.0.1:9001"]
[[route]]
origin = "app"
slice = "big"
deny = ["300.0.0.0/8"]
"#;
    assert_eq!(
        errors(text),
        vec![
            "route[0].deny[0]: expected a CIDR like \"10.0.0.0/8\" or an IP address, got \"300.0.0.0/8\"".to_string(),
            "route[0].slice: expected a size like \"256MiB\", got \"big\"".to_string(),
        ]
    );
}

#[test]
fn check_counts_sliced_routes_and_names_slices_no_tier_stores() {
    let sliced = |slice: &str| {
        summary(&ok(&format!(
            "[cache]\nmemory = \"64MiB\"\n{MIN}slice = \"{slice}\"\n"
        )))
    };
    let s = sliced("4MiB");
    assert!(s.contains(", 1 route(s) (1 sliced), "), "{s}");
    let s = sliced("64MiB");
    assert!(
        s.contains(
            "(1 sliced; route[0].slice 64MiB is over the 32MiB a tier stores: served unsliced)"
        ),
        "{s}"
    );
}

#[test]
fn check_says_when_the_disk_tier_holds_less_than_max_object() {
    let cfg = ok(&with(
        "[cache]\nmax_object = \"512MiB\"\n[cache.disk]\npath = \"/tmp/x\"\nsize = \"1GiB\"",
    ));
    let s = summary(&cfg);
    assert!(
        s.contains("holds objects up to 128MiB = size/8, below cache.max_object 512MiB"),
        "{s}"
    );
}
