"""Evaluate a checkpoint: ``python tools/eval.py -c x.yml -o Global.pretrained_model=output/<run>/best_model``.

Any task's checkpoint (``Global.task`` of the config; pass the run's config.yml or the config it was trained
with), through the task's own evaluation (``paddle_mm.tasks``: the numbers training logs, from the same code):
retrieval prints R@1/5/10 and MR in both directions and writes them as JSON, including Chinese-CLIP's
``{"success", "score", "scoreJson"}`` shape per direction; VQA and classification print VQA soft accuracy,
accuracy, macro F1 and accuracy per question type; matching the re-ranked R@1/5/10, MRR and NDCG@10 beside the
contrastive ranking's; inspection accuracy, macro F1 and recall per class.
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
    from paddle_mm.tasks import build_task

    with exit_on_config_error():
        hardware.resolve_device(g["device"])
        task = build_task(cfg)
    path = resolve_checkpoint(g["pretrained_model"])
    with exit_on_model_error(f"Global.pretrained_model {g['pretrained_model']}"):
        model = load_model(path)
    with exit_on_config_error():
        task.check_checkpoint(model, path)
    dataset = section["dataset"]
    metrics = task.evaluate(model, task.load_eval(dataset, model.config), section["sampler"]["batch_size"])
    data = f"{dataset['root']} ({dataset['split']})"
    print("\n".join([*task.report(metrics), f"[{data}]"]))
    out = Path(g["output_dir"]) / cfg["Arch"]["name"] / f"eval_{dataset['split']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"checkpoint": str(path), "data": data, **task.eval_record(metrics)}
    out.write_text(json.dumps(record, ensure_ascii=False, indent=1), "utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
