"""The C++ board runtime (hardware/runtime, pmm-run) against paddle_mm's Python, on CN-CLIP-Tiny.

Every target that runs here is checked the same way: token ids identical to the Python tokenizer (and to
cn_clip's golden ids), pre-processed pixels within 1e-5, tower features within 1e-4. Foreign targets run
under QEMU user mode; their builds are cached in ~/.cache/paddle_mm/boards (hardware/runtime/build.py).
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hardware.runtime import build as board_build

GOLDEN = Path(__file__).resolve().parents[1] / "text" / "golden" / "cn_clip_tokenize.json"
TEXTS = [
    "一只猫",
    "A photo of a DOG, running!",
    "Café naïve résumé ÀÉÎ",
    "中文 测试 ＡＢＣ １２３ ！？",
    "x" * 300,  # one word past 200 characters: [UNK]
    "豈 更 車",  # CJK compatibility ideographs: NFD maps them to unified ones
    "İstanbul Σίσυφος ΟΔΟΣ",  # final sigma: str.lower's context rule
    "hello\u200bworld \x01ctrl\x07",  # format and control characters are removed
    "😀 emoji ☃ ♞ " + "长" * 60,  # truncated to 50 pieces
]
# (height, width) against the 128-px model: both shrink, equal, one up and one down, and the height shrinking much
# more (Pillow 13's pass order)
IMAGE_SIZES = [(240, 160), (128, 128), (80, 180), (300, 120)]
# the foreign targets scripts/setup.sh --tests builds (PMM_BOARD_TARGETS=all: every one, e.g. on a release)
CROSS_TARGETS = [t for t in board_build.tested_targets() if t != "x86_64" and board_build.TARGETS[t].runs_here]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    # One thread: ggml's workers spin at barriers, which collapses on a shared 2-core CI machine.
    if "--model" in cmd:
        cmd = [*cmd, "--threads", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def images(tiny_gguf) -> list[Path]:
    import cv2

    rng = np.random.default_rng(0)
    out = []
    for i, (h, w) in enumerate(IMAGE_SIZES):
        rgb = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 0)
        if i == 2:
            rgb = np.repeat(rgb[:, :, :1], 3, axis=2)  # written as a gray PNG below
        path = tiny_gguf.parent / f"img{i}.png"
        cv2.imwrite(str(path), rgb[:, :, 0] if i == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        out.append(path)
    return out


@pytest.fixture(scope="session")
def reference(tiny_model_dir, images) -> dict[str, np.ndarray]:
    """Python's ids, pixels and unnormalised tower features for TEXTS and the images."""
    import paddle

    from paddle_mm.models import load_model
    from paddle_mm.text import WordPieceTokenizer
    from paddle_mm.vision.transforms import ImageTransform

    model = load_model(tiny_model_dir)
    ids = WordPieceTokenizer().encode_batch(TEXTS)
    pixels = np.stack([ImageTransform(model.config.image_resolution)(str(p)) for p in images])
    with paddle.no_grad():
        image_features = model.encode_image(paddle.to_tensor(pixels)).numpy()
        text_features = model.encode_text(paddle.to_tensor(ids)).numpy()
    return {"ids": ids, "pixels": pixels, "image_features": image_features, "text_features": text_features,
            "logit_scale": float(np.exp(model.logit_scale.numpy()))}  # fmt: skip


def _outputs(cmd: list[str], tiny_gguf: Path, images: list[Path], out: Path) -> dict[str, np.ndarray]:
    out.mkdir(parents=True, exist_ok=True)
    proc = run([*cmd, "--model", str(tiny_gguf), "--image", *map(str, images), "--text", *TEXTS, "--npy", str(out)])
    assert proc.returncode == 0, proc.stderr
    return {name: np.load(out / f"{name}.npy") for name in ("ids", "pixels", "image_features", "text_features")}


def _check_parity(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(got["ids"], ref["ids"])
    assert got["pixels"].shape == ref["pixels"].shape
    assert np.abs(got["pixels"] - ref["pixels"]).max() <= 1e-5
    for name in ("image_features", "text_features"):
        diff = np.abs(got[name] - ref[name]).max()
        assert diff <= 1e-4, f"{name}: max abs diff {diff:.3g} > 1e-4"


def test_native_parity(native_cmd, tiny_gguf, images, reference, tmp_path):
    _check_parity(_outputs(native_cmd, tiny_gguf, images, tmp_path), reference)


@pytest.mark.parametrize("target", CROSS_TARGETS)
def test_cross_target_parity_under_qemu(target, tiny_gguf, images, reference, tmp_path):
    cmd = board_build.command(target)  # builds once per source state, then cached
    _check_parity(_outputs(cmd, tiny_gguf, images, tmp_path), reference)


@pytest.mark.skipif(
    "loongarch64-lasx" not in board_build.tested_targets(),
    reason="optional board build (linked, never run here): PMM_BOARD_TARGETS=all builds and checks it",
)
def test_loongarch_board_build_links():
    """The LSX/LASX build for real boards compiles and links (QEMU 7.2 cannot run it: checked, not run)."""
    head = board_build.build("loongarch64-lasx").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 258  # e_machine EM_LOONGARCH


def _ids_from_file(native_cmd, tiny_gguf, texts: list[str], tmp_path: Path) -> np.ndarray:
    text_file = tmp_path / "texts.txt"
    text_file.write_bytes("".join(t + "\n" for t in texts).encode("utf-8"))
    proc = run([*native_cmd, "--model", str(tiny_gguf), "--text-file", str(text_file), "--npy", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    return np.load(tmp_path / "ids.npy")


def test_tokenizer_equals_cn_clip_golden(native_cmd, tiny_gguf, tmp_path):
    cases = [c for c in json.loads(GOLDEN.read_text(encoding="ascii"))["cases"] if c["context_length"] == 52]
    # one text per line: newlines inside a text are whitespace, exactly like a space
    texts = [c["text"].replace("\n", " ").replace("\r", " ") for c in cases]
    ids = _ids_from_file(native_cmd, tiny_gguf, texts, tmp_path)
    expected = np.array([c["ids"] + [0] * (52 - len(c["ids"])) for c in cases])
    bad = [texts[i] for i in np.flatnonzero((ids != expected).any(axis=1))]
    assert len(cases) >= 300 and not bad, f"{len(bad)} texts differ, e.g. {bad[:3]!r}"


def test_tokenizer_random_unicode_equals_python(native_cmd, tiny_gguf, tmp_path):
    from paddle_mm.text import WordPieceTokenizer

    rng = random.Random(1234)
    pools = [range(0x80), range(0x80, 0x3000), range(0x3000, 0x3100), range(0x4E00, 0x4F00), range(0xF900, 0x10000)]
    pools += [range(0x1F300, 0x1F400), range(0x2000, 0x2070), range(0x370, 0x400), range(0x110000)]
    texts = []
    while len(texts) < 2000:
        cps = [rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 25))]
        text = "".join(chr(c) for c in cps if not 0xD800 <= c <= 0xDFFF and c not in (0, 10, 13))
        texts.append(text)
    ids = _ids_from_file(native_cmd, tiny_gguf, texts, tmp_path)
    expected = WordPieceTokenizer().encode_batch(texts)
    bad = [texts[i] for i in np.flatnonzero((ids != expected).any(axis=1))]
    assert not bad, f"{len(bad)}/{len(texts)} texts differ, e.g. {bad[:3]!r}"


def test_similarities_printed(native_cmd, tiny_gguf, images, reference):
    two_images = [str(images[0]), str(images[1])]
    proc = run([*native_cmd, "--model", str(tiny_gguf), "--image", *two_images, "--text", *TEXTS[:3]])
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert len(rows) == 6
    img = reference["image_features"][:2] / np.linalg.norm(reference["image_features"][:2], axis=1, keepdims=True)
    txt = reference["text_features"][:3] / np.linalg.norm(reference["text_features"][:3], axis=1, keepdims=True)
    logits = reference["logit_scale"] * img @ txt.T
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for k, (_, text, cosine, prob) in enumerate(rows):
        i, t = divmod(k, 3)
        assert text == TEXTS[t]
        assert abs(float(cosine.split()[1]) - (img @ txt.T)[i, t]) < 1e-3
        assert abs(float(prob.split()[1]) - probs[i, t]) < 1e-3


def test_errors_are_one_line_with_exit_codes(native_cmd, tiny_gguf, tmp_path):
    bad_image = tmp_path / "bad.png"
    bad_image.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"GGUF but not really")
    cases = [
        ([], 2, "--model is required"),
        (["--model", str(tiny_gguf)], 2, "give --image and/or --text"),
        (["--model", str(tmp_path / "missing.gguf"), "--text", "x"], 3, "missing.gguf"),
        (["--model", str(not_gguf), "--text", "x"], 3, "convert the model with tools/export_gguf.py"),
        (["--model", str(tiny_gguf), "--image", str(bad_image)], 4, "bad.png"),
        (["--model", str(tiny_gguf), "--text", "x", "--frobnicate"], 2, "--frobnicate"),
    ]
    for args, code, needle in cases:
        proc = run([*native_cmd, *args])
        assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        assert proc.stderr.startswith("error: ") and needle in proc.stderr.splitlines()[0], proc.stderr
