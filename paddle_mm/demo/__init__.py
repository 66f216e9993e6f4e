"""The built-in demo worlds: generators that write datasets in Chinese-CLIP's formats, for the quickstart, tests
and benchmarks. Users' own data is read by :mod:`paddle_mm.data`; nothing here is needed to read it.

- :mod:`.shapes`: the shapes caption dataset (shapes on a 3x3 grid, near-duplicate distractors), needs OpenCV;
- :mod:`.shapes_zero_shot`: the same world as a zero-shot classification folder.

Nothing is imported here, so ``import paddle_mm.demo`` stays free of OpenCV.
"""
