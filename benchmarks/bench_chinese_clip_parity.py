"""Chinese-CLIP training parity on the built-in data (issue 19), each variant a real tools/train.py run:

  accum    MR after the same samples with a true batch B*k, k micro-batches of B accumulated by features
           (Global.accum_mode=features, Chinese-CLIP's --accum-freq) and by gradients (summed micro-losses)
  distill  a student's MR trained with and without DistillLoss (kind kl) from a wider teacher trained first
  long     a 128-token fine-tune (a model with 128 position embeddings trained at 52 tokens, then fine-tuned at
           128), tools/export_model.py and a Predictor check of a 120-character text against the eager model

    python tools/make_data.py --out data/shapes96 --image-size 96   # the quickstart's data
    python benchmarks/bench_chinese_clip_parity.py --data data/shapes96 --out output/parity [--parts accum]
    python benchmarks/bench_chinese_clip_parity.py --data data/shapes96 --out output/parity_smoke --smoke

Prints one markdown table per part. All runs use configs/quickstart.yml (CN-CLIP-Tiny shrunk to ViT 1 x 64 on
96 px with 32-px patches, BERT 1 x 64, lr 2e-3, wd 0.1) on CPU. Default: accum 8 epochs of 256 samples per step
(47 steps an epoch, warm-up 10), distill a 4-epoch student against a ViT 1 x 128 / embed 128 teacher of 10 epochs
(or --teacher DIR), long 2 + 1 epochs. --smoke: 1 epoch everywhere and batches of 16 x 4 (it checks the script;
its MR is near chance). docs/migrating_from_chinese_clip.md holds the measured tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "quickstart.yml"
COMMON = [
    "Global.device=cpu",
    "Global.use_visualdl=false",
    "Global.progress_bar=false",
    "Global.save_interval=100",
]


def train(data: Path, out: Path, *overrides: str) -> dict:
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), "-c", str(RECIPE), "-o", *COMMON]
    cmd += [f"DataLoader.Train.dataset.root={data}", f"DataLoader.Eval.dataset.root={data}"]
    cmd += [f"Global.output_dir={out}", "Global.overwrite=true", *overrides]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    summary = json.loads((out / "CN-CLIP-Tiny" / "train_summary.json").read_text(encoding="utf-8"))
    last = summary["history"][-1]
    return {"MR": last["MR"], "t2i_r1": last["t2i"]["r1"], "steps": summary["global_step"], "s": time.time() - t0}


def part_accum(data: Path, out: Path, epochs: int, micro: int, k: int) -> None:
    runs = {
        f"true batch {micro * k}": (f"DataLoader.Train.sampler.batch_size={micro * k}",),
        f"{micro} x {k}, accum_mode features": (
            f"DataLoader.Train.sampler.batch_size={micro}",
            f"Global.accum_steps={k}",
            "Global.accum_mode=features",
        ),
        f"{micro} x {k}, accum_mode gradients": (
            f"DataLoader.Train.sampler.batch_size={micro}",
            f"Global.accum_steps={k}",
            "Global.accum_mode=gradients",
        ),
    }
    print(f"\n| accumulation ({epochs} epochs, same samples) | steps | MR | t2i R@1 | wall s |\n|---|---|---|---|---|")
    for i, (name, extra) in enumerate(runs.items()):
        r = train(data, out / f"accum{i}", f"Global.epochs={epochs}", "Optimizer.lr.warmup_steps=10", *extra)
        print(f"| {name} | {r['steps']} | {r['MR']:.2f} | {r['t2i_r1']:.2f} | {r['s']:.0f} |", flush=True)


def part_distill(data: Path, out: Path, epochs: int, teacher: Path | None) -> None:
    if teacher is None:
        t = train(
            data, out / "teacher", f"Global.epochs={epochs * 5 // 2}", "Arch.vision_width=128", "Arch.embed_dim=128"
        )
        teacher = out / "teacher" / "CN-CLIP-Tiny" / "best_model"
        name = f"teacher (ViT 1 x 128, embed 128, {epochs * 5 // 2} epochs)"
        head = f"| {name} | {t['MR']:.2f} | {t['t2i_r1']:.2f} | {t['s']:.0f} |"
    else:
        head = f"| teacher {teacher} | | | |"
    print(f"\n| distillation (the quickstart model, {epochs} epochs) | MR | t2i R@1 | wall s |\n|---|---|---|---|")
    print(head)
    for name, loss in (
        ("student, ClipLoss only", "[{ClipLoss: {}}]"),
        (
            "student + DistillLoss kl w=1",
            f"[{{ClipLoss: {{}}}}, {{DistillLoss: {{teacher: {teacher}, kind: kl, weight: 1.0}}}}]",
        ),
    ):
        run_dir = out / name.split(",")[0].replace(" + ", "_").replace(" ", "_").replace("=", "")
        r = train(data, run_dir, f"Global.epochs={epochs}", f"Loss.Train={loss}")
        print(f"| {name} | {r['MR']:.2f} | {r['t2i_r1']:.2f} | {r['s']:.0f} |", flush=True)


def part_long(data: Path, out: Path, epochs: int) -> None:
    positions = "Arch.text_max_position_embeddings=128"  # CN-CLIP-Tiny holds 64; the released models 512
    pre = train(data, out / "long_pre52", f"Global.epochs={epochs * 2}", positions)
    start = out / "long_pre52" / "CN-CLIP-Tiny" / "best_model"
    r = train(
        data,
        out / "long128",
        f"Global.epochs={epochs}",
        positions,
        "Arch.context_length=128",
        f"Global.pretrained_model={start}",
        "Optimizer.lr.learning_rate=5.0e-4",
        "Optimizer.lr.warmup_steps=10",
    )
    model_dir = out / "long128" / "CN-CLIP-Tiny" / "best_model"
    export = out / "long_export"
    cmd = [sys.executable, str(ROOT / "tools" / "export_model.py"), "-c", str(RECIPE), "-o", *COMMON]
    cmd += [positions, "Arch.context_length=128"]
    cmd += [f"Global.pretrained_model={model_dir}", f"Global.save_inference_dir={export}"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    check = _predictor_check(next(p.parent for p in export.rglob("inference.yml")), model_dir)
    print("\n| long context | value |\n|---|---|")
    print(f"| 52-token start ({pre['steps']} steps) MR | {pre['MR']:.2f} ({pre['s']:.0f} s) |")
    print(f"| fine-tune at context 128 ({r['steps']} steps) MR | {r['MR']:.2f} ({r['s']:.0f} s) |")
    print(f"| export wall s | {time.time() - t0:.0f} |")
    for k, v in check.items():
        print(f"| {k} | {v} |")


def _predictor_check(export: Path, model_dir: Path) -> dict:
    import numpy as np
    import paddle

    from paddle_mm import load_model, tokenize
    from paddle_mm.inference import Predictor

    text = ("左上角有一个红色的圆形，右下角有一个蓝色的三角形，中间是一个绿色的正方形。" * 4)[:120]
    model = load_model(model_dir)
    ids = tokenize([text], context_length=128)
    with paddle.no_grad():
        eager = model.encode_text(paddle.to_tensor(ids)).numpy()
    eager /= np.linalg.norm(eager, axis=1, keepdims=True)
    with paddle.no_grad():  # the same text cut to 52 tokens: the tail must change the feature
        cut = model.encode_text(paddle.to_tensor(tokenize([text], context_length=52))).numpy()
    cut /= np.linalg.norm(cut, axis=1, keepdims=True)
    out = {
        "tokens in the test text": int((ids != 0).sum()),
        "max |eager(128 tokens) - eager(cut to 52)| text feature": f"{float(np.abs(eager - cut).max()):.2e}",
    }
    for backend in ("paddle_inference", "onnxruntime"):
        pred = Predictor(export, backend=backend)
        got = pred.encode_texts([text])
        out[f"{backend}: context_length"] = pred.tokenizer.context_length
        out[f"{backend}: max |Predictor - eager| text feature"] = f"{float(np.abs(got - eager).max()):.2e}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="built-in data (tools/make_data.py --image-size 96)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--parts", default="accum,distill,long")
    ap.add_argument("--teacher", type=Path, help="a trained teacher model directory (default: train one first)")
    ap.add_argument("--smoke", action="store_true", help="1 epoch per run and batches of 16 x 4: a quick look")
    args = ap.parse_args()
    parts = args.parts.split(",")
    if "accum" in parts:
        part_accum(args.data, args.out, *((1, 16) if args.smoke else (8, 64)), 4)
    if "distill" in parts:
        part_distill(args.data, args.out, 1 if args.smoke else 4, args.teacher)
    if "long" in parts:
        part_long(args.data, args.out, 1)


if __name__ == "__main__":
    main()
