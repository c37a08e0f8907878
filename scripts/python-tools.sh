#!/usr/bin/env bash
# Installs the outside-client Python tools into .venv-tools (once) and prints its python:
# the official MCAP reader, and confluent-kafka + protobuf (+ grpcio-tools for protoc)
# to read Vigil's Kafka topics with a protobuf library that is not prost, and Foxglove's
# own protobuf classes for the viewer channels of a recording (and pillow to draw them:
# tests/render_viewer.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-tools"
if ! "$venv/bin/python" -c 'import mcap, mcap_protobuf, confluent_kafka, google.protobuf, grpc_tools, foxglove_schemas_protobuf, PIL' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q 'mcap>=1.2' 'mcap-protobuf-support>=0.5' 'confluent-kafka>=2.6' 'protobuf>=5' 'grpcio-tools>=1.66' 'foxglove-schemas-protobuf>=0.3' 'pillow>=10' >&2
fi
echo "$venv/bin/python"
