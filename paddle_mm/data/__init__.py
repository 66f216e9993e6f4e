"""Image-text data: Chinese-CLIP TSV/JSONL and folder readers, datasets, bad-sample-tolerant batching.

``paddle_mm.demo.shapes`` (needs OpenCV) generates the built-in shapes dataset; it is not imported here.
Nothing in this package imports paddle.
"""

from .collate import BadSampleCounter, collate_skip_bad
from .datasets import (
    BAD_KINDS,
    ImageDataset,
    ImageReadError,
    ImageTextCorpus,
    PairDataset,
    TextDataset,
    TextRecord,
    load_corpus,
)

__all__ = [
    "BAD_KINDS",
    "BadSampleCounter",
    "ImageDataset",
    "ImageReadError",
    "ImageTextCorpus",
    "PairDataset",
    "TextDataset",
    "TextRecord",
    "collate_skip_bad",
    "load_corpus",
]
