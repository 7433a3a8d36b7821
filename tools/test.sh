#!/usr/bin/env bash
# The project's one test command (README "Set up"): installs what the build needs, runs
# the unit and integration tests, then the cache-tests.fyi conformance floor.
#
#   tools/test.sh            # everything
#   SKIP_CACHE_TESTS=1 tools/test.sh   # Rust tests only
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# Pingora builds zlib-ng with cmake; the cache-tests suite needs Node.js >= 20.18; the
# dashboard test runs the page in headless chromium (tests/it/dashboard.rs); the fleet tests
# run a real NATS server with JetStream.
export PATH="$PATH:/usr/sbin"
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || command -v google-chrome >/dev/null 2>&1 || need+=(chromium)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
if [ "${SKIP_CACHE_TESTS:-0}" != 1 ]; then
  command -v node >/dev/null 2>&1 || need+=(nodejs npm)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi

# Lint gates: formatting and clippy (warnings are errors) before anything is built for tests.
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets --quiet -- -D warnings
fi
# Dependency check: no declared crate goes unused (cargo-machete, installed from crates.io
# the first time; about a minute). The layering check is a test (tests/it/layering.rs).
if ! command -v cargo-machete >/dev/null 2>&1; then
  cargo install --locked --quiet cargo-machete@0.9.2
fi
cargo machete

# Build once (lib, binary, test binary), then run. nextest when available, else cargo test.
cargo build --tests --bins
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast --test-threads "${TEST_THREADS:-4}"
else
  cargo test --no-fail-fast
fi

if [ "${SKIP_CACHE_TESTS:-0}" != 1 ]; then
  # Floor: 152 was reached (README "Conformance"); 2 below it absorbs a timing-sensitive test
  # flaking on a loaded machine. Raise it with the score.
  tools/cache-tests.sh --floor "${CACHE_TESTS_FLOOR:-150}"
fi
