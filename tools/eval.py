"""Evaluate a checkpoint: ``python tools/eval.py -c x.yml -o Global.pretrained_model=output/<run>/best_model``.

Any task's checkpoint (``Global.task`` of the config; pass the run's config.yml or the config it was trained
with): retrieval prints R@1/5/10 and MR in both directions and writes them as JSON, including Chinese-CLIP's
``{"success", "score", "scoreJson"}`` shape per direction; a VQA or classification checkpoint prints VQA soft
accuracy, accuracy, macro F1 and accuracy per question type; a matching checkpoint the re-ranked R@1/5/10, MRR
and NDCG@10 beside the contrastive ranking's (the numbers training logs, from the same code).
"""

import json
from pathlib import Path

from _common import ConfigError, exit_on_config_error, parse_config
from _errors import exit_on_model_error


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
    from paddle_mm.models import load_model

    with exit_on_config_error():
        hardware.resolve_device(g["device"])
    path = resolve_checkpoint(g["pretrained_model"])
    with exit_on_model_error(f"Global.pretrained_model {g['pretrained_model']}"):
        model = load_model(path)
    check_kind(g["task"], model, path)
    split = section["dataset"]["split"]
    data = f"{section['dataset']['root']} ({split})"
    if g["task"] == "retrieval":
        result = evaluate_retrieval(cfg, model, section, data)
    else:
        result = evaluate_task(cfg, model, section)
    out = Path(g["output_dir"]) / cfg["Arch"]["name"] / f"eval_{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(path), "data": data, **result}, ensure_ascii=False, indent=1), "utf-8")
    print(f"wrote {out}")


def check_kind(task: str, model, path: Path) -> None:
    """The checkpoint must be the kind of model the config's task evaluates."""
    fusion = hasattr(model, "fusion_name")
    want = {"retrieval": "a CLIP", "matching": "a matching fusion model"}.get(task, "a VQA / classification fusion")
    if (task == "retrieval") == fusion or (fusion and model.matching != (task == "matching")):
        with exit_on_config_error():
            raise ConfigError(
                f"Global.task={task} evaluates {want} checkpoint, but {path} holds "
                f"{'a fusion' if fusion else 'a CLIP'} model{' for matching' if fusion and model.matching else ''}; "
                "pass the config the checkpoint was trained with (its run folder's config.yml)"
            )


def evaluate_task(cfg: dict, model, section: dict) -> dict:
    """A fusion checkpoint on its task's evaluation (paddle_mm.tasks), printed as training logs it."""
    from paddle_mm.tasks import build_task

    with exit_on_config_error():
        task = build_task(cfg)
        answers = getattr(task, "answers", None)  # vqa / classification: the data's answers.json
        if answers is not None and list(answers) != model.labels:
            raise ConfigError(
                f"the checkpoint's {len(model.labels or [])} answers differ from "
                f"{cfg['DataLoader']['Train']['dataset']['root']}/answers.json; evaluate on the data it was trained on"
            )
    m = task.evaluate(model, task.load_eval(section["dataset"], model.config), section["sampler"]["batch_size"])
    if "per_type" in m:
        print(f"vqa_acc: {m['vqa_acc']:.2f}, accuracy: {m['accuracy']:.2f}, macro_f1: {m['macro_f1']:.2f}")
        print("accuracy per question type: " + ", ".join(f"{t}: {v:.2f}" for t, v in m["per_type"].items()))
    else:
        for name, r in (("re-ranked by the fusion", m), ("contrastive only", m["contrastive"])):
            print(
                f"{name}: R@1: {r['r1']:.2f}, R@5: {r['r5']:.2f}, R@10: {r['r10']:.2f}, "
                f"mean_recall: {r['mean_recall']:.2f}, MRR: {r['mrr']:.2f}, NDCG@10: {r['ndcg@10']:.2f}"
            )
    return {"task": cfg["Global"]["task"], "metrics": m}


def evaluate_retrieval(cfg: dict, model, section: dict, data: str) -> dict:
    from paddle_mm.metrics import chinese_clip_score_json, retrieval_report
    from paddle_mm.tasks.loaders import build_tokenizer, build_transform, load_split
    from paddle_mm.tasks.retrieval import encode_corpus, score

    corpus = load_split(section["dataset"])
    topk = tuple(sorted({k for item in cfg["Metric"]["Eval"] for k in item["Recall"]["topk"]} | {1, 5, 10}))
    encoded = encode_corpus(
        model,
        corpus,
        build_transform(section["dataset"], model.config.image_resolution),
        build_tokenizer(model.config.context_length),
        section["sampler"]["batch_size"],
        section["loader"]["num_workers"],
        progress=cfg["Global"]["progress_bar"],
    )
    m = score(encoded, topk)
    *directions, both = retrieval_report(m, topk)
    print("\n".join(directions))
    print(f"{both}   [{data}: {len(corpus.images)} images, {len(corpus.texts)} texts]")
    if not encoded.skipped.startswith("skipped 0 "):
        print(encoded.skipped)
    return {
        "MR": m["MR"],
        "t2i": m["t2i"],
        "i2t": m["i2t"],
        "text_to_image": chinese_clip_score_json(m["t2i"]),
        "image_to_text": chinese_clip_score_json(m["i2t"]),
        **attribute_report(section["dataset"], encoded),
    }


def attribute_report(dataset: dict, encoded) -> dict:
    """On built-in data (it has scene records): attribute precision@5 of the text -> image search, printed."""
    from paddle_mm.demo.shape_queries import format_attribute_precision, search_attribute_precision

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
