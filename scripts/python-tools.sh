#!/usr/bin/env bash
# Installs the official Python MCAP reader into .venv-tools (once) and prints its python.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-tools"
if ! "$venv/bin/python" -c 'import mcap, mcap_protobuf' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q 'mcap>=1.2' 'mcap-protobuf-support>=0.5' >&2
fi
echo "$venv/bin/python"
