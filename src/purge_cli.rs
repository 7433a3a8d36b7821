//! `outpost purge`: builds a purge request and sends it to the admin API
//! (address and token env var from the config file; `--admin` overrides the address).
#![allow(clippy::print_stdout)]

use crate::error::Error;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `outpost purge`.
#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// Config file giving the admin address and token env var.
    #[arg(short, long, default_value = "config/outpost.toml")]
    config: PathBuf,
    /// Admin API base URL, e.g. http://127.0.0.1:9090 (overrides the config).
    #[arg(long)]
    admin: Option<String>,
    /// URLs to purge (all variants).
    urls: Vec<String>,
    /// Purge every object with this tag (Surrogate-Key / Cache-Tag).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Purge every URL starting with this prefix (scheme://host/path).
    #[arg(long = "prefix")]
    prefixes: Vec<String>,
    /// Purge everything cached for this host.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Purge everything.
    #[arg(long)]
    all: bool,
    /// Mark stale instead of removing.
    #[arg(long)]
    soft: bool,
}

/// Sends the purge and prints the answer; any failure is an error.
pub fn run(args: &PurgeArgs) -> Result<(), Error> {
    if args.urls.is_empty()
        && args.tags.is_empty()
        && args.prefixes.is_empty()
        && args.hosts.is_empty()
        && !args.all
    {
        return Err(Error::Usage(
            "error: nothing to purge: give URLs, --tag, --prefix, --host or --all".into(),
        ));
    }
    let (admin, token_env) = match (&args.admin, crate::config::load(&args.config)) {
        (Some(a), Ok(cfg)) => (a.clone(), cfg.admin.token_env),
        (Some(a), Err(_)) => (a.clone(), "OUTPOST_ADMIN_TOKEN".to_string()),
        (None, Ok(cfg)) => (format!("http://{}", cfg.admin.listen), cfg.admin.token_env),
        (None, Err(e)) => return Err(e.into()),
    };
    let token = std::env::var(&token_env).unwrap_or_default();
    let mut body = json!({
        "urls": args.urls, "tags": args.tags, "prefixes": args.prefixes, "hosts": args.hosts, "soft": args.soft,
    });
    if args.all {
        body["all"] = json!(true);
    }
    let (status, answer) = post(&admin, "/purge", &token, &body.to_string())?;
    println!("{}", answer.trim_end());
    if status == 200 {
        Ok(())
    } else if status == 202 {
        // Applied here and queued for the fleet: some live node has not acknowledged yet.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("warning: applied, but not every node of the fleet acknowledged it within cluster.purge_wait");
        }
        Ok(())
    } else {
        Err(Error::Runtime(format!("purge failed: HTTP {status}")))
    }
}

/// Minimal HTTP/1.1 POST to `http://host:port` (the admin API is plain HTTP on loopback).
fn post(base: &str, path: &str, token: &str, body: &str) -> Result<(u16, String), Error> {
    let hostport = base
        .strip_prefix("http://")
        .unwrap_or(base)
        .trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::Usage(format!("error: --admin: invalid address \"{base}\"")))?;
    let fail = |e: std::io::Error| Error::io(format!("admin API at {addr}"), e);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(fail)?;
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(fail)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(fail)?;
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
