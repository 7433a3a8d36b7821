//! Running the outpost binary as a command: output captured by background threads, bounded
//! in time (a command that hangs is killed and reported).

use parking_lot::Mutex;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lines printed by a child on stdout and stderr, shared with its reader threads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Captured {
    all: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Captured {
    /// Both streams, interleaved by line.
    pub(crate) fn text(&self) -> String {
        self.all.lock().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().clone()
    }

    /// stderr alone.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().clone()
    }

    fn follow(&self, stream: impl Read + Send + 'static, is_stdout: bool) {
        let all = self.all.clone();
        let own = if is_stdout {
            self.stdout.clone()
        } else {
            self.stderr.clone()
        };
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line);
                all.lock().push_str(&text);
                own.lock().push_str(&text);
                line.clear();
            }
        });
        self.readers.lock().push(reader);
    }

    fn join(&self) {
        for reader in self.readers.lock().drain(..) {
            let _ = reader.join();
        }
    }
}

/// Spawns `cmd` with piped stdout/stderr, each followed by a thread.
pub(crate) fn spawn_capture(mut cmd: Command) -> (Child, Captured) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let captured = Captured::default();
    if let Some(out) = child.stdout.take() {
        captured.follow(out, true);
    }
    if let Some(err) = child.stderr.take() {
        captured.follow(err, false);
    }
    (child, captured)
}

/// What a finished command did.
#[derive(Debug)]
pub(crate) struct CliOutput {
    /// `None` when killed by a signal (or by the timeout).
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    /// stdout and stderr interleaved.
    pub(crate) all: String,
}

/// Runs `outpost ARGS...` to completion (killed after `timeout`).
pub(crate) fn run_outpost(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> CliOutput {
    let mut cmd = super::outpost::outpost_command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (mut child, captured) = spawn_capture(cmd);
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            captured.join();
            panic!(
                "outpost {args:?} still running after {timeout:?}\n{}",
                captured.text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    captured.join();
    CliOutput {
        code,
        stdout: captured.stdout(),
        all: captured.text(),
    }
}
