"""The training loaders: DataLoader.Train.loader.cache gathers the same batches as the per-sample DataLoader,
including a resumed epoch's remainder, and refuses the settings it cannot honour."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mm.config import ConfigError, load_config
from paddle_mm.tasks.loaders import MemoryLoader, build_pair_loader
from tests.conftest import TINY


def _train_section(data, *overrides: str) -> dict:
    cfg = load_config(TINY, [f"DataLoader.Train.dataset.root={data}", *overrides])
    return cfg["DataLoader"]["Train"]


def _batches(loader, sampler, epoch: int, skip: int) -> list[dict]:
    sampler.set_epoch(epoch, skip=skip)
    return [{k: np.asarray(v) for k, v in b.items() if k in ("pixel_values", "input_ids", "index")} for b in loader]


@pytest.mark.parametrize("epoch, skip", [(1, 0), (2, 3)])  # a whole epoch; the rest of one resumed mid-way
def test_cached_loader_gives_the_data_loader_batches(tiny_data, epoch, skip):
    plain, plain_sampler, _ = build_pair_loader(_train_section(tiny_data), 32, 52, 1, 0, 7)
    cached, cached_sampler, dataset = build_pair_loader(
        _train_section(tiny_data, "DataLoader.Train.loader.cache=true"), 32, 52, 1, 0, 7
    )
    assert isinstance(cached, MemoryLoader) and dataset.cached is not None
    want, got = _batches(plain, plain_sampler, epoch, skip), _batches(cached, cached_sampler, epoch, skip)
    assert len(got) == len(want) == len(cached) == plain_sampler.n_batches() - skip > 5
    for a, b in zip(want, got):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(b[key], a[key])


@pytest.mark.parametrize(
    "override, message",
    [
        ("DataLoader.Train.loader.num_workers=1", "needs num_workers 0"),
        ("DataLoader.Train.dataset.transform.augment=true", "augmentation draws anew every epoch"),
    ],
)
def test_cache_refuses_workers_and_augmentation(tiny_data, override, message):
    section = _train_section(tiny_data, "DataLoader.Train.loader.cache=true", override)
    with pytest.raises(ConfigError, match=message):
        build_pair_loader(section, 32, 52, 1, 0, 7)
