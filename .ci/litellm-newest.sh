#!/usr/bin/env bash
# Run the LiteLLM and OpenAI-SDK tests against a chosen LiteLLM release in a venv of its own (issue 16):
#   .ci/litellm-newest.sh             -> the newest release the `litellm` extra allows (1.107.* never)
#   .ci/litellm-newest.sh 1.106.2     -> the oldest supported, or any other release in the range
# The venv is .cache-venvs/litellm-<version> (kept between runs; a marker file says it is complete). It gets
# torch (CPU wheel), crest-proxy with its test extra, the newest OpenAI and Anthropic SDKs, then litellm.
# litellm[proxy] of some releases pins companion packages (litellm-proxy, litellm-proxy-extras …) that a
# mirror may not carry: the proxy's other requirements are then installed from litellm's own metadata, the
# companions unpinned. Tests: tests/test_litellm_*.py and tests/test_anthropic*.py (extra pytest args after the
# version are passed on).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
cd "$ROOT"
export LITELLM_LOCAL_MODEL_COST_MAP=True  # litellm fetches its model cost map from GitHub otherwise

# `sed -n 1p`, not `head -1`: under pipefail, head's early exit fails the pipeline with SIGPIPE (exit 141).
newest() {  # the newest litellm on the index that is not 1.107.* (one of those was published compromised)
  "$PYTHON" -m pip index versions litellm 2>/dev/null | sed -n 's/^Available versions: //p' | tr ',' '\n' \
    | tr -d ' ' | grep -Ev '^1\.107\.' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+$' | sed -n 1p
}

VERSION="${1:-$(newest)}"
case "$VERSION" in 1.107.*) echo "litellm-newest: refusing litellm $VERSION (1.107.* is excluded)" >&2; exit 2;; esac
VENV="${LITELLM_VENV:-$ROOT/.cache-venvs/litellm-$VERSION}"
PIP="$VENV/bin/pip"

install() {
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$PIP" install --quiet --upgrade pip
  "$PIP" install --quiet "torch==$TORCH_VERSION"
  "$PIP" install --quiet -e ".[test]" --upgrade openai anthropic
  if ! "$PIP" install --quiet "litellm[proxy]==$VERSION"; then
    echo "litellm-newest: litellm[proxy]==$VERSION is not installable as is; its proxy requirements follow"
    "$PIP" install --quiet "litellm==$VERSION"
    mapfile -t reqs < <("$VENV/bin/python" - <<'EOF'
import re
from importlib.metadata import requires
from packaging.requirements import Requirement

for line in requires("litellm") or []:
    req = Requirement(line)
    if req.marker is None or not req.marker.evaluate({"extra": "proxy"}):
        continue
    if req.name == "litellm-proxy":  # a split-out package of the same release; the wheel still has the proxy
        continue
    if req.name in ("litellm-proxy-extras", "litellm-enterprise"):
        print(req.name)  # its exact pin may be missing from the mirror: the newest there
        continue
    print(re.sub(r";.*", "", str(req)).strip())
EOF
)
    "$PIP" install --quiet "${reqs[@]}"
  fi
  touch "$VENV/.installed"
}

[[ -f "$VENV/.installed" ]] || install
"$VENV/bin/python" -c 'import litellm, openai, anthropic, httpx; from importlib.metadata import version as v
print("litellm", v("litellm"), "| openai", openai.__version__, "| anthropic", anthropic.__version__, "| httpx", httpx.__version__)'
start=$(date +%s)
"$VENV/bin/python" -m pytest -q --no-cov -p no:cacheprovider tests/test_litellm_*.py tests/test_anthropic*.py "${@:2}"
echo "litellm-newest: litellm $VERSION tests took $(( $(date +%s) - start ))s"
