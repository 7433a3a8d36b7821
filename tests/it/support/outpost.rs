//! The real `outpost` binary on a temporary TOML config (interface.md §1–§2).
//! Listeners use port 0; the bound addresses are read from the `listening proxy=`/`admin=` log
//! lines. Killed (SIGKILL) on drop through its own `Child` handle; all output is kept for panics.

use super::cli::{spawn_capture, Captured};
use super::origin::Origin;
use super::resp::{parse_metric, Resp};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The admin token the builder's `.token()` sets by default.
pub(crate) const TOKEN: &str = "test-token";

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `[origin.health]` of an origin.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    interval: String,
    fails: usize,
    passes: usize,
    timeout: String,
}

impl Health {
    /// Checks `/health` every `interval`; fails 2, passes 2, timeout 1s unless changed.
    pub(crate) fn every(interval: &str) -> Self {
        Self {
            interval: interval.into(),
            fails: 2,
            passes: 2,
            timeout: "1s".into(),
        }
    }

    pub(crate) fn fails(mut self, n: usize) -> Self {
        self.fails = n;
        self
    }

    pub(crate) fn passes(mut self, n: usize) -> Self {
        self.passes = n;
        self
    }
}

/// One `[[origin]]`.
#[derive(Debug, Clone)]
pub(crate) struct OriginSpec {
    name: String,
    servers: Vec<(SocketAddr, usize)>,
    health: Option<Health>,
    keys: BTreeMap<String, String>,
}

impl OriginSpec {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            servers: Vec::new(),
            health: None,
            keys: BTreeMap::new(),
        }
    }

    /// Adds `origin` as a server of weight 1.
    pub(crate) fn server(self, origin: &Origin) -> Self {
        self.weighted(origin, 1)
    }

    /// Adds `origin` as a server of weight `w`.
    pub(crate) fn weighted(self, origin: &Origin, w: usize) -> Self {
        self.server_addr(origin.addr(), w)
    }

    /// Adds a server by address (e.g. one nobody listens on).
    pub(crate) fn server_addr(mut self, addr: SocketAddr, w: usize) -> Self {
        self.servers.push((addr, w));
        self
    }

    /// `selection = "..."`.
    pub(crate) fn selection(self, s: &str) -> Self {
        self.set("selection", &quote(s))
    }

    pub(crate) fn retries(self, n: usize) -> Self {
        self.set("retries", &n.to_string())
    }

    pub(crate) fn read_timeout(self, d: &str) -> Self {
        self.set("read_timeout", &quote(d))
    }

    pub(crate) fn connect_timeout(self, d: &str) -> Self {
        self.set("connect_timeout", &quote(d))
    }

    /// `host = "..."`: the Host header sent upstream.
    pub(crate) fn host(self, h: &str) -> Self {
        self.set("host", &quote(h))
    }

    pub(crate) fn health(mut self, h: Health) -> Self {
        self.health = Some(h);
        self
    }

    /// Any other key, value given as TOML (`set("tls", "false")`).
    pub(crate) fn set(mut self, key: &str, toml_value: &str) -> Self {
        self.keys.insert(key.into(), toml_value.into());
        self
    }

    fn render(&self, out: &mut String) {
        out.push_str("\n[[origin]]\n");
        out.push_str(&format!("name = {}\n", quote(&self.name)));
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|(addr, w)| match w {
                1 => quote(&addr.to_string()),
                w => format!("{{ addr = {}, weight = {w} }}", quote(&addr.to_string())),
            })
            .collect();
        out.push_str(&format!("servers = [{}]\n", servers.join(", ")));
        for (k, v) in &self.keys {
            out.push_str(&format!("{k} = {v}\n"));
        }
        if let Some(h) = &self.health {
            out.push_str("[origin.health]\npath = \"/health\"\n");
            out.push_str(&format!(
                "interval = {}\ntimeout = {}\nfails = {}\npasses = {}\n",
                quote(&h.interval),
                quote(&h.timeout),
                h.fails,
                h.passes
            ));
        }
    }
}

/// Builder for an [`Outpost`] process.
#[derive(Debug, Clone)]
pub(crate) struct OutpostBuilder {
    sections: BTreeMap<String, Vec<(String, String)>>,
    origins: Vec<OriginSpec>,
    routes: Vec<String>,
    raw: Vec<String>,
    env: Vec<(String, String)>,
    token: Option<String>,
    disk: Option<String>,
    access_log: bool,
}

impl OutpostBuilder {
    /// Shortcut: an origin with the one server `origin`, routed from `host` (prefix `/`).
    /// The origin is named `site<N>` (N = its index).
    pub(crate) fn site(self, host: &str, origin: &Origin) -> Self {
        let name = format!("site{}", self.origins.len());
        self.origin(OriginSpec::new(&name).server(origin))
            .route(host, "/", &name)
    }

    pub(crate) fn origin(mut self, spec: OriginSpec) -> Self {
        self.origins.push(spec);
        self
    }

    /// `[[route]]` with the cache on.
    pub(crate) fn route(mut self, host: &str, prefix: &str, origin: &str) -> Self {
        self.routes.push(format!(
            "host = {}\nprefix = {}\norigin = {}\n",
            quote(host),
            quote(prefix),
            quote(origin)
        ));
        self
    }

    /// `[[route]]` with the cache on and `slice = "<slice>"`.
    pub(crate) fn route_sliced(
        mut self,
        host: &str,
        prefix: &str,
        origin: &str,
        slice: &str,
    ) -> Self {
        self.routes.push(format!(
            "host = {}\nprefix = {}\norigin = {}\nslice = {}\n",
            quote(host),
            quote(prefix),
            quote(origin),
            quote(slice)
        ));
        self
    }

    /// `[[route]]` with `cache = false`.
    pub(crate) fn route_uncached(mut self, host: &str, prefix: &str, origin: &str) -> Self {
        self.routes.push(format!(
            "host = {}\nprefix = {}\norigin = {}\ncache = false\n",
            quote(host),
            quote(prefix),
            quote(origin)
        ));
        self
    }

    /// Sets `key = toml_value` in the single table `section` (`"server"`, `"cache"`, ...),
    /// replacing the harness default for that key if there is one.
    pub(crate) fn set(mut self, section: &str, key: &str, toml_value: &str) -> Self {
        let lines = self.sections.entry(section.into()).or_default();
        lines.retain(|(k, _)| k != key);
        lines.push((key.into(), toml_value.into()));
        self
    }

    /// Raw TOML appended after the single tables (e.g. a `[cache.disk]` table).
    pub(crate) fn raw(mut self, toml: &str) -> Self {
        self.raw.push(toml.into());
        self
    }

    /// Adds a `[cache.disk]` tier of `size` in a directory inside the test's temp dir.
    pub(crate) fn disk(mut self, size: &str) -> Self {
        self.disk = Some(size.into());
        self
    }

    /// Sends the access log to `access.log` in the test's temp dir ([`Outpost::access_log`]).
    pub(crate) fn access_log(mut self) -> Self {
        self.access_log = true;
        self
    }

    /// An environment variable for the process.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets `OUTPOST_ADMIN_TOKEN` to [`TOKEN`]; [`Outpost::purge`] then sends it.
    pub(crate) fn token(mut self) -> Self {
        self.token = Some(TOKEN.into());
        self.env("OUTPOST_ADMIN_TOKEN", TOKEN)
    }

    /// The TOML text this builder writes.
    pub(crate) fn config_text(&self) -> String {
        let mut out = String::from("# written by tests/it/support/outpost.rs\n");
        for (section, lines) in &self.sections {
            out.push_str(&format!("\n[{section}]\n"));
            for (k, v) in lines {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        for raw in &self.raw {
            out.push('\n');
            out.push_str(raw);
            out.push('\n');
        }
        for origin in &self.origins {
            origin.render(&mut out);
        }
        for route in &self.routes {
            out.push_str("\n[[route]]\n");
            out.push_str(route);
        }
        out
    }

    /// Writes the config, spawns `outpost run -c FILE`, and waits until both listeners are
    /// logged and admin `/healthz` answers 200 (panics with the captured output after 20 s).
    pub(crate) async fn start(mut self) -> Outpost {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(size) = self.disk.take() {
            let path = dir.path().join("disk-cache");
            std::fs::create_dir_all(&path).expect("disk cache dir");
            let path = path.to_str().expect("utf-8 temp path");
            self.raw.push(format!(
                "[cache.disk]\npath = {}\nsize = {}",
                quote(path),
                quote(&size)
            ));
        }
        if self.access_log {
            let path = dir.path().join("access.log");
            let path = path.to_str().expect("utf-8 temp path");
            self = self.set("log", "access", &quote(path));
        }
        let config = dir.path().join("outpost.toml");
        let text = self.config_text();
        std::fs::write(&config, &text).expect("write config");
        let (child, output) = spawn_run(&config, dir.path(), &self.env);
        let mut outpost = Outpost {
            child,
            output,
            proxy: None,
            admin: None,
            client: client(),
            config,
            config_text: text,
            token: self.token,
            env: self.env,
            _dir: dir,
        };
        outpost.wait_ready().await;
        outpost
    }
}

fn spawn_run(config: &Path, dir: &Path, env: &[(String, String)]) -> (Child, Captured) {
    let mut cmd = outpost_command();
    cmd.arg("run").arg("-c").arg(config).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_capture(cmd)
}

/// A `Command` for the outpost binary with a clean, colourless environment.
pub(crate) fn outpost_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"));
    cmd.env("NO_COLOR", "1")
        .env_remove("OUTPOST_ADMIN_TOKEN")
        .env_remove("RUST_LOG");
    cmd
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("reqwest client")
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// A running outpost process.
pub(crate) struct Outpost {
    child: Child,
    output: Captured,
    proxy: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    client: reqwest::Client,
    config: PathBuf,
    config_text: String,
    token: Option<String>,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Outpost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outpost(proxy={:?}, admin={:?})", self.proxy, self.admin)
    }
}

impl Outpost {
    /// The defaults every test starts from: loopback port-0 listeners, quiet access log,
    /// short grace period, two threads.
    pub(crate) fn builder() -> OutpostBuilder {
        let b = OutpostBuilder {
            sections: BTreeMap::new(),
            origins: Vec::new(),
            routes: Vec::new(),
            raw: Vec::new(),
            env: Vec::new(),
            token: None,
            disk: None,
            access_log: false,
        };
        b.set("server", "listen", "[\"127.0.0.1:0\"]")
            .set("server", "threads", "2")
            .set("server", "grace_period", "\"1s\"")
            .set("admin", "listen", "\"127.0.0.1:0\"")
            .set("log", "access", "\"off\"")
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "outpost exited early with {status}\n--- config ---\n{}\n--- output ---\n{}",
                    self.config_text,
                    self.output()
                );
            }
            if self.proxy.is_none() || self.admin.is_none() {
                let out = self.output();
                self.proxy = self.proxy.or_else(|| listening_addr(&out, "proxy="));
                self.admin = self.admin.or_else(|| listening_addr(&out, "admin="));
            }
            if let Some(admin) = self.admin {
                if self.proxy.is_some() {
                    let url = format!("http://{admin}/healthz");
                    if let Ok(r) = self.client.get(url).send().await {
                        if r.status() == 200 {
                            return;
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "outpost not ready after {START_TIMEOUT:?} (proxy={:?}, admin={:?})\n--- config ---\n{}\n--- output ---\n{}",
                    self.proxy,
                    self.admin,
                    self.config_text,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The temporary directory holding the config (a good place for `cache.disk.path`).
    pub(crate) fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Stops the process (SIGTERM and wait when `graceful`, else SIGKILL) and starts it again
    /// on the same config file; listener addresses are read afresh.
    pub(crate) async fn restart(&mut self, graceful: bool) {
        if graceful {
            self.terminate();
            let exit = self.wait_exit(Duration::from_secs(10)).await;
            assert!(
                exit.is_some_and(|e| e.success()),
                "graceful stop failed ({exit:?}):\n{}",
                self.output()
            );
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let (child, output) = spawn_run(&self.config, self._dir.path(), &self.env);
        self.child = child;
        self.output = output;
        self.proxy = None;
        self.admin = None;
        self.wait_ready().await;
    }

    /// Overwrites the config file (for `POST /config/reload`).
    pub(crate) fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("rewrite config");
    }

    /// The access log file of a builder with `.access_log()`.
    pub(crate) fn access_log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("access.log")).unwrap_or_default()
    }

    /// `outpost demo`, awaited like `run` (its listeners are logged the same way).
    pub(crate) async fn demo() -> Outpost {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = outpost_command();
        cmd.arg("demo").current_dir(dir.path());
        let (child, output) = spawn_capture(cmd);
        let mut outpost = Outpost {
            child,
            output,
            proxy: None,
            admin: None,
            client: client(),
            config: dir.path().join("none.toml"),
            config_text: "(outpost demo)".into(),
            token: None,
            env: Vec::new(),
            _dir: dir,
        };
        outpost.wait_ready().await;
        outpost
    }

    /// What the process wrote on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.output.stderr()
    }

    /// Everything the process printed so far (stdout and stderr, interleaved by line).
    pub(crate) fn output(&self) -> String {
        self.output.text()
    }

    pub(crate) fn proxy_addr(&self) -> SocketAddr {
        self.proxy.expect("proxy address known after start")
    }

    pub(crate) fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("admin address known after start")
    }

    /// The first TLS listener (`listening tls=ADDR`, logged before the admin line, so it is
    /// known once `start` returns). Panics with the output when there is none.
    pub(crate) fn tls_addr(&self) -> SocketAddr {
        let out = self.output();
        listening_addr(&out, "tls=").unwrap_or_else(|| panic!("no `listening tls=` line:\n{out}"))
    }

    pub(crate) fn config_path(&self) -> &Path {
        &self.config
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://PROXY{path}`
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy_addr())
    }

    /// The shared client (no proxy from env, no redirects, 15 s timeout).
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `GET path` with `Host: host`.
    pub(crate) async fn get(&self, host: &str, path: &str) -> Resp {
        self.request("GET", host, path, &[]).await
    }

    /// Any method with `Host: host` and extra headers; the body is read completely.
    pub(crate) async fn request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.request_with_body(method, host, path, headers, "")
            .await
    }

    pub(crate) async fn request_with_body(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method.clone(), self.url(path))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.body(body.to_owned());
        }
        let started = Instant::now();
        match req.send().await {
            Ok(r) => Resp::read(r, started).await,
            Err(e) => panic!(
                "{method} http://{host}{path} via {} failed: {e:?}\n--- output ---\n{}",
                self.proxy_addr(),
                self.output()
            ),
        }
    }

    /// `GET path` on a new connection (for cases where a reused one would test something else).
    pub(crate) async fn get_fresh(&self, host: &str, path: &str) -> Resp {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(15))
            .build()
            .expect("reqwest client");
        let started = Instant::now();
        let r = client
            .get(self.url(path))
            .header("host", host)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET http://{host}{path}: {e:?}\n{}", self.output()));
        Resp::read(r, started).await
    }

    /// `GET` on the admin listener.
    pub(crate) async fn admin_get(&self, path: &str) -> Resp {
        let url = format!("http://{}{path}", self.admin_addr());
        let started = Instant::now();
        let r = self.client.get(&url).send().await;
        Resp::read(r.unwrap_or_else(|e| panic!("GET {url}: {e:?}")), started).await
    }

    /// `POST` on the admin listener with an optional bearer token.
    pub(crate) async fn admin_post(&self, path: &str, body: &str, token: Option<&str>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.admin_post_raw(path, body, &headers).await
    }

    /// POST to the admin API with the given extra headers (no token added).
    pub(crate) async fn admin_post_raw(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = format!("http://{}{path}", self.admin_addr());
        let mut req = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let started = Instant::now();
        let r = req.send().await;
        Resp::read(r.unwrap_or_else(|e| panic!("POST {url}: {e:?}")), started).await
    }

    /// `POST /purge` with this outpost's token; panics unless the answer is 200.
    pub(crate) async fn purge(&self, json: &str) -> Resp {
        let token = self.token.as_deref().expect("builder .token() for purge");
        let r = self.admin_post("/purge", json, Some(token)).await;
        assert_eq!(r.status, 200, "POST /purge {json} -> {r:?}");
        r
    }

    /// The sum of every sample of `name` whose labels include all of `labels` (0 if none).
    pub(crate) async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        parse_metric(&self.metrics_text().await, name, labels)
    }

    /// The `/metrics` text.
    pub(crate) async fn metrics_text(&self) -> String {
        let r = self.admin_get("/metrics").await;
        assert_eq!(r.status, 200, "GET /metrics -> {r:?}");
        r.text()
    }

    /// Writes `bytes` on a fresh TCP connection to the proxy listener and returns what comes
    /// back until the peer closes or 3 s pass.
    pub(crate) async fn raw(&self, bytes: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.proxy_addr())
            .await
            .expect("connect proxy");
        stream.write_all(bytes).await.expect("write raw request");
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 8192];
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends `first`, reads one answer, then sends `second` on the same connection and reads
    /// again (each read ends at a pause of 500 ms or EOF). For keep-alive checks.
    pub(crate) async fn raw_twice(&self, first: &[u8], second: &[u8]) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(self.proxy_addr())
            .await
            .expect("connect proxy");
        let mut answers = Vec::new();
        for bytes in [first, second] {
            let mut out = Vec::new();
            if stream.write_all(bytes).await.is_ok() {
                let mut buf = [0u8; 8192];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
            }
            answers.push(String::from_utf8_lossy(&out).into_owned());
        }
        let second = answers.pop().unwrap_or_default();
        (answers.pop().unwrap_or_default(), second)
    }

    /// Sends SIGTERM (through `kill`, since the crate forbids `unsafe`).
    pub(crate) fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` ("HUP", "QUIT", ...) to the process, by its PID.
    pub(crate) fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// SIGKILL, and waits for the process to be gone (start it again with `restart`).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The graceful binary upgrade of interface.md §1: starts `outpost run --upgrade` on the
    /// same config, sends SIGQUIT to the running process once the new one waits for its
    /// sockets, and from then on this handle is the new process. Returns the old one (its
    /// child and output) for the caller to watch it exit. The config needs fixed ports.
    pub(crate) async fn upgrade(&mut self) -> (Child, Captured) {
        let mut cmd = outpost_command();
        cmd.arg("run")
            .arg("--upgrade")
            .arg("-c")
            .arg(&self.config)
            .current_dir(self._dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let (child, output) = spawn_capture(cmd);
        let deadline = Instant::now() + START_TIMEOUT;
        while !output.text().contains("waiting for the running outpost") {
            assert!(
                Instant::now() < deadline,
                "new process never waited for the sockets:\n{}",
                output.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // it listens on upgrade_sock
        self.signal("QUIT");
        let old_child = std::mem::replace(&mut self.child, child);
        let old_output = std::mem::replace(&mut self.output, output);
        self.proxy = None;
        self.admin = None;
        self.wait_ready().await;
        (old_child, old_output)
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Outpost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds `key=ADDR` on a line that mentions "listening" (quotes and ANSI colours tolerated).
fn listening_addr(output: &str, key: &str) -> Option<SocketAddr> {
    output
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains("listening"))
        .find_map(|l| {
            let at = l.find(key)? + key.len();
            let addr: String = l[at..]
                .trim_start_matches(['"', '\''])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
                .collect();
            addr.parse().ok()
        })
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn listening_lines_are_parsed_with_or_without_decoration() {
    let out = "x\n\u{1b}[2mINFO\u{1b}[0m listening proxy=\"127.0.0.1:0\"\nINFO outpost: listening admin=[::1]:0 more\n";
    assert_eq!(
        listening_addr(out, "proxy="),
        "127.0.0.1:0".parse::<SocketAddr>().ok()
    );
    assert_eq!(
        listening_addr(out, "admin="),
        "[::1]:0".parse::<SocketAddr>().ok()
    );
    assert_eq!(listening_addr(out, "tls="), None);
    let tls = "INFO listening tls=127.0.0.1:8443\n";
    assert_eq!(
        listening_addr(tls, "tls="),
        "127.0.0.1:8443".parse::<SocketAddr>().ok()
    );
}
