"""collate_skip_bad and BadSampleCounter, alone and through a real paddle.io.DataLoader with workers."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mm.data.collate import BadSampleCounter, collate_skip_bad
from paddle_mm.data.datasets import PairDataset, load_corpus
from paddle_mm.demo.shapes import make_dataset
from tests.data.toys import char_tokenizer, local_transform


def good(i: int) -> dict:
    return {
        "pixel_values": np.full((3, 2, 2), i, np.float32),
        "input_ids": np.arange(4, dtype=np.int64) + i,
        "index": i,
    }


def test_collate_stacks_good_samples_and_reports_bad_ones():
    batch = [
        good(0),
        {"bad": "missing: image 7 is not in x", "index": 1},
        good(2),
        {"bad": "undecodable: image 8 (x, line 3): cannot decode", "index": 3},
    ]
    out = collate_skip_bad(batch)
    assert out["pixel_values"].shape == (2, 3, 2, 2) and out["pixel_values"].dtype == np.float32
    np.testing.assert_array_equal(out["pixel_values"][:, 0, 0, 0], [0, 2])
    np.testing.assert_array_equal(out["input_ids"], [[0, 1, 2, 3], [2, 3, 4, 5]])
    assert out["input_ids"].dtype == np.int64 and out["index"].tolist() == [0, 2]
    assert (out["n_good"], out["n_bad"], out["bad_index"]) == (2, 2, [1, 3])
    assert out["bad_reasons"] == ["missing: image 7 is not in x", "undecodable: image 8 (x, line 3): cannot decode"]


def test_all_bad_batch_gives_empty_arrays():
    out = collate_skip_bad([{"bad": "empty: image 1", "index": 5}, {"bad": "empty: image 2", "index": 6}])
    assert out["index"].shape == (0,) and out["index"].dtype == np.int64
    assert "pixel_values" not in out
    assert (out["n_good"], out["n_bad"], out["bad_index"]) == (0, 2, [5, 6])


def test_collate_rejects_inconsistent_samples():
    odd = good(1)
    odd["pixel_values"] = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"cannot stack 'pixel_values': shapes \[\(3, 2, 2\), \(3, 4, 4\)\]"):
        collate_skip_bad([good(0), odd])
    with pytest.raises(ValueError, match="different keys"):
        collate_skip_bad([good(0), {"index": 1}])


def test_counter_summary():
    counter = BadSampleCounter(max_examples=2)
    assert counter.summary() == "skipped 0 of 0 samples"
    counter.update(collate_skip_bad([good(0), {"bad": "undecodable: image 3 (f, line 4): x", "index": 1}]))
    counter.update(
        collate_skip_bad(
            [
                {"bad": "undecodable: image 3 (f, line 4): x", "index": 7},  # same image, another text
                {"bad": "missing: image 9 is not in f", "index": 2},
                {"bad": "undecodable: image 5 (f, line 6): y", "index": 3},
                good(4),
                good(5),
            ]
        )
    )
    assert (counter.n_seen, counter.n_bad) == (7, 4)
    assert counter.summary() == (
        "skipped 4 of 7 samples: 3 undecodable images, 1 missing image; first: "
        "undecodable: image 3 (f, line 4): x | missing: image 9 is not in f"
    )
    with pytest.raises(ValueError, match="n_bad=2 but lists 1"):
        counter.update({"n_good": 0, "n_bad": 2, "bad_reasons": ["x"]})
    counter.reset()
    assert counter.summary() == "skipped 0 of 0 samples"


@pytest.fixture(scope="module")
def corrupt_tsv(tmp_path_factory):
    """80 training images, 4 of them corrupt (truncated, garbage, bad base64, empty) and 1 missing."""
    root = tmp_path_factory.mktemp("corrupt")
    stats = make_dataset(root, {"train": 80}, "tsv", seed=5, corrupt=5)
    return root, stats[0].corrupt


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_skips_and_counts_bad_samples(corrupt_tsv, num_workers):
    paddle = pytest.importorskip("paddle")
    root, corrupted = corrupt_tsv
    corpus = load_corpus(root, "train")
    dataset = PairDataset(corpus, local_transform, char_tokenizer)
    pairs = [dataset.pair(i) for i in range(len(dataset))]
    expected_bad = {i for i, (_, image_id) in enumerate(pairs) if image_id in corrupted}
    assert len(expected_bad) >= 5

    loader = paddle.io.DataLoader(
        dataset, batch_size=16, shuffle=False, num_workers=num_workers, collate_fn=collate_skip_bad
    )
    counter = BadSampleCounter()
    seen_good, seen_bad = [], []
    for batch in loader:
        counter.update(batch)
        seen_bad += list(batch["bad_index"])
        if batch["n_good"] == 0:
            continue
        index = np.asarray(batch["index"]).tolist()
        seen_good += index
        pixels = np.asarray(batch["pixel_values"])
        for row, i in enumerate(index[:2]):  # spot-check values against a direct decode
            expected = local_transform(corpus.read_image_bytes(pairs[i][1]))
            np.testing.assert_allclose(pixels[row], expected, rtol=0, atol=0)
        ids = np.asarray(batch["input_ids"])
        assert ids.dtype == np.int64 and ids.shape == (len(index), 16)
    assert sorted(seen_bad) == sorted(expected_bad)
    assert sorted(seen_good) == sorted(set(range(len(dataset))) - expected_bad)
    n_by_kind = {
        kind: sum(1 for i in expected_bad if corrupted[pairs[i][1]] == kind)
        for kind in ("truncated", "garbage", "bad_base64", "empty", "missing")
    }
    summary = counter.summary()
    assert summary.startswith(f"skipped {len(expected_bad)} of {len(dataset)} samples: ")
    undecodable = n_by_kind["truncated"] + n_by_kind["garbage"]
    for part in (
        f"{undecodable} undecodable images",
        f"{n_by_kind['missing']} missing image",
        f"{n_by_kind['bad_base64']} image",
        f"{n_by_kind['empty']} empty image",
    ):
        assert part in summary, summary
    assert counter.by_kind == {
        "undecodable": undecodable,
        "missing": n_by_kind["missing"],
        "bad_base64": n_by_kind["bad_base64"],
        "empty": n_by_kind["empty"],
    }


def test_dataloader_all_bad_batch(tmp_path):
    paddle = pytest.importorskip("paddle")
    make_dataset(tmp_path, {"train": 6}, "tsv", seed=0, corrupt=4)
    dataset = PairDataset(load_corpus(tmp_path, "train"), local_transform, char_tokenizer)
    bad = [i for i in range(len(dataset)) if "bad" in dataset[i]]
    subset = paddle.io.Subset(dataset, bad)
    (batch,) = list(paddle.io.DataLoader(subset, batch_size=len(bad), collate_fn=collate_skip_bad))
    assert batch["n_good"] == 0 and batch["n_bad"] == len(bad) >= 4
    assert np.asarray(batch["index"]).shape == (0,)
