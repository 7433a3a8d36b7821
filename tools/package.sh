#!/usr/bin/env bash
# Builds the Debian package (cargo-deb; metadata in Cargo.toml [package.metadata.deb]):
# /usr/bin/outpost, /etc/outpost/outpost.toml and /etc/default/outpost (conffiles), the
# systemd unit deploy/outpost.service, the outpost system user (postinst) and
# /var/cache/outpost. Prints the .deb path. Not part of tools/test.sh (a release build).
#
#   tools/package.sh                    # -> target/debian/outpost_<version>-1_<arch>.deb
#   sudo dpkg -i target/debian/outpost_*.deb
#   INSTALL_CHECK=1 tools/package.sh    # also install it here and `outpost check` the config
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi

# cargo deb runs `cargo build --release` first.
deb=$(cargo deb | tail -n 1)
[ -f "$deb" ] || { echo "cargo deb produced no package" >&2; exit 1; }
dpkg-deb --info "$deb" >/dev/null

if [ "${INSTALL_CHECK:-0}" = 1 ]; then
  $SUDO dpkg -i "$deb"
  id outpost
  if [ -n "$SUDO" ]; then
    sudo -u outpost /usr/bin/outpost check -c /etc/outpost/outpost.toml
  else
    runuser -u outpost -- /usr/bin/outpost check -c /etc/outpost/outpost.toml
  fi
fi
echo "$deb"
