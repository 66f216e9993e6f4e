"""Evaluate a checkpoint: ``python tools/eval.py -c x.yml -o Global.pretrained_model=output/<run>/best_model``.

Prints R@1/5/10 and MR in both directions and writes them as JSON, including Chinese-CLIP's
``{"success", "score", "scoreJson"}`` shape per direction.
"""

import json
from pathlib import Path

from _common import ConfigError, exit_on_config_error, parse_config


def main() -> None:
    cfg, _ = parse_config(__doc__)
    g, section = cfg["Global"], cfg["DataLoader"]["Eval"]
    with exit_on_config_error():
        if not g["pretrained_model"]:
            raise ConfigError(
                "Global.pretrained_model: missing; pass -o Global.pretrained_model=output/<run>/best_model"
            )
        if section is None:
            raise ConfigError("DataLoader.Eval: missing; tools/eval.py needs an Eval dataset section")

    import hardware
    from paddle_mm.engine.checkpoint import resolve_checkpoint
    from paddle_mm.engine.data import build_tokenizer, build_transform, load_split
    from paddle_mm.engine.evaluate import evaluate
    from paddle_mm.metrics import chinese_clip_score_json
    from paddle_mm.models import load_model

    with exit_on_config_error():
        hardware.resolve_device(g["device"])
    path = resolve_checkpoint(g["pretrained_model"])
    model = load_model(path)
    corpus = load_split(section["dataset"])
    topk = tuple(sorted({k for item in cfg["Metric"]["Eval"] for k in item["Recall"]["topk"]} | {1, 5, 10}))
    m = evaluate(
        model,
        corpus,
        build_transform(section["dataset"], model.config.image_resolution),
        build_tokenizer(model.config.context_length),
        section["sampler"]["batch_size"],
        section["loader"]["num_workers"],
        topk,
        progress=g["progress_bar"],
    )
    for name, key in (("text -> image", "t2i"), ("image -> text", "i2t")):
        print(
            f"{name}: "
            + ", ".join(f"R@{k}: {m[key][f'r{k}']:.2f}" for k in topk)
            + f", MR: {m[key]['mean_recall']:.2f}"
        )
    data = f"{section['dataset']['root']} ({section['dataset']['split']})"
    print(f"MR (both directions): {m['MR']:.2f}   [{data}: {len(corpus.images)} images, {len(corpus.texts)} texts]")
    if not m["skipped"].startswith("skipped 0 "):
        print(m["skipped"])
    result = {
        "checkpoint": str(path),
        "data": data,
        "MR": m["MR"],
        "t2i": m["t2i"],
        "i2t": m["i2t"],
        "text_to_image": chinese_clip_score_json(m["t2i"]),
        "image_to_text": chinese_clip_score_json(m["i2t"]),
    }
    result.update(attribute_report(section["dataset"], m.pop("encoded")))
    out = Path(g["output_dir"]) / cfg["Arch"]["name"] / f"eval_{section['dataset']['split']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {out}")


def attribute_report(dataset: dict, encoded) -> dict:
    """On built-in data (it has scene records): attribute precision@5 of the text -> image search, printed."""
    from paddle_mm.data.scene_queries import format_attribute_precision, search_attribute_precision

    r = search_attribute_precision(
        dataset["root"], dataset["split"], encoded.image_ids, encoded.image_features, encoded.texts,
        encoded.text_features,
    )  # fmt: skip
    if r is None:
        return {}
    print(format_attribute_precision(r))
    return {"attribute_precision": r}


if __name__ == "__main__":
    main()
