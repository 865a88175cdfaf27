#!/usr/bin/env bash
# Install the OIP inference servers the remote-classifier tests start, each in its OWN venv:
# MLServer pins an older FastAPI/Starlette than the proxy's, pytriton bundles tritonserver.
#   .ci/install-servers.sh            -> both
#   .ci/install-servers.sh mlserver   -> one of them
# Idempotent: a venv whose marker file exists is kept. Tests skip (with the reason) where a venv is absent.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENVS="${CREST_SERVER_VENVS:-$ROOT/.cache-venvs}"
PYTHON="${PYTHON:-python3.11}"
MLSERVER_VERSION="1.7.1"
PYTRITON_VERSION="0.7.0"

install() {  # name, then pip requirements
  local name="$1"; shift
  local venv="$VENVS/$name"
  if [[ -f "$venv/.installed" ]]; then echo "install-servers: $name already in $venv"; return 0; fi
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "$@"
  touch "$venv/.installed"
  echo "install-servers: $name installed in $venv"
}

want="${1:-all}"
# uvloop < 0.21: MLServer 1.7.1's worker pool crashes under newer uvloop (we also run parallel_workers 0).
# onnxruntime + tokenizers-free: the custom runtime in the exported repository only needs onnxruntime.
if [[ "$want" == all || "$want" == mlserver ]]; then
  install mlserver "mlserver==$MLSERVER_VERSION" "uvloop<0.21" onnxruntime numpy
fi
if [[ "$want" == all || "$want" == triton ]]; then
  install triton "nvidia-pytriton==$PYTRITON_VERSION" onnxruntime numpy
fi
