"""Chinese-CLIP's --use-augment (TrainAugment): point operations equal PIL's, the crop and the policy follow timm's
rules, runs repeat per seed and epoch, and evaluation preprocessing does not change when training augments."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from paddle_mm.config import load_config
from paddle_mm.tasks.loaders import build_train_transform, build_transform
from paddle_mm.vision.transforms import (
    AUTOAUGMENT_ORIGINAL,
    ImageTransform,
    TrainAugment,
    autocontrast,
    enhance_color,
    equalize,
    posterize,
    solarize,
)
from tests.conftest import TINY


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A smooth colour image with some texture: (60, 80, 3) uint8 in a narrow-ish range (autocontrast has work)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:60, 0:80]
    base = np.stack([x * 2 + 30, y * 3 + 20, (x + y) + 40], axis=-1)
    return np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "ours, pil",
    [
        (lambda a: solarize(a, 128), lambda im: ImageOps.solarize(im, 128)),
        (lambda a: solarize(a, 77), lambda im: ImageOps.solarize(im, 77)),
        (lambda a: posterize(a, 5), lambda im: ImageOps.posterize(im, 5)),
        (autocontrast, ImageOps.autocontrast),
        (equalize, ImageOps.equalize),
        (lambda a: enhance_color(a, 0.28), lambda im: ImageEnhance.Color(im).enhance(0.28)),
        (lambda a: enhance_color(a, 1.72), lambda im: ImageEnhance.Color(im).enhance(1.72)),
    ],
)
def test_point_operations_equal_pil(photo, ours, pil):
    np.testing.assert_array_equal(ours(photo), np.asarray(pil(Image.fromarray(photo))))


def test_crop_box_follows_the_configured_ranges():
    aug = TrainAugment(32)
    rng = np.random.default_rng(1)
    boxes = [aug.crop_box(300, 400, rng) for _ in range(500)]
    areas = np.array([h * w for _, _, h, w in boxes]) / (300 * 400)
    ratios = np.array([w / h for _, _, h, w in boxes])
    assert areas.min() >= 0.89 and areas.max() <= 1.0 and areas.std() > 0.01
    assert ratios.min() >= 0.74 and ratios.max() <= 1.35
    assert all(0 <= t and 0 <= left and t + h <= 300 and left + w <= 400 for t, left, h, w in boxes)
    # an image too elongated for any draw gets timm's fallback: the centred crop at the nearest allowed ratio
    assert aug.crop_box(10, 400, rng) == (0, 193, 10, 13)


def test_policy_is_the_papers_imagenet_table():
    assert len(AUTOAUGMENT_ORIGINAL) == 25 and all(len(sub) == 2 for sub in AUTOAUGMENT_ORIGINAL)
    ops = {name for sub in AUTOAUGMENT_ORIGINAL for name, _, _ in sub}
    assert ops == {
        "Equalize", "ShearY", "Color", "Rotate", "Solarize", "SolarizeAdd", "ShearX", "Invert", "Posterize",
        "AutoContrast", "TranslateYRel",
    }  # fmt: skip
    aug, rng = TrainAugment(16), np.random.default_rng(0)
    img = np.full((16, 16, 3), 200, np.uint8)
    for name in ops:  # every operation runs and keeps the shape and dtype
        out = aug.apply_op(img, name, 9, rng)
        assert out.shape == img.shape and out.dtype == np.uint8, name


def test_geometric_operations_move_content_as_pil_does(photo):
    """Rotation, shear and translation differ from PIL's resampler in value, not in geometry: measured mean
    |difference| 0.9-1.2 levels (a wrong sign or angle gives tens); the largest differences sit on edges."""
    aug = TrainAugment(16)
    fill = aug.fill
    im = Image.fromarray(photo)
    cases = [
        ("Rotate", np.asarray(im.rotate(24.0, resample=Image.BICUBIC, fillcolor=fill))),
        (
            "ShearX",
            np.asarray(im.transform(im.size, Image.AFFINE, (1, 0.24, 0, 0, 1, 0), Image.BICUBIC, fillcolor=fill)),
        ),
        (
            "ShearY",
            np.asarray(im.transform(im.size, Image.AFFINE, (1, 0, 0, 0.24, 1, 0), Image.BICUBIC, fillcolor=fill)),
        ),
        (
            "TranslateYRel",
            np.asarray(im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, 21.6), Image.BICUBIC, fillcolor=fill)),
        ),
    ]
    for name, ref in cases:
        ours = aug.apply_op(photo, name, 8, _PlusSign())
        err = np.abs(ours.astype(int) - ref.astype(int))
        assert err.mean() < 1.5, (name, err.mean())


class _PlusSign:
    """A generator stand-in whose sign draw is always + (random() >= 0.5)."""

    def random(self) -> float:
        return 0.9


def test_same_seed_and_epoch_repeat_and_epochs_differ(photo):
    a, b = TrainAugment(32, seed=5), TrainAugment(32, seed=5)
    first = [a(photo) for _ in range(4)]
    np.testing.assert_array_equal(np.stack(first), np.stack([b(photo) for _ in range(4)]))
    assert not all(np.array_equal(first[0], x) for x in first[1:])  # draws differ from image to image
    a.set_epoch(2)  # a new epoch restarts the draws from (seed, epoch): the same as a fresh transform's
    c = TrainAugment(32, seed=5)
    c.set_epoch(2)
    second = a(photo)
    np.testing.assert_array_equal(second, c(photo))
    assert not np.array_equal(first[0], second)


def test_eval_preprocessing_is_unchanged_by_the_augment_config(photo, tmp_path):
    cfg = load_config(
        str(TINY),
        [
            "DataLoader.Train.dataset.root=x",
            "DataLoader.Eval.dataset.root=x",
            "DataLoader.Train.dataset.transform.augment=true",
        ],
    )
    plain = load_config(str(TINY), ["DataLoader.Train.dataset.root=x", "DataLoader.Eval.dataset.root=x"])
    train_t = build_train_transform(cfg["DataLoader"]["Train"]["dataset"], 32, seed=0)
    assert isinstance(train_t, TrainAugment)
    assert "transform" not in cfg["DataLoader"]["Eval"]["dataset"]  # evaluation has no augment key at all
    reference = ImageTransform(32)(photo)
    for c in (cfg, plain):
        np.testing.assert_array_equal(build_transform(c["DataLoader"]["Eval"]["dataset"], 32)(photo), reference)
    # without augment the training transform is the evaluation one
    np.testing.assert_array_equal(
        build_train_transform(plain["DataLoader"]["Train"]["dataset"], 32, 0)(photo), reference
    )
    assert not np.array_equal(train_t(photo), reference)


def test_bad_settings_are_one_line():
    with pytest.raises(ValueError, match="hflip 1.5 is a probability"):
        TrainAugment(32, hflip=1.5)
    with pytest.raises(ValueError, match="auto_augment 'rand'"):
        TrainAugment(32, auto_augment="rand")
