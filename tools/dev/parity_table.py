"""Live parity: paddle_mm vs cn_clip (PyTorch) and vs PaddleNLP's ChineseCLIPModel on the same weights.

Step 1 (reference environment) writes real cn_clip ``.pt`` files and cn_clip's outputs on them; step 2 (the repo's
environment, where PaddleNLP is installed) converts each ``.pt`` with paddle_mm's converter, runs paddle_mm, exports
the converted weights to PaddleNLP's layout, runs PaddleNLP, and prints max abs differences:

    env -u PYTHONPATH .venv-ref/bin/python tools/dev/make_parity_golden.py --out /tmp/parity
    .venv/bin/python tools/dev/parity_table.py /tmp/parity
    env -u PYTHONPATH .venv-ref/bin/python tools/dev/make_parity_golden.py --full --out /tmp/parity_full
    .venv/bin/python tools/dev/parity_table.py /tmp/parity_full --measure-conversion

``--measure-conversion`` runs ``tools/convert_weights.py`` in a child process and reports its wall time and peak
RSS next to the checkpoint size. ``--write-golden`` stores PaddleNLP's outputs as ``<arch>.paddlenlp.npz`` beside
the inputs (used by tests/models/test_conversion.py on the committed set in tests/models/golden/parity).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np

KEYS = ("encode_image", "encode_text", "logits_per_image")


def paddle_mm_outputs(model_dir: Path, golden: dict) -> dict[str, np.ndarray]:
    import paddle

    import paddle_mm

    model = paddle_mm.load_model(model_dir)
    pixels, ids = paddle.to_tensor(golden["pixel_values"]), paddle.to_tensor(golden["input_ids"])
    with paddle.no_grad():
        return {
            "encode_image": model.encode_image(pixels).numpy(),
            "encode_text": model.encode_text(ids).numpy(),
            "logits_per_image": model(pixel_values=pixels, input_ids=ids)["logits_per_image"].numpy(),
        }


def paddlenlp_outputs(nlp_dir: Path, golden: dict) -> dict[str, np.ndarray]:
    """PaddleNLP's own model and API; the attention mask is cn_clip's (ids != [PAD])."""
    import paddle
    from paddlenlp.transformers import ChineseCLIPModel  # patches F.quick_gelu globally: dev tool only

    model = ChineseCLIPModel.from_pretrained(str(nlp_dir))
    model.eval()
    pixels, ids = paddle.to_tensor(golden["pixel_values"]), paddle.to_tensor(golden["input_ids"])
    mask = (ids != 0).astype("int64")
    with paddle.no_grad():
        out = model(input_ids=ids, pixel_values=pixels, attention_mask=mask)
        return {
            "encode_image": model.get_image_features(pixel_values=pixels).numpy(),
            "encode_text": model.get_text_features(input_ids=ids, attention_mask=mask).numpy(),
            "logits_per_image": out.logits_per_image.numpy(),
        }


def measure_conversion(pt: Path, dst: Path, overrides: dict) -> dict[str, float]:
    sets = [arg for k, v in overrides.items() for arg in ("--set", f"{k}={json.dumps(v)}")]
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "tools" / "convert_weights.py"), str(pt), str(dst), *sets], check=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux; the only child so far
    return {"seconds": seconds, "peak_rss_mb": peak_mb, "checkpoint_mb": pt.stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("golden_dir", type=Path, nargs="?", default=ROOT / "tests" / "models" / "golden" / "parity")
    parser.add_argument("--measure-conversion", action="store_true")
    parser.add_argument("--write-golden", action="store_true")
    args = parser.parse_args()

    from paddle_mm.models.conversion import convert_checkpoint, export_paddlenlp

    rows, measured = [], {}
    for npz in sorted(args.golden_dir.glob("*.npz")):
        if npz.name.endswith(".paddlenlp.npz"):
            continue
        name = npz.stem
        golden = dict(np.load(npz))
        overrides = json.loads(str(golden["overrides"]))
        with tempfile.TemporaryDirectory() as tmp:
            model_dir, nlp_dir = Path(tmp) / "model", Path(tmp) / "nlp"
            if args.measure_conversion:
                measured[name] = measure_conversion(npz.with_suffix(".pt"), model_dir, overrides)
            else:
                convert_checkpoint(npz.with_suffix(".pt"), model_dir, overrides=overrides)
            ours = paddle_mm_outputs(model_dir, golden)
            theirs = None
            if name != "RN50":
                export_paddlenlp(model_dir, nlp_dir)
                theirs = paddlenlp_outputs(nlp_dir, golden)
                if args.write_golden:
                    from safetensors.numpy import load_file

                    keys = sorted(load_file(str(nlp_dir / "model.safetensors")))
                    np.savez_compressed(
                        npz.with_name(f"{name}.paddlenlp.npz"),
                        **{f"paddlenlp/{k}": v for k, v in theirs.items()},
                        **{"paddlenlp/keys": np.array(json.dumps(keys))},
                    )
        for key in KEYS:
            vs_cn = float(np.abs(ours[key] - golden[f"cn_clip/{key}"]).max())
            vs_nlp = float(np.abs(ours[key] - theirs[key]).max()) if theirs else None
            scale = float(np.abs(golden[f"cn_clip/{key}"]).max())
            rows.append((name, key, vs_cn, vs_nlp, scale))

    print("| architecture | output | max abs diff vs cn_clip | max abs diff vs PaddleNLP | max abs value |")
    print("|---|---|---|---|---|")
    for name, key, vs_cn, vs_nlp, scale in rows:
        nlp = f"{vs_nlp:.2e}" if vs_nlp is not None else "n/a (no RN50 in PaddleNLP)"
        print(f"| {name} | {key} | {vs_cn:.2e} | {nlp} | {scale:.3g} |")
    for name, m in measured.items():
        print(
            f"conversion {name}: {m['seconds']:.1f} s wall, peak RSS {m['peak_rss_mb']:.0f} MiB "
            f"for a {m['checkpoint_mb']:.0f} MiB checkpoint (tools/convert_weights.py in a child process)"
        )


if __name__ == "__main__":
    main()
