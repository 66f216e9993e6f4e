"""tools/infer.py on an export directory and on a signed package of it: the checkpoint's top-k, refusals exit."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_tool, tiny_args

RUN = "CN-CLIP-Tiny"
QUERIES = "Infer.queries=['左上角有一个红色的圆形', '图中有两个蓝色的三角形', '右下角有一个绿色的正方形']"
MODEL = "cn-clip-tiny-run"


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's best checkpoint exported (towers only, fp32): what tools/export_model.py writes."""
    from paddle_mm.engine.checkpoint import resolve_checkpoint
    from paddle_mm.export import ExportOptions, export_model
    from paddle_mm.models import load_model
    from paddle_mm.vision.transforms import ImageTransform

    model = load_model(resolve_checkpoint(tiny_run / RUN / "best_model"))
    model.eval()
    out = tmp_path_factory.mktemp("infer_export")
    options = ExportOptions(graphs=("image", "text"), int8=False, verify_batches=(2,), threads=1)
    export_model(model, out, ImageTransform(model.config.image_resolution), RUN, options, log=lambda _msg: None)
    return out


@pytest.fixture(scope="module")
def signed(exported, tmp_path_factory) -> tuple[Path, Path]:
    """(a signed copy of the export, the signer's public key file)."""
    from paddle_mm.package import LocalSigner, PrivateKey, sign_package

    key = PrivateKey.generate()
    base = tmp_path_factory.mktemp("infer_pkg")
    shutil.copytree(exported, base / "pkg")
    sign_package(base / "pkg", LocalSigner(key), model=MODEL, version="1.0", sequence=1)
    (base / "signer.pub").write_bytes(key.public_key.to_pem())
    return base / "pkg", base / "signer.pub"


@pytest.fixture(scope="module")
def query_png(tiny_data, tmp_path_factory) -> Path:
    first = (tiny_data / "valid_imgs.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    path = tmp_path_factory.mktemp("query") / "q.png"
    path.write_bytes(base64.b64decode(first[1]))
    return path


def infer(data: Path, out: Path, query_png: Path, *model: str) -> tuple[object, dict | None]:
    proc = run_tool(
        "infer.py",
        *tiny_args(
            data,
            out,
            "-o",
            *model,
            f"Infer.root={data}",
            "Infer.split=valid",
            "Infer.topk=5",
            QUERIES,
            f"Infer.query_images=['{query_png}']",
            "Infer.threads=1",
        ),
    )
    result = out / RUN / "infer_results.json"
    return proc, json.loads(result.read_text(encoding="utf-8")) if proc.returncode == 0 else None


def assert_same_ranking(got: dict, want: dict) -> None:
    for direction, key in (("text_to_image", "image_id"), ("image_to_text", "caption")):
        assert [q["query"] for q in got[direction]] == [q["query"] for q in want[direction]]
        for g, w in zip(got[direction], want[direction]):
            assert [r[key] for r in g["results"]] == [r[key] for r in w["results"]]
            assert [r["score"] for r in g["results"]] == pytest.approx([r["score"] for r in w["results"]], abs=1e-5)


def test_export_and_package_give_the_checkpoints_top_k(tiny_run, tiny_data, exported, signed, query_png, tmp_path):
    checkpoint = f"Global.pretrained_model={tiny_run / RUN / 'best_model'}"
    proc, eager = infer(tiny_data, tmp_path / "eager", query_png, checkpoint)
    assert proc.returncode == 0, proc.stderr[-3000:]

    export_dir = [f"Infer.model_dir={exported}", "Infer.backend=onnxruntime"]
    proc, export = infer(tiny_data, tmp_path / "dir", query_png, *export_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_ranking(export, eager)

    pkg, pub = signed
    package = [
        f"Infer.package={pkg}",
        f"Infer.trust=['{pub}']",
        f"Infer.package_model={MODEL}",
        f"Infer.package_state={tmp_path / 'state.json'}",
        "Infer.backend=paddle_inference",
    ]
    proc, packaged = infer(tiny_data, tmp_path / "pkg", query_png, *package)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"verified package {MODEL} 1.0 (sequence 1" in proc.stdout
    assert_same_ranking(packaged, eager)
    assert len(eager["text_to_image"]) == 3 and len(eager["image_to_text"][0]["results"]) == 5


def tampered_copy(pkg: Path, name: str, dst: Path) -> Path:
    """A copy of the signed package with one bit of ``name`` flipped near its end."""
    shutil.copytree(pkg, dst)
    data = bytearray((dst / name).read_bytes())
    data[-100] ^= 0x01
    (dst / name).write_bytes(bytes(data))
    return dst


def test_a_tampered_package_exits_with_the_refusal(tiny_data, signed, query_png, tmp_path):
    pkg, pub = signed
    copy = tampered_copy(pkg, "text.onnx", tmp_path / "pkg")
    package = [
        f"Infer.package={copy}",
        f"Infer.trust=['{pub}']",
        f"Infer.package_model={MODEL}",
        f"Infer.package_state={tmp_path / 'state.json'}",
    ]
    proc, _ = infer(tiny_data, tmp_path / "out", query_png, *package)
    assert proc.returncode == 12, proc.stderr[-3000:]
    assert "REFUSED DigestMismatchError: 'text.onnx' chunk" in proc.stderr
    assert not (tmp_path / "out" / RUN / "infer_results.json").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["Global.pretrained_model=a", "Infer.model_dir=b"], "Global.pretrained_model and Infer.model_dir: pass"),
        (["Infer.package=p"], "Infer.package: needs -o Infer.trust"),
        (["Infer.topk=3"], "model: pass exactly one of"),
    ],
)
def test_model_source_config_errors_are_one_line(tiny_data, tmp_path, overrides, message):
    proc = run_tool("infer.py", *tiny_args(tiny_data, tmp_path, "-o", *overrides))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]


def predict(out: Path, query_png: Path, *source: str):
    result = out / "predict.json"
    texts = ["左上角有一个红色的圆形", "图中有两个蓝色的三角形"]
    proc = run_tool("predict.py", *source, "--image", str(query_png), "--text", *texts, "--json", str(result))
    return proc, json.loads(result.read_text(encoding="utf-8")) if proc.returncode == 0 else None


def test_predict_on_a_signed_package_matches_the_export(exported, signed, query_png, tmp_path):
    pkg, pub = signed
    proc, plain = predict(tmp_path / "dir", query_png, "--model_dir", str(exported), "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = tmp_path / "state.json"
    args = ["--package", str(pkg), "--trust", str(pub), "--package_model", MODEL, "--package_state", str(state)]
    proc, packaged = predict(tmp_path / "pkg", query_png, *args, "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"verified package {MODEL} 1.0 (sequence 1" in proc.stdout
    assert packaged["package"] == {"path": str(pkg), "model": MODEL, "version": "1.0", "sequence": 1}
    (got,), (want,) = packaged["ranking"], plain["ranking"]
    assert [t["text"] for t in got["texts"]] == [t["text"] for t in want["texts"]]
    for g, w in zip(got["texts"], want["texts"]):
        assert abs(g["cosine"] - w["cosine"]) < 1e-5


def test_predict_refuses_a_tampered_package(signed, query_png, tmp_path):
    pkg, pub = signed
    copy = tampered_copy(pkg, "image.onnx", tmp_path / "pkg")
    args = ["--package", str(copy), "--trust", str(pub), "--package_model", MODEL]
    proc, _ = predict(tmp_path, query_png, *args, "--package_state", str(tmp_path / "state.json"))
    assert proc.returncode == 12, proc.stderr[-3000:]
    assert "REFUSED DigestMismatchError: 'image.onnx' chunk" in proc.stderr
    assert not (tmp_path / "predict.json").exists()
    proc, _ = predict(tmp_path, query_png, "--package", str(copy))
    assert proc.returncode == 2 and "--package needs --trust" in proc.stderr  # a usage error
