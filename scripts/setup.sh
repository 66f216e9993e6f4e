#!/usr/bin/env bash
# Set up what is missing, idempotently: a .venv with the exact pinned stack (requirements/lock.txt),
# paddle_mm installed in editable mode, and the fake Ascend plugin the device tests run on. Re-running is a
# no-op until the lock file, setup.py or the plugin source changes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

# The fake npu custom-device plugin (hardware/fake_npu): built against the installed paddle's headers, cached
# under .venv/paddle_mm_plugins/ by a hash of source, header and Paddle version (a no-op when up to date).
build_plugin() {
  if ! command -v g++ >/dev/null 2>&1 && [ -z "${CXX:-}" ]; then
    echo "[setup] installing g++ (builds the fake npu plugin)"
    (apt-get update -qq && apt-get install -y -qq g++) >/dev/null
  fi
  .venv/bin/python -m hardware.plugin path >/dev/null || echo "[setup] building the fake npu plugin"
  .venv/bin/python -m hardware.plugin build >/dev/null
}

# deploy checks (tests/deploy): shellcheck from Debian, checkov in its own venv (its pins clash with .venv's)
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "[setup] installing shellcheck"
  (apt-get update -qq && apt-get install -y -qq shellcheck) >/dev/null
fi
deploy_stamp=".venv-deploy/.setup-$(sha256sum requirements/deploy-lock.txt | cut -c1-16)"
if [ ! -f "$deploy_stamp" ]; then
  echo "[setup] creating .venv-deploy with checkov (first run: a minute or two)"
  [ -x .venv-deploy/bin/python ] || "$PYTHON" -m venv .venv-deploy
  .venv-deploy/bin/python -m pip install -q --disable-pip-version-check -r requirements/deploy-lock.txt
  rm -f .venv-deploy/.setup-*
  touch "$deploy_stamp"
fi

stamp=".venv/.setup-$(cat requirements/lock.txt setup.py | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  build_plugin
  exit 0
fi

if ! command -v openssl >/dev/null 2>&1; then   # SM2/SM3 interop tests call the openssl CLI
  echo "[setup] installing openssl"
  (apt-get update -qq && apt-get install -y -qq openssl) >/dev/null
fi

echo "[setup] creating .venv with the pinned stack (first run: a few minutes)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/lock.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
build_plugin
rm -f .venv/.setup-*
touch "$stamp"
echo "[setup] done: $(.venv/bin/python -c 'import paddle, paddle_mm; print("paddle", paddle.__version__, "paddle_mm", paddle_mm.__version__)' 2>/dev/null)"
