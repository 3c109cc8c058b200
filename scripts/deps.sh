#!/bin/sh
# Install the Debian packages ct needs that are missing, then do nothing more.
# Usage: scripts/deps.sh [group...]   groups: build (default), sanitize, bench, httpbench
# Needs root (or sudo) and apt only when something is missing; a machine that has it all is
# left alone, so this is cheap to run before every build.
set -eu

pkgs_build="build-essential cmake pkg-config libcmocka-dev libjansson-dev libsqlite3-dev curl python3"
pkgs_build="$pkgs_build postgresql libpq-dev" # ct-pg, and the server its tests start
pkgs_build="$pkgs_build libcurl4-openssl-dev" # ct-curl
pkgs_sanitize="clang libclang-rt-14-dev"
pkgs_bench="g++"
pkgs_httpbench="golang-go nginx-light wrk" # the peers and the load of bench/http/run.sh

want=""
[ $# -eq 0 ] && set -- build
for group in "$@"; do
  case "$group" in
    build) want="$want $pkgs_build" ;;
    sanitize) want="$want $pkgs_build $pkgs_sanitize" ;;
    bench) want="$want $pkgs_build $pkgs_bench" ;;
    httpbench) want="$want $pkgs_build $pkgs_bench $pkgs_httpbench" ;;
    *) echo "deps.sh: unknown group '$group' (build, sanitize, bench, httpbench)" >&2; exit 2 ;;
  esac
done

missing=""
for p in $want; do
  case " $missing " in *" $p "*) continue ;; esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $missing >/dev/null
