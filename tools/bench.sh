#!/usr/bin/env bash
# The performance race (issue "Performance", benches/README.md): builds release outpost and
# the bare-Pingora floor (src/bin/floor.rs), then runs the shared side-by-side bench
# (../shared/tools/bench/run.py): outpost beside nginx and Varnish, then the floor with
# pingora-cache on (hits, misses) and off (pass-through), so every figure splits into what
# Pingora costs and what outpost adds. Prints each run's ratio table; results land in
# target/bench/<name>/results.md.
#
#   tools/bench.sh              # --rounds 3, about 25 minutes
#   tools/bench.sh --quick      # a one-minute look per system
#   tools/bench.sh --scenarios hot,miss   # any further run.py options are passed on
#
# Never run it while a build or the tests run: the numbers would be the machine's load.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=${BENCH_DIR:-$ROOT/../shared/tools/bench}
OUT=${BENCH_OUT:-$ROOT/target/bench}
cd "$ROOT"

args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(--rounds 3)
fi
skip_floor=0
if [ "${BENCH_NO_FLOOR:-0}" = 1 ]; then skip_floor=1; fi

cargo build --release --quiet --bin outpost
cargo build --release --quiet --features floor --bin outpost-floor

run() { # name, proxy command, extra run.py args...
  local name=$1 cmd=$2
  shift 2
  echo "## $name"
  python3 "$BENCH/run.py" --name "$name" --proxy-cmd "$cmd" --out "$OUT/$name" "$@" "${args[@]}"
}

run outpost "$ROOT/target/release/outpost run -c {config}" \
  --proxy-config "$BENCH/anchors/outpost.toml.in"
if [ $skip_floor = 0 ]; then
  # The floors against nginx only (Varnish and the origin were measured above).
  run floor-cache "$ROOT/target/release/outpost-floor --listen 127.0.0.1:{port} --origin {origin} --cache" \
    --systems proxy,nginx --scenarios hot,big,miss
  run floor-pass "$ROOT/target/release/outpost-floor --listen 127.0.0.1:{port} --origin {origin}" \
    --systems proxy --scenarios hot
fi
echo "full tables: $OUT/*/results.md"
