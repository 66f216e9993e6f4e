"""Readers and folder_to_tsv: a UTF-8 BOM drops no record, non-UTF-8 bytes are counted (never U+FFFD), GIF is read."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from paddle_mm.data.datasets import load_corpus

REPO = Path(__file__).resolve().parents[2]
BOM = "\ufeff"


def png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def text_line(text_id: int, text: str) -> str:
    return json.dumps({"text_id": text_id, "text": text, "image_ids": [text_id]}, ensure_ascii=False)


def write_split(root: Path, texts: bytes, bom_in_tsv: bool = False) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tsv = "".join(f"{i}\t{base64.b64encode(png('red')).decode()}\n" for i in (1, 2))
    (root / "valid_imgs.tsv").write_text((BOM if bom_in_tsv else "") + tsv, encoding="utf-8")
    (root / "valid_texts.jsonl").write_bytes(texts)


def test_a_bom_keeps_the_first_record_of_the_tsv_and_the_jsonl(tmp_path):
    texts = (BOM + text_line(1, "红色的圆") + "\n" + text_line(2, "蓝色的方块") + "\n").encode("utf-8")
    write_split(tmp_path, texts, bom_in_tsv=True)
    corpus = load_corpus(tmp_path, "valid")
    assert [t.text_id for t in corpus.texts] == [1, 2] and corpus.texts[0].text == "红色的圆"
    assert corpus.images == [1, 2] and corpus.read_image_bytes(1) == png("red")
    assert not corpus.report


def test_non_utf8_lines_are_counted_not_replaced(tmp_path):
    gbk = text_line(2, "蓝色的方块").encode("gbk")  # a file saved in GBK by mistake
    write_split(tmp_path, (text_line(1, "红色的圆") + "\n").encode("utf-8") + gbk + b"\n")
    corpus = load_corpus(tmp_path, "valid")
    assert [t.text for t in corpus.texts] == ["红色的圆"]
    assert corpus.report.counts["malformed text lines"] == 1
    assert "line 2: not UTF-8" in corpus.report.summary()
    assert all("\ufffd" not in t.text for t in corpus.texts)


def test_folder_to_tsv_reads_gif(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8), "blue").save(images / "1.gif")
    (tmp_path / "texts.jsonl").write_text(BOM + text_line(1, "蓝色") + "\n", encoding="utf-8")
    args = ["--images", str(images), "--texts", str(tmp_path / "texts.jsonl"), "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, str(REPO / "tools/folder_to_tsv.py"), *args, "--split", "valid"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 1 images and 1 texts" in done.stdout and "0 load problems" in done.stdout, done.stdout
    corpus = load_corpus(tmp_path / "out", "valid")
    assert corpus.read_image_bytes(1) == (images / "1.gif").read_bytes() and not corpus.missing_image_ids
