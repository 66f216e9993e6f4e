"""tools/make_data.py and tools/folder_to_tsv.py, run as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from paddle_mm.data.datasets import load_corpus

REPO = Path(__file__).resolve().parents[2]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_make_data_cli_writes_both_formats(tmp_path):
    for fmt in ("tsv", "folder"):
        out = tmp_path / fmt
        done = run_tool(
            "tools/make_data.py",
            "--out",
            str(out),
            "--format",
            fmt,
            "--seed",
            "1",
            "--train",
            "30",
            "--valid",
            "10",
            "--test",
            "0",
            "--image-size",
            "48",
            "--corrupt",
            "2",
        )
        assert done.returncode == 0, done.stderr
        (summary,) = done.stdout.strip().splitlines()
        assert summary.startswith(f"wrote {fmt} to {out} in ") and "train 30 images/" in summary
        assert "2 corrupt" in summary and "valid 10 images/" in summary and "; test " not in summary
        corpus = load_corpus(out, "valid")
        assert len(corpus.images) == 10 and not corpus.report
    assert (tmp_path / "tsv" / "train_imgs.tsv").is_file() and (tmp_path / "folder" / "train" / "images").is_dir()
    assert load_corpus(tmp_path / "tsv", "valid").texts == load_corpus(tmp_path / "folder", "valid").texts


def test_make_data_cli_rejects_bad_arguments(tmp_path):
    done = run_tool("tools/make_data.py", "--out", str(tmp_path), "--train", "-1")
    assert done.returncode == 2 and "--train must be 0 or more, got -1" in done.stderr
    done = run_tool(
        "tools/make_data.py", "--out", str(tmp_path), "--train", "3", "--valid", "0", "--test", "0", "--corrupt", "9"
    )
    assert done.returncode != 0 and "--corrupt 9 is more than the 3 images" in done.stderr


def test_folder_to_tsv_round_trip(shapes_folder, tmp_path):
    src = shapes_folder[0]
    done = run_tool(
        "tools/folder_to_tsv.py",
        "--images",
        str(src / "train" / "images"),
        "--texts",
        str(src / "train" / "texts.jsonl"),
        "--out",
        str(tmp_path),
        "--split",
        "train",
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 240 images and" in done.stdout and "0 unreadable images skipped" in done.stdout
    folder, tsv = load_corpus(src, "train"), load_corpus(tmp_path, "train")
    assert tsv.images == folder.images and tsv.texts == folder.texts and not tsv.report
    assert all(tsv.read_image_bytes(i) == folder.read_image_bytes(i) for i in folder.images)


def test_folder_to_tsv_skips_unreadable_images(tmp_path):
    images = tmp_path / "src" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(images / "1.jpg", quality=90)
    (images / "2.png").write_bytes(b"")
    (images / "3.jpg").write_bytes(b"\xff\xd8 not a JPEG: left out, not copied")
    (tmp_path / "src" / "texts.jsonl").write_text(
        '{"text_id": 1, "text": "一只猫", "image_ids": [1, 2]}\nnot json\n', encoding="utf-8"
    )
    done = run_tool(
        "tools/folder_to_tsv.py",
        "--images",
        str(images),
        "--texts",
        str(tmp_path / "src" / "texts.jsonl"),
        "--out",
        str(tmp_path / "out"),
        "--split",
        "valid",
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 1 images and 1 texts" in done.stdout and "2 unreadable images skipped, 1 load problems" in done.stdout
    warnings, summary = done.stdout.split("wrote 1 images")  # every warning before the summary
    assert "skipped image 2" in warnings and "3.jpg is corrupt" in warnings and "line 2: not JSON" in warnings
    corpus = load_corpus(tmp_path / "out", "valid")
    assert corpus.read_image_bytes(1) == (images / "1.jpg").read_bytes()  # copied unchanged
    assert corpus.missing_image_ids == {2}  # the text still lists it, and the reader reports it
    done = run_tool("tools/folder_to_tsv.py", "--images", str(tmp_path / "nope"), "--texts", "x", "--out", "y")
    assert done.returncode == 3 and "image folder" in done.stderr and "nope" in done.stderr  # a data error
