"""Search with a trained model: text -> top-k images and image -> top-k captions.

    python tools/infer.py -c configs/quickstart.yml -o Global.pretrained_model=output/<run>/best_model \
        -o Infer.queries="['左上角有一个红色的圆形']" -o Infer.query_images="['a.png']"

The gallery is ``Infer.root`` / ``Infer.split`` (Chinese-CLIP TSV/JSONL or the folder format); results are
printed and written to ``<output_dir>/<Arch.name>/infer_results.json``.
"""

import json
from pathlib import Path

from _common import ConfigError, exit_on_config_error, parse_config


def main() -> None:
    cfg, _ = parse_config(__doc__)
    g, inf = cfg["Global"], cfg["Infer"]
    eval_section = cfg["DataLoader"]["Eval"]
    with exit_on_config_error():
        if not g["pretrained_model"]:
            raise ConfigError(
                "Global.pretrained_model: missing; pass -o Global.pretrained_model=output/<run>/best_model"
            )
        root = inf["root"] or (eval_section["dataset"]["root"] if eval_section else None)
        if not root:
            raise ConfigError("Infer.root: missing; set the gallery directory with -o Infer.root=...")

    import hardware
    from paddle_mm.engine.checkpoint import resolve_checkpoint
    from paddle_mm.engine.data import build_tokenizer, load_split
    from paddle_mm.engine.evaluate import encode_corpus, encode_texts, search
    from paddle_mm.models import load_model
    from paddle_mm.vision.transforms import ImageTransform

    hardware.resolve_device(g["device"])
    model = load_model(resolve_checkpoint(g["pretrained_model"]))
    tokenizer = build_tokenizer(model.config.context_length)
    transform = ImageTransform(size=model.config.image_resolution)
    corpus = load_split({"root": root, "split": inf["split"], "format": "auto"})
    gallery = encode_corpus(model, corpus, transform, tokenizer, inf["batch_size"], progress=g["progress_bar"])
    results = {"text_to_image": [], "image_to_text": []}
    by_image = {}
    for t in gallery.texts:
        for i in t.image_ids:
            by_image.setdefault(i, t.text)

    if inf["queries"]:
        feats = encode_texts(model, inf["queries"], tokenizer, inf["batch_size"], progress=False)
        for query, hits in zip(inf["queries"], search(feats, gallery.image_features, inf["topk"])):
            rows = [
                {"image_id": gallery.image_ids[c], "score": s, "caption": by_image.get(gallery.image_ids[c], "")}
                for c, s in hits
            ]
            results["text_to_image"].append({"query": query, "results": rows})
            print(f"\n[text -> image] {query}")
            for r in rows:
                print(f"  {r['score']:.4f}  image {r['image_id']}  (its caption: {r['caption']})")
    if inf["query_images"]:
        import numpy as np
        import paddle
        import paddle.nn.functional as F

        pixels = np.stack([transform(p) for p in inf["query_images"]])
        with paddle.no_grad():
            feats = F.normalize(model.encode_image(paddle.to_tensor(pixels)), axis=-1).numpy()
        for path, hits in zip(inf["query_images"], search(feats, gallery.text_features, inf["topk"])):
            rows = [
                {"text_id": gallery.texts[c].text_id, "score": s, "caption": gallery.texts[c].text} for c, s in hits
            ]
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
