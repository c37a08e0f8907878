#!/usr/bin/env bash
# Installs the outside tools the tests drive, when missing: Debian's `prometheus`
# package (the server and promtool) for the Prometheus scrape test. Its service is not
# started (the test runs its own server on a free port).
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q prometheus >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q prometheus >/dev/null; }
fi
promtool --version | head -n 1
