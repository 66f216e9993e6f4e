"""Chinese-CLIP LMDB datasets: our writer vs their reader, their writer vs our reader, map size, safe unpickling."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

lmdb = pytest.importorskip("lmdb", reason="LMDB support needs the lmdb package (pip install lmdb)")

from paddle_mm.data.datasets import ImageReadError, PairDataset, load_corpus  # noqa: E402
from paddle_mm.data.lmdb_reader import (  # noqa: E402
    _initial_map_size,
    corpus_pairs,
    decode_pair,
    load_lmdb_corpus,
    open_readonly,
    readonly_map_size,
    write_lmdb_split,
)
from paddle_mm.data.writers import encode_image_field  # noqa: E402
from paddle_mm.demo.shapes import make_dataset  # noqa: E402
from tests.conftest import run_tool  # noqa: E402
from tests.data.toys import char_tokenizer, local_transform  # noqa: E402


@pytest.fixture(scope="module")
def tsv_data(tmp_path_factory) -> Path:
    """train: 40 images, 2 of them corrupt (bad base64 / empty / ... as the generator picks)."""
    root = tmp_path_factory.mktemp("lmdb_src")
    make_dataset(root, {"train": 40, "valid": 12}, "tsv", seed=4, image_size=32, corrupt=2, corrupt_split="train")
    return root


@pytest.fixture(scope="module")
def built(tsv_data) -> Path:
    proc = run_tool("build_lmdb.py", "--data_dir", str(tsv_data), "--splits", "train,valid")
    assert proc.returncode == 0, proc.stderr
    return tsv_data / "lmdb"


def cn_clip_build_lmdb(data_dir: Path, split: str, lmdb_dir: Path, map_size: int) -> None:
    """cn_clip/preprocess/build_lmdb_dataset.py's loop for one split (map_size 1 TB there; smaller here)."""
    lmdb_split_dir = os.path.join(lmdb_dir, split)
    os.makedirs(lmdb_split_dir, exist_ok=True)
    env_img = lmdb.open(os.path.join(lmdb_split_dir, "imgs"), map_size=map_size)
    txn_img = env_img.begin(write=True)
    env_pairs = lmdb.open(os.path.join(lmdb_split_dir, "pairs"), map_size=map_size)
    txn_pairs = env_pairs.begin(write=True)
    with open(os.path.join(data_dir, f"{split}_texts.jsonl"), encoding="utf-8") as fin_pairs:
        write_idx = 0
        for line in fin_pairs:
            obj = json.loads(line.strip())
            for image_id in obj["image_ids"]:
                dump = pickle.dumps((image_id, obj["text_id"], obj["text"]))
                txn_pairs.put(key=f"{write_idx}".encode("utf-8"), value=dump)
                write_idx += 1
        txn_pairs.put(key=b"num_samples", value=f"{write_idx}".encode("utf-8"))
        txn_pairs.commit()
        env_pairs.close()
    with open(os.path.join(data_dir, f"{split}_imgs.tsv"), encoding="utf-8") as fin_imgs:
        write_idx = 0
        for line in fin_imgs:
            image_id, b64 = line.strip().split("\t")
            txn_img.put(key=f"{image_id}".encode("utf-8"), value=b64.encode("utf-8"))
            write_idx += 1
        txn_img.put(key=b"num_images", value=f"{write_idx}".encode("utf-8"))
        txn_img.commit()
        env_img.close()


def test_lmdb_corpus_equals_the_tsv_corpus(built, tsv_data):
    tsv = load_corpus(tsv_data, "valid", "tsv")
    lm = load_lmdb_corpus(tsv_data, "valid")
    assert sorted(lm.images) == sorted(tsv.images) and len(lm.images) == 12
    assert lm.texts == tsv.texts  # same records, same (jsonl) order, although LMDB keys sort "10" < "2"
    for image_id in tsv.images:
        assert lm.read_image_bytes(image_id) == tsv.read_image_bytes(image_id)
    assert str(built / "valid" / "imgs") in lm.describe_image(tsv.images[0])
    assert not lm.report
    assert load_lmdb_corpus(built, "valid").texts == lm.texts  # the lmdb folder itself works as root too


def test_unreadable_images_are_left_out_and_pairs_kept(built, tsv_data):
    tsv = load_corpus(tsv_data, "train", "tsv")
    lm = load_lmdb_corpus(tsv_data, "train")
    unreadable = {i for i in tsv.images if _read_error(tsv, i)}
    assert set(lm.images) == set(tsv.images) - unreadable
    assert lm.texts == tsv.texts  # pairs of left-out images stay, as cn_clip keeps them
    ours, theirs = PairDataset(lm, local_transform, char_tokenizer), PairDataset(tsv, local_transform, char_tokenizer)
    bad_lmdb = [i for i in range(len(ours)) if "bad" in ours[i]]
    bad_tsv = [i for i in range(len(theirs)) if "bad" in theirs[i]]
    assert bad_lmdb == bad_tsv and 0 < len(bad_tsv) < len(theirs)  # the 2 corrupt images, whatever their kind
    good = ours[next(i for i in range(len(ours)) if i not in bad_lmdb)]
    assert good["pixel_values"].shape == (3, 32, 32)


def _read_error(corpus, image_id) -> bool:
    try:
        corpus.read_image_bytes(image_id)
    except ImageReadError:
        return True
    return False


def test_cn_clip_reader_logic_reads_what_we_wrote(built, tsv_data, tmp_path):
    """cn_clip/training/data.py LMDBDataset.__getitem__ (their open arguments, pickle.loads, urlsafe base64)."""
    shutil.copytree(built / "valid", tmp_path / "valid")  # a copy: lmdb opens one directory once per process
    built = tmp_path
    env_pairs = lmdb.open(
        str(built / "valid" / "pairs"), readonly=True, create=False, lock=False, readahead=False, meminit=False
    )
    env_imgs = lmdb.open(
        str(built / "valid" / "imgs"), readonly=True, create=False, lock=False, readahead=False, meminit=False
    )
    txn_pairs, txn_imgs = env_pairs.begin(buffers=True), env_imgs.begin(buffers=True)
    number_samples = int(txn_pairs.get(key=b"num_samples").tobytes().decode("utf-8"))
    tsv = load_corpus(tsv_data, "valid", "tsv")
    expected = expected_pairs(tsv)
    assert number_samples == len(expected)
    for sample_index in range(number_samples):
        pair = pickle.loads(txn_pairs.get(f"{sample_index}".encode("utf-8")).tobytes())
        assert pair == expected[sample_index]
        image_b64 = txn_imgs.get(f"{pair[0]}".encode("utf-8")).tobytes().decode(encoding="utf8", errors="ignore")
        assert base64.urlsafe_b64decode(image_b64) == tsv.read_image_bytes(pair[0])
    assert int(txn_imgs.get(key=b"num_images").tobytes().decode("utf-8")) == 12
    env_pairs.close()
    env_imgs.close()


def test_we_read_what_cn_clip_wrote(tsv_data, tmp_path):
    cn_clip_build_lmdb(tsv_data, "valid", tmp_path / "lmdb", map_size=64 << 20)
    ours = load_lmdb_corpus(tmp_path, "valid")
    tsv = load_corpus(tsv_data, "valid", "tsv")
    assert ours.texts == tsv.texts and sorted(ours.images) == sorted(tsv.images) and not ours.report
    assert all(ours.read_image_bytes(i) == tsv.read_image_bytes(i) for i in tsv.images)


def test_maps_are_sized_from_the_data_not_1_tb(built, tsv_data, tmp_path, monkeypatch):
    for env_dir in (built / "train" / "imgs", built / "train" / "pairs"):
        size = (env_dir / "data.mdb").stat().st_size
        assert size < 32 << 20  # cn_clip's writer maps 1 TB, which Windows allocates on disk (#281)
        assert size <= open_readonly(env_dir).info()["map_size"] == readonly_map_size(env_dir) <= size + (1 << 20)
    # a first estimate far too small (16 KiB for ~36 KiB of images): the writer grows the map instead of failing
    monkeypatch.setattr("paddle_mm.data.lmdb_reader._initial_map_size", lambda payload, n: 16 << 10)
    tsv = load_corpus(tsv_data, "valid", "tsv")
    images = ((i, encode_image_field(tsv.read_image_bytes(i))) for i in tsv.images)
    assert write_lmdb_split(tmp_path / "valid", images, corpus_pairs(tsv.texts), 0) == (12, len(expected_pairs(tsv)))
    assert (tmp_path / "valid" / "imgs" / "data.mdb").stat().st_size > 16 << 10  # it did have to grow
    grown = load_lmdb_corpus(tmp_path, "valid")
    assert grown.texts == tsv.texts and sorted(grown.images) == sorted(tsv.images)
    assert _initial_map_size(10 << 20, 100) > 10 << 20


def expected_pairs(corpus) -> list[tuple[int, int, str]]:
    return [(i, t.text_id, t.text) for t in corpus.texts for i in t.image_ids]


def test_pair_records_never_run_code(tmp_path, built):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with pytest.raises(ValueError, match="refusing global"):
        decode_pair(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match=r"expected \(image_id: int, text_id: int, text: str\)"):
        decode_pair(pickle.dumps((1, "2", "text")))
    # the same record inside an LMDB: skipped and counted, nothing executed
    shutil.copytree(built / "valid", tmp_path / "lmdb" / "valid")
    with lmdb.open(str(tmp_path / "lmdb" / "valid" / "pairs"), map_size=64 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"0", pickle.dumps(Evil()))
    corpus = load_lmdb_corpus(tmp_path, "valid")
    assert not marker.exists()
    assert corpus.report.counts["malformed pairs"] == 1 and "refusing global" in corpus.report.summary()


def test_missing_split_names_both_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="tools/build_lmdb.py"):
        load_lmdb_corpus(tmp_path, "train")


def test_corpus_survives_pickling_for_dataloader_workers(built, tsv_data):
    corpus = load_lmdb_corpus(tsv_data, "valid")
    image_id = corpus.images[0]
    first = corpus.read_image_bytes(image_id)  # opens the environment in this process
    clone = pickle.loads(pickle.dumps(corpus))
    assert clone.read_image_bytes(image_id) == first
