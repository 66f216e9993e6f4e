"""Search with a trained model: text -> top-k images and image -> top-k captions.

    python tools/infer.py -c configs/quickstart.yml -o Global.pretrained_model=output/<run>/best_model \
        -o Infer.queries="['左上角有一个红色的圆形']" -o Infer.query_images="['a.png']"
    # the same search on an export (tools/export_model.py), on Paddle Inference or ONNX Runtime:
    python tools/infer.py -c configs/quickstart.yml -o Infer.model_dir=./inference -o Infer.backend=auto
    # or on a signed package of one, verified before anything is loaded (docs/model_package.md):
    python tools/infer.py -c configs/quickstart.yml -o Infer.package=/opt/models/cn-clip \
        -o Infer.trust="['/etc/paddle_mm/signer.pub']" -o Infer.package_model=cn-clip-vit-b-16

The gallery is ``Infer.root`` / ``Infer.split`` (Chinese-CLIP TSV/JSONL or the folder format); results are
printed and written to ``<output_dir>/<Arch.name>/infer_results.json``, and the text queries' top-k images
drawn in ``infer_grid.png`` beside it. A query image that cannot be read is skipped and counted, as training
skips bad images; other errors are one line with an exit code (docs/export.md, "Exit codes").
"""

import json
import sys
from pathlib import Path

from _common import ConfigError, exit_on_config_error, parse_config
from _errors import EXIT_DATA, EXIT_MODEL, exit_on, exit_on_predictor_error, fail, writable_output

from paddle_mm.metrics import search  # numpy only: an ONNX Runtime deployment need not have paddle

SCALE_NOTE = (
    "scores are cosine similarities of L2-normalized features, in [-1, 1]; only their order matters: the model "
    "compares them after multiplying by its logit scale (up to 100), so a gap of 0.01 is a real preference"
)


def check_config(g: dict, inf: dict) -> None:
    given = {"Global.pretrained_model": g["pretrained_model"], "Infer.model_dir": inf["model_dir"]}
    sources = [key for key, value in {**given, "Infer.package": inf["package"]}.items() if value]
    if len(sources) != 1:
        raise ConfigError(
            f"{' and '.join(sources) or 'model'}: pass exactly one of -o Global.pretrained_model=output/<run>/"
            "best_model (checkpoint), -o Infer.model_dir=<export dir> or -o Infer.package=<signed export>"
        )
    if inf["package"] and not (inf["trust"] and inf["package_model"]):
        raise ConfigError(
            "Infer.package: needs -o Infer.trust=\"['signer.pub']\" (the anchors you trust) and "
            "-o Infer.package_model=<name it was signed for>"
        )


def eager_encoders(g: dict, inf: dict):
    """(gallery, texts, images) encoders of the checkpoint's eager model, as tools/eval.py runs it."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    import hardware
    from paddle_mm.engine.checkpoint import resolve_checkpoint
    from paddle_mm.models import load_model
    from paddle_mm.tasks.loaders import build_tokenizer
    from paddle_mm.tasks.retrieval import encode_corpus, encode_texts
    from paddle_mm.vision.transforms import ImageTransform

    hardware.resolve_device(g["device"])
    model = load_model(resolve_checkpoint(g["pretrained_model"]))
    tokenizer = build_tokenizer(model.config.context_length)
    transform = ImageTransform(size=model.config.image_resolution)
    size = inf["batch_size"]

    def gallery(corpus):
        enc = encode_corpus(model, corpus, transform, tokenizer, size, progress=g["progress_bar"])
        return enc.image_ids, enc.image_features, enc.text_features

    def images(paths):
        with paddle.no_grad():
            pixels = paddle.to_tensor(np.stack([transform(p) for p in paths]))
            return F.normalize(model.encode_image(pixels), axis=-1).numpy()

    return gallery, lambda texts: encode_texts(model, texts, tokenizer, size, progress=False), images


def predictor_encoders(g: dict, inf: dict):
    """(gallery, texts, images) encoders of an export directory or a verified package of one."""
    from paddle_mm.inference import ModelSource, open_predictor
    from paddle_mm.inference.evaluate import encode_split

    options = {"backend": inf["backend"], "precision": inf["precision"], "device": g["device"]}
    options.update(threads=inf["threads"], batch_size=inf["batch_size"])
    keys = ("model_dir", "package", "trust", "package_model", "package_state", "decrypt_key", "decrypt_passphrase_env")
    predictor = open_predictor(ModelSource(*(inf[k] for k in keys)), **options)
    if predictor.is_fusion:
        raise ValueError(
            "the export of a fusion model scores image-question pairs, it does not search: "
            "use tools/predict.py --model <export dir> --image ... --question ..."
        )
    if predictor.manifest is not None:
        m = predictor.manifest
        print(f"verified package {m.model} {m.version} (sequence {m.sequence}, signer {m.key_id[:16]}...)")
    return (lambda corpus: encode_split(predictor, corpus)), predictor.encode_texts, predictor.encode_images


def build_encoders(g: dict, inf: dict):
    """The three encoders for the configured model; a refused package exits with its code (10-14), a missing
    or corrupt model with 6, an unusable device with 2 (tools/_errors.exit_on_predictor_error)."""
    given = {"Global.pretrained_model": g["pretrained_model"], "Infer.model_dir": inf["model_dir"]}
    given["Infer.package"] = inf["package"]
    source = next(f"{key} {value}" for key, value in given.items() if value)  # check_config: exactly one
    with exit_on_predictor_error(source, "Global.device"):
        return (eager_encoders if g["pretrained_model"] else predictor_encoders)(g, inf)


def text_to_image(queries, encode_texts, image_ids, image_features, by_image, k, scenes=None) -> list[dict]:
    """Print and return each query's top-k images; on built-in data (``scenes``: image_id -> objects), each
    result is marked ✓ when its scene satisfies the query (paddle_mm.demo.shape_queries)."""
    from paddle_mm.demo.shape_queries import check_results, mark

    results = []
    for query, hits in zip(queries, search(encode_texts(queries), image_features, k)):
        rows = [{"image_id": image_ids[c], "score": s, "caption": by_image.get(image_ids[c], "")} for c, s in hits]
        checks = check_results(query, [r["image_id"] for r in rows], scenes)
        for r, check in zip(rows, checks or [None] * len(rows)):
            r["check"] = check
        results.append({"query": query, "results": rows})
        right = sum(1 for r in rows if r["check"] and r["check"]["satisfies"])
        note = (
            f"  ({right} of {len(rows)} satisfy it)"
            if checks
            else ("  (not checked: outside the built-in caption language)" if scenes else "")
        )
        print(f"\n[text -> image] {query}{note}")
        for r in rows:
            print(f"  {mark(r['check'])} {r['score']:.4f}  image {r['image_id']}  (its caption: {r['caption']})")
    return results


def image_to_text(paths, features, corpus, text_features, k) -> list[dict]:
    results = []
    for path, hits in zip(paths, search(features, text_features, k)):
        rows = [{"text_id": corpus.texts[c].text_id, "score": s, "caption": corpus.texts[c].text} for c, s in hits]
        results.append({"query": path, "results": rows})
        print(f"\n[image -> text] {path}")
        for r in rows:
            print(f"  {r['score']:.4f}  {r['caption']}")
    return results


def _satisfies(result: dict) -> bool | None:
    return None if result.get("check") is None else result["check"]["satisfies"]


def draw_grid(path: Path, corpus, text_results: list[dict]) -> dict:
    """infer_grid.png: each text query and its top-k gallery images with their cosines."""
    from paddle_mm.data.datasets import ImageReadError
    from paddle_mm.inference.grid import save_grid

    def image(image_id):
        try:
            return corpus.read_image_bytes(image_id)
        except ImageReadError:
            return b""  # drawn as an unreadable cell

    rows = [
        (q["query"], [(image(r["image_id"]), r["score"], _satisfies(r)) for r in q["results"]]) for q in text_results
    ]
    grid = save_grid(path, rows)
    labelled = [f"{label} = {q['query']}" for label, q in zip(grid["labels"], text_results) if label != q["query"]]
    print(f"wrote {path}" + (f" (no CJK font found, set PADDLE_MM_FONT; {'; '.join(labelled)})" if labelled else ""))
    return grid


def main() -> None:
    cfg, _ = parse_config(__doc__)
    g, inf = cfg["Global"], cfg["Infer"]
    eval_section = cfg["DataLoader"]["Eval"]
    with exit_on_config_error():
        check_config(g, inf)
        root = inf["root"] or (eval_section["dataset"]["root"] if eval_section else None)
        if not root:
            raise ConfigError("Infer.root: missing; set the gallery directory with -o Infer.root=...")
    out = writable_output(Path(g["output_dir"]) / cfg["Arch"]["name"] / "infer_results.json", "Global.output_dir:")
    from paddle_mm.data.datasets import load_corpus

    with exit_on(EXIT_DATA, FileNotFoundError, ValueError):
        corpus = load_corpus(root, inf["split"])
    encode_gallery, encode_texts, encode_images = build_encoders(g, inf)
    from paddle_mm.inference import ExportDirError

    with exit_on(EXIT_MODEL, ExportDirError):  # a model file is checked (digest) when first used
        search_and_write(inf, root, corpus, out, encode_gallery, encode_texts, encode_images)


def search_and_write(inf: dict, root, corpus, out: Path, encode_gallery, encode_texts, encode_images) -> None:
    """Encode the gallery, run every query, print, write infer_results.json and infer_grid.png."""
    image_ids, image_features, text_features = encode_gallery(corpus)
    if not len(image_ids):
        fail(EXIT_DATA, f"gallery {root} {inf['split']}: no readable image; check Infer.root and Infer.split")
    by_image = {}
    for t in corpus.texts:
        for i in t.image_ids:
            by_image.setdefault(i, t.text)
    results = {"scores": SCALE_NOTE, "text_to_image": [], "image_to_text": []}
    if inf["queries"]:
        from paddle_mm.demo.shape_queries import load_scenes, scenes_file

        scenes_path = scenes_file(root, inf["split"])  # built-in data: every result can be checked
        results["text_to_image"] = text_to_image(
            inf["queries"], encode_texts, image_ids, image_features, by_image, inf["topk"],
            load_scenes(scenes_path) if scenes_path else None,
        )  # fmt: skip
    from paddle_mm.vision.transforms import split_readable

    paths, skipped = split_readable(inf["query_images"])
    for line in skipped:
        print(f"skipped query: {line}", file=sys.stderr)
    results["skipped_query_images"] = skipped
    if paths:
        results["image_to_text"] = image_to_text(paths, encode_images(paths), corpus, text_features, inf["topk"])
    print(f"\n({SCALE_NOTE})")
    if skipped:
        print(f"skipped {len(skipped)} of {len(inf['query_images'])} query images (unreadable; listed above)")
    if results["text_to_image"]:
        results["grid"] = draw_grid(out.with_name("infer_grid.png"), corpus, results["text_to_image"])["path"]
    out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
