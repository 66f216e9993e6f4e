"""Inspection (issue 15): synthetic parts, OpenCV frames, PP-LCNet, PatchCore score, train -> export -> predict ->
package on a tiny run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paddle_mm.config import ConfigError, load_config
from paddle_mm.demo.inspection import CLASSES, UNSEEN, make_split, write_dataset
from paddle_mm.models.patchcore import PatchCoreScorer, auroc, greedy_coreset, nearest_distance
from paddle_mm.vision.frame import check_frame_config, preprocess_frame

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "inspection" / "pplcnet_x0_5_parts.yml"
PADDLEX_PYTHON = ROOT / ".venv-paddlex" / "bin" / "python"  # scripts/paddlex_overlay.sh; no skip without it


def test_generator_is_deterministic_and_every_class_differs_from_clean():
    a, b = make_split("test", 2, seed=3), make_split("test", 2, seed=3)
    assert [p.label for p in a] == list(CLASSES) * 2
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert not np.array_equal(a[0].image, make_split("test", 2, seed=4)[0].image)
    assert {p.label for p in make_split("unseen", 2)} == {"good", UNSEEN}
    assert all(p.severity == 0 for p in a if p.label == "good")
    assert all(1 <= p.severity <= 3 for p in a if p.label != "good")


def test_dataset_layout_is_paddleclas_lists(tmp_path):
    counts = write_dataset(tmp_path, {"train": 2, "val": 1, "test": 1, "unseen": 1}, seed=0, image_size=32)
    assert counts == {"train": 12, "val": 6, "test": 6, "unseen": 2}
    labels = (tmp_path / "label_list.txt").read_text().splitlines()
    assert labels == [f"{i} {c}" for i, c in enumerate(CLASSES)]
    for line in (tmp_path / "train_list.txt").read_text().splitlines():
        path, label = line.split()
        assert (tmp_path / path).is_file() and path.split("/")[1] == CLASSES[int(label)]
    assert all(line.endswith((" -1", " 0")) for line in (tmp_path / "unseen_list.txt").read_text().splitlines())


def test_frame_preprocessing_options():
    rgb = make_split("test", 1)[1].image
    gray = preprocess_frame(rgb, check_frame_config({"color": "gray", "size": 32}))
    assert gray.shape == (32, 32, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    plain = preprocess_frame(rgb, check_frame_config({"size": 64}))
    assert np.array_equal(plain, rgb)  # no option: the frame unchanged
    for option in ({"contrast": "clahe"}, {"contrast": "equalize"}, {"denoise": "median"}, {"denoise": "bilateral"}):
        assert not np.array_equal(preprocess_frame(rgb, check_frame_config({**option, "size": 64})), rgb), option
    with pytest.raises(ValueError, match="choose one of"):
        check_frame_config({"denoise": "wiener"})


def test_config_schema_knows_every_classifier():
    from paddle_mm.config_schema import CLASSIFIER_NAMES
    from paddle_mm.models.inspection import CLASSIFIERS

    assert set(CLASSIFIER_NAMES) == set(CLASSIFIERS)
    with pytest.raises(ConfigError, match="denoise"):
        load_config(CONFIG, ["DataLoader.Train.dataset.preprocess.denoise=wiener"])


@pytest.mark.parametrize("name", ["PP-LCNet_x0_25", "MobileNetV3_small_x0_5"])
def test_classifier_forward_backward_and_patch_maps(name):
    import paddle

    from paddle_mm.models.inspection import InspectionClassifier, InspectionConfig

    model = InspectionClassifier(InspectionConfig(name, 6, 64))
    x = paddle.randn([2, 3, 64, 64])
    out = model(x)
    assert out["logits"].shape == [2, 6]
    out["logits"].sum().backward()
    assert all(p.grad is not None for p in model.parameters() if not p.stop_gradient)
    s8, s16 = model.patch_features(x)
    assert s8.shape[2:] == [8, 8] and s16.shape[2:] == [4, 4]


def test_auroc_matches_sklearn_and_patchcore_scores():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=200).round(1), rng.random(200) < 0.3  # rounded: ties must count half
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    feats = rng.normal(size=(50, 8)).astype(np.float32)
    chosen = greedy_coreset(feats, 10)
    assert len(set(chosen)) == 10
    # k-centre: the next pick is the row farthest from those chosen
    d = nearest_distance(feats, feats[chosen[:5]])
    assert chosen[5] == int(np.argmax(d))
    bank = PatchCoreScorer(feats)
    assert np.allclose(bank.score(feats[None, :3]), 0, atol=1e-3)  # members of the bank score ~0
    assert bank.score(feats[None, :3] + 5)[0] > 1


def _batchnorm_statistics_from(model, parts) -> None:
    """Running BatchNorm statistics from one batch of frames. After 6 steps they are still near their init, where this
    narrow net's eval-mode output is the same for every frame, and every export comparison would hold vacuously."""
    import paddle

    from paddle_mm.vision.frame import normalize

    norms = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    for bn in norms:
        bn._momentum = 0.0  # running = batch statistics
    model.train()
    with paddle.no_grad():
        model(paddle.to_tensor(normalize(np.stack([p.image for p in parts]))))
    for bn in norms:
        bn._momentum = 0.9
    model.eval()


@pytest.fixture(scope="module")
def tiny_inspection(tmp_path_factory):
    """A 2-epoch PP-LCNet x0.25 run at 32 px on 8 parts per class, and its export."""
    from paddle_mm.engine.train import train
    from paddle_mm.export.inspection import export_from_config
    from paddle_mm.models import load_model, save_model

    root = tmp_path_factory.mktemp("inspection")
    write_dataset(root / "data", {"train": 8, "val": 4, "test": 4, "unseen": 4}, seed=0, image_size=32)
    cfg = load_config(
        CONFIG,
        [
            f"DataLoader.Train.dataset.root={root / 'data'}",
            f"DataLoader.Eval.dataset.root={root / 'data'}",
            f"Global.output_dir={root / 'out'}",
            f"Global.save_inference_dir={root / 'export'}",
            "Global.epochs=2",
            "Global.eval_interval=1",
            "Global.progress_bar=False",
            "Arch.name=PP-LCNet_x0_25",
            "Arch.image_resolution=32",
            "DataLoader.Train.sampler.batch_size=16",
        ],
    )
    state = train(cfg)
    model = load_model(root / "out" / "PP-LCNet_x0_25" / "latest")
    _batchnorm_statistics_from(model, make_split("train", 8, seed=0, size=32))
    save_model(model, root / "model")
    cfg["Global"]["pretrained_model"] = str(root / "model")
    # an untrained model's near-uniform probabilities make INT8 arg-max agreement meaningless: not checked here
    info = export_from_config(cfg, log=lambda *_: None, int8_min_agreement=0.0)
    return cfg, state, info, root


def test_train_export_predict_package(tiny_inspection):
    from paddle_mm.engine.checkpoint import resolve_checkpoint
    from paddle_mm.inference.inspection import InspectionPredictor
    from paddle_mm.models import load_model
    from paddle_mm.tasks.inspection import predict_probs

    cfg, state, info, root = tiny_inspection
    assert [r["epoch"] for r in state["history"]] == [1, 2]
    assert set(state["history"][-1]["recall"]) == set(CLASSES)
    v = info["Inspection"]["verification"]
    assert v["classify_paddle_inference_max_abs_diff"] <= 1e-4 and v["anomaly_onnxruntime_max_rel_diff"] <= 1e-3
    assert info["PostProcess"]["Topk"]["label_list"] == list(CLASSES)
    export = root / "export"
    model = load_model(resolve_checkpoint(cfg["Global"]["pretrained_model"]))
    images = [p.image for p in make_split("test", 1, seed=9, size=32)]
    frames = np.stack(images)
    eager = predict_probs(model, frames, 8)
    for backend in ("paddle_inference", "onnxruntime"):
        pred = InspectionPredictor(export, backend=backend)
        assert np.abs(pred.probabilities(frames) - eager).max() < 1e-4
        results = pred(images)
        assert [r.class_id for r in results] == list(eager.argmax(1))
        assert all(r.anomaly is not None and r.is_anomalous is not None for r in results)
    int8 = InspectionPredictor(export, precision="int8", anomaly=False)
    assert int8.probabilities(frames).shape == eager.shape
    # a changed byte in a graph file is refused before any runtime reads it
    onnx_file = export / "inference.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 1
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(Exception, match="inference.onnx"):
        InspectionPredictor(export, anomaly=False)
    data[-1] ^= 1
    onnx_file.write_bytes(bytes(data))


def test_export_is_a_signed_package(tiny_inspection, tmp_path):
    import shutil

    from paddle_mm.package import LocalSigner, PackageRefused, PrivateKey, TrustStore, sign_package, verify_package

    _, _, _, root = tiny_inspection
    pkg = tmp_path / "pkg"
    shutil.copytree(root / "export", pkg)
    key = PrivateKey.generate()
    sign_package(pkg, LocalSigner(key), model="inspection-parts", version="1.0", sequence=1)
    (tmp_path / "signer.pub").write_bytes(key.public_key.to_pem())
    trust = TrustStore.from_files([tmp_path / "signer.pub"])
    assert verify_package(pkg, trust, model="inspection-parts", state=None).manifest.sequence == 1
    (pkg / "anomaly.pdiparams").write_bytes((pkg / "anomaly.pdiparams").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(PackageRefused, match="anomaly.pdiparams"):
        verify_package(pkg, trust, model="inspection-parts", state=None)


def test_paddlex_reads_the_export(tiny_inspection):
    """PaddleX's own image-classification predictor on our export (in .venv-paddlex, which scripts/setup.sh --tests
    builds) gives our class ids and probabilities."""
    from importlib.metadata import version

    from paddle_mm.inference.inspection import InspectionPredictor
    from paddle_mm.inference.paddlex_run import paddlex_classify

    _, _, info, root = tiny_inspection
    images = np.stack([p.image for p in make_split("test", 2, seed=9, size=32)])
    ours = InspectionPredictor(root / "export", backend="paddle_inference", anomaly=False)
    px_version, theirs = paddlex_classify(root / "export", info["Global"]["model_name"], PADDLEX_PYTHON, frames=images)
    assert px_version == version("paddlex")  # .venv's PaddleX, read through the overlay's .pth
    probs = ours.probabilities(ours.frames(list(images)))
    assert probs.std(axis=0).max() > 1e-3  # the model's output depends on the frame, so pre-processing matters
    assert [c for c, _ in theirs] == [r.class_id for r in ours(list(images))] == list(probs.argmax(1))
    assert np.abs(np.array([s for _, s in theirs]) - probs.max(1)).max() <= 1e-5


def test_paddlex_run_refuses_a_missing_overlay(tmp_path):
    from paddle_mm.inference.paddlex_run import PaddleXRunError, paddlex_classify

    with pytest.raises(PaddleXRunError, match="paddlex_overlay.sh"):
        paddlex_classify(tmp_path, "PP-LCNet_x0_25", tmp_path / "no-python", paths=[])
    with pytest.raises(ValueError, match="exactly one"):
        paddlex_classify(tmp_path, "PP-LCNet_x0_25", PADDLEX_PYTHON)


def test_int8_recipe_choices_and_kept_convolutions(tiny_inspection):
    import onnx

    from paddle_mm.export.inspection import check_int8_recipe, fp32_convs

    with pytest.raises(ValueError, match="calibration='kl'; choose one of"):
        check_int8_recipe({"calibration": "kl"})
    with pytest.raises(ValueError, match="unknown INT8 recipe key"):
        check_int8_recipe({"per_tensor": True})
    _, _, info, root = tiny_inspection
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(root / "export" / "inference.onnx"))).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    kept = {k: set(fp32_convs(graph, k)) for k in ("none", "stem_se", "depthwise")}
    assert kept["none"] == set() and kept["stem_se"] < kept["depthwise"] < {n.name for n in convs}
    assert convs[0].name in kept["stem_se"]  # the 3-channel stem
    depthwise = {n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)}
    assert depthwise and kept["depthwise"] == kept["stem_se"] | depthwise  # (at 32 px the last is on 1 x 1 maps)
    q = info["Inspection"]["int8"]
    assert q["quantized_nodes"] + q["fp32_nodes"] == len(convs) and q["quantized_nodes"] > 0
    int8_ops = {n.op_type for n in onnx.load(str(root / "export" / "inference.int8.onnx")).graph.node}
    assert "QuantizeLinear" in int8_ops and "BatchNormalization" not in int8_ops  # folded before quantization


def test_failed_export_check_leaves_the_previous_export(tiny_inspection):
    from paddle_mm.export.inspection import InspectionExportError, export_from_config

    cfg, _, _, root = tiny_inspection
    before = (root / "export" / "inference.yml").read_bytes()
    with pytest.raises(InspectionExportError, match="INT8 graph agrees"):
        export_from_config(cfg, log=lambda *_: None, int8_min_agreement=1.01)  # no INT8 graph can pass
    assert (root / "export" / "inference.yml").read_bytes() == before
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # no staged folder left
