#!/usr/bin/env bash
# Set up the PyTorch + cn_clip reference environment that paddle_mm is compared against: the cn_clip rows of
# tools/benchmark.py (--torch-python) and the golden / parity generators in tools/dev/. Idempotent: re-running
# is a no-op until the pinned versions below change. It never touches .venv (paddle_mm's own environment).
#
#   bash scripts/setup_reference.sh                       # -> .venv-ref/ (git-ignored)
#   REF_VENV=/elsewhere/ref bash scripts/setup_reference.sh
#
# cn_clip 1.6.0 imports torchvision on `import cn_clip.clip`, so torch comes with its matching torchvision:
# on x86_64 torch 2.14.1 + torchvision 0.29.1 (about 5.5 GB, a CUDA build that runs on the CPU; the goldens and
# parity figures in docs/ were made with it), on aarch64 torch 2.9.1 + torchvision 0.24.1 (a CPU build).
# REF_TORCH="torch==X torchvision==Y" picks another matching pair.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${REF_VENV:-.venv-ref}
# cn_clip, and what bench_tokenizer.py needs for paddle_mm's side (the versions of requirements/lock.txt)
REFERENCE="cn_clip==1.6.0 opencv-python-headless==4.11.0.86"
case "$(uname -m)" in
  x86_64) default_torch="torch==2.14.1 torchvision==0.29.1" ;;
  aarch64 | arm64) default_torch="torch==2.9.1 torchvision==0.24.1" ;;
  *) echo "[setup_reference] no pinned torch for $(uname -m); set REF_TORCH='torch==X torchvision==Y'" >&2; exit 2 ;;
esac
TORCH=${REF_TORCH:-$default_torch}

stamp="$VENV/.reference-$(echo "$TORCH $REFERENCE" | sha256sum | cut -c1-16)"
check='import importlib.metadata as m, torch, torchvision, cn_clip.clip
print("torch", torch.__version__, "torchvision", torchvision.__version__, "cn_clip", m.version("cn_clip"))'
if [ -f "$stamp" ] && "$VENV/bin/python" -c "$check" >/dev/null 2>&1; then
  echo "[setup_reference] ready: $VENV/bin/python"
  exit 0
fi

echo "[setup_reference] creating $VENV with $TORCH and $REFERENCE (first run: several minutes)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC2086  # $TORCH is a list of requirements
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $TORCH
# the same torch pins again, so resolving cn_clip's dependencies (timm, lmdb, ...) cannot move them
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $REFERENCE $TORCH
rm -f "$VENV"/.reference-*
touch "$stamp"
echo "[setup_reference] done: $VENV/bin/python ($(env -u PYTHONPATH "$VENV/bin/python" -c "$check"))"
