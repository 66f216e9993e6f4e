"""Robustness benchmark of trained fusion models on the built-in VQA test split.

    python benchmarks/benchmark_tasks.py --configs configs/fusion/*_vqa.yml --out output/fusion_benchmark [--split test]
                                        [--train-missing [--towers configs/fusion/towers_clip.yml]] [--data data/vqa]

For every config it loads ``<Global.output_dir>/<Arch.name>/best_model`` (``--train-missing`` first trains the
configs without one through tools/train.py, after the ``--towers`` config whose CLIP weights they start from), then
measures VQA accuracy on the clean split and under

- image corruptions in the ImageNet-C style at severities 1-5: gaussian noise, gaussian blur, occlusion,
  brightness, JPEG;
- Chinese text perturbations at severities 1-5 (per-character rate 0.1 ... 0.5): character deletion, swap of
  adjacent characters, near-homophone / synonym substitution;
- a missing modality: a blank (mean-grey) image, or an empty question.

Robustness = corrupted accuracy / clean accuracy, averaged over the severities of a family. Writes
``benchmark.json``, ``benchmark.md`` (tables) and ``robustness.png`` (accuracy against severity per model) in --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a source checkout without installing

import hardware  # noqa: E402

hardware.tune_cpu_env()  # must precede `import paddle`

import numpy as np  # noqa: E402

from paddle_mm.config import exit_on_config_error, load_config  # noqa: E402
from paddle_mm.demo.corruptions import (  # noqa: E402
    IMAGE_CORRUPTIONS,
    SEVERITIES,
    TEXT_PERTURBATIONS,
    TEXT_RATES,
    corrupt_images,
    perturb_text,
)


def load_trained(cfg: dict):
    """The config's best checkpoint as a model in eval mode, with its task."""
    from paddle_mm.io import load_state_into
    from paddle_mm.tasks.vqa import VQATask

    task = VQATask(cfg)
    model = task.build_model(cfg["Arch"])
    path = Path(cfg["Global"]["output_dir"]) / cfg["Arch"]["name"] / "best_model"
    load_state_into(model, path / "model.safetensors")
    model.eval()
    return task, model, path


def benchmark_model(task, model, data_cfg: dict, batch_size: int, seed: int) -> dict:
    """Clean accuracy and accuracy under every corruption / perturbation / missing modality (x100)."""
    from paddle_mm.tasks.vqa import normalize_images, predict_logits, task_metrics
    from paddle_mm.text.tokenizer import tokenize

    data = task.load_eval(data_cfg, model.config)
    images = data.split.images[data.split.image_index]  # (N, S, S, 3), one row per question

    def acc(pixels=None, ids=None) -> float:
        return task_metrics(predict_logits(model, data, batch_size, pixels, ids), data)["vqa_acc"]

    clean = task_metrics(predict_logits(model, data, batch_size), data)
    out = {"clean": clean["vqa_acc"], "clean_per_type": clean["per_type"], "image": {}, "text": {}}
    for kind in IMAGE_CORRUPTIONS:
        if not model.uses_image:  # the model never reads the image: corrupting it changes nothing
            out["image"][kind] = [clean["vqa_acc"]] * len(SEVERITIES)
            continue
        out["image"][kind] = [acc(pixels=normalize_images(corrupt_images(images, kind, s, seed))) for s in SEVERITIES]
    questions = [q["question"] for q in data.split.questions]
    L = model.config.context_length
    for kind in TEXT_PERTURBATIONS:
        if not model.uses_text:
            out["text"][kind] = [clean["vqa_acc"]] * len(SEVERITIES)
            continue
        accs = []
        for s in SEVERITIES:
            rng = np.random.default_rng([seed, s, TEXT_PERTURBATIONS.index(kind)])
            accs.append(acc(ids=np.asarray(tokenize([perturb_text(q, kind, s, rng) for q in questions], L))))
        out["text"][kind] = accs
    grey = np.full_like(images, 128)
    out["missing"] = {
        "image": acc(pixels=normalize_images(grey)) if model.uses_image else clean["vqa_acc"],
        "text": acc(ids=np.asarray(tokenize([""] * len(questions), L))) if model.uses_text else clean["vqa_acc"],
    }
    out["robustness"] = robustness(out)
    return out


def robustness(result: dict) -> dict[str, float]:
    """Per family: mean over severities of corrupted / clean accuracy; missing modalities: one ratio each."""
    clean = max(result["clean"], 1e-9)
    scores = {k: float(np.mean(v) / clean) for part in ("image", "text") for k, v in result[part].items()}
    scores.update({f"missing_{k}": v / clean for k, v in result["missing"].items()})
    return scores


def answer_priors(data_cfg: dict) -> dict:
    """What answering without looking gives (x100): the train split's global majority answer and majority answer
    per question type, on the evaluated split; and per question type, a uniform guess (``chance``) and always the
    evaluated split's most frequent answer of the type (``most_frequent``, an upper bound of any such guess)."""
    from paddle_mm.data.vqa import ANSWERS_BY_TYPE, load_vqa_split

    train = load_vqa_split(data_cfg["root"], "train").questions
    test = load_vqa_split(data_cfg["root"], data_cfg["split"]).questions
    overall = max({q["answer"] for q in train}, key=[q["answer"] for q in train].count)
    best = {t: _most_frequent([q["answer"] for q in train if q["question_type"] == t]) for t in ANSWERS_BY_TYPE}
    by_type = {t: [q["answer"] for q in test if q["question_type"] == t] for t in ANSWERS_BY_TYPE}
    return {
        "global_majority": float(np.mean([q["answer"] == overall for q in test]) * 100),
        "per_type_majority": float(np.mean([q["answer"] == best.get(q["question_type"]) for q in test]) * 100),
        "chance": {t: 100 / len(a) for t, a in ANSWERS_BY_TYPE.items()},
        "most_frequent": {t: 100 * a.count(_most_frequent(a)) / len(a) for t, a in by_type.items() if a},
    }


def _most_frequent(answers: list[str]) -> str | None:
    return max(sorted(set(answers)), key=answers.count) if answers else None


# ----------------------------------------------------------------------------- reports


def markdown(results: dict[str, dict], priors: dict) -> str:
    fam = [*IMAGE_CORRUPTIONS, *TEXT_PERTURBATIONS, "missing_image", "missing_text"]
    lines = [
        "| model | clean acc | " + " | ".join(fam) + " |",
        "|---" * (len(fam) + 2) + "|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['clean']:.1f} | " + " | ".join(f"{r['robustness'][f]:.2f}" for f in fam) + " |")
    types = sorted(next(iter(results.values()))["clean_per_type"])
    lines += ["", "Clean accuracy per question type:", "", "| model | " + " | ".join(types) + " |"]
    lines.append("|---" * (len(types) + 1) + "|")
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['clean_per_type'][t]:.1f}" for t in types) + " |")
    for label, key in (("chance (uniform)", "chance"), ("most frequent answer", "most_frequent")):
        lines.append(f"| {label} | " + " | ".join(f"{priors[key].get(t, float('nan')):.1f}" for t in types) + " |")
    lines += [
        "",
        f"Answer priors on this split: global majority answer {priors['global_majority']:.1f}, "
        f"majority answer per question type {priors['per_type_majority']:.1f}.",
    ]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], priors: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = [("image", k) for k in IMAGE_CORRUPTIONS] + [("text", k) for k in TEXT_PERTURBATIONS]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), sharey=True)
    for ax, (part, kind) in zip(axes.flat, fams):
        for name, r in results.items():
            ax.plot([0, *SEVERITIES], [r["clean"], *r[part][kind]], marker="o", ms=3, label=name)
        ax.axhline(priors["per_type_majority"], color="grey", ls=":", lw=1)
        ax.set_title(f"{part}: {kind}")
        ax.set_xlabel("severity (0 = clean)")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("VQA accuracy (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    labels = [*labels, "answer prior per question type"]
    handles = [*handles, plt.Line2D([], [], color="grey", ls=":")]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.suptitle("Built-in Chinese VQA, test split: accuracy against corruption severity")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- command line


def train(config: str, overrides: list[str]) -> None:
    """Train one config through tools/train.py (a failed training stops the benchmark)."""
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), "-c", config, "-o", "Global.progress_bar=false"]
    subprocess.run(cmd + overrides, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", required=True, help="training configs (configs/fusion/*_vqa.yml)")
    p.add_argument("--out", required=True, help="folder for benchmark.json / .md / robustness.png")
    p.add_argument("--split", default="test")
    p.add_argument("--data", help="VQA data folder (default: each config's DataLoader.Train.dataset.root)")
    p.add_argument("--train-missing", action="store_true", help="train configs that have no best_model yet")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0, help="seed of the random corruptions")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="take a model's results from <out>/models/<fusion>.json when present (resume, or split the models "
        "over several processes and assemble the report with one more run)",
    )
    p.add_argument(
        "--towers",
        help="with --train-missing: the CLIP config the fusions' Arch.fusion.clip_weights come from "
        "(configs/fusion/towers_clip.yml), trained first when its best_model is missing",
    )
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.towers and args.train_missing:
        with exit_on_config_error():
            towers = load_config(args.towers, [])
        if not (Path(towers["Global"]["output_dir"]) / towers["Arch"]["name"] / "best_model").is_dir():
            print(f"training the towers {args.towers} ...", flush=True)
            train(args.towers, [])
    results, data_cfg = {}, None
    for config in args.configs:
        overrides = [f"DataLoader.Train.dataset.root={args.data}"] if args.data else []
        with exit_on_config_error():
            cfg = load_config(config, overrides)
        name = cfg["Arch"]["fusion"]["name"]
        best = Path(cfg["Global"]["output_dir"]) / cfg["Arch"]["name"] / "best_model"
        if args.train_missing and not best.is_dir():
            print(f"training {config} ...", flush=True)
            train(config, overrides)
        start = time.time()
        data_cfg = dict(cfg["DataLoader"]["Train"]["dataset"], split=args.split)
        cached = out / "models" / f"{name}.json"
        if args.reuse and cached.is_file():
            results[name] = json.loads(cached.read_text(encoding="utf-8"))
            continue
        task, model, path = load_trained(cfg)
        results[name] = benchmark_model(task, model, data_cfg, args.batch_size, args.seed)
        results[name]["checkpoint"] = str(path)
        cached.parent.mkdir(exist_ok=True)
        cached.write_text(json.dumps(results[name], indent=1), encoding="utf-8")
        print(f"{name}: clean {results[name]['clean']:.1f} ({time.time() - start:.0f}s)", flush=True)
    priors = answer_priors(data_cfg)
    report = {"split": args.split, "priors": priors, "severities": SEVERITIES, "text_rates": TEXT_RATES}
    (out / "benchmark.json").write_text(json.dumps({**report, "models": results}, indent=1), encoding="utf-8")
    (out / "benchmark.md").write_text(markdown(results, priors), encoding="utf-8")
    plot(results, priors, out / "robustness.png")
    print(markdown(results, priors))
    print(f"wrote {out}/benchmark.json, benchmark.md, robustness.png")


if __name__ == "__main__":
    main()
