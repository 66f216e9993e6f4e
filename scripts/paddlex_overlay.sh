#!/usr/bin/env bash
# A venv layered on the project's .venv that adds PaddleX's cv extras (opencv-contrib-python, pypdfium2) without
# touching the pinned set: PaddleX 3.1.4's image predictors refuse to start without opencv-contrib-python, which
# in .venv itself would replace the pinned opencv-python-headless. Used for the PaddleX check of an inspection
# export (docs/inspection.md):
#   scripts/paddlex_overlay.sh            # creates .venv-paddlex
#   PYTHONPATH=$PWD .venv-paddlex/bin/python tools/eval_inspection.py --model_dir ... --data ... --paddlex
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PY=$(readlink -f .venv/bin/python)
SHARED=$(.venv/bin/python -c "import site; print(site.getsitepackages()[0])")
"$BASE_PY" -m venv .venv-paddlex
echo "$SHARED" > .venv-paddlex/lib/python3.11/site-packages/project_venv.pth  # after its own site-packages
.venv-paddlex/bin/pip install --no-deps opencv-contrib-python==4.11.0.86 pypdfium2==5.15.2
.venv-paddlex/bin/python -c "import cv2, paddlex; print('paddlex', paddlex.__version__, 'cv2', cv2.__version__)"
