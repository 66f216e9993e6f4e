"""Inference speed, side by side in one run: cn_clip PyTorch eager, paddle_mm eager, Paddle Inference fp32 and
BF16, ONNX Runtime fp32, dynamic INT8 and static (QDQ) INT8, for the image and text towers at several batches.

    python tools/benchmark.py [--model ViT-B-16] [--batches 1 8] [--threads 2] [--out benchmark.json]

(``tools/benchmark.py`` is the entry point; this file is the harness, also runnable directly.)

Weights are random (speed does not depend on their values). Every row has its own process (so its peak
memory is its own) and every row gets the same saved inputs (texts are full 52-token rows, so no backend
gains from trimming padding). The rows of one (tower, batch) are timed in interleaved rounds, one row's
runs at a time, so a change in background load hits them alike. cn_clip runs under ``--torch-python``
(default .venv-ref/bin/python: scripts/setup_reference.sh) when it imports cn_clip; otherwise its rows say skipped.
The table gives throughput (items/s at the median latency), p50/p90 latency, the spread (p90/p10), the
worker's peak RSS, the ratio to cn_clip, the GFLOP/s reached and its fraction of this CPU's GEMM ceiling
for the row's precision (:mod:`hardware.gemm`, measured at the start of the run). The CPU time other
processes used while each group was timed is measured from /proc, and the run ends with a verdict: whether
the machine was quiet enough for the rows to be told apart. The JSON holds every latency.
See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hardware.cpu import BUSY_OTHER_CORES  # noqa: E402
from hardware.gemm import FLOP as GEMM_FLOP  # noqa: E402  (one run of a gemm/ row)
from paddle_mm.inference.auto import SETTLE_S  # noqa: E402

# gemm/ rows: every ceiling kernel of hardware.gemm, timed among the tower rows of each group
GEMM_KERNELS = {
    "gemm/fp32-onnxruntime": "fp32 onnxruntime MatMul",
    "gemm/fp32-onednn": "fp32 paddle_inference oneDNN",
    "gemm/bf16-onednn": "bf16 paddle_inference oneDNN",
    "gemm/int8-dynamic": "int8 onnxruntime DynamicQuantizeMatMul",
    "gemm/int8-static": "int8 onnxruntime static QDQ MatMul",
}
VARIANTS = (
    "cn_clip",
    "paddle_eager",
    "paddle_inference/fp32",
    "onnxruntime/fp32",
    "paddle_inference/bf16",
    "onnxruntime/int8",
    "onnxruntime/int8_static",
    *GEMM_KERNELS,
)
BUSY_CORES = BUSY_OTHER_CORES  # other processes using more than this many cores while a group is timed: too busy
WARMUP = 2  # oneDNN and ONNX Runtime build kernels and plans on the first calls
CN_CLIP_TEXT = {
    "ViT-B-16": "RoBERTa-wwm-ext-base-chinese",
    "ViT-L-14": "RoBERTa-wwm-ext-base-chinese",
    "ViT-L-14-336": "RoBERTa-wwm-ext-base-chinese",
    "ViT-H-14": "RoBERTa-wwm-ext-large-chinese",
}


# ----------------------------------------------------------------------------- FLOPs


def tower_flops(cfg: dict, tower: str, text_length: int) -> float:
    """Floating-point operations per item (2 per multiply-add of matmuls and convolutions; the rest is small)."""
    if tower == "image":
        n = (cfg["image_resolution"] // cfg["vision_patch_size"]) ** 2
        t, w = n + 1, cfg["vision_width"]
        per_layer = 24 * t * w * w + 4 * t * t * w  # qkv 6tw^2, out 2tw^2, mlp 16tw^2; scores and mix 4t^2w
        patches = 2 * n * 3 * cfg["vision_patch_size"] ** 2 * w
        return patches + cfg["vision_layers"] * per_layer + 2 * w * cfg["embed_dim"]
    t, h, i = text_length, cfg["text_hidden_size"], cfg["text_intermediate_size"]
    per_layer = 8 * t * h * h + 4 * t * t * h + 4 * t * h * i
    return cfg["text_num_hidden_layers"] * per_layer + 2 * h * cfg["embed_dim"]


# ----------------------------------------------------------------------------- workers (one per row)


def worker_runner(args: argparse.Namespace, inputs: np.ndarray):
    """A zero-argument function running one batch of ``inputs`` on the worker's variant."""
    if args.worker in GEMM_KERNELS:
        return _gemm_runner(args)
    if args.worker == "cn_clip":
        return _cn_clip_runner(args, inputs)
    if args.worker == "paddle_eager":
        return _paddle_eager_runner(args, inputs)
    from hardware import DEFAULT_DEVICE, DeviceSpec
    from paddle_mm.inference.backends import OnnxRuntimeBackend, PaddleInferenceBackend, build_backend
    from paddle_mm.inference.model_dir import read_inference_yml

    backend, precision = args.worker.split("/")
    info, device = read_inference_yml(args.export_dir), DeviceSpec(DEFAULT_DEVICE)
    if precision == "bf16":  # the fp32 graph with oneDNN's BF16 kernels
        runner = PaddleInferenceBackend(info.files(args.tower, backend, "fp32"), device, args.threads, bf16=True)
    elif precision == "int8_static":  # written by prepare(), beside the export
        runner = OnnxRuntimeBackend([static_int8_file(Path(args.export_dir), args.tower)], device, args.threads)
    else:
        runner = build_backend(backend, info.files(args.tower, backend, precision), device, args.threads)
    name = "pixel_values" if args.tower == "image" else "input_ids"
    return lambda: runner.run({name: inputs})


def _gemm_runner(args: argparse.Namespace):
    """The worker's ceiling kernel (hardware.gemm) on its own [M, K] inputs: the group's own ceiling."""
    import tempfile

    from hardware import gemm

    directory = tempfile.TemporaryDirectory(prefix="bench_gemm_")  # the Paddle kernel's files, kept while it runs
    run, x = gemm.kernel(GEMM_KERNELS[args.worker], args.threads, Path(directory.name)), gemm.inputs()
    return lambda: (run(x), directory)


def _cn_clip_runner(args: argparse.Namespace, inputs: np.ndarray):
    import contextlib

    import torch
    from cn_clip.clip.utils import create_model

    torch.set_num_threads(args.threads)
    with contextlib.redirect_stdout(sys.stderr):  # cn_clip prints its config; stdout carries our JSON
        model = create_model(f"{args.model}@{CN_CLIP_TEXT[args.model]}").float().eval()
    x = torch.from_numpy(inputs)
    encode = model.encode_image if args.tower == "image" else model.encode_text

    def run():
        with torch.no_grad():
            encode(x)

    return run


def _paddle_eager_runner(args: argparse.Namespace, inputs: np.ndarray):
    import paddle

    import hardware
    from paddle_mm.models import load_model

    hardware.resolve_device(hardware.DEFAULT_DEVICE)
    model = load_model(args.model_dir)
    x = paddle.to_tensor(inputs)
    encode = model.encode_image if args.tower == "image" else model.encode_text

    def run():
        with paddle.no_grad():
            encode(x)

    return run


def worker_main(args: argparse.Namespace) -> None:
    """Serve one row: build, warm up, then time ``run N`` requests from stdin until ``quit``.

    Replies go to stdout prefixed with ``@@`` (libraries may print there too): ``@@ready <ms>`` after the
    warm-up, ``@@<ms> <ms> ...`` per request, ``@@{"peak_rss_mb": ...}`` on quit.
    """
    run = worker_runner(args, np.load(args.inputs))
    t0 = time.perf_counter()
    for _ in range(WARMUP):
        t0 = time.perf_counter()
        run()
    _reply(f"ready {(time.perf_counter() - t0) * 1e3:.3f}")
    for line in sys.stdin:
        command = line.split()
        if command[:1] == ["run"]:
            if args.worker in GEMM_KERNELS:
                run()  # untimed, as hardware.gemm times its kernels: the ceiling is a warm kernel's rate
            times = []
            for _ in range(int(command[1])):
                t0 = time.perf_counter()
                run()
                times.append((time.perf_counter() - t0) * 1e3)
            _reply(" ".join(f"{t:.3f}" for t in times))
        else:
            _reply(json.dumps({"peak_rss_mb": peak_rss_mb()}))
            return


def _reply(text: str) -> None:
    sys.stdout.write(f"@@{text}\n")
    sys.stdout.flush()


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries the parent's peak across fork + exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- the run


def prepare(args: argparse.Namespace, work: Path) -> tuple[dict, dict[str, str]]:
    """Random model saved for the eager worker, its verified export, and the input files.

    Returns the model config and the environment variables ``hardware.tune_cpu_env`` set (paddle_mm's
    workers inherit them; the cn_clip worker does not, see :func:`worker_env`).
    """
    import hardware

    tuned = hardware.tune_cpu_env()  # before paddle loads
    import paddle

    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.models import create_model, load_model, save_model
    from paddle_mm.vision.transforms import ImageTransform

    paddle.seed(args.seed)
    if not (work / "model" / "model.safetensors").is_file():
        save_model(create_model(args.model), work / "model")
    model = load_model(work / "model")
    cfg = vars(model.config)
    if not (work / "export" / "inference.yml").is_file():
        export_model(
            model,
            work / "export",
            ImageTransform(cfg["image_resolution"]),
            args.model,
            ExportOptions(graphs=("image", "text"), verify_batches=(1, 2), threads=args.threads),
        )
    else:
        warn_if_unfused(work / "export")
    rng = np.random.default_rng(args.seed)
    for b in args.batches:
        size = cfg["image_resolution"]
        np.save(work / f"image_b{b}.npy", rng.standard_normal((b, 3, size, size)).astype(np.float32))
        ids = rng.integers(1000, 20000, (b, cfg["context_length"]))
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP], no padding
        np.save(work / f"text_b{b}.npy", ids.astype(np.int64))
    if "onnxruntime/int8_static" in args.variants:
        make_static_int8(work, args.towers, args.batches)
    return cfg, tuned


def static_int8_file(export_dir: Path, tower: str) -> Path:
    """Where the benchmark keeps a tower's static (QDQ) INT8 graph: beside the export, not in it."""
    return export_dir.parent / "static_int8" / f"{tower}.int8_static.onnx"


def make_static_int8(work: Path, towers: list[str], batches: list[int]) -> None:
    """Static INT8 of each tower's fp32 ONNX graph, calibrated on the benchmark's inputs (the weights are
    random, so these ranges are as good as any; benchmarks/bench_precision.py measures accuracy on a trained
    model calibrated on training images and captions)."""
    from paddle_mm.export.quantize import quantize_static_int8
    from paddle_mm.inference import read_inference_yml

    info = read_inference_yml(work / "export")
    for tower in towers:
        out = static_int8_file(work / "export", tower)
        if out.is_file():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        name = "pixel_values" if tower == "image" else "input_ids"
        feeds = [{name: np.load(work / f"{tower}_b{b}.npy")} for b in batches]
        fp32 = info.files(tower, "onnxruntime", "fp32")
        done = quantize_static_int8(fp32[0], out, feeds, external_data=len(fp32) > 1)
        print(f"[bench] static INT8 {tower}: {done['int8_bytes'] / 1e6:.0f} MB, {done['calibration']}", flush=True)


def warn_if_unfused(export_dir: Path) -> None:
    """A reused export from before attention fusion times slower ONNX graphs than a new export writes."""
    from paddle_mm.inference import read_inference_yml

    if "onnx_fusion" not in read_inference_yml(export_dir).export:
        print(
            f"[bench] note: {export_dir} was exported before attention fusion (no Export.onnx_fusion in its "
            "inference.yml), so its onnxruntime rows time unfused graphs; use another --work-dir (copy its "
            "model/ there) or delete the export to re-export",
            flush=True,
        )


ENV_KEYS = ("MKL_DEBUG_CPU_TYPE", "OMP_NUM_THREADS")  # recorded per row


def worker_env(args: argparse.Namespace, variant: str, tuned: dict[str, str]) -> dict[str, str]:
    """One row's environment. paddle_mm rows get paddle_mm's CPU tuning; the cn_clip reference runs in the
    environment the user started the benchmark with (a variable the user had already set is kept)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "GLOG_minloglevel": "2"}
    if variant == "cn_clip":
        for key in tuned:
            env.pop(key, None)
    return env


def auto_choices(args: argparse.Namespace, work: Path) -> dict:
    """What ``backend='auto'`` picks for each tower and batch (measured here, cached in work/cache when
    confident), with its margin over the runner-up and the noise of that margin."""
    from paddle_mm.inference import Predictor

    out = {}
    for batch in args.batches:
        predictor = Predictor(
            work / "export", backend="auto", threads=args.threads, batch_size=batch, cache_dir=work / "cache"
        )
        for tower in args.towers:
            predictor.runner(tower)
            c = predictor.choices[tower]
            out[f"{tower}_b{batch}"] = {
                "backend": c.backend, "timings_ms": c.timings_ms, "cached": c.cached, "margin": c.margin,
                "noise": c.noise, "confident": c.confident, "rounds": c.rounds, "other_cores": c.other_cores,
            }  # fmt: skip
    return out


class Worker:
    """One row's process: started, warmed up, then asked for timed runs in turn with the other rows."""

    def __init__(self, args: argparse.Namespace, work: Path, variant: str, tower: str, batch: int, env: dict):
        python = args.torch_python if variant == "cn_clip" else sys.executable
        cmd = [
            python,
            str(Path(__file__).resolve()),
            "--worker",
            variant,
            "--tower",
            tower,
            "--model",
            args.model,
            "--inputs",
            str(work / f"{tower}_b{batch}.npy"),
            "--model-dir",
            str(work / "model"),
            "--export-dir",
            str(work / "export"),
            "--threads",
            str(args.threads),
        ]
        self.env = {k: env.get(k) for k in ENV_KEYS}
        self.variant, self.latencies, self.error = variant, [], ""
        self.log = work / "logs" / f"{tower}_b{batch}_{variant.replace('/', '_')}.log"
        self.log.parent.mkdir(exist_ok=True)
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT
            )
        self.warm_ms = 0.0

    def request(self, command: str) -> str | None:
        """Send a command, return the reply (None once the worker has failed; the error is kept)."""
        if self.error:
            return None
        try:
            if command:
                self.proc.stdin.write(command + "\n")
                self.proc.stdin.flush()
            for line in self.proc.stdout:
                if line.startswith("@@"):
                    return line[2:].strip()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait()
        lines = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        self.error = f"worker failed ({lines[-1][:300] if lines else 'no output'}); log: {self.log}"
        return None

    def ready(self) -> None:
        reply = self.request("")
        if reply is not None:
            self.warm_ms = float(reply.split()[1])

    def run(self, n: int) -> None:
        reply = self.request(f"run {n}")
        if reply is not None:
            self.latencies += [float(t) for t in reply.split()]

    def finish(self) -> dict:
        reply = self.request("quit")
        self.proc.wait()
        if self.error:
            return {"error": self.error, "env": self.env}
        return {"latencies_ms": self.latencies, **json.loads(reply), "env": self.env}


def run_group(
    args: argparse.Namespace,
    work: Path,
    variants: list[str],
    tower: str,
    batch: int,
    tuned: dict[str, str],
    settle_s: float = SETTLE_S,
) -> tuple[dict[str, dict], dict]:
    """Time every variant of one (tower, batch) in interleaved rounds, so background load hits all alike.

    All workers are started and warmed up first; then each round asks each worker (in a rotating order)
    for as many runs as fit in twice the fastest worker's single-run time (at least 1, at most 20), so a
    round costs little more than one run of each and fast rows still collect several samples. The ``gemm/``
    rows (:data:`GEMM_KERNELS`) time every ceiling kernel among the tower rows, so that a row's fraction of its
    ceiling is not skewed by the VM's speed drifting between the ceiling measurement and the row (this one
    moved 10-20 % within minutes), nor by which kernel happened to be fastest at the start of the run. Each
    turn starts ``settle_s`` after the previous one: the rows are live processes, and a Paddle row's OpenMP
    threads spin for 200 ms after its run (KMP_BLOCKTIME), on the cores the next row is timed on. Returns the
    rows and the group's load: other processes' CPU use (cores) over the timed rounds, load average.
    """
    workers = [Worker(args, work, v, tower, batch, worker_env(args, v, tuned)) for v in variants]
    for w in workers:
        w.ready()
    from hardware.cpu import OtherLoad

    meter = OtherLoad([os.getpid()] + [w.proc.pid for w in workers])
    running = [w for w in workers if not w.error]
    towers = [w for w in running if w.variant not in GEMM_KERNELS] or running  # the gemm/ rows are short
    budget = 2 * min((w.warm_ms for w in towers), default=0.0)
    for r in range(args.rounds):
        for w in workers[r % len(workers) :] + workers[: r % len(workers)]:
            time.sleep(settle_s)  # the previous row's OpenMP threads may still spin (auto.SETTLE_S)
            w.run(max(1, min(20, round(budget / max(w.warm_ms, 1e-3)))))
    load = {"other_cores": meter.cores(), "load_average_1min": os.getloadavg()[0]}
    return {w.variant: w.finish() for w in workers}, load


def summarize(row: dict, batch: int, flops: float) -> dict:
    lat = np.asarray(row["latencies_ms"])
    p10, p50, p90 = (float(np.percentile(lat, q)) for q in (10, 50, 90))
    throughput = batch / (p50 / 1e3)
    return {
        **row,
        "runs": len(lat),
        "p50_ms": p50,
        "p90_ms": p90,
        "p10_ms": p10,
        "spread": p90 / p10,  # 1.0: every run took the same time
        "items_per_s": throughput,
        "gflop_per_s": throughput * flops / 1e9,
    }


def is_gemm(row: dict) -> bool:
    """A ceiling kernel's row (``gemm/<precision>-<kernel>``), not a tower's."""
    return row["variant"] in GEMM_KERNELS


def hold_against_ceilings(group_rows: list[dict], gemm: dict) -> None:
    """Set each row's ``of_gemm_ceiling``: its GFLOP/s over its precision's ceiling, the fastest of the group's
    own ``gemm/<precision>-...`` rows (timed among these rows) or, where there is none, ``gemm`` (the
    hardware.gemm measurement at the start of the run). ``ceiling_from`` says which."""
    for row in group_rows:
        rates = [
            r["gflop_per_s"] for r in group_rows if is_gemm(r) and r["ceiling"] == row["ceiling"] and "gflop_per_s" in r
        ]
        if rates:
            row["ceiling_gflops"], row["ceiling_from"] = max(rates), "group"
        elif gemm.get(f"{row['ceiling']}_gflops"):
            row["ceiling_gflops"], row["ceiling_from"] = gemm[f"{row['ceiling']}_gflops"], "start of run"
        if "gflop_per_s" in row and row.get("ceiling_gflops"):
            row["of_gemm_ceiling"] = row["gflop_per_s"] / row["ceiling_gflops"]


def ceiling_precision(variant: str) -> str:
    """The GEMM ceiling a row is held against: its arithmetic (every eager row computes in fp32)."""
    if variant in GEMM_KERNELS:
        return GEMM_KERNELS[variant].split()[0]
    return "int8" if "int8" in variant else "bf16" if variant.endswith("bf16") else "fp32"


def torch_available(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import torch, cn_clip"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def group_verdict(rows: list[dict], load: dict, cores: int) -> str:
    """One line per (tower, batch): how busy the machine was and which rows cannot be told apart.

    Rows are told apart when their p10-p90 latency ranges do not overlap. Overlapping rows on a quiet machine
    are simply as fast as each other; on a busy one (other processes over BUSY_CORES cores) the load may be
    what hides their difference, and the line says so.
    """
    timed = sorted((r for r in rows if "p50_ms" in r and not is_gemm(r)), key=lambda r: r["p50_ms"])
    tied = [f"{a['variant']} ~ {b['variant']}" for a, b in zip(timed, timed[1:]) if b["p10_ms"] <= a["p90_ms"]]
    other = load.get("other_cores")
    busy = other is not None and other > BUSY_CORES
    where = f"other processes used {other:.2f} of {cores} cores" if other is not None else "other load unknown"
    if busy:
        return f"machine too busy to tell rows apart ({where}); overlapping rows: {', '.join(tied) or 'none'}"
    return f"quiet ({where}); rows within each other's p10-p90 range: {', '.join(tied) or 'none'}"


def int8_choice(rows: list[dict]) -> str | None:
    """Which INT8 export to keep for one (tower, batch): static QDQ or dynamic, by median, and whether their
    p10-p90 ranges are apart (accuracy is benchmarks/bench_precision.py's: equal within its bound)."""
    by = {r["variant"]: r for r in rows if "p50_ms" in r}
    dynamic, static = by.get("onnxruntime/int8"), by.get("onnxruntime/int8_static")
    if not (dynamic and static):
        return None
    faster, slower = (static, dynamic) if static["p50_ms"] < dynamic["p50_ms"] else (dynamic, static)
    ratio = slower["p50_ms"] / faster["p50_ms"]
    if faster["p90_ms"] < slower["p10_ms"]:
        return f"int8: keep {faster['variant']} ({ratio:.2f}x the other; ranges apart)"
    return f"int8: static and dynamic within noise ({ratio:.2f}x); keep dynamic, which needs no calibration"


def print_table(rows: list[dict], auto: dict, verdicts: dict[str, str]) -> None:
    from paddle_mm.inference import auto as auto_module

    print(
        f"\n{'tower':5} {'batch':>5} {'variant':31} {'items/s':>8} {'p50 ms':>9} {'p90 ms':>9} {'spread':>6} "
        f"{'peak MB':>8} {'vs cn_clip':>10} {'GFLOP/s':>8} {'of ceiling':>10}"
    )
    for r in rows:
        head = f"{r['tower']:5} {r['batch']:>5} {r['variant'] + (' (auto)' if r.get('auto') else ''):31}"
        if "items_per_s" not in r:
            print(f"{head} {r.get('error', 'skipped')}")
            continue
        ratio = f"{r['vs_cn_clip']:.2f}x" if r.get("vs_cn_clip") else "-"
        of = f"{r['of_gemm_ceiling']:.0%} {r['ceiling']}" if r.get("of_gemm_ceiling") else "-"
        if is_gemm(r):  # the ceiling itself: runs/s, not items/s
            of = f"= {r['ceiling']} ceiling"
        print(
            f"{head} {r['items_per_s']:8.2f} {r['p50_ms']:9.1f} {r['p90_ms']:9.1f} {r['spread']:6.2f} "
            f"{r['peak_rss_mb']:8.0f} {ratio:>10} {r['gflop_per_s']:8.1f} {of:>10}"
        )
    for group, text in verdicts.items():
        print(f"{group}: {text}")
    for group, c in auto.items():
        timings = ", ".join(f"{k} {v:.1f} ms" for k, v in c["timings_ms"].items())
        margin = f"margin {c['margin']:.1%}, noise {c['noise']:.1%}" if c.get("margin") is not None else "one candidate"
        busy = c.get("other_cores")
        how = (
            "from the cache"
            if c["cached"]
            else "inside the noise: the faster median, not cached"
            if not c["confident"]
            else f"measured while other processes used {busy:.2f} cores: not cached"
            if busy is not None and busy > auto_module.BUSY_CORES
            else "confident, cached"
        )
        print(f"auto picks {c['backend']} for {group} ({timings}; {margin}; {how})")


def auto_check(rows: list[dict], auto: dict) -> dict[str, bool]:
    """Per (tower, batch): is auto's pick within 5 % of the fastest fp32 backend row of this run?"""
    out = {}
    for group, c in auto.items():
        tower, batch = group.rsplit("_b", 1)
        fp32 = {
            r["variant"].split("/")[0]: r["items_per_s"]
            for r in rows
            if r["tower"] == tower
            and r["batch"] == int(batch)
            and r["variant"].endswith("/fp32")
            and not is_gemm(r)
            and "items_per_s" in r
        }
        if c["backend"] in fp32:
            out[group] = fp32[c["backend"]] >= 0.95 * max(fp32.values())
    return out


def main_run(args: argparse.Namespace) -> None:
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    started, load_before = time.time(), os.getloadavg()
    cfg, tuned = prepare(args, work)
    from hardware.report import collect, format_report

    # this CPU's ceilings, measured in the same minutes as the rows (a cached figure may come from a busy hour)
    machine = collect(gemm=True, remeasure=not args.cached_ceiling, threads=args.threads)
    gemm = machine["gemm"]
    auto = auto_choices(args, work)
    skipped = {}
    if "cn_clip" in args.variants and args.model not in CN_CLIP_TEXT:
        skipped["cn_clip"] = f"skipped: cn_clip has no model {args.model!r}"
    elif "cn_clip" in args.variants and not torch_available(args.torch_python):
        skipped["cn_clip"] = f"skipped: {args.torch_python} cannot import torch and cn_clip"
    for variant in [v for v in args.variants if v in GEMM_KERNELS]:
        if GEMM_KERNELS[variant] not in gemm.get("kernels", {}):
            skipped[variant] = f"skipped: no {GEMM_KERNELS[variant]} kernel on this CPU"
    runnable = [v for v in args.variants if v not in skipped]
    rows, loads, verdicts = [], {}, {}
    for tower in args.towers:
        flops_per_item = tower_flops(cfg, tower, cfg["context_length"])
        for batch in args.batches:
            results, load = run_group(args, work, runnable, tower, batch, tuned)
            group = f"{tower}_b{batch}"
            base = results.get("cn_clip", {}).get("latencies_ms")
            group_rows = []
            for variant in args.variants:
                gemm_row = variant in GEMM_KERNELS
                flops = GEMM_FLOP if gemm_row else flops_per_item
                row = {
                    "tower": tower,
                    "batch": batch,  # of the group; a gemm/ row's "items" are its runs
                    "variant": variant,
                    "gflop_per_item": flops / 1e9,
                    "auto": variant == f"{auto[group]['backend']}/fp32",
                    "ceiling": ceiling_precision(variant),
                    **({"kernel": GEMM_KERNELS[variant]} if gemm_row else {}),
                }
                result = results.get(variant, {"error": skipped.get(variant, "skipped")})
                row.update(summarize(result, 1 if gemm_row else batch, flops) if "latencies_ms" in result else result)
                if base and "items_per_s" in row and not gemm_row:
                    row["vs_cn_clip"] = row["items_per_s"] / (batch / (float(np.median(base)) / 1e3))
                group_rows.append(row)
            hold_against_ceilings(group_rows, gemm)
            rows += group_rows
            for row in group_rows:
                done = f"{row['items_per_s']:.2f} items/s" if "items_per_s" in row else row["error"]
                print(f"[bench] {tower} b{batch} {row['variant']}: {done}", flush=True)
            loads[group] = load
            verdicts[group] = group_verdict(group_rows, load, args.threads)
            choice = int8_choice(group_rows)
            if choice:
                verdicts[group] += f"; {choice}"
    print_table(rows, auto, verdicts)
    print("\n" + next(line for line in format_report(machine).splitlines() if line.startswith("GEMM")))
    busiest = max((v["other_cores"] for v in loads.values() if v["other_cores"] is not None), default=None)
    too_busy = busiest is not None and busiest > BUSY_CORES
    verdict = (
        f"VERDICT: the machine was too busy to tell the rows apart (other processes used up to {busiest:.2f} cores "
        f"while rows were timed; the ceiling was measured at load {gemm['load_average']}); rerun on a quiet machine"
        if too_busy
        else f"VERDICT: quiet enough (other processes used at most {busiest if busiest is not None else 'unknown'} "
        "cores while rows were timed); rows differ where their p10-p90 ranges do not overlap"
    )
    checks = auto_check(rows, auto)
    print(f"auto within 5% of the fastest fp32 row: {checks}")
    print(verdict)
    from paddle_mm.inference import read_inference_yml

    int8 = read_inference_yml(work / "export").export.get("int8", {})
    report = {
        "model": args.model,
        "threads": args.threads,
        "machine": machine["fingerprint"],
        "hardware": machine,
        "env": {k: os.environ.get(k) for k in ENV_KEYS},  # paddle_mm's; each row has its own "env"
        "env_set_by_tune_cpu_env": tuned,
        "settings": {"rounds": args.rounds, "warmup_runs": WARMUP, "text_length": cfg["context_length"]},
        "auto": auto,
        "auto_within_5_percent": checks,
        "int8_sizes": int8,
        "rows": rows,
        "load_per_group": loads,
        "too_busy": too_busy,
        "verdict": verdict,
        "wall_s": time.time() - started,
        "load_average_1_5_15": {"start": load_before, "end": os.getloadavg()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"load average (1, 5, 15 min) at start {load_before}, at end {os.getloadavg()} on {os.cpu_count()} CPUs")
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-16", help="paddle_mm model name (random weights)")
    p.add_argument("--towers", nargs="+", default=["image", "text"], choices=["image", "text"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per (tower, batch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default="output/benchmark", help="model, export, inputs and auto cache")
    p.add_argument("--out", default="output/benchmark/benchmark.json")
    p.add_argument("--torch-python", default=str(ROOT / ".venv-ref/bin/python"), help="torch + cn_clip interpreter")
    p.add_argument(
        "--cached-ceiling", action="store_true", help="use the cached GEMM ceiling instead of measuring it now"
    )
    # internal: one row in a fresh process
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--tower", help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--export-dir", help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        worker_main(arguments)
    else:
        main_run(arguments)
