#!/usr/bin/env bash
# Runs the cache-tests.fyi suite (vendored in ../shared/tools/cache-tests) through outpost
# and prints the score. With --floor N, exits 1 when fewer than N required tests pass.
#
#   tools/cache-tests.sh [--floor N] [--bin PATH] [--out FILE]
#
# outpost runs with tools/cache-tests.toml: one origin at 127.0.0.1:8000 (the suite's own
# server), RFC-strict settings (no default TTL, no default stale windows: the suite checks
# what the origin allows, and serving stale by default is an operator's choice, not RFC 9111's).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CT=${CACHE_TESTS_HARNESS:-$ROOT/../shared/tools/cache-tests}
FLOOR=0
BIN=$ROOT/target/debug/outpost
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --floor) FLOOR=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -x "$CT/run.sh" ] || { echo "cache-tests harness not found at $CT" >&2; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --quiet)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/outpost-cache-tests.XXXXXX")
cp "$ROOT/tools/cache-tests.toml" "$WORK/outpost.toml"
"$BIN" run -c "$WORK/outpost.toml" >"$WORK/outpost.out" 2>"$WORK/outpost.err" &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
trap cleanup EXIT
ADDR=""
for _ in $(seq 1 100); do
  ADDR=$(grep -o 'listening proxy=[0-9.:]*' "$WORK/outpost.err" | head -1 | cut -d= -f2 || true)
  [ -n "$ADDR" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/outpost.err" >&2; exit 1; }
  sleep 0.1
done
[ -n "$ADDR" ] || { echo "outpost did not start" >&2; cat "$WORK/outpost.err" >&2; exit 1; }
RESULTS=${OUT:-$WORK/results.json}
"$CT/run.sh" --out "$RESULTS" "http://$ADDR" | tee "$WORK/summary.txt"
LINE=$(grep '^cache-tests:' "$WORK/summary.txt" | tail -1)
REQ=$(echo "$LINE" | sed -n 's/.*required \([0-9]*\)\/.*/\1/p')
echo "outpost log: $WORK/outpost.err; results: $RESULTS"
if [ -z "$REQ" ]; then echo "cache-tests: no score" >&2; exit 1; fi
if [ "$REQ" -lt "$FLOOR" ]; then
  echo "cache-tests: required score $REQ is below the floor $FLOOR" >&2
  node "$CT/summarize.mjs" --fails "$RESULTS" >&2 || true
  exit 1
fi
echo "cache-tests: required $REQ >= floor $FLOOR"
