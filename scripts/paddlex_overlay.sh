#!/usr/bin/env bash
# .venv-paddlex: a venv layered on the project's .venv that adds PaddleX's cv extras (requirements/paddlex-lock.txt)
# without touching the pinned set. PaddleX 3.1.4's image predictors refuse to start without opencv-contrib-python,
# which in .venv itself would replace the pinned opencv-python-headless. The overlay's own site-packages come first
# on sys.path, then .venv's (a .pth file), so it runs .venv's paddle, paddlex and paddle_mm with the contrib cv2.
# Idempotent: a no-op while the stamp (lock file + .venv's site-packages path) matches; otherwise rebuilt from
# scratch. scripts/setup.sh --tests calls it (tests/tasks/test_inspection.py::test_paddlex_reads_the_export).
#   scripts/paddlex_overlay.sh
#   python tools/eval_inspection.py --model_dir ... --data ... --paddlex   # runs PaddleX in .venv-paddlex
set -euo pipefail
cd "$(dirname "$0")/.."
lock=requirements/paddlex-lock.txt
base_py=$(readlink -f .venv/bin/python)
shared=$(.venv/bin/python -c "import site; print(site.getsitepackages()[0])")
stamp=".venv-paddlex/.setup-$( (cat "$lock"; echo "$base_py $shared") | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0

echo "[setup] creating .venv-paddlex (PaddleX's cv extras over .venv)"
rm -rf .venv-paddlex
"$base_py" -m venv --without-pip .venv-paddlex
own=$(.venv-paddlex/bin/python -c "import site; print(site.getsitepackages()[0])")
echo "$shared" > "$own/project_venv.pth"  # .pth paths go after the overlay's own site-packages
# pip comes from .venv through the .pth; it installs into the running interpreter's prefix (the overlay)
.venv-paddlex/bin/python -m pip install -q --disable-pip-version-check --no-deps -r "$lock"
.venv-paddlex/bin/python -c "
from importlib.metadata import version
import cv2, paddlex
assert cv2.__file__.startswith('$own'), cv2.__file__
print('[setup] .venv-paddlex: paddlex', paddlex.__version__, 'opencv-contrib-python', version('opencv-contrib-python'))"
touch "$stamp"
