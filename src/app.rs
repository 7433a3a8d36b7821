//! `Config` → running Pingora server: proxy service (one listener per `server.listen`),
//! admin service, health checks; signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads
//! the config file, SIGQUIT hands the listening sockets to `run --upgrade` and stops.

use crate::access_log::AccessLog;
use crate::admin::Admin;
use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::ops::LiveOps;
use crate::proxy::Outpost;
use crate::state::{Runtime, Shared};
use crate::upstream::health::HealthChecks;
use async_trait::async_trait;
use pingora::listeners::{
    L4BufferSettings, ListenerConfig, TcpSocketOptions, DEFAULT_L4_WRITE_BUFFER_SIZE,
};
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Read buffer of a client connection (Pingora's default is 64 KiB per connection).
const CLIENT_READ_BUFFER: usize = 2 * 1024;

/// Addresses actually bound, after port-0 resolution.
#[derive(Debug, Clone)]
pub struct Bound {
    pub proxy: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub admin: SocketAddr,
    /// Ports chosen for port-0 listeners, held until Pingora's own sockets accept on them.
    held: Arc<std::sync::Mutex<Vec<socket2::Socket>>>,
}

/// A listener address resolved before Pingora binds it.
struct Reserved {
    addr: SocketAddr,
    /// For port 0: a bound (not listening) `SO_REUSEPORT` socket that keeps the chosen port
    /// from any other process until Pingora binds its listener (also `SO_REUSEPORT`) there.
    /// Without it, a port released here could be taken by someone else in between, and
    /// `listening ...=ADDR` would name another process's port.
    hold: Option<socket2::Socket>,
}

impl Reserved {
    /// Pingora's socket options for this listener.
    fn options(&self) -> Option<TcpSocketOptions> {
        self.hold.as_ref().map(|_| {
            let mut o = TcpSocketOptions::default();
            o.so_reuseport = Some(true);
            o
        })
    }
}

/// Resolves port 0 to a free port (held, see [`Reserved`]) and checks every other address
/// can be bound, naming the config key of the one that cannot (exit 1, interface.md §1).
/// Fixed ports are only probed: holding them with `SO_REUSEPORT` would let a second
/// outpost share a port already in use instead of failing.
/// With `upgrade`, the old process still holds the fixed ports: nothing is probed (Pingora
/// inherits those sockets), and port 0 cannot be handed over.
fn reserve(addr: SocketAddr, key: &str, upgrade: bool) -> Result<Reserved, Error> {
    let fail = |e: std::io::Error| Error::io(format!("{key}: cannot listen on {addr}"), e);
    if upgrade {
        if addr.port() == 0 {
            return Err(Error::Runtime(format!(
                "{key}: port 0 cannot be handed over by --upgrade; give a fixed port"
            )));
        }
        return Ok(Reserved { addr, hold: None });
    }
    if addr.port() != 0 {
        let l = TcpListener::bind(addr).map_err(fail)?;
        let addr = l.local_addr().map_err(fail)?;
        return Ok(Reserved { addr, hold: None });
    }
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .map_err(fail)?;
    s.set_reuse_address(true).map_err(fail)?;
    s.set_reuse_port(true).map_err(fail)?;
    s.bind(&addr.into()).map_err(fail)?;
    let local = s
        .local_addr()
        .map_err(fail)?
        .as_socket()
        .ok_or_else(|| Error::Runtime(format!("{key}: {addr} is not an IP address")))?;
    Ok(Reserved {
        addr: local,
        hold: Some(s),
    })
}

/// A built, not yet running server.
pub struct Built {
    pub server: Server,
    pub bound: Bound,
    pub shared: Arc<Shared>,
    /// The admin API's operations (SIGHUP reloads through them, sharing the rollback history).
    pub ops: Arc<LiveOps>,
}

/// Builds the Pingora server for `cfg`. With `upgrade`, the listening sockets are taken over
/// from the running outpost (over `server.upgrade_sock`, once it got SIGQUIT) before the
/// cache storage opens, so the old process has closed its disk tier by then.
pub fn build(cfg: Config, upgrade: bool) -> Result<Built, Error> {
    let mut proxy_addrs = Vec::new();
    for (i, a) in cfg.server.listen.iter().enumerate() {
        proxy_addrs.push(reserve(*a, &format!("server.listen[{i}]"), upgrade)?);
    }
    let mut tls_addrs = Vec::new();
    if let Some(tls) = &cfg.tls {
        for (i, a) in tls.listen.iter().enumerate() {
            tls_addrs.push(reserve(*a, &format!("tls.listen[{i}]"), upgrade)?);
        }
    }
    let admin_addr = reserve(cfg.admin.listen, "admin.listen", upgrade)?;
    let certs = cfg
        .tls
        .as_ref()
        .map(crate::tls::CertStore::load)
        .transpose()?;

    let metrics = Arc::new(Metrics::new());
    let access_log = AccessLog::open(&cfg.log.access).map_err(|e| Error::io("log.access", e))?;
    let cfg = Arc::new(cfg);
    let runtime = Runtime::new(cfg.clone(), &metrics);

    let tmp = std::env::temp_dir();
    let conf = ServerConf {
        threads: cfg.server.threads.max(1),
        // SIGTERM: `Drain` drains before pingora is told to stop, then asks for a fast stop.
        // SIGQUIT (upgrade): pingora stops accepting after handing the sockets over and then
        // sleeps this long unconditionally; `Drain` exits as soon as the last request is done.
        grace_period_seconds: Some(cfg.server.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: tmp
            .join(format!("outpost-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: cfg.server.upgrade_sock.display().to_string(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    if upgrade {
        tracing::info!(sock = %cfg.server.upgrade_sock.display(), "waiting for the running outpost's sockets (send it SIGQUIT)");
    }
    server.bootstrap();
    let storage = open_storage(&cfg.cache)?;
    let layer: &'static crate::cache::CacheLayer = Box::leak(Box::new(
        crate::cache::CacheLayer::new(storage, cfg.cache.lock_timeout),
    ));
    let fleet = cfg.cluster.clone().map(|c| {
        Arc::new(crate::fleet::Fleet::new(
            c,
            cfg.cache.disk.as_ref().map(|d| d.path.clone()),
        ))
    });
    let shared = Arc::new(Shared::new(
        runtime,
        metrics,
        access_log,
        layer,
        certs.clone(),
        fleet.clone(),
    ));
    if let (Some(f), Some(_)) = (&fleet, &cfg.cache.disk) {
        // Every purge missed while away is applied before the disk tier serves.
        block_on(f.sync_at_start(&shared))?;
    }
    crate::dashboard::start_sampler(&shared);

    let http = pingora::proxy::http_proxy(
        &server.configuration,
        Outpost {
            shared: shared.clone(),
            cache: layer,
        },
    );
    let mut proxy = Service::new(
        "outpost proxy".to_string(),
        crate::front::Front::new(http, shared.clone()),
    );
    // Pingora gives every client connection a 64 KiB read buffer up front: most of what an
    // idle connection costs. Request heads are small (2 KiB holds most in one read), and
    // reads larger than the buffer bypass it.
    let buffers = L4BufferSettings::new(CLIENT_READ_BUFFER, DEFAULT_L4_WRITE_BUFFER_SIZE);
    for a in &proxy_addrs {
        let mut l = ListenerConfig::tcp(a.addr.to_string()).l4_buffer(buffers);
        if let Some(o) = a.options() {
            l = l.tcp_socket_options(o);
        }
        proxy.add_listener(l);
    }
    if let Some(store) = &certs {
        // Pingora consumes a TlsSettings per listener; they share one certificate store.
        for a in &tls_addrs {
            let settings = crate::tls::settings(store)?;
            let mut l = ListenerConfig::tcp(a.addr.to_string())
                .tls(settings)
                .l4_buffer(buffers);
            if let Some(o) = a.options() {
                l = l.tcp_socket_options(o);
            }
            proxy.add_listener(l);
        }
    }
    let ops = Arc::new(LiveOps::new(shared.clone()));
    let mut admin = Service::new(
        "outpost admin".to_string(),
        Admin {
            shared: shared.clone(),
            ops: ops.clone(),
        },
    );
    match admin_addr.options() {
        Some(o) => admin.add_tcp_with_settings(&admin_addr.addr.to_string(), o),
        None => admin.add_tcp(&admin_addr.addr.to_string()),
    }
    admin.threads = Some(1);
    let mut health = background_service(
        "health checks",
        HealthChecks {
            shared: shared.clone(),
        },
    );
    health.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(health);
    let hot = layer.storage.take_hot_keys();
    if !hot.is_empty() {
        let mut svc =
            background_service("memory warm-up", WarmUp(std::sync::Mutex::new(hot), layer));
        svc.threads = Some(1);
        server.add_service(svc);
    }
    if let Some(fleet) = fleet {
        let mut svc = background_service(
            "fleet",
            crate::fleet::FleetService {
                shared: shared.clone(),
                fleet,
            },
        );
        svc.threads = Some(1);
        server.add_service(svc);
    }
    Ok(Built {
        server,
        ops,
        bound: Bound {
            proxy: proxy_addrs.iter().map(|r| r.addr).collect(),
            tls: tls_addrs.iter().map(|r| r.addr).collect(),
            admin: admin_addr.addr,
            held: Arc::new(std::sync::Mutex::new(
                proxy_addrs
                    .into_iter()
                    .chain(tls_addrs)
                    .chain([admin_addr])
                    .filter_map(|r| r.hold)
                    .collect(),
            )),
        },
        shared,
    })
}

/// After a binary upgrade: reads the old process's memory tier back from disk, once.
struct WarmUp(
    std::sync::Mutex<Vec<pingora_cache::key::HashBinary>>,
    &'static crate::cache::CacheLayer,
);

#[async_trait]
impl pingora::services::background::BackgroundService for WarmUp {
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        let keys = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        self.1.storage.warm_up(keys).await;
    }
}

/// Opens the cache storage (and its disk tier) before Pingora starts its runtimes.
/// foyer runs on its own runtime, so a short-lived one is enough to open it.
fn open_storage(cfg: &crate::config::CacheConfig) -> Result<crate::cache::storage::Storage, Error> {
    Ok(block_on(crate::cache::storage::Storage::open(cfg))??)
}

/// Runs start-up work on a short-lived runtime (before Pingora starts its own).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start a runtime", e))?;
    Ok(rt.block_on(f))
}

/// Prints `listening KIND=ADDR` for every listener once it accepts connections (Pingora binds
/// when its services start, inside `Server::run`), then `ready` if given (the demo's banner).
pub fn announce_when_accepting(bound: &Bound, ready: Option<String>) {
    let mut all: Vec<(&'static str, SocketAddr)> =
        bound.proxy.iter().map(|a| ("proxy", *a)).collect();
    all.extend(bound.tls.iter().map(|a| ("tls", *a)));
    all.push(("admin", bound.admin));
    let held = std::mem::take(&mut *bound.held.lock().unwrap_or_else(|e| e.into_inner()));
    let spawned = std::thread::Builder::new()
        .name("announce".into())
        .spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            for (kind, addr) in all {
                while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .is_err()
                {
                    if Instant::now() > deadline {
                        tracing::error!("{kind} listener {addr} is not accepting connections");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                crate::logging::announce_listening(kind, addr);
            }
            drop(held); // Pingora's listeners have the ports now
            if let Some(text) = ready {
                #[allow(clippy::print_stdout)]
                {
                    println!("{text}");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the listener announcer: {e}");
    }
}

/// Serves until SIGTERM/SIGINT (drain, exit 0) or SIGQUIT (hand over to `run --upgrade`).
pub fn run(cfg: Config, upgrade: bool) -> Result<(), Error> {
    let grace = cfg.server.grace_period;
    let built = build(cfg, upgrade)?;
    announce_when_accepting(&built.bound, None);
    serve(built, grace);
    tracing::info!("outpost stopped");
    Ok(())
}

/// Runs `built` with outpost's signal handling until it stops.
pub fn serve(built: Built, grace: Duration) {
    let watch = Drain {
        shared: built.shared,
        ops: built.ops,
        grace,
        phases: std::sync::Mutex::new(Some(built.server.watch_execution_phase())),
    };
    built.server.run(RunArgs {
        shutdown_signal: Box::new(watch),
    });
}

/// Signal handling: SIGHUP reloads (never exits); SIGTERM/SIGINT wait for in-flight requests
/// (bounded by grace), flush the disk tier and stop; SIGQUIT closes the disk tier (the new
/// process opens it next) and lets pingora hand the listening sockets over.
struct Drain {
    shared: Arc<Shared>,
    ops: Arc<LiveOps>,
    grace: Duration,
    phases: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<ExecutionPhase>>>,
}

#[async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot install signal handlers");
            std::future::pending::<()>().await;
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                _ = hup.recv() => {
                    self.reload().await;
                    continue;
                }
                _ = quit.recv() => {
                    tracing::info!("SIGQUIT: handing the listening sockets to the new process");
                    // The new process reads the hot set back from disk into its memory tier.
                    self.shared.cache.storage.save_hot_keys();
                    crate::ops::shutdown_hooks(&self.shared).await;
                    self.exit_when_drained();
                    return ShutdownSignal::GracefulUpgrade;
                }
            }
            let deadline = Instant::now() + self.grace;
            while self.shared.inflight() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            crate::ops::shutdown_hooks(&self.shared).await;
            // Nothing is left in flight: no need for pingora's grace sleep.
            return ShutdownSignal::FastShutdown;
        }
    }
}

impl Drain {
    /// SIGHUP: exactly `POST /config/reload`; an invalid file is logged and changes nothing.
    async fn reload(&self) {
        use crate::admin::Ops;
        let (status, body) = self.ops.reload().await;
        if status == 200 {
            tracing::info!(hash = %body["hash"].as_str().unwrap_or_default(), "SIGHUP: config reloaded");
        } else {
            let errors: Vec<String> = body["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_else(|| vec![body["error"].as_str().unwrap_or_default().to_string()]);
            for e in &errors {
                tracing::error!("SIGHUP: {e}");
            }
            tracing::error!(
                errors = errors.len(),
                "SIGHUP: config reload refused; the running config is unchanged"
            );
        }
    }

    /// After a hand-over pingora stops accepting and then sleeps the grace period whatever is
    /// in flight; this exits (0) as soon as the last request finished instead.
    fn exit_when_drained(&self) {
        let Some(mut phases) = self.phases.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let (shared, grace) = (self.shared.clone(), self.grace);
        let spawned = std::thread::Builder::new()
            .name("upgrade-drain".into())
            .spawn(move || {
                loop {
                    match phases.blocking_recv() {
                        Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
                // Requests in flight, and connections accepted before the hand-over whose
                // request has not been read yet (counted from accept).
                let deadline = Instant::now() + grace;
                while (shared.inflight() > 0 || shared.connections() > 0)
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                tracing::info!("upgrade: in-flight requests done, exiting");
                std::process::exit(0);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the upgrade drain watcher: {e}");
        }
    }
}
