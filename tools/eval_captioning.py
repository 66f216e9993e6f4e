"""Score a trained captioner: greedy against beam search, on character and jieba segmentation, plus samples.

    python tools/eval_captioning.py --model_dir output/captioning/CN-CLIP-Tiny/best_model --data data/shapes \
        [--split test] [--beams 1 3 5] [--alphas 0 0.6] [--samples 6] [--export inference/captioning] [--out x.json]

Every decoding (greedy, then each beam width x length penalty) captions every image of the split and is scored
against all of that image's references (BLEU-1..4, ROUGE-L, CIDEr-D x100; chrF). ``--export`` also exports the
encoder and decoder step and prints their parity against eager on the first 16 images (Paddle Inference and
ONNX Runtime). Prints a markdown table and sample captions; ``--out`` writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import numpy as np

from paddle_mm.data.datasets import load_pixels
from paddle_mm.models import load_model
from paddle_mm.tasks.captioning import caption_corpus, references, score_captions
from paddle_mm.tasks.loaders import build_transform, load_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--beams", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.6])
    ap.add_argument("--batch_size", type=int, default=100)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--export", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    model = load_model(a.model_dir)
    corpus = load_split({"root": a.data, "split": a.split, "format": "auto"})
    transform = build_transform({"interpolation": "pil_bicubic"}, model.config.image_resolution)
    runs = [(1, 0.0)] + [(b, al) for b in a.beams if b > 1 for al in a.alphas]
    rows, samples = [], {}
    for beam, alpha in runs:
        t = time.perf_counter()
        ids, caps = caption_corpus(model, corpus, transform, a.batch_size, beam, alpha)
        sec = time.perf_counter() - t
        m = score_captions(caps, references(corpus, ids))
        name = "greedy" if beam == 1 else f"beam {beam}, alpha {alpha:g}"
        rows.append({"decoding": name, "seconds": sec, **m, "mean_chars": float(np.mean([len(c) for c in caps]))})
        samples[name] = dict(zip(ids[: a.samples], caps[: a.samples]))
    print(f"{a.split} split, {rows[0]['n_images']} images, {a.model_dir}")
    print("| decoding | CIDEr-D | BLEU-4 | BLEU-1 | ROUGE-L | chrF | CIDEr-D (jieba) | BLEU-4 (jieba) | chars | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c, j = r["char"], r["jieba"]
        cells = [c["CIDEr"], c["Bleu_4"], c["Bleu_1"], c["ROUGE_L"], c["chrF"], j["CIDEr"], j["Bleu_4"]]
        tail = f"{r['mean_chars']:.1f} | {r['seconds']:.1f} |"
        print(f"| {r['decoding']} | " + " | ".join(f"{v:.2f}" for v in cells) + f" | {tail}")
    refs = dict(zip(list(samples["greedy"]), references(corpus, list(samples["greedy"]))))
    for image_id, cap in samples["greedy"].items():
        beams = "; ".join(f"{n}: {s[image_id]}" for n, s in samples.items() if n != "greedy")
        print(f"image {image_id}: greedy: {cap}; {beams}; reference: {refs[image_id][0]}")
    out = {"rows": rows, "samples": samples}
    if a.export:
        from paddle_mm.export.captioning import check_parity, export_captioning

        export_captioning(model, a.export)
        px = np.stack([load_pixels(corpus, transform, i)[0] for i in corpus.images[:16]])
        out["parity"] = [check_parity(model, a.export, px, b) for b in ("paddle_inference", "onnxruntime")]
        for p in out["parity"]:
            print(p)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    main()
