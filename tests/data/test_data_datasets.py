"""ImageTextCorpus / PairDataset / ImageDataset / TextDataset on both formats and on broken data."""

from __future__ import annotations

import base64
import json
import logging
import multiprocessing
import os
import pickle
import sys

import numpy as np
import pytest

from paddle_mm.data.datasets import (
    ImageDataset,
    ImageReadError,
    ImageTextCorpus,
    PairDataset,
    TextDataset,
    TextRecord,
    load_corpus,
)
from paddle_mm.data.writers import write_imgs_tsv, write_texts_jsonl
from paddle_mm.demo.shapes import Scene, Style, encode_png, render_scene
from tests.data.toys import char_tokenizer, local_transform


def png(seed: int) -> bytes:
    """A small valid PNG whose pixels depend on ``seed``."""
    img = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return encode_png(img)


def test_import_does_not_import_paddle():
    code = "import sys, paddle_mm.data, paddle_mm.data.datasets, paddle_mm.data.collate; print('paddle' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_both_formats_load_to_the_same_corpus(shapes_tsv, shapes_folder):
    for split in ("train", "valid"):
        a = load_corpus(shapes_tsv[0], split)
        b = load_corpus(shapes_folder[0], split)
        assert a.images == b.images and len(a.images) == {"train": 240, "valid": 60}[split]
        assert a.texts == b.texts and all(isinstance(t, TextRecord) for t in a.texts)
        assert not a.report and not b.report
        for image_id in a.images:
            assert a.read_image_bytes(image_id) == b.read_image_bytes(image_id)
            assert a.read_image_bytes(image_id)[:8] == b"\x89PNG\r\n\x1a\n"


def test_tsv_reader_seeks_by_offset(tmp_path):
    images = {5: png(5), 3: png(3), 11: png(11), 7: png(7)}
    lines = [
        b"5\t" + base64.b64encode(images[5]) + b"\r\n",  # CRLF line ending
        b"\n",  # blank line
        b"3\t" + base64.urlsafe_b64encode(images[3]) + b"\n",  # urlsafe alphabet, as cn_clip decodes
        b"11\t" + base64.b64encode(images[11]) + b"\n",
        b"7\t" + base64.b64encode(images[7]),
    ]  # no final newline
    (tmp_path / "x_imgs.tsv").write_bytes(b"".join(lines))
    write_texts_jsonl(tmp_path / "x_texts.jsonl", [(1, "一个", [5, 3]), (2, "两个", [11, 7])])
    corpus = load_corpus(tmp_path, "x")
    assert corpus.images == [5, 3, 11, 7]
    for image_id, data in images.items():
        assert corpus.read_image_bytes(image_id) == data
    # only offsets are held, no image data
    index = corpus._images.index
    assert all(isinstance(v, tuple) and all(isinstance(x, int) for x in v) for v in index.values())
    assert index[3][2] == 3 and index[7][2] == 5  # line numbers
    assert corpus.describe_image(11) == f"{tmp_path / 'x_imgs.tsv'}, line 4"


def test_tsv_reader_without_pread(tmp_path, monkeypatch):
    """The seek + read path used where os.pread does not exist (Windows)."""
    write_imgs_tsv(tmp_path / "x_imgs.tsv", [(i, png(i)) for i in range(6)])
    write_texts_jsonl(tmp_path / "x_texts.jsonl", [(1, "文本", [0, 5])])
    monkeypatch.delattr(os, "pread")
    corpus = load_corpus(tmp_path, "x")
    assert [corpus.read_image_bytes(i) for i in (5, 0, 3)] == [png(5), png(0), png(3)]


def _read_all_in_child(corpus, ids, queue):
    data = {i: corpus.read_image_bytes(i) for i in ids}
    queue.put((data, corpus._images._pid == os.getpid()))


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_tsv_reader_reopens_its_file_in_a_forked_child(shapes_tsv):
    corpus = load_corpus(shapes_tsv[0], "valid")
    expected = {i: corpus.read_image_bytes(i) for i in corpus.images}  # parent's handle is open now
    parent_handle = corpus._images._handle
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_read_all_in_child, args=(corpus, corpus.images[k::2], queue)) for k in (0, 1)]
    for child in children:
        child.start()
    got = {}
    for _ in children:
        data, reopened = queue.get(timeout=60)
        got.update(data)
        assert reopened  # the child opened its own handle instead of using the parent's
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert got == expected
    assert corpus._images._handle is parent_handle and not parent_handle.closed
    clone = pickle.loads(pickle.dumps(corpus))  # spawn-style workers get a pickled copy
    assert clone._images._handle is None
    assert clone.read_image_bytes(corpus.images[-1]) == expected[corpus.images[-1]]


def test_malformed_text_lines_are_skipped_and_counted(tmp_path, caplog):
    write_imgs_tsv(tmp_path / "x_imgs.tsv", [(1, png(1)), (2, png(2))])
    lines = [
        json.dumps({"text_id": 10, "text": "左上角有一个红色的圆形", "image_ids": [1]}, ensure_ascii=False),
        "{not json",
        "",
        json.dumps([1, 2]),
        json.dumps({"text_id": "11", "text": "x", "image_ids": [1]}),
        json.dumps({"text_id": 12, "text": "x", "image_ids": "1"}),
        json.dumps({"text_id": 13, "text": None, "image_ids": [1]}),
        json.dumps({"text_id": 10, "text": "重复", "image_ids": [2]}, ensure_ascii=False),
        json.dumps({"text_id": 14, "text": "测试集文本", "image_ids": []}, ensure_ascii=False),
        json.dumps({"text_id": 15, "text": "没有 image_ids 键"}, ensure_ascii=False),
        json.dumps({"text_id": 16, "text": "右下角", "image_ids": [2, True]}, ensure_ascii=False),
    ]
    (tmp_path / "x_texts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="paddle_mm.data.datasets"):
        corpus = load_corpus(tmp_path, "x", format="tsv")
    assert [t.text_id for t in corpus.texts] == [10, 14, 15]
    assert corpus.texts[2] == TextRecord(15, "没有 image_ids 键", [])
    assert corpus.report.counts == {"malformed text lines": 6, "duplicate text ids": 1}
    assert [m.split(":")[0] for m in corpus.report.messages] == [
        "x_texts.jsonl line 2",
        "x_texts.jsonl line 4",
        "x_texts.jsonl line 5",
        "x_texts.jsonl line 6",
        "x_texts.jsonl line 7",
    ]  # the first five
    assert "text_id must be an integer, got '11'" in corpus.report.messages[2]
    (record,) = caplog.records
    assert "6 malformed text lines" in record.getMessage() and "1 duplicate text ids" in record.getMessage()


def test_duplicate_ids_bad_lines_and_missing_images_in_tsv(tmp_path):
    payloads = [
        b"1\t" + base64.b64encode(png(1)),
        b"2\t" + base64.b64encode(png(2)),
        b"1\t" + base64.b64encode(png(99)),  # duplicate id: the first wins
        b"no tab on this line",
        b"abc\tAAAA",
        b"4\t@@@not base64@@@",
        b"5\t",
        b"6\t" + base64.b64encode(b"junk"),
    ]
    (tmp_path / "x_imgs.tsv").write_bytes(b"\n".join(payloads) + b"\n")
    write_texts_jsonl(tmp_path / "x_texts.jsonl", [(1, "a", [1, 2]), (2, "b", [4, 404]), (3, "c", [5, 6, 404, 405])])
    corpus = load_corpus(tmp_path, "x")
    assert corpus.images == [1, 2, 4, 5, 6]
    assert corpus.read_image_bytes(1) == png(1)
    assert corpus.report.counts == {
        "duplicate image ids": 1,
        "malformed image lines": 2,
        "references to missing images": 3,
    }
    assert corpus.missing_image_ids == {404, 405}
    assert "2 image ids listed by texts have no image, e.g. [404, 405]" in corpus.report.summary()
    assert "line 3: image id 1 already on line 1" in corpus.report.summary()
    assert "x_imgs.tsv line 4" in corpus.report.summary() and "x_imgs.tsv line 5" in corpus.report.summary()

    with pytest.raises(ImageReadError, match=r"image 404 is not in") as err:
        corpus.read_image_bytes(404)
    assert err.value.kind == "missing" and err.value.image_id == 404
    with pytest.raises(ImageReadError, match=r"image 4 \(.*x_imgs.tsv, line 6\): invalid base64") as err:
        corpus.read_image_bytes(4)
    assert err.value.kind == "bad_base64"
    with pytest.raises(ImageReadError, match=r"image 5 \(.*line 7\) has no image data") as err:
        corpus.read_image_bytes(5)
    assert err.value.kind == "empty"
    assert corpus.read_image_bytes(6) == b"junk"  # readable bytes; decoding is the transform's job


def test_folder_format_finds_any_extension_and_reports_bad_names(tmp_path):
    images = tmp_path / "s" / "images"
    images.mkdir(parents=True)
    (images / "1.png").write_bytes(png(1))
    (images / "2.JPG").write_bytes(b"jpeg bytes are not checked here")
    (images / "3.webp").write_bytes(png(3))
    (images / "3.png").write_bytes(png(4))  # duplicate id
    (images / "cat.png").write_bytes(png(5))  # not an integer id
    (images / "notes.txt").write_text("ignored")
    (images / "4.png").write_bytes(b"")
    write_texts_jsonl(tmp_path / "s" / "texts.jsonl", [(1, "a", [1, 2, 3, 4])])
    corpus = load_corpus(tmp_path, "s")
    assert corpus.images == [1, 2, 3, 4]
    assert corpus.read_image_bytes(3) == png(4)  # sorted names: 3.png before 3.webp
    assert corpus.read_image_bytes(2) == b"jpeg bytes are not checked here"
    assert corpus.report.counts == {"duplicate image ids": 1, "image files without an integer id": 1}
    with pytest.raises(ImageReadError, match="empty file") as err:
        corpus.read_image_bytes(4)
    assert err.value.kind == "empty"
    (images / "1.png").unlink()  # removed after loading
    with pytest.raises(ImageReadError, match=r"image 1 \(.*1.png\)") as err:
        corpus.read_image_bytes(1)
    assert err.value.kind == "unreadable"


def test_load_corpus_format_detection_errors(tmp_path, shapes_tsv):
    with pytest.raises(FileNotFoundError, match="found neither layout for split 'train'.*format='tsv' or 'folder'"):
        load_corpus(tmp_path, "train")
    root = shapes_tsv[0]
    with pytest.raises(ValueError, match="unknown format 'parquet'; use 'tsv', 'folder', 'lmdb' or 'auto'"):
        load_corpus(root, "train", format="parquet")
    with pytest.raises(FileNotFoundError, match="no LMDB split 'train'.*tools/build_lmdb.py"):
        load_corpus(root, "train", format="lmdb")
    with pytest.raises(FileNotFoundError, match="train/images"):
        load_corpus(root, "train", format="folder")
    assert load_corpus(root, "train", format="tsv").images == load_corpus(root, "train").images


def test_pair_dataset_items(shapes_tsv):
    corpus = load_corpus(shapes_tsv[0], "valid")
    dataset = PairDataset(corpus, local_transform, char_tokenizer)
    assert len(dataset) == sum(len(t.image_ids) for t in corpus.texts) >= len(corpus.texts)
    expected_pairs = [(t.text_id, i) for t in corpus.texts for i in t.image_ids]
    assert [dataset.pair(k) for k in range(len(dataset))] == expected_pairs
    for k in (0, len(dataset) // 2, len(dataset) - 1):
        item = dataset[k]
        text_id, image_id = dataset.pair(k)
        text = next(t.text for t in corpus.texts if t.text_id == text_id)
        assert set(item) == {"pixel_values", "input_ids", "index"} and item["index"] == k
        assert item["pixel_values"].dtype == np.float32 and item["pixel_values"].shape == (3, 32, 32)
        np.testing.assert_array_equal(item["pixel_values"], local_transform(corpus.read_image_bytes(image_id)))
        assert item["input_ids"].dtype == np.int64
        np.testing.assert_array_equal(item["input_ids"], char_tokenizer([text])[0])
    assert dataset[-1]["index"] == len(dataset) - 1
    with pytest.raises(IndexError, match=f"index {len(dataset)} out of range"):
        dataset[len(dataset)]


def test_datasets_return_bad_items_instead_of_raising(tmp_path):
    good = png(1)
    write_imgs_tsv(tmp_path / "x_imgs.tsv", [(1, good), (2, good[:30]), (3, "%%%"), (4, b"")])
    write_texts_jsonl(tmp_path / "x_texts.jsonl", [(10, "好", [1, 2]), (11, "坏", [3, 4, 9])])
    corpus = load_corpus(tmp_path, "x")
    pairs = PairDataset(corpus, local_transform, char_tokenizer)
    items = [pairs[k] for k in range(len(pairs))]
    assert "pixel_values" in items[0]
    reasons = [item.get("bad") for item in items]
    assert reasons[0] is None
    assert reasons[1].startswith("undecodable: image 2 (") and "line 2" in reasons[1]
    assert reasons[2].startswith("bad_base64: image 3 (") and "line 3" in reasons[2]
    assert reasons[3].startswith("empty: image 4 (")
    assert reasons[4].startswith("missing: image 9 is not in")
    assert [set(item) for item in items[1:]] == [{"bad", "index"}] * 4
    images = ImageDataset(corpus, local_transform)
    assert [images[k].get("image_id") for k in range(len(images))] == [1, None, None, None]
    assert images[1]["bad"].startswith("undecodable: image 2")
    texts = TextDataset(corpus, char_tokenizer)
    assert [texts[k]["text_id"] for k in range(len(texts))] == [10, 11]
    assert texts.ground_truth() == {10: [1, 2], 11: [3, 4, 9]}


def test_cached_pairs_equal_uncached_items_and_batches(tmp_path):
    """PairDataset.cache() (DataLoader.Train.loader.cache) gives the same items, and batch() what collate_skip_bad
    makes of them: pixels bit for bit, bad images with the same reasons, in any order of indices."""
    from paddle_mm.data.collate import collate_skip_bad
    from paddle_mm.vision.transforms import ImageTransform

    write_imgs_tsv(tmp_path / "x_imgs.tsv", [*((k, png(k)) for k in range(1, 6)), (6, png(6)[:30])])
    write_texts_jsonl(tmp_path / "x_texts.jsonl", [(10, "红", [1, 2]), (11, "蓝色", [3, 6]), (12, "绿", [4, 5, 9])])
    corpus = load_corpus(tmp_path, "x")
    plain = PairDataset(corpus, ImageTransform(16), char_tokenizer)
    cached = PairDataset(corpus, ImageTransform(16), char_tokenizer).cache()
    assert cached.cached.images.shape == (7, 3, 16, 16)  # one uint8 copy per image id (9: missing), not per pair
    for k in range(len(plain)):
        want, got = plain[k], cached[k]
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    for indices in ([0, 3, 1, 6], [3, 6], [6], list(range(len(plain)))[::-1]):
        want, got = collate_skip_bad([plain[i] for i in indices]), cached.batch(indices)
        assert list(want) == list(got), indices
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
            assert np.asarray(got[key]).dtype == np.asarray(want[key]).dtype, key
    assert cached.batch([3, 6])["bad_reasons"][0].startswith("undecodable: image 6 (")
    with pytest.raises(TypeError, match="cannot cache images through function: it needs resize"):
        PairDataset(corpus, local_transform, char_tokenizer).cache()
    with pytest.raises(RuntimeError, match="call cache"):
        plain.batch([0])


def test_transform_errors_other_than_value_error_propagate(tmp_path):
    """Only decoding failures (ValueError) make a bad sample; a bug in the transform must not be hidden."""
    write_imgs_tsv(tmp_path / "x_imgs.tsv", [(1, png(1))])
    write_texts_jsonl(tmp_path / "x_texts.jsonl", [(10, "好", [1])])

    def broken(data: bytes) -> np.ndarray:
        raise TypeError("bug in the transform")

    with pytest.raises(TypeError, match="bug in the transform"):
        PairDataset(load_corpus(tmp_path, "x"), broken, char_tokenizer)[0]


def test_corpus_from_paths_has_a_readable_repr(tmp_path):
    scene = Scene(1, 0, "base", (), Style((128, 128, 128), "plain", 0, ((0, 0),) * 9, ((0, 0, 0),) * 9))
    write_imgs_tsv(tmp_path / "a.tsv", [(1, encode_png(render_scene(scene, 32)))])
    write_texts_jsonl(tmp_path / "b.jsonl", [(1, "空白", [1])])
    corpus = ImageTextCorpus.from_tsv(tmp_path / "a.tsv", tmp_path / "b.jsonl", name="mine")
    assert repr(corpus) == "ImageTextCorpus('mine', 1 images, 1 texts)"
    assert local_transform(corpus.read_image_bytes(1)).shape == (3, 32, 32)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        ImageTextCorpus.from_tsv(tmp_path / "a.tsv", tmp_path / "nope.jsonl")
