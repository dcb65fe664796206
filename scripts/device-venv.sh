#!/usr/bin/env bash
# Creates .venv-device: a minimal, device-like Python environment for the SSH target tests.
# It holds only what the on-device runner needs -- numpy, onnxruntime and a TFLite interpreter
# (ai-edge-litert) -- and deliberately no torch and no edgekd, so the tests prove the runner
# works when copied alone onto a board. Idempotent: does nothing when the venv is already complete.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv-device
STAMP="$VENV/.edgekd-device-ready"
PACKAGES="numpy onnxruntime ai-edge-litert"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PACKAGES" ]; then
  exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086  # word splitting of the package list is intended
"$VENV/bin/python" -m pip install -q $PACKAGES
# Fail loudly if the environment is not what the tests expect.
# -I: isolated mode, so the repo folder (cwd) is not on sys.path and cannot hide a stray edgekd.
"$VENV/bin/python" -I - <<'PY'
import importlib.util, sys
for name in ("numpy", "onnxruntime", "ai_edge_litert"):
    assert importlib.util.find_spec(name), f"{name} missing from .venv-device"
for name in ("torch", "edgekd"):
    assert importlib.util.find_spec(name) is None, f"{name} must not be in .venv-device"
PY
echo "$PACKAGES" > "$STAMP"
echo "device-venv: $VENV ready ($PACKAGES)"
