"""Embeddings with real structure at gallery scale: render N scenes of the built-in shapes world and embed them with
trained checkpoints, for benchmarks/bench_search.py --embeddings.

    python benchmarks/embed_shapes.py --checkpoints output/qs64/CN-CLIP-Tiny/best_model \
        output/qs512/CN-CLIP-Tiny/best_model --n 1000000 --texts data/shapes96 --out output/shapes_emb

Each checkpoint gets ``<out>/<embed_dim>d/``: ``gallery.npy`` (N, D) float32 unit rows, ``image_queries.npy``
(1000 held-out scenes, never in the gallery), ``text_queries.npy`` (the captions of ``--texts``'s test split, the
service's text -> image queries) and ``text_tune_queries.npy`` (the valid split's captions: other captions of the
same world, for tuning the index without touching the measured ones). Scenes come in chunks of 4096 from
``paddle_mm.demo.shapes.generate_scenes`` (families of a base scene and 1-4 one-attribute variants; random
background, texture, offsets and tints) with one random stream per chunk, so a run that stops resumes at its last
finished chunk (``progress.json``) and the same command gives the same scenes. Every scene is rendered once and
fed to every checkpoint.

Rendering and embedding run at ~300 scenes/s on 2 loaded cores (55 min for 1M), so a larger set can be grown
from fewer real rows, measured, not invented:

    python benchmarks/embed_shapes.py --checkpoints output/qs512/CN-CLIP-Tiny/best_model --texts data/shapes96 \
        --out output/shapes_emb --real 250000 --expand_to 1000000

``--expand_to``: ``<out>/<embed_dim>d_<N>/gallery.npy`` holds the first ``--real`` rows of the real gallery, then
copies of them re-styled: each copy is ``unit(v + (w_i - w_j))`` where ``w_i, w_j`` are the embeddings of the same
objects rendered with two different random styles (background, texture, offsets, tints: what a caption never
describes). 400 object sets x 5 styles give the bank of 8000 displacements; the copy of row r uses displacement
r mod 8000 after a fixed shuffle. The script prints the mean cosine of real re-styled pairs and of copy/source pairs.
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


def style_displacements(model, size: int, seed: int, transform, groups: int = 400, styles: int = 5):
    """(groups * styles * (styles - 1), D) differences w_i - w_j of one object set rendered in two random styles, and
    the mean cosine of those real pairs."""
    from paddle_mm.demo.shapes import Scene, random_objects, random_style, render_scene

    rng = np.random.default_rng([seed, 2 * QUERY_SEED])
    scenes = [
        Scene(g * styles + s, g, "base", objects, random_style(rng))
        for g, objects in enumerate(random_objects(rng) for _ in range(groups))
        for s in range(styles)
    ]
    pixels = np.stack([transform(render_scene(s, size)[:, :, ::-1]) for s in scenes])
    w = embed([model], pixels)[0].reshape(groups, styles, -1)  # (G, S, D)
    pairs = [(i, j) for i in range(styles) for j in range(styles) if i != j]
    diffs = np.concatenate([w[:, i] - w[:, j] for i, j in pairs])
    cosines = np.concatenate([np.sum(w[:, i] * w[:, j], axis=1) for i, j in pairs])
    return diffs, float(cosines.mean())


def expand(args, model, transform, directory: Path) -> None:
    progress = json.loads((Path(args.out) / "progress.json").read_text())["rows"]
    if progress < args.real:
        raise SystemExit(f"--real {args.real}: only {progress} real rows are embedded; run without --expand_to first")
    real = np.load(directory / "gallery.npy", mmap_mode="r")[: args.real]
    diffs, real_cos = style_displacements(model, model.config.image_resolution, args.seed, transform)
    diffs = diffs[np.random.default_rng(args.seed).permutation(len(diffs))]
    out = Path(f"{directory}_{args.expand_to}")
    out.mkdir(parents=True, exist_ok=True)
    gallery = np.lib.format.open_memmap(
        out / "gallery.npy", mode="w+", dtype=np.float32, shape=(args.expand_to, real.shape[1])
    )
    gallery[: args.real] = real
    cos = []
    for first in range(args.real, args.expand_to, 100_000):
        rows = np.arange(first, min(first + 100_000, args.expand_to))
        source = real[rows % args.real]
        copy = source + diffs[rows % len(diffs)]
        copy /= np.linalg.norm(copy, axis=1, keepdims=True)
        gallery[rows] = copy
        cos.append(np.sum(copy * source, axis=1))
    gallery.flush()
    copy_cos = float(np.concatenate(cos).mean())
    for name in ("image_queries.npy", "text_queries.npy", "text_tune_queries.npy"):
        (out / name).write_bytes((directory / name).read_bytes())
    source = json.loads((directory / "source.json").read_text())
    source.update(real=args.real, n=args.expand_to, restyled_pairs_cosine=real_cos, copy_source_cosine=copy_cos)
    (out / "source.json").write_text(json.dumps(source))
    print(
        f"[embed_shapes] {out}/gallery.npy: {args.real} real rows + {args.expand_to - args.real} re-styled copies; "
        f"mean cosine of real re-styled pairs {real_cos:.4f}, of copy and source {copy_cos:.4f} "
        f"({len(diffs)} displacements, mean norm {np.linalg.norm(diffs, axis=1).mean():.4f})"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--texts", required=True, help="a tools/make_data.py folder: its test captions are text queries")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--queries", type=int, default=1000, help="held-out scenes embedded as image queries")
    p.add_argument("--real", type=int, help="with --expand_to: how many real rows to grow from")
    p.add_argument("--expand_to", type=int, help="grow the gallery to this many rows with re-styled copies (see above)")
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
        if not (d / "text_tune_queries.npy").exists():  # added later than the others: a set made before gets it too
            texts = [t.text for t in load_corpus(args.texts, "valid").texts]
            tokenizer = build_tokenizer(model.config.context_length)
            np.save(d / "text_tune_queries.npy", encode_texts(model, texts, tokenizer, 256, progress=False))
    galleries = [
        np.lib.format.open_memmap(
            d / "gallery.npy",
            mode="r+" if (d / "gallery.npy").exists() else "w+",
            dtype=np.float32,
            shape=(args.n, m.config.embed_dim),
        )
        for d, m in zip(dirs, models)
    ]
    if args.expand_to:
        if len(models) != 1 or not args.real:
            raise SystemExit("--expand_to: give one checkpoint and --real")
        expand(args, models[0], transform, dirs[0])
        return 0
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
