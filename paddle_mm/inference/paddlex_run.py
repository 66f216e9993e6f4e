"""PaddleX's own image-classification predictor on an inspection export, run by another interpreter.

PaddleX 3.1.4's image predictors need ``opencv-contrib-python``, which in the project's ``.venv`` would replace the
pinned ``opencv-python-headless``; ``scripts/paddlex_overlay.sh`` builds ``.venv-paddlex``, a venv layered on
``.venv`` with PaddleX's cv extras. :func:`paddlex_classify` runs PaddleX there in a subprocess (importing this
module imports neither paddle nor paddlex) and returns what its ``Topk`` post-processing gave.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

OVERLAY_PYTHON = Path(".venv-paddlex") / "bin" / "python"  # relative to a checkout (scripts/paddlex_overlay.sh)

# The child: PaddleX reads inference.yml, resizes, normalises, runs Paddle Inference and Top-k itself. Inputs are
# image files (cv2.imread: BGR) or an .npy of RGB frames, handed to PaddleX as BGR arrays like the files would be.
_CHILD = """
import json, sys
import numpy as np
import paddlex
import hardware
args = json.load(open(sys.argv[1]))
model = paddlex.create_model(model_name=args["name"], model_dir=args["model_dir"], device=hardware.DEFAULT_DEVICE)
inputs = args["paths"] if args["paths"] is not None else [f[..., ::-1].copy() for f in np.load(args["npy"])]
res = [(int(r["class_ids"][0]), float(r["scores"][0])) for r in model.predict(inputs, batch_size=1)]
json.dump({"version": paddlex.__version__, "predictions": res}, open(sys.argv[2], "w"))
"""


class PaddleXRunError(RuntimeError):
    """The overlay interpreter is missing or PaddleX failed in it."""


def paddlex_classify(
    model_dir: str | Path,
    model_name: str,
    python: str | Path,
    *,
    paths: list[str] | None = None,
    frames: np.ndarray | None = None,
    timeout: float = 600,
) -> tuple[str, list[tuple[int, float]]]:
    """(PaddleX's version, [(class id, score)] per input) from PaddleX's predictor on ``model_dir``.

    Give ``paths`` (image files) or ``frames`` (uint8 RGB [N, H, W, 3]). ``python``: the overlay's interpreter;
    the child imports ``hardware`` from this checkout (PYTHONPATH) for the default device."""
    if (paths is None) == (frames is None):
        raise ValueError("give exactly one of paths= or frames=")
    python = Path(python)
    if not python.is_file():
        raise PaddleXRunError(f"{python} not found: build the PaddleX overlay with scripts/paddlex_overlay.sh")
    checkout = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = None if paths is None else [str(Path(p).resolve()) for p in paths]
        args = {
            "model_dir": str(Path(model_dir).resolve()),
            "name": model_name,
            "paths": files,
            "npy": str(tmp / "frames.npy"),
        }
        if frames is not None:
            np.save(tmp / "frames.npy", np.asarray(frames))
        (tmp / "args.json").write_text(json.dumps(args), encoding="utf-8")
        cmd = [str(python), "-c", _CHILD, str(tmp / "args.json"), str(tmp / "out.json")]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise PaddleXRunError(f"PaddleX under {python} exited {run.returncode}: {last}")
        out = json.loads((tmp / "out.json").read_text(encoding="utf-8"))
    return out["version"], [(int(c), float(s)) for c, s in out["predictions"]]
