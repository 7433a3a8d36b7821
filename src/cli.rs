//! Command line (interface.md §1): `run`, `check`, `demo`, `purge`, `--version`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::error::Error;
use crate::{app, config, demo, purge_cli};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// outpost: a caching edge node on Pingora.
#[derive(Debug, Parser)]
#[command(name = "outpost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with the given config file.
    Run {
        #[arg(short, long, default_value = "config/outpost.toml")]
        config: PathBuf,
        /// Take over the listening sockets of a running outpost (then send it SIGQUIT).
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file (binds nothing, reads cert files).
    Check {
        #[arg(short, long, default_value = "config/outpost.toml")]
        config: PathBuf,
    },
    /// Built-in demo: a sample origin and the proxy in front of it, on loopback.
    Demo,
    /// Purge cached content through the admin API.
    Purge(purge_cli::PurgeArgs),
}

/// Parses argv and runs the command. Returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, upgrade } => {
            config::load(&config).map_err(Error::from).and_then(|cfg| {
                crate::logging::init(&cfg.log.level, cfg.log.format);
                app::run(cfg, upgrade)
            })
        }
        Command::Check { config } => config::load(&config).map_err(Error::from).map(|cfg| {
            println!("{}", config::summary(&cfg));
        }),
        Command::Demo => {
            crate::logging::init("info", config::LogFormat::Text);
            demo::run()
        }
        Command::Purge(args) => purge_cli::run(&args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}
