#!/usr/bin/env bash
# Install the real servers the tests start themselves, from Debian's packages (needs root):
#   PostgreSQL (the central audit store tests) and Chromium (the audit console, driven by Playwright).
# Tests that need one of them skip, naming this script, where it is absent.
set -euo pipefail
need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}" fonts-dejavu-core
fi
echo "install-system: postgresql $(ls /usr/lib/postgresql) and $(chromium --version 2>/dev/null || echo 'no chromium')"
