//! Integration tests: the real `outpost` binary in front of in-process scripted origins.
//! Everything goes through the user-facing contract (shared/design/interface.md).
//! One binary on purpose: Pingora links slowly.

#[allow(dead_code)]
mod support;

mod access_log;
mod admin;
mod balancing;
mod caching;
mod coalescing;
mod compression;
mod config_check;
mod dashboard;
mod deploy;
mod errors;
mod fleet;
mod fuzz;
mod hardening;
mod headers;
mod health;
mod layering;
mod lifecycle;
mod operations;
mod purge;
mod routing;
mod server_logs;
mod slice_targets;
mod slicing;
mod tiers;
mod tls;
