//! Disk-tier benchmark of the real binary (issue "Disk tier"). `cargo bench --bench tiers`
//! (a plain `fn main`, no criterion): cargo builds `outpost` in the release (bench) profile,
//! then this runs `tools/bench-disk.py` against that binary and passes its markdown through.
//! `OUTPOST_BIN=path` runs another binary; extra arguments after `--` go to the script
//! (e.g. `cargo bench --bench tiers -- --parts throughput --seconds 5`); needs python3 and
//! `wrk` on PATH.
//!
//! What is measured (details in the script's docstring):
//! 1. memory-hit vs disk-hit req/s and MiB/s for 1 KiB, 100 KiB and 10 MiB objects (wrk,
//!    random objects; the serving tier checked on `/metrics`);
//! 2. VmRSS while filling and serving a 1 GiB object, sha256 of the body, a Range read;
//! 3. restart persistence after SIGTERM and SIGKILL (hits, bodies, remaining ttl), and
//!    whether objects recovered after a restart survive new fills.
//!
//! Reference result: benches/RESULTS.md, "## Disk tier".

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let bin =
        std::env::var("OUTPOST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_outpost").to_string());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/bench-disk.py");
    // cargo passes `--bench` to harness = false targets; keep only what follows our own `--`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let status = Command::new("python3")
        .arg(script)
        .arg("--bin")
        .arg(&bin)
        .args(&args)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("tools/bench-disk.py exited with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot run python3 {script}: {e}");
            ExitCode::FAILURE
        }
    }
}
