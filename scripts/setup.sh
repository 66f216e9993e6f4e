#!/usr/bin/env bash
# Set up what is missing, idempotently: a .venv with the exact pinned stack (requirements/lock.txt),
# paddle_mm installed in editable mode, and the fake Ascend plugin the device tests run on (with --tests, also
# what only the test suite needs: see test_extras). Re-running is a
# no-op until the lock file, setup.py or the plugin source changes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# --tests: also what only the test suite needs (checkov's venv and shellcheck for tests/deploy; QEMU, cross
# compilers and the cached board-runtime builds for tests/boards; PaddleX's cv extras in .venv-paddlex for
# tests/tasks/test_inspection.py). The quickstart does not wait for them.
for_tests=0
[ "${1:-}" = "--tests" ] && for_tests=1
test_extras() {
  if [ "$for_tests" = 1 ]; then
    setup_deploy
    setup_boards
    bash scripts/paddlex_overlay.sh
  fi
}

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
setup_deploy() {
  if ! command -v shellcheck >/dev/null 2>&1; then
    echo "[setup] installing shellcheck"
    (apt-get update -qq && apt-get install -y -qq shellcheck) >/dev/null
  fi
  local deploy_stamp
  deploy_stamp=".venv-deploy/.setup-$(sha256sum requirements/deploy-lock.txt | cut -c1-16)"
  if [ ! -f "$deploy_stamp" ]; then
    echo "[setup] creating .venv-deploy with checkov (first run: a minute or two)"
    [ -x .venv-deploy/bin/python ] || "$PYTHON" -m venv .venv-deploy
    .venv-deploy/bin/python -m pip install -q --disable-pip-version-check -r requirements/deploy-lock.txt
    rm -f .venv-deploy/.setup-*
    touch "$deploy_stamp"
  fi
}

# The board runtime (hardware/runtime): QEMU user mode, cross compilers and cmake from Debian; ggml's source
# from the llama-cpp-python sdist on PyPI into ~/.cache/paddle_mm/src (never into the work tree); then the
# targets tests/boards checks are built once into ~/.cache/paddle_mm/boards (hardware/runtime/build.py; a no-op
# when cached; PMM_BOARD_TARGETS=all adds the LSX/LASX board build, which is only linked here, never run).
setup_boards() {
  local need=()
  command -v cmake >/dev/null 2>&1 || need+=(cmake)
  command -v qemu-loongarch64 >/dev/null 2>&1 || need+=(qemu-user)
  command -v riscv64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-riscv64-linux-gnu)
  command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
  if [ ${#need[@]} -gt 0 ]; then
    echo "[setup] installing ${need[*]} (board runtime builds and QEMU tests)"
    (apt-get update -qq && apt-get install -y -qq "${need[@]}") >/dev/null
  fi
  local src="${PMM_CACHE:-$HOME/.cache/paddle_mm}/src"
  if [ ! -f "$src/llama_cpp_python-0.3.36.tar.gz" ]; then
    echo "[setup] downloading the llama-cpp-python 0.3.36 sdist (ggml source, ~77 MB) into $src"
    mkdir -p "$src"
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      llama-cpp-python==0.3.36 -d "$src"
  fi
  .venv/bin/python -m hardware.runtime.build --target tested >/dev/null
}

# A CJK font for the Chinese text of the retrieval grids (paddle_mm/inference/grid.py looks in these places; without
# one the grid labels its queries Q1, Q2, ...): Debian's WenQuanYi Micro Hei, 4.5 MB, when none is there. Best effort:
# without apt (or root) the grids still draw.
setup_font() {
  local f
  for f in /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc /usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc \
    /usr/share/fonts/truetype/wqy/wqy-microhei.ttc /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc; do
    [ -f "$f" ] && return 0
  done
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing fonts-wqy-microhei (Chinese text in the retrieval grids)"
    (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei) >/dev/null 2>&1 ||
      echo "[setup] could not install fonts-wqy-microhei; grids label their queries Q1, Q2, ... (set PADDLE_MM_FONT)"
  fi
}

stamp=".venv/.setup-$(cat requirements/lock.txt setup.py | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  setup_font
  build_plugin
  test_extras
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
setup_font
build_plugin
test_extras
rm -f .venv/.setup-*
touch "$stamp"
echo "[setup] done: $(.venv/bin/python -c 'import paddle, paddle_mm; print("paddle", paddle.__version__, "paddle_mm", paddle_mm.__version__)' 2>/dev/null)"
