"""Loaders for training and evaluation, built from a ``DataLoader.Train`` / ``DataLoader.Eval`` section."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import paddle

from ..config import ConfigError
from ..data.collate import collate_skip_bad
from ..data.datasets import ImageTextCorpus, PairDataset, load_corpus
from ..data.workers import worker_init
from ..text.tokenizer import preprocess_caption, tokenize
from ..vision.transforms import ImageTransform, TrainAugment


class GlobalBatchSampler(paddle.io.BatchSampler):
    """Seeded per-epoch order, cut into *global* batches of ``batch_size * world`` samples; rank r takes
    the r-th slice of each. One process with batch 2B therefore sees exactly the batches that two
    processes with batch B see together. ``set_epoch(epoch, skip)`` resumes mid-epoch."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        world: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ):
        self.n, self.batch_size, self.world, self.rank = n, batch_size, world, rank
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.epoch, self.skip = 0, 0
        if self.n_batches() == 0:
            raise ValueError(
                f"{n} samples cannot fill one global batch of {batch_size} x {world} ranks with drop_last; "
                "lower DataLoader.Train.sampler.batch_size or add data"
            )

    on_epoch = None  # called with the epoch by set_epoch (the augmenting transform reseeds)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def n_batches(self) -> int:
        per_global = self.batch_size * self.world
        return self.n // per_global if self.drop_last else -(-self.n // per_global)

    def __len__(self) -> int:
        return self.n_batches() - self.skip

    def __iter__(self) -> Iterator[list[int]]:
        order = np.arange(self.n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        per_global = self.batch_size * self.world
        for b in range(self.skip, self.n_batches()):
            chunk = order[b * per_global : (b + 1) * per_global]
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            if len(mine):
                yield mine.tolist()


def build_transform(dataset_cfg: dict[str, Any], image_size: int) -> ImageTransform:
    return ImageTransform(size=image_size, interpolation=dataset_cfg["interpolation"])


def build_train_transform(dataset_cfg: dict[str, Any], image_size: int, seed: int) -> ImageTransform | TrainAugment:
    """The evaluation transform, or Chinese-CLIP's ``--use-augment`` one when ``transform.augment`` is set."""
    t = dataset_cfg.get("transform") or {}
    if not t.get("augment"):
        return build_transform(dataset_cfg, image_size)
    return TrainAugment(
        image_size,
        scale=tuple(t["crop_scale"]),
        ratio=tuple(t["crop_ratio"]),
        hflip=t["hflip"],
        auto_augment=t["auto_augment"],
        seed=seed,
    )


def build_tokenizer(context_length: int):
    """Texts -> [N, context_length] ids exactly as cn_clip's datasets make them (``_preprocess_text`` first)."""
    return lambda texts: tokenize([preprocess_caption(t) for t in texts], context_length=context_length)


def load_split(dataset_cfg: dict[str, Any]) -> ImageTextCorpus:
    return load_corpus(dataset_cfg["root"], dataset_cfg["split"], dataset_cfg["format"])


def build_loader(
    dataset: paddle.io.Dataset, section: dict[str, Any], world: int, rank: int, seed: int, collate_fn=None
) -> tuple[paddle.io.DataLoader, GlobalBatchSampler]:
    """A training loader over ``dataset`` in global batches (:class:`GlobalBatchSampler`) from a
    ``DataLoader.Train`` section; its workers die with the trainer, even after ``kill -9``."""
    if section["loader"].get("cache"):
        raise ConfigError(
            f"DataLoader.Train.loader.cache applies to caption data (ImageTextDataset), not to "
            f"{type(dataset).__name__}: set cache: false"
        )
    s = section["sampler"]
    sampler = GlobalBatchSampler(len(dataset), s["batch_size"], world, rank, s["shuffle"], s["drop_last"], seed)
    loader = paddle.io.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_fn,
        num_workers=section["loader"]["num_workers"],
        worker_init_fn=worker_init(),
        return_list=True,
    )
    return loader, sampler


class MemoryLoader:
    """The batches of a cached :class:`PairDataset` (``DataLoader.Train.loader.cache``), gathered in this process:
    the same dicts a ``paddle.io.DataLoader`` with ``collate_skip_bad`` yields, without a per-sample call."""

    def __init__(self, dataset: PairDataset, sampler: GlobalBatchSampler):
        self.dataset, self.sampler = dataset, sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for indices in self.sampler:
            batch = self.dataset.batch(indices)
            yield {k: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


def build_pair_loader(
    section: dict[str, Any], image_size: int, context_length: int, world: int, rank: int, seed: int
) -> tuple[paddle.io.DataLoader | MemoryLoader, GlobalBatchSampler, PairDataset]:
    """Image-caption pairs (Chinese-CLIP's data) with undecodable images counted and dropped per batch."""
    corpus = load_split(section["dataset"])
    transform = build_train_transform(section["dataset"], image_size, seed)
    dataset = PairDataset(corpus, transform, build_tokenizer(context_length))
    if section["loader"]["cache"]:
        if isinstance(transform, TrainAugment) or section["loader"]["num_workers"]:
            raise ConfigError(
                "DataLoader.Train.loader.cache keeps decoded images in this process: it needs num_workers 0 and "
                "dataset.transform.augment false (an augmentation draws anew every epoch); set cache: false"
            )
        s = section["sampler"]
        sampler = GlobalBatchSampler(len(dataset), s["batch_size"], world, rank, s["shuffle"], s["drop_last"], seed)
        return MemoryLoader(dataset.cache(), sampler), sampler, dataset
    loader, sampler = build_loader(dataset, section, world, rank, seed, collate_skip_bad)
    if isinstance(transform, TrainAugment):  # new draws every epoch, the same ones when the run repeats
        sampler.on_epoch = transform.set_epoch
    return loader, sampler, dataset
