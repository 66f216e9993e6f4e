"""Embeddings with real structure at gallery scale: render N scenes of the built-in shapes world and embed them with
trained checkpoints, for benchmarks/bench_search.py --embeddings.

    python benchmarks/embed_shapes.py --checkpoints output/qs64/CN-CLIP-Tiny/best_model \
        output/qs512/CN-CLIP-Tiny/best_model --n 1000000 --texts data/shapes96 --out output/shapes_emb

Each checkpoint gets ``<out>/<embed_dim>d/``: ``gallery.npy`` (N, D) float32 unit rows, ``image_queries.npy``
(1000 held-out scenes, never in the gallery), ``text_queries.npy`` (the captions of ``--texts``'s test split, the
service's text -> image queries). Scenes come in chunks of 4096 from ``paddle_mm.demo.shapes.generate_scenes``
(families of a base scene and 1-4 one-attribute variants; random background, texture, offsets and tints) with
one random stream per chunk, so a run that stops resumes at its last finished chunk (``progress.json``) and the
same command gives the same scenes. Every scene is rendered once and fed to every checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHUNK = 4096
QUERY_SEED = 10**6  # the held-out scenes' stream: no gallery chunk uses it


def render_chunk(index: int, n: int, seed: int, size: int, transform) -> np.ndarray:
    """(n, 3, size, size) float32 model inputs of chunk ``index``'s scenes, as training feeds them (RGB, normalized)."""
    from paddle_mm.demo.shapes import generate_scenes, render_scene

    scenes = generate_scenes(n, np.random.default_rng([seed, index]))
    return np.stack([transform(render_scene(s, size)[:, :, ::-1]) for s in scenes])  # BGR -> RGB


def embed(models: list, pixels: np.ndarray, batch: int = 512) -> list[np.ndarray]:
    import paddle
    import paddle.nn.functional as F

    out = []
    with paddle.no_grad():
        for model in models:
            parts = [
                F.normalize(model.encode_image(paddle.to_tensor(pixels[i : i + batch])), axis=-1).numpy()
                for i in range(0, len(pixels), batch)
            ]
            out.append(np.concatenate(parts).astype(np.float32))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--texts", required=True, help="a tools/make_data.py folder: its test captions are text queries")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--queries", type=int, default=1000, help="held-out scenes embedded as image queries")
    args = p.parse_args()

    from paddle_mm.data.datasets import load_corpus
    from paddle_mm.models import load_model
    from paddle_mm.tasks.loaders import build_tokenizer
    from paddle_mm.tasks.retrieval import encode_texts
    from paddle_mm.vision.transforms import ImageTransform

    models = [load_model(c) for c in args.checkpoints]
    size = models[0].config.image_resolution
    if any(m.config.image_resolution != size for m in models):
        raise SystemExit(f"--checkpoints: every model must take the same image size; got {[m.config for m in models]}")
    transform = ImageTransform(size=size)
    out = Path(args.out)
    dirs = [out / f"{m.config.embed_dim}d" for m in models]
    if len(set(dirs)) != len(dirs):
        raise SystemExit("--checkpoints: two models with the same embedding size; give them separate --out runs")
    for d, model, ckpt in zip(dirs, models, args.checkpoints):
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "text_queries.npy").exists():
            texts = [t.text for t in load_corpus(args.texts, "test").texts]
            tokenizer = build_tokenizer(model.config.context_length)
            np.save(d / "text_queries.npy", encode_texts(model, texts, tokenizer, 256, progress=False))
            qpix = render_chunk(QUERY_SEED, args.queries, args.seed, size, transform)
            np.save(d / "image_queries.npy", embed([model], qpix)[0])
            (d / "source.json").write_text(json.dumps({"checkpoint": ckpt, "n": args.n, "seed": args.seed}))
    galleries = [
        np.lib.format.open_memmap(
            d / "gallery.npy",
            mode="r+" if (d / "gallery.npy").exists() else "w+",
            dtype=np.float32,
            shape=(args.n, m.config.embed_dim),
        )
        for d, m in zip(dirs, models)
    ]
    progress = out / "progress.json"
    done = json.loads(progress.read_text())["rows"] if progress.exists() else 0
    start, cpu0 = time.perf_counter(), time.process_time()
    render_s = embed_s = 0.0
    for first in range(done, args.n, CHUNK):
        n = min(CHUNK, args.n - first)
        t = time.perf_counter()
        pixels = render_chunk(first // CHUNK, n, args.seed, size, transform)
        t2 = time.perf_counter()
        for gallery, vectors in zip(galleries, embed(models, pixels)):
            gallery[first : first + n] = vectors
        render_s, embed_s = render_s + t2 - t, embed_s + time.perf_counter() - t2
        for gallery in galleries:
            gallery.flush()
        progress.write_text(json.dumps({"rows": first + n}))
        rate = (first + n - done) / (time.perf_counter() - start)
        print(
            f"[embed_shapes] {first + n}/{args.n} scenes, {rate:.0f}/s (render {render_s:.0f} s, "
            f"embed {embed_s:.0f} s, "
            f"process CPU {time.process_time() - cpu0:.0f} s, load average {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
