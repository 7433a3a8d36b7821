#!/usr/bin/env bash
# README set-up command 1: installs the build prerequisite (cmake, for Pingora's zlib-ng)
# when missing, builds outpost and runs `outpost demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cmake >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq cmake gcc
fi
exec cargo run --release -- demo
