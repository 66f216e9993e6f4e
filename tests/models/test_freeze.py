"""Arch.freeze_vision: the image tower gets no gradients and its BatchNorm statistics stay put."""

import numpy as np
import paddle

from paddle_mm.models import build_model
from tests.conftest import SMALL, SMALL_RESNET


def _step(model) -> None:
    model.train()
    out = model(paddle.randn([4, 3, 32, 32]), paddle.randint(1, 1000, [4, 8]))
    (out["logits_per_image"].sum()).backward()


def test_frozen_resnet_tower_keeps_weights_and_batchnorm_statistics():
    paddle.seed(0)
    model = build_model({"name": "RN50", **SMALL_RESNET, "freeze_vision": True})
    before = {k: v.numpy().copy() for k, v in model.visual.state_dict().items()}
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=[p for p in model.parameters() if not p.stop_gradient])
    _step(model)
    opt.step()
    after = model.visual.state_dict()
    assert all(np.array_equal(before[k], after[k].numpy()) for k in before)  # running_mean/var included
    assert all(p.grad is None for p in model.visual.parameters())
    assert model.bert.embeddings.word_embeddings.weight.grad is not None  # the text tower still trains


def test_unfrozen_resnet_tower_updates_batchnorm_statistics():
    paddle.seed(0)
    model = build_model({"name": "RN50", **SMALL_RESNET})
    before = model.visual.state_dict()["bn1.running_mean"].numpy().copy()
    _step(model)
    assert not np.array_equal(before, model.visual.state_dict()["bn1.running_mean"].numpy())


def test_frozen_vit_tower_still_applies_patch_dropout_in_training():
    paddle.seed(0)
    model = build_model({"name": "ViT-B-16", **SMALL, "freeze_vision": True, "mask_ratio": 0.5})
    model.train()
    x = paddle.randn([2, 3, 32, 32])
    a, b = model.encode_image(x).numpy(), model.encode_image(x).numpy()
    assert not np.allclose(a, b)  # random patches dropped on each call
    model.eval()
    assert np.allclose(model.encode_image(x).numpy(), model.encode_image(x).numpy())
