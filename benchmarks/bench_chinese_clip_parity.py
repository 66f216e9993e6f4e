"""Chinese-CLIP training parity on the built-in data (issue 19), each variant a real tools/train.py run:

  accum    MR after the same samples with a true batch B*k, k micro-batches of B accumulated by features
           (Global.accum_mode=features, Chinese-CLIP's --accum-freq) and by gradients (summed micro-losses)
  distill  a student's MR trained with and without DistillLoss from a larger teacher trained first
  long     a 128-token fine-tune, then tools/export_model.py and a Predictor check of a 128-token text

    python tools/make_data.py --out data/shapes      # the quickstart's data: 6000 / 500 images at 64 px
    python benchmarks/bench_chinese_clip_parity.py --data data/shapes --out output/parity [--parts accum]
    python benchmarks/bench_chinese_clip_parity.py --data data/shapes --out output/parity_smoke --smoke

Prints one markdown table per part; all runs are on CPU with the quickstart's model and schedule (lr 2e-3, wd 0.1)
in the MUGE recipe otherwise. Default: 6 epochs (the true batch of 256 then makes ~140 steps, past the early
plateau at loss log(batch) that the quickstart's model sits on for its first steps); --smoke: a 1-layer 32 px
model, 3 epochs of batch 16 x 4, which stays on that plateau (it checks the script, its MR is chance).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRA: list[str] = []  # --smoke: a smaller model and schedule
RECIPE = ROOT / "configs" / "chinese_clip" / "vit-b-16_muge.yml"
SMALL = [
    "Global.device=cpu",
    "Global.pretrained_model=null",
    "AMP.use_amp=false",
    "Global.print_batch_step=5",
    "Global.progress_bar=false",
    "Global.save_interval=100",
    "Arch.name=CN-CLIP-Tiny",  # the quickstart's model (64 px, 4 + 3 layers, embed 128) unless --smoke
    "DataLoader.Train.loader.num_workers=0",
    "DataLoader.Eval.loader.num_workers=0",
    "DataLoader.Eval.sampler.batch_size=128",
    "Optimizer.lr.learning_rate=2.0e-3",  # the quickstart's schedule and decay
    "Optimizer.weight_decay=0.1",
]
SMOKE = ["Arch.image_resolution=32", "Arch.embed_dim=64", "Arch.vision_layers=1", "Arch.text_num_hidden_layers=1"]


def train(data: Path, out: Path, *overrides: str) -> dict:
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), "-c", str(RECIPE), "-o", *SMALL, *EXTRA]
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
        r = train(data, out / f"accum{i}", f"Global.epochs={epochs}", *extra)
        print(f"| {name} | {r['steps']} | {r['MR']:.2f} | {r['t2i_r1']:.2f} | {r['s']:.0f} |", flush=True)


def part_distill(data: Path, out: Path, epochs: int, batch: int) -> None:
    teacher_args = (
        "Arch.vision_layers=2",
        "Arch.text_num_hidden_layers=2",
        f"DataLoader.Train.sampler.batch_size={batch}",
    )
    t = train(data, out / "teacher", f"Global.epochs={epochs * 2}", *teacher_args)
    teacher = out / "teacher" / "CN-CLIP-Tiny" / "best_model"
    student = (f"DataLoader.Train.sampler.batch_size={batch}", "Arch.vision_layers=1", "Arch.text_num_hidden_layers=1")
    print(f"\n| distillation (student: 1 + 1 layers, {epochs} epochs) | MR | t2i R@1 | wall s |\n|---|---|---|---|")
    print(f"| teacher (2 + 2 layers, {epochs * 2} epochs) | {t['MR']:.2f} | {t['t2i_r1']:.2f} | {t['s']:.0f} |")
    for name, loss in (
        ("student, ClipLoss only", "[{ClipLoss: {}}]"),
        (
            "student + DistillLoss cosine w=1",
            f"[{{ClipLoss: {{}}}}, {{DistillLoss: {{teacher: {teacher}, kind: cosine}}}}]",
        ),
        ("student + DistillLoss kl w=1", f"[{{ClipLoss: {{}}}}, {{DistillLoss: {{teacher: {teacher}, kind: kl}}}}]"),
    ):
        run_dir = out / name.split(",")[0].replace(" + ", "_").replace(" ", "_").replace("=", "")
        r = train(data, run_dir, f"Global.epochs={epochs}", *student, f"Loss.Train={loss}")
        print(f"| {name} | {r['MR']:.2f} | {r['t2i_r1']:.2f} | {r['s']:.0f} |", flush=True)


def part_long(data: Path, out: Path, epochs: int, batch: int) -> None:
    r = train(
        data,
        out / "long",
        f"Global.epochs={epochs}",
        "Arch.context_length=128",
        "Arch.text_max_position_embeddings=512",
        f"DataLoader.Train.sampler.batch_size={batch}",
    )
    model_dir = out / "long" / "CN-CLIP-Tiny" / "best_model"
    export = out / "long_export"
    cmd = [sys.executable, str(ROOT / "tools" / "export_model.py"), "-c", str(RECIPE), "-o", *SMALL, *EXTRA]
    cmd += ["Arch.context_length=128", "Arch.text_max_position_embeddings=512"]
    cmd += ["DataLoader.Train.dataset.root=unused", "DataLoader.Eval.dataset.root=unused"]
    cmd += [f"Global.pretrained_model={model_dir}", f"Global.save_inference_dir={export}"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    check = _predictor_check(next(p.parent for p in export.rglob("inference.yml")), model_dir)
    print("\n| long context | value |\n|---|---|")
    print(f"| fine-tune (context 128, {r['steps']} steps) MR | {r['MR']:.2f} ({r['s']:.0f} s) |")
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
    pred = Predictor(export, backend="onnxruntime", device="cpu")
    got = pred.encode_texts([text])
    return {
        "tokens in the test text": int((ids != 0).sum()),
        "Predictor context_length": pred.tokenizer.context_length,
        "max |Predictor - eager| text feature": f"{float(np.abs(got - eager).max()):.2e}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="built-in data (tools/make_data.py)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--parts", default="accum,distill,long")
    ap.add_argument("--smoke", action="store_true", help="a 1-layer 32 px model, batches of 16 x 4: a quick look")
    args = ap.parse_args()
    epochs, micro = (3, 16) if args.smoke else (6, 64)
    EXTRA.extend([*SMOKE, "Optimizer.lr.warmup_steps=10"] if args.smoke else ["Optimizer.lr.warmup_steps=20"])
    parts = args.parts.split(",")
    if "accum" in parts:
        part_accum(args.data, args.out, epochs, micro, 4)
    if "distill" in parts:
        part_distill(args.data, args.out, epochs, micro)
    if "long" in parts:
        part_long(args.data, args.out, 1, micro)


if __name__ == "__main__":
    main()
