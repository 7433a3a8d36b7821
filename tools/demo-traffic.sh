#!/usr/bin/env bash
# Traffic for `outpost demo` (docs/dashboard.png was taken under it): mostly cache hits,
# some misses (new query strings), Range requests on the media file and a purge now and
# then, for SECONDS_TO_RUN seconds (default 60).
#
#   tools/demo-traffic.sh [PROXY]      # default 127.0.0.1:8080 (the demo prints its proxy address)
set -euo pipefail
PROXY=${1:-127.0.0.1:8080}
END=$(( $(date +%s) + ${SECONDS_TO_RUN:-60} ))
i=0
while [ "$(date +%s)" -lt "$END" ]; do
  i=$((i + 1))
  urls=()
  for _ in $(seq 1 $(( 20 + RANDOM % 40 ))); do urls+=("http://$PROXY/hello.txt"); done
  for _ in $(seq 1 $(( 5 + RANDOM % 10 ))); do urls+=("http://$PROXY/api/items"); done
  for _ in $(seq 1 $(( RANDOM % 6 ))); do urls+=("http://$PROXY/api/items?page=$RANDOM"); done
  curl -s -o /dev/null "${urls[@]}" || true
  curl -s -o /dev/null -H "Range: bytes=$(( RANDOM * 100 ))-$(( RANDOM * 100 + 65535 ))" \
    "http://$PROXY/media/sample.bin" || true
  [ $(( i % 4 )) = 0 ] && curl -s -o /dev/null "http://$PROXY/media/sample.bin"
  [ $(( i % 15 )) = 0 ] && curl -s -o /dev/null -X PURGE "http://$PROXY/hello.txt"
  sleep 0.2
done
