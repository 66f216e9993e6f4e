"""Measure an inspection export: accuracy and recall per defect, unseen-defect AUROC, batch-1 latency, a picture grid.

    python tools/eval_inspection.py --model_dir inference/inspection --data data/inspection \
        [--grid docs/images/inspection_grid.png] [--latency 200] [--paddlex] [--out result.json]

Accuracy / recall on the test split (fp32 ONNX Runtime, Paddle Inference and INT8). AUROC of the anomaly score:
clean test parts against the held-out ``burn`` parts (``unseen_list.txt``), and against each trained defect.
Latency: median ms per frame at batch 1 (pre-processed frame in, probabilities / score out) after 20 warm-up runs,
with this machine's load average printed beside it. ``--paddlex``: PaddleX's own image-classification predictor
on the same export and image files, run by ``--paddlex_python`` (``scripts/paddlex_overlay.sh`` builds it): how
many test images get our class, and the largest difference of the top score.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from paddle_mm.data.image_list import ImageListDataset, read_list
from paddle_mm.inference.inspection import InspectionPredictor
from paddle_mm.inference.paddlex_run import OVERLAY_PYTHON, paddlex_classify
from paddle_mm.metrics import accuracy
from paddle_mm.models.patchcore import auroc
from paddle_mm.tasks.inspection import recall_per_class


def _latency(fn, frame: np.ndarray, runs: int) -> float:
    for _ in range(20):
        fn(frame)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(frame)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def _per_class(pred: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    """Per class (x100): recall (its parts given their own class), precision (parts given the class that have it)
    and, for a defect, rejected (its parts given any defect class: caught, whatever the type). Class 0 is clean."""
    out = {}
    for k, c in enumerate(classes):
        true, said = labels == k, pred == k
        precision = float(true[said].mean() * 100) if said.any() else 0.0
        row = {"recall": accuracy(pred[true], labels[true]), "precision": precision}
        if k:
            row["rejected"] = float((pred[true] != 0).mean() * 100)
        out[c] = row
    return out


def _grid(path: str, frames: np.ndarray, titles: list[str], cols: int = 8, cell: int = 128) -> None:
    import cv2

    rows = []
    for r in range(0, len(frames), cols):
        row = []
        for f, t in zip(frames[r : r + cols], titles[r : r + cols]):
            img = cv2.cvtColor(cv2.resize(f, (cell, cell), interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2BGR)
            img = cv2.copyMakeBorder(img, 0, 34, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            for k, line in enumerate(t.split("\n")):
                cv2.putText(img, line, (3, cell + 13 + 15 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
            row.append(img)
        row += [np.full_like(row[0], 255)] * (cols - len(row))
        rows.append(np.concatenate(row, 1))
    cv2.imwrite(path, np.concatenate(rows, 0), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_dir", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--grid", default=None, help="write a PNG grid of test and unseen parts with predictions")
    p.add_argument("--latency", type=int, default=0, help="timed batch-1 runs per variant (0: skip)")
    p.add_argument("--paddlex", action="store_true", help="check PaddleX's predictor gives our classes and scores")
    p.add_argument("--paddlex_python", default=str(ROOT / OVERLAY_PYTHON), help="scripts/paddlex_overlay.sh's venv")
    p.add_argument("--out", default=None, help="write the results as JSON")
    args = p.parse_args()

    ours = InspectionPredictor(args.model_dir, backend="onnxruntime")
    cfg = ours.frame_cfg
    test = ImageListDataset(args.data, "test", cfg)
    unseen = ImageListDataset(args.data, "unseen", cfg)
    res: dict = {"test_images": len(test), "unseen_images": len(unseen)}
    variants = {
        "onnxruntime_fp32": ours,
        "paddle_inference_fp32": InspectionPredictor(args.model_dir, "paddle_inference", anomaly=False),
    }
    if "int8" in ours.info["graphs"]["classify"]["files"]:
        variants["onnxruntime_int8"] = InspectionPredictor(args.model_dir, precision="int8", anomaly=False)
    preds = {}
    for name, pred in variants.items():
        preds[name] = pred.probabilities(test.frames).argmax(1)
        res[f"accuracy_{name}"] = accuracy(preds[name], test.labels)
    res["recall_onnxruntime_fp32"] = recall_per_class(preds["onnxruntime_fp32"], test.labels, test.classes)
    res["per_class_onnxruntime_fp32"] = _per_class(preds["onnxruntime_fp32"], test.labels, test.classes)
    if "onnxruntime_int8" in preds:
        res["recall_onnxruntime_int8"] = recall_per_class(preds["onnxruntime_int8"], test.labels, test.classes)
        res["int8_fp32_agreement"] = float((preds["onnxruntime_int8"] == preds["onnxruntime_fp32"]).mean() * 100)
    s_unseen, s_test = ours.anomaly_scores(unseen.frames), ours.anomaly_scores(test.frames)
    res["auroc_unseen_burn"] = auroc(s_unseen, unseen.labels == -1)
    good = test.labels == 0
    res["auroc_seen"] = {}
    for k, c in enumerate(test.classes[1:], start=1):
        defect = test.labels == k
        scores = np.concatenate([s_test[good], s_test[defect]])
        res["auroc_seen"][c] = auroc(scores, np.r_[np.zeros(good.sum()), np.ones(defect.sum())].astype(bool))
    thr = ours.threshold
    res["threshold"] = thr
    res["unseen_flagged_at_threshold"] = float((s_unseen[unseen.labels == -1] > thr).mean() * 100)
    res["clean_flagged_at_threshold"] = float((s_unseen[unseen.labels == 0] > thr).mean() * 100)
    if args.paddlex:
        paths, _ = read_list(args.data, "test")
        px_version, theirs = paddlex_classify(args.model_dir, _name(ours), args.paddlex_python, paths=paths)
        ours_pi = variants["paddle_inference_fp32"].probabilities(test.frames)
        res["paddlex_version"] = px_version
        res["paddlex_identical"] = int(sum(int(c == k) for (c, _), k in zip(theirs, ours_pi.argmax(1))))
        res["paddlex_compared"] = len(paths)
        res["paddlex_max_score_diff"] = float(np.abs(np.array([s for _, s in theirs]) - ours_pi.max(1)).max())
    if args.latency:
        res["load_average_before"] = os.getloadavg()
        frame = test.frames[:1]
        res["latency_ms_batch1"] = {
            name: _latency(v.probabilities, frame, args.latency) for name, v in variants.items()
        }
        res["latency_ms_batch1"]["anomaly_onnxruntime_fp32"] = _latency(ours.anomaly_scores, frame, args.latency)
        res["load_average_after"] = os.getloadavg()
    if args.grid:
        idx = [i for k in range(len(test.classes)) for i in np.flatnonzero(test.labels == k)[:4]]
        u_idx = np.flatnonzero(unseen.labels == -1)[:8]
        frames = np.concatenate([test.frames[idx], unseen.frames[u_idx]])
        truth = [test.classes[test.labels[i]] for i in idx] + ["burn*"] * len(u_idx)
        probs = ours.probabilities(frames)
        scores = ours.anomaly_scores(frames)
        titles = [f"{t}>{test.classes[int(q.argmax())]} {q.max():.2f}\nanomaly {s:.2f}{' !' if s > thr else ''}"
                  for t, q, s in zip(truth, probs, scores)]  # fmt: skip
        _grid(args.grid, frames, titles)
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


def _name(pred: InspectionPredictor) -> str:
    import yaml

    return yaml.safe_load((pred.dir / "inference.yml").read_text(encoding="utf-8"))["Global"]["model_name"]


if __name__ == "__main__":
    main()
