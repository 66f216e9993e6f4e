"""How an INT8 fusion graph is held to eager: its answer probabilities, hand-computed."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_mm.export.verify import compare, probabilities


def test_int8_fusion_is_compared_by_probability():
    eager = [np.array([[0.0, np.log(3.0)]], np.float32)]  # softmax (0.25, 0.75)
    int8 = [np.array([[0.0, 0.0]], np.float32)]  # softmax (0.5, 0.5)
    assert compare(int8, eager, "int8", "softmax") == pytest.approx((0.25, 1.0))
    one = [np.array([[np.log(3.0)]], np.float32)]  # sigmoid 0.75
    assert compare([np.zeros((1, 1), np.float32)], one, "int8", "sigmoid") == pytest.approx((0.25, 1.0))
    # a one-logit score has a cosine of 1 to any score of its sign: the tower check would pass this
    assert compare([np.full((1, 1), 9.0, np.float32)], one, "int8")[0] == pytest.approx(1.0)
    assert compare([np.full((1, 1), 9.0, np.float32)], one, "int8", "sigmoid")[0] > 0.24
    np.testing.assert_allclose(probabilities(np.array([[1.0, 1.0, 1.0]]), "softmax"), [[1 / 3] * 3])
    # fp32 is unchanged: max abs diff and the output's scale
    assert compare([np.array([[1.0, 5.0]])], [np.array([[1.5, 4.0]])], "fp32", "softmax") == (1.0, 4.0)
