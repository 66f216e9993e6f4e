"""Defect classifiers for inspection: PP-LCNet (:mod:`.lcnet`) or MobileNetV3-small (``paddle.vision``).

``InspectionClassifier(pixel_values)`` returns ``{"logits", "embedding"}``; ``patch_features`` returns the
stride-8 and stride-16 feature maps the anomaly score (:mod:`.patchcore`) compares with clean parts.
Named variants are data: :data:`CLASSIFIERS` maps an ``Arch.name`` to its family and width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import paddle
from paddle import nn

from .lcnet import PPLCNet

CLASSIFIERS = {
    "PP-LCNet_x0_25": ("lcnet", 0.25),
    "PP-LCNet_x0_5": ("lcnet", 0.5),
    "PP-LCNet_x1_0": ("lcnet", 1.0),
    "MobileNetV3_small_x0_5": ("mobilenet_v3", 0.5),
    "MobileNetV3_small_x1_0": ("mobilenet_v3", 1.0),
}
_MBV3_TAPS = (2, 7)  # paddle.vision MobileNetV3-small blocks ending at stride 8 and 16


@dataclass
class InspectionConfig:
    name: str
    num_classes: int
    image_resolution: int = 64
    dropout: float = 0.2
    class_expand: int = 1280
    pad_id: int = 0  # read by the trainer's batch preparation; no text here


class InspectionClassifier(nn.Layer):
    model_type = "inspection"  # model_config.json's kind (paddle_mm.models.save_model / load_model)

    def __init__(self, config: InspectionConfig):
        super().__init__()
        if config.name not in CLASSIFIERS:
            raise KeyError(f"unknown classifier {config.name!r}; available: {sorted(CLASSIFIERS)}")
        self.config = config
        family, scale = CLASSIFIERS[config.name]
        self.family = family
        if family == "lcnet":
            self.net = PPLCNet(scale, config.num_classes, config.dropout, config.class_expand)
        else:
            from paddle.vision.models import mobilenet_v3_small

            self.net = mobilenet_v3_small(scale=scale, num_classes=config.num_classes)

    def patch_features(self, pixel_values: paddle.Tensor) -> list[paddle.Tensor]:
        """[stride-8 map (B, C1, S/8, S/8), stride-16 map (B, C2, S/16, S/16)] in eval or train mode alike."""
        if self.family == "lcnet":
            s = self.net.stages(pixel_values)
            return [s["blocks4"], s["blocks5"]]
        x, taps = self.net.conv(pixel_values), []
        for i, block in enumerate(self.net.blocks):
            x = block(x)
            if i in _MBV3_TAPS:
                taps.append(x)
        return taps

    def patch_embedding(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        """PatchCore patch features [B, P, D] (:mod:`.patchcore`): both maps averaged over 3x3 neighbourhoods
        (inside the frame only), the stride-16 one repeated to stride 8, concatenated and L2-normalised.

        Written with pooling, expand and reshape only: Paddle Inference's oneDNN executor rejects the exported
        interpolation and reflect-pad ops (their float-array attributes, Paddle 3.3.1), and paddle2onnx 2.1
        writes a wrong Tile for repeat_interleave."""
        s8, s16 = (
            nn.functional.avg_pool2d(m, 3, stride=1, padding=1, exclusive=True)
            for m in self.patch_features(pixel_values)
        )
        c, h, w = s16.shape[1:]
        s16 = s16.unsqueeze([3, 5]).expand([-1, -1, -1, 2, -1, 2])  # (B, C2, h, 2, w, 2): nearest x2
        s16 = s16.reshape([-1, c, 2 * h, 2 * w])  # (B, C2, H, W)
        x = paddle.concat([s8, s16], axis=1)  # (B, D, H, W)
        x = x.flatten(2).transpose([0, 2, 1])  # (B, H*W, D)
        return nn.functional.normalize(x, axis=-1)

    def forward(self, pixel_values: paddle.Tensor) -> dict[str, paddle.Tensor]:
        if self.family == "lcnet":
            emb, logits = self.net.head(self.net.stages(pixel_values)["blocks6"])
            return {"logits": logits, "embedding": emb}
        x = self.net.lastconv(self.net.blocks(self.net.conv(pixel_values)))
        emb = paddle.flatten(self.net.avgpool(x), 1)
        return {"logits": self.net.classifier(emb), "embedding": emb}


class InspectionLogits(nn.Layer):
    """What export writes: softmax probabilities [B, num_classes] of a trained classifier (PaddleX reads them
    as the class scores of its Topk post-processing)."""

    def __init__(self, model: InspectionClassifier):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        return nn.functional.softmax(self.model(pixel_values)["logits"], axis=-1)


class AnomalyScore(nn.Layer):
    """What export writes for unseen defects: the PatchCore score [B] of frames, the bank inside the graph.

    score = max over a frame's patches of the distance from the patch to its nearest bank entry."""

    def __init__(self, model: InspectionClassifier, bank):
        super().__init__()
        self.model = model
        self.bank = self.create_parameter(list(bank.shape), dtype="float32")
        self.bank.set_value(paddle.to_tensor(bank, dtype="float32"))
        self.bank.stop_gradient = True

    def forward(self, pixel_values: paddle.Tensor) -> paddle.Tensor:
        q = self.model.patch_embedding(pixel_values)  # (B, P, D)
        d2 = (q * q).sum(-1, keepdim=True) - 2.0 * paddle.matmul(q, self.bank, transpose_y=True)
        d2 = d2 + (self.bank * self.bank).sum(-1)  # (B, P, M)
        return paddle.sqrt(paddle.clip(d2.min(axis=-1), min=0.0)).max(axis=-1)  # (B,)


def build_classifier(arch: dict, num_classes: int) -> InspectionClassifier:
    """The classifier of a validated ``Arch`` section (name, image_resolution, dropout, class_expand)."""
    keys = ("image_resolution", "dropout", "class_expand")
    return InspectionClassifier(
        InspectionConfig(arch["name"], num_classes, **{k: arch[k] for k in keys if arch.get(k) is not None})
    )


def config_dict(model: InspectionClassifier) -> dict:
    return asdict(model.config)
