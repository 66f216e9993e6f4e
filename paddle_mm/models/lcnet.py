"""PP-LCNet (Cui et al. 2021, "PP-LCNet: A Lightweight CPU Convolutional Neural Network"), as in PaddleClas.

Depthwise-separable blocks with hard-swish, 5x5 kernels and squeeze-excitation only in the last stage, then a
1x1 "class expand" convolution after the global pool. Layer names follow PaddleClas' ``PPLCNet`` (``conv1``,
``blocks2``..``blocks6``, ``last_conv``, ``fc``) so its weights map by name. ``stages(x)`` returns the output of
every stage, which the anomaly score reads as patch features.
"""

from __future__ import annotations

import paddle
from paddle import nn

# stage -> [kernel, in, out, stride, SE] at scale 1.0 (PaddleClas NET_CONFIG)
NET_CONFIG = {
    "blocks2": [[3, 16, 32, 1, False]],
    "blocks3": [[3, 32, 64, 2, False], [3, 64, 64, 1, False]],
    "blocks4": [[3, 64, 128, 2, False], [3, 128, 128, 1, False]],
    "blocks5": [[3, 128, 256, 2, False]] + [[5, 256, 256, 1, False]] * 5,
    "blocks6": [[5, 256, 512, 2, True], [5, 512, 512, 1, True]],
}
STAGES = tuple(NET_CONFIG)


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNLayer(nn.Layer):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2D(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm2D(c_out)
        self.hardswish = nn.Hardswish()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.hardswish(self.bn(self.conv(x)))


class SEModule(nn.Layer):
    def __init__(self, channel: int, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channel, channel // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channel // reduction, channel, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        w = self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))  # (B, C, 1, 1)
        return x * w


class DepthwiseSeparable(nn.Layer):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, use_se: bool):
        super().__init__()
        self.dw_conv = ConvBNLayer(c_in, c_in, kernel, stride, groups=c_in)
        self.se = SEModule(c_in) if use_se else None
        self.pw_conv = ConvBNLayer(c_in, c_out, 1, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.dw_conv(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw_conv(x)


class PPLCNet(nn.Layer):
    """PP-LCNet at width ``scale``; ``forward`` returns logits [B, num_classes]."""

    def __init__(self, scale: float = 1.0, num_classes: int = 1000, dropout: float = 0.2, class_expand: int = 1280):
        super().__init__()
        self.scale, self.class_expand = scale, class_expand
        self.conv1 = ConvBNLayer(3, make_divisible(16 * scale), 3, 2)
        for stage, rows in NET_CONFIG.items():
            blocks = [
                DepthwiseSeparable(make_divisible(i * scale), make_divisible(o * scale), k, s, se)
                for k, i, o, s, se in rows
            ]
            setattr(self, stage, nn.Sequential(*blocks))
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.last_conv = nn.Conv2D(make_divisible(512 * scale), class_expand, 1, bias_attr=False)
        self.hardswish = nn.Hardswish()
        self.dropout = nn.Dropout(p=dropout, mode="downscale_in_infer")
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.fc = nn.Linear(class_expand, num_classes)

    def stage_channels(self) -> dict[str, int]:
        return {stage: make_divisible(rows[-1][2] * self.scale) for stage, rows in NET_CONFIG.items()}

    def stages(self, x: paddle.Tensor) -> dict[str, paddle.Tensor]:
        """Every stage's output, stride 2 (blocks2) to 32 (blocks6)."""
        out = {}
        x = self.conv1(x)
        for stage in STAGES:
            x = getattr(self, stage)(x)
            out[stage] = x
        return out

    def head(self, last: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """(embedding [B, class_expand], logits [B, num_classes]) from the last stage's output."""
        emb = self.flatten(self.hardswish(self.last_conv(self.avg_pool(last))))
        return emb, self.fc(self.dropout(emb))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.stages(x)["blocks6"])[1]
