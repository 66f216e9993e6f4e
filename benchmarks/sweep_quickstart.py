"""Which quickstart? Validation MR against wall time for candidate configs on the built-in shapes data.

    python benchmarks/sweep_quickstart.py [--only NAME ...] [--out output/sweep_quickstart]
    python benchmarks/sweep_quickstart.py --plot docs/figures/quickstart_sweep.png   # from the recorded runs

Every candidate is a real CN-CLIP (the same ``paddle_mm.models.chinese_clip`` code as ViT-B-16; only the
sizes differ) trained from scratch by ``tools/train.py -c configs/quickstart.yml`` in a fresh process with the
candidate's overrides: model size, image size, patch size, epochs, learning rate, batch and training-set size.
The time is the whole ``tools/train.py`` process (start-up, every epoch, the validation after each epoch, the
checkpoints), as a user waits for it; data generation is not counted (the data is made once, cached under
``data/sweep/``). The validation split is the same 500 scenes and captions at every image size and training-set
size (each split has its own random streams), so the MR values compare. Results are appended to
``<out>/results.jsonl`` (one line per run, with the per-epoch MR and the machine) and printed as a table; a run
already recorded is not repeated unless ``--rerun``. Run it on a quiet machine: the times are what it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The text tower of every candidate: BERT 1 x 64 reads this caption language as well as 3 x 128 does.
TEXT_SMALL = {"text_hidden_size": 64, "text_num_hidden_layers": 1, "text_intermediate_size": 256}
TEXT_TINY = {"text_hidden_size": 128, "text_num_hidden_layers": 3, "text_intermediate_size": 512}


def vit(layers: int, width: int, resolution: int, patch: int, embed: int = 64, text: dict | None = None) -> dict:
    """Arch overrides of CN-CLIP-Tiny: a ViT of ``layers`` x ``width`` with ``patch``-px patches."""
    return {
        "image_resolution": resolution,
        "vision_patch_size": patch,
        "vision_layers": layers,
        "vision_width": width,
        "vision_head_width": 32,
        "embed_dim": embed,
        "context_length": 52,  # Chinese-CLIP's: the longest built-in caption is 50 characters
        **(TEXT_SMALL if text is None else text),
    }


# name -> (arch overrides, epochs, learning rate, batch, training images[, warm-up steps; 50 when left out])
CANDIDATES: dict[str, tuple] = {
    # the quickstart before this sweep (CN-CLIP-Tiny as shipped: ViT 4x128, 64 px, 16-px patches; BERT 3x128)
    "tiny64_e3": ({**vit(4, 128, 64, 16, embed=128, text=TEXT_TINY), "vision_head_width": 64}, 3, 2e-3, 64, 6000),
    # the fusion towers (configs/fusion/towers_clip.yml): ViT 1x64, 96 px, one 32-px patch per grid cell
    "vit1x64_96p32_e8": (vit(1, 64, 96, 32), 8, 2e-3, 64, 6000),
    "vit1x64_96p32_e12": (vit(1, 64, 96, 32), 12, 2e-3, 64, 6000),
    "vit1x64_96p32_e14": (vit(1, 64, 96, 32), 14, 2e-3, 64, 6000),
    "vit1x64_96p32_e12_lr3": (vit(1, 64, 96, 32), 12, 3e-3, 64, 6000),
    "vit1x64_96p32_e12_b128": (vit(1, 64, 96, 32), 12, 2e-3, 128, 6000),
    "vit2x64_96p32_e10": (vit(2, 64, 96, 32), 10, 2e-3, 64, 6000),
    "vit1x128_96p32_e10": (vit(1, 128, 96, 32, embed=128), 10, 2e-3, 64, 6000),
    "vit1x64_72p24_e14": (vit(1, 64, 72, 24), 14, 2e-3, 64, 6000),
    "vit1x64_96p32_e7_n12k": (vit(1, 64, 96, 32), 7, 2e-3, 64, 12000),
    # four 16-px patches per grid cell: the attention sees a shape's parts (shape is the weak attribute)
    "vit1x64_96p16_e8": (vit(1, 64, 96, 16), 8, 2e-3, 64, 6000),
    # a higher peak with a longer warm-up: the 12-epoch run sat at MR ~10 for three epochs before it climbed
    "vit1x64_96p32_e12_lr3_w100": (vit(1, 64, 96, 32), 12, 3e-3, 64, 6000, 100),
    "vit1x64_96p16_e8_lr3_w100": (vit(1, 64, 96, 16), 8, 3e-3, 64, 6000, 100),
    # with the faster step (cached training data, contiguous transposes): how far do more epochs, a second ViT layer
    # or a bigger batch take the 16-px model?
    "vit1x64_96p16_e10": (vit(1, 64, 96, 16), 10, 2e-3, 64, 6000),
    "vit2x64_96p16_e8": (vit(2, 64, 96, 16), 8, 2e-3, 64, 6000),
    "vit1x64_96p16_e10_b128_lr3": (vit(1, 64, 96, 16), 10, 3e-3, 128, 6000),
    "vit1x64_96p16_e12_b128_lr3": (vit(1, 64, 96, 16), 12, 3e-3, 128, 6000),
}


def spec(name: str) -> tuple[dict, int, float, int, int, int]:
    """``(arch, epochs, lr, batch, n_train, warmup_steps)`` of a candidate."""
    arch, epochs, lr, batch, n_train, *rest = CANDIDATES[name]
    return arch, epochs, lr, batch, n_train, (rest[0] if rest else 50)


def data_root(resolution: int, n_train: int) -> Path:
    """The cached built-in data at this image size and training-set size (made on first use, not timed)."""
    root = ROOT / "data" / "sweep" / f"shapes{resolution}_{n_train}"
    if not (root / "synthetic_info.json").is_file():
        from paddle_mm.demo.shapes import make_dataset

        t0 = time.perf_counter()
        make_dataset(root, {"train": n_train, "valid": 500, "test": 0}, image_size=resolution)
        print(f"made {root} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def overrides(name: str, out_dir: Path, procs: int = 1) -> list[str]:
    arch, epochs, lr, batch, n_train, warmup = spec(name)
    if batch % procs:
        raise SystemExit(f"{name}: batch {batch} does not split over --procs {procs}; choose a divisor")
    root = data_root(arch.get("image_resolution", 64), n_train)
    o = [f"Arch.{k}={v}" for k, v in arch.items()]
    o += [
        f"Global.epochs={epochs}",
        f"Global.output_dir={out_dir}",
        "Global.overwrite=true",
        "Global.seed=42",
        "Global.use_visualdl=false",
        "Global.progress_bar=false",
        f"Optimizer.lr.learning_rate={lr}",
        f"Optimizer.lr.warmup_steps={warmup}",
        f"DataLoader.Train.sampler.batch_size={batch // procs}",  # per process: the global batch stays `batch`
        f"DataLoader.Train.dataset.root={root}",
        f"DataLoader.Eval.dataset.root={root}",
        "DataLoader.Eval.dataset.split=valid",
    ]
    return o


def machine() -> str:
    model = ""
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model or platform.processor()}, {len(os.sched_getaffinity(0))} usable cores"


def row_name(name: str, procs: int) -> str:
    return name if procs == 1 else f"{name}_x{procs}"


def run_one(name: str, out: Path, procs: int = 1) -> dict:
    """Train candidate ``name`` in ``procs`` data-parallel processes (the global batch is the candidate's)."""
    run_dir = out / row_name(name, procs)
    launch = ["-m", "paddle.distributed.launch", "--nproc_per_node", str(procs), "--log_dir", str(run_dir / "logs")]
    args = [sys.executable, *(launch if procs > 1 else []), "tools/train.py", "-c", "configs/quickstart.yml"]
    for o in overrides(name, run_dir, procs):
        args += ["-o", o]
    t0_wall, load_before = time.time(), os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: tools/train.py exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    arch_name = "CN-CLIP-Tiny"
    summary = json.loads((run_dir / arch_name / "train_summary.json").read_text(encoding="utf-8"))
    arch, epochs, lr, batch, n_train, warmup = spec(name)
    return {
        "name": row_name(name, procs),
        "processes": procs,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "epoch_seconds": epoch_times(run_dir / arch_name / "train.log", t0_wall),
        "val_MR": round(summary["best_metric"], 2),
        "best_epoch": summary["best_epoch"],
        "MR_per_epoch": [round(h.get("MR", float("nan")), 2) for h in summary["history"]],
        "epochs": epochs,
        "lr": lr,
        "batch": batch,
        "n_train": n_train,
        "warmup_steps": warmup,
        "arch": arch,
        "machine": machine(),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def epoch_times(log: Path, start: float) -> list[float]:
    """Seconds from the start of the run to each epoch's validation line in ``train.log`` (1-s resolution)."""
    stamps = re.findall(r"^\[([0-9-]+ [0-9:]+)\] \[Eval\]\[Epoch \d+\]", log.read_text(encoding="utf-8"), re.M)
    return [round(time.mktime(time.strptime(s, "%Y-%m-%d %H:%M:%S")) - start, 1) for s in stamps]


def load(results: Path) -> list[dict]:
    if not results.is_file():
        return []
    return [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]


def cpu_per_process(r: dict) -> float:
    """CPU seconds per training process: about the wall time on an otherwise idle machine with a core for each
    process (Paddle's eager CPU kernels run on one thread; the cached data leaves no loader thread)."""
    return r["cpu_seconds"] / r.get("processes", 1)


def table(rows: list[dict]) -> str:
    head = f"{'candidate':<30} {'procs':>5} {'wall s':>7} {'CPU s':>7} {'CPU s/proc':>10} {'val MR':>7} {'best ep':>7}"
    lines = [f"{head}  MR per epoch", "-" * 120]
    for r in sorted(rows, key=cpu_per_process):
        per = " ".join(f"{v:.1f}" for v in r["MR_per_epoch"])
        numbers = (
            f"{r.get('processes', 1):>5} {r['seconds']:>7.1f} {r['cpu_seconds']:>7.1f} {cpu_per_process(r):>10.1f}"
        )
        lines.append(f"{r['name']:<30} {numbers} {r['val_MR']:>7.2f} {r['best_epoch']:>7}  {per}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in rows:
        # x: CPU seconds per process (the wall times were taken on a shared machine); each epoch's validation sits at
        # its share of the run's wall time. A shorter schedule of the same config is not this curve: its cosine
        # decay ends sooner.
        x = cpu_per_process(r)
        (line,) = ax.plot([x * t / r["seconds"] for t in r["epoch_seconds"]], r["MR_per_epoch"], lw=1, alpha=0.6)
        ax.scatter(x, r["val_MR"], s=30, color=line.get_color())
        ax.annotate(r["name"], (x, r["val_MR"]), fontsize=7, xytext=(-60, 6), textcoords="offset points")
    ax.set_xlabel("CPU seconds per training process (about the wall time on an idle machine); lines: each epoch")
    ax.set_ylabel("validation MR")
    machines = sorted({r["machine"] for r in rows})
    ax.set_title("quickstart candidates on the built-in shapes data\n" + "; ".join(machines), fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=sorted(CANDIDATES), help="run these candidates (default: all)")
    p.add_argument("--out", type=Path, default=ROOT / "output" / "sweep_quickstart")
    p.add_argument("--rerun", action="store_true", help="run candidates that already have a result again")
    p.add_argument("--plot", type=Path, help="draw the recorded results into this PNG and run nothing")
    p.add_argument("--procs", type=int, default=1, help="data-parallel processes per run (the quickstart's: 2)")
    args = p.parse_args(argv)
    results = args.out / "results.jsonl"
    if args.plot:
        rows = load(results)
        if not rows:
            p.error(f"no results in {results}; run the sweep first")
        print(table(rows))
        plot(rows, args.plot)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    done = {r["name"] for r in load(results)}
    for name in args.only or list(CANDIDATES):
        if row_name(name, args.procs) in done and not args.rerun:
            print(f"{row_name(name, args.procs)}: recorded already (--rerun to repeat)")
            continue
        row = run_one(name, args.out, args.procs)
        with open(results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: {row['seconds']:.1f} s, val MR {row['val_MR']:.2f} (epoch {row['best_epoch']})", flush=True)
    print(table(load(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
