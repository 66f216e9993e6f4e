"""FeaturePipeline: files and strings pre-processed in worker processes give the predictor's own features."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from paddle_mm.inference import Predictor
from paddle_mm.inference.pipeline import FeaturePipeline

TEXTS = ["左上角有一个红色的圆形", "图中有两个蓝色的三角形", "右下角有一个大的绿色正方形", "一只猫", "黄色"]


def test_pipeline_features_equal_the_predictors_in_order(export_dir, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):  # JPEG and PNG, sizes unlike the model's 32 px
        path = tmp_path / f"{i}.{'jpg' if i % 2 else 'png'}"
        cv2.imwrite(str(path), rng.integers(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8))
        paths.append(str(path))
    predictor = Predictor(export_dir, backend="onnxruntime", threads=1, batch_size=2, cache_dir=tmp_path)
    with FeaturePipeline(predictor, workers=1) as pipe:
        images = pipe.encode_image_files(paths)
        texts = pipe.encode_texts(TEXTS)
        assert pipe.encode_texts([]).shape == (0, images.shape[1])
    np.testing.assert_allclose(images, predictor.encode_images(paths), atol=1e-6)
    np.testing.assert_allclose(texts, predictor.encode_texts(TEXTS), atol=1e-6)
    assert np.abs(images[0] - images[1]).max() > 1e-3  # distinct inputs stay distinct (no batch repeated)


def test_pipeline_needs_a_worker(export_dir, tmp_path):
    predictor = Predictor(export_dir, backend="onnxruntime", threads=1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="workers=0: use a positive number"):
        FeaturePipeline(predictor, workers=0)
