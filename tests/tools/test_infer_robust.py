"""tools/infer.py and tools/predict.py: unreadable query images are skipped and counted, the JSON and the grid PNG
are written, and every data / output / device / model error is one line with its exit code (docs/export.md)."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_ARCH, TINY_NAME, run_tool, tiny_args

RUN = TINY_NAME  # a run's folder is named after Arch.name
QUERIES = "Infer.queries=['左上角有一个红色的圆形', '图中有两个蓝色的三角形']"


@pytest.fixture(scope="module")
def random_export(tmp_path_factory) -> Path:
    """Towers of a seeded random tiny model: enough to run the tools (their answers are not judged here)."""
    import paddle

    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.models import create_model
    from paddle_mm.vision.transforms import ImageTransform

    paddle.seed(7)
    model = create_model(RUN, **TINY_ARCH)
    out = tmp_path_factory.mktemp("robust_export") / "inference"
    options = ExportOptions(graphs=("image", "text"), int8=False, verify_batches=(2,), threads=1)
    export_model(model.eval(), out, ImageTransform(32), RUN, options, log=lambda _msg: None)
    return out


@pytest.fixture(scope="module")
def queries(tiny_data, tmp_path_factory) -> dict[str, Path]:
    """A good PNG (the gallery's first image), a corrupt one and a path that does not exist."""
    folder = tmp_path_factory.mktemp("queries")
    first = (tiny_data / "valid_imgs.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    (folder / "good.png").write_bytes(base64.b64decode(first[1]))
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return {"good": folder / "good.png", "bad": folder / "bad.png", "missing": folder / "missing.png"}


def infer(data: Path, out: Path, export: Path, *extra: str):
    overrides = [f"Infer.model_dir={export}", f"Infer.root={data}", "Infer.split=valid", "Infer.topk=3"]
    overrides += ["Infer.threads=1", "Infer.backend=onnxruntime", QUERIES, *extra]
    return run_tool("infer.py", *tiny_args(data, out, "-o", *overrides))


def test_infer_skips_unreadable_query_images_and_writes_its_json(tiny_data, random_export, queries, tmp_path):
    images = f"Infer.query_images=['{queries['bad']}', '{queries['good']}', '{queries['missing']}']"
    proc = infer(tiny_data, tmp_path, random_export, images)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / RUN / "infer_results.json").read_text(encoding="utf-8"))
    assert [q["query"] for q in result["image_to_text"]] == [str(queries["good"])]
    assert len(result["skipped_query_images"]) == 2 and len(result["text_to_image"]) == 2
    assert "skipped 2 of 3 query images" in proc.stdout
    assert "cosine similarities of L2-normalized features, in [-1, 1]" in proc.stdout


def test_infer_draws_each_text_query_with_its_top_k_images(tiny_data, random_export, tmp_path):
    from PIL import Image

    from paddle_mm.data.datasets import load_corpus
    from paddle_mm.inference import grid

    proc = infer(tiny_data, tmp_path, random_export)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / RUN / "infer_results.json").read_text(encoding="utf-8"))
    png = Image.open(result["grid"]).convert("RGB")
    row, col = grid.CELL + grid.LABEL + grid.PAD, grid.CELL + grid.PAD
    assert png.size == (grid.TEXT_WIDTH + 3 * col + grid.PAD, 2 * row + grid.PAD)
    corpus = load_corpus(tiny_data, "valid")
    for r, query in enumerate(result["text_to_image"]):
        for c, hit in enumerate(query["results"]):  # each cell is that gallery image, enlarged
            want = Image.open(io.BytesIO(corpus.read_image_bytes(hit["image_id"]))).convert("RGB")
            want = np.asarray(want.resize((grid.CELL, grid.CELL), Image.BICUBIC), np.float32)
            left, top = grid.TEXT_WIDTH + c * col, grid.PAD + r * row
            cell = np.asarray(png.crop((left, top, left + grid.CELL, top + grid.CELL)), np.float32)
            assert np.abs(cell - want).mean() < 2.0, (r, c)


def test_predict_skips_an_unreadable_image(random_export, queries, tmp_path):
    out = tmp_path / "p.json"
    images = [str(queries["good"]), str(queries["bad"])]
    args = ["--model_dir", str(random_export), "--threads", "1", "--backend", "onnxruntime", "--json", str(out)]
    proc = run_tool("predict.py", *args, "--image", *images, "--text", "一个圆形", "两个三角形")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert [r["image"] for r in result["ranking"]] == [images[0]] and len(result["skipped_images"]) == 1


def test_a_corrupt_checkpoint_is_one_line_in_every_tool(tiny_data, queries, tmp_path):
    import paddle

    from paddle_mm.demo.shapes_zero_shot import make_shapes_zero_shot
    from paddle_mm.models import create_model, save_model

    paddle.seed(3)
    checkpoint = save_model(create_model(RUN, **TINY_ARCH), tmp_path / "ckpt")
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    model = [f"Global.pretrained_model={checkpoint}", f"Infer.root={tiny_data}", "Infer.split=valid"]
    zs, out = tmp_path / "zs", str(tmp_path / "out")
    make_shapes_zero_shot(zs, per_class=1, seed=1, image_size=32, colours=["red"], shapes=["circle", "square"])
    procs = {
        "infer": run_tool("infer.py", *tiny_args(tiny_data, tmp_path / "out", "-o", *model)),
        "export_model": run_tool(
            "export_model.py",
            *tiny_args(tiny_data, tmp_path / "out", "-o", *model, f"Global.save_inference_dir={tmp_path / 'inf'}"),
        ),
        "zero_shot": run_tool("zero_shot.py", "--model", str(checkpoint), "--data", str(zs), "--output_dir", out),
    }
    for tool, proc in procs.items():
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 6 and "Traceback" not in proc.stderr, (tool, proc.stderr[-2000:])
        line = lines[-1]
        assert line.startswith("error: ") and str(checkpoint) in line and "model.safetensors" in line, tool
        assert "truncated" in line, tool


def corrupt_copy(export: Path, dst: Path) -> Path:
    shutil.copytree(export, dst)
    data = bytearray((dst / "image.pdiparams").read_bytes())
    data[-100] ^= 0x01
    (dst / "image.pdiparams").write_bytes(bytes(data))
    return dst


def test_a_trust_file_that_is_not_a_key_is_a_config_error_not_a_model_error(tiny_data, random_export, tmp_path):
    (tmp_path / "signer.pub").write_text("not a key", encoding="utf-8")
    package = [f"Infer.package={random_export}", f"Infer.trust=['{tmp_path / 'signer.pub'}']", "Infer.package_model=m"]
    gallery = [f"Infer.root={tiny_data}", "Infer.split=valid"]
    proc = run_tool("infer.py", *tiny_args(tiny_data, tmp_path / "out", "-o", *gallery, *package))
    assert proc.returncode == 2 and "holds no PUBLIC KEY" in proc.stderr.strip().splitlines()[-1], proc.stderr


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("split", 3, "split 'nosuch'"),
        ("output", 4, "Global.output_dir"),
        ("device", 2, "unknown device 'tpu'"),
        ("not_export", 6, "inference.yml not found"),
        ("flipped", 6, "image.pdiparams: SHA-256"),
    ],
)
def test_infer_errors_are_one_line_with_their_exit_code(tiny_data, random_export, tmp_path, case, code, message):
    export, out, extra = random_export, tmp_path / "out", []
    if case == "split":
        extra = ["Infer.split=nosuch"]
    elif case == "output":
        out.write_text("a file where the output folder should be", encoding="utf-8")
    elif case == "device":
        extra = ["Global.device=tpu"]
    elif case == "not_export":
        export = tmp_path
    else:
        export = corrupt_copy(random_export, tmp_path / "flipped")
    proc = infer(tiny_data, out, export, "Infer.backend=paddle_inference", *extra)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and message in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "case, code, message",
    [("eval_root", 3, "neither layout"), ("device", 2, "unknown device 'tpu'"), ("flipped", 6, "SHA-256")],
)
def test_predict_errors_are_one_line_with_their_exit_code(random_export, queries, tmp_path, case, code, message):
    export = corrupt_copy(random_export, tmp_path / "flipped") if case == "flipped" else random_export
    args = ["--model_dir", str(export), "--threads", "1", "--backend", "paddle_inference"]
    if case == "eval_root":
        args += ["--eval_root", str(tmp_path)]
    else:
        args += ["--image", str(queries["good"]), "--text", "一个圆形"]
    if case == "device":
        args += ["--device", "tpu"]
    proc = run_tool("predict.py", *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and message in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
