"""Shared fixtures for tests/data: small generated datasets (the toy transform and tokenizer: tests/data/toys.py)."""

from __future__ import annotations

import pytest

from paddle_mm.demo.shapes import make_dataset

SMALL_SIZES = {"train": 240, "valid": 60, "test": 0}
SEED = 3


@pytest.fixture(scope="session")
def shapes_tsv(tmp_path_factory):
    """A small synthetic dataset in Chinese-CLIP TSV format: (root, per-split stats)."""
    root = tmp_path_factory.mktemp("shapes_tsv")
    return root, make_dataset(root, SMALL_SIZES, "tsv", seed=SEED)


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory):
    """The same dataset as ``shapes_tsv`` in the folder format."""
    root = tmp_path_factory.mktemp("shapes_folder")
    return root, make_dataset(root, SMALL_SIZES, "folder", seed=SEED)
