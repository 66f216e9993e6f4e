"""Search with a trained model: text -> top-k images and image -> top-k captions.

    python tools/infer.py -c configs/quickstart.yml -o Global.pretrained_model=output/<run>/best_model \
        -o Infer.queries="['左上角有一个红色的圆形']" -o Infer.query_images="['a.png']"
    # the same search on an export (tools/export_model.py), on Paddle Inference or ONNX Runtime:
    python tools/infer.py -c configs/quickstart.yml -o Infer.model_dir=./inference -o Infer.backend=auto
    # or on a signed package of one, verified before anything is loaded (docs/model_package.md):
    python tools/infer.py -c configs/quickstart.yml -o Infer.package=/opt/models/cn-clip \
        -o Infer.trust="['/etc/paddle_mm/signer.pub']" -o Infer.package_model=cn-clip-vit-b-16

The gallery is ``Infer.root`` / ``Infer.split`` (Chinese-CLIP TSV/JSONL or the folder format); results are
printed and written to ``<output_dir>/<Arch.name>/infer_results.json``.
"""

import json
import sys
from pathlib import Path

from _common import ConfigError, exit_on_config_error, parse_config


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
    from paddle_mm.engine.data import build_tokenizer
    from paddle_mm.engine.evaluate import encode_corpus, encode_texts
    from paddle_mm.models import load_model
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
    from paddle_mm.inference import Predictor
    from paddle_mm.inference.evaluate import encode_split

    options = {"backend": inf["backend"], "precision": inf["precision"], "device": g["device"]}
    options.update(threads=inf["threads"], batch_size=inf["batch_size"])
    if inf["model_dir"]:
        predictor = Predictor(inf["model_dir"], **options)
    else:
        predictor = Predictor.from_package_files(
            inf["package"],
            inf["trust"],
            model=inf["package_model"],
            state_file=inf["package_state"],
            decrypt_key_file=inf["decrypt_key"],
            passphrase_env=inf["decrypt_passphrase_env"],
            **options,
        )
        m = predictor.manifest
        print(f"verified package {m.model} {m.version} (sequence {m.sequence}, signer {m.key_id[:16]}...)")
    return (lambda corpus: encode_split(predictor, corpus)), predictor.encode_texts, predictor.encode_images


def search(queries, gallery, k: int) -> list[list[tuple[int, float]]]:
    """Top-``k`` gallery rows per query as ``[(row, cosine), ...]``, best first (as engine.evaluate.search,
    which imports paddle: an ONNX Runtime deployment need not have it)."""
    from paddle_mm.metrics import topk_indices

    sim = queries @ gallery.T  # (n_queries, n_gallery)
    return [[(int(c), float(sim[q, c])) for c in row] for q, row in enumerate(topk_indices(sim, k))]


def build_encoders(g: dict, inf: dict):
    """The three encoders for the configured model; a refused package exits with its code (10-14)."""
    from paddle_mm.inference import ExportDirError
    from paddle_mm.package import PackageConfigError, PackageRefused

    try:
        return (eager_encoders if g["pretrained_model"] else predictor_encoders)(g, inf)
    except PackageRefused as err:
        print(f"REFUSED {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except (ExportDirError, PackageConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def main() -> None:
    cfg, _ = parse_config(__doc__)
    g, inf = cfg["Global"], cfg["Infer"]
    eval_section = cfg["DataLoader"]["Eval"]
    with exit_on_config_error():
        check_config(g, inf)
        root = inf["root"] or (eval_section["dataset"]["root"] if eval_section else None)
        if not root:
            raise ConfigError("Infer.root: missing; set the gallery directory with -o Infer.root=...")
        encode_gallery, encode_texts, encode_images = build_encoders(g, inf)

    from paddle_mm.data.datasets import load_corpus

    corpus = load_corpus(root, inf["split"])
    image_ids, image_features, text_features = encode_gallery(corpus)
    results = {"text_to_image": [], "image_to_text": []}
    by_image = {}
    for t in corpus.texts:
        for i in t.image_ids:
            by_image.setdefault(i, t.text)

    if inf["queries"]:
        for query, hits in zip(inf["queries"], search(encode_texts(inf["queries"]), image_features, inf["topk"])):
            rows = [{"image_id": image_ids[c], "score": s, "caption": by_image.get(image_ids[c], "")} for c, s in hits]
            results["text_to_image"].append({"query": query, "results": rows})
            print(f"\n[text -> image] {query}")
            for r in rows:
                print(f"  {r['score']:.4f}  image {r['image_id']}  (its caption: {r['caption']})")
    if inf["query_images"]:
        feats = encode_images(inf["query_images"])
        for path, hits in zip(inf["query_images"], search(feats, text_features, inf["topk"])):
            rows = [{"text_id": corpus.texts[c].text_id, "score": s, "caption": corpus.texts[c].text} for c, s in hits]
            results["image_to_text"].append({"query": path, "results": rows})
            print(f"\n[image -> text] {path}")
            for r in rows:
                print(f"  {r['score']:.4f}  {r['caption']}")
    out = Path(g["output_dir"]) / cfg["Arch"]["name"] / "infer_results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
