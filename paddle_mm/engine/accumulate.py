"""Feature-cached gradient accumulation for the contrastive loss (``Global.accum_mode: features``).

Summing the losses of k micro-batches (``accum_mode: gradients``) gives each micro-batch only its own B - 1
negatives. Chinese-CLIP's ``--accum-freq`` (and GradCache, open_clip) instead let the loss see the whole
accumulated batch of k * B pairs:

1. forward every micro-batch without gradients and keep its normalized features (k * B rows, all ranks);
2. for each micro-batch j: forward it again *with* gradients, put its live features in place of the cached
   rows j, compute the loss of the whole accumulated batch (gathered across ranks as ``ClipLoss`` does) and
   backward. Only micro-batch j's activations are alive at a time: memory as for batch B.

Summed over j, the gradients equal those of one batch of k * B (within float rounding), because the loss of
the whole batch is a function of every row and recompute j differentiates exactly the rows of j. The random
state is replayed before each recompute, so dropout and FLIP patch dropout draw the same masks as in the
cached pass (otherwise the cached rows would not be the rows being differentiated).

Two details differ from Chinese-CLIP on purpose: ``logit_scale`` keeps its gradient in the first recompute
only (theirs collects it k times, i.e. a k-fold temperature learning rate), and the random state is replayed
(theirs is not, so with dropout their cached and recomputed features differ slightly).
"""

from __future__ import annotations

from typing import Any, Callable

import paddle

ACCUM_MODES = ("gradients", "features")  # keys of ACCUMULATORS (below)


def _autocast(amp: dict[str, Any]):
    return paddle.amp.auto_cast(enable=amp["use_amp"], level=amp["level"], dtype=amp["dtype"] or "float16")


def features_step(
    model: paddle.nn.Layer,
    micro_batches: list[tuple[paddle.Tensor, paddle.Tensor]],
    loss_fn: Callable[[dict[str, paddle.Tensor]], dict[str, paddle.Tensor]],
    amp: dict[str, Any],
    targets: list[dict[str, paddle.Tensor]] | None = None,
) -> tuple[dict[str, paddle.Tensor], float]:
    """Backward of the contrastive loss over all ``micro_batches`` [(pixels, input_ids), ...] as one batch.

    Gradients are accumulated into the parameters (call ``optimizer.step()`` after). ``loss_fn`` gets
    ``{"image_features", "text_features", "logit_scale"}`` of the whole accumulated batch plus the per-sample
    ``targets`` of each micro-batch concatenated (a distillation teacher's features); without ``targets`` they
    come from ``loss_fn.extra_targets(pixel_values, input_ids)`` when it has that method.

    Returns the loss terms (of the last recompute) and the spread of the total loss over the k recomputes:
    each recompute evaluates the same batch loss, so a spread above float noise means the recomputed
    features differ from the cached ones (a forward that is not repeatable).
    """
    rng_states, images, texts = [], [], []
    extras = list(targets) if targets is not None else []
    extra_targets = getattr(loss_fn, "extra_targets", None) if targets is None else None
    with paddle.no_grad():
        for pixels, ids in micro_batches:
            rng_states.append(paddle.get_rng_state())
            with _autocast(amp):
                out = model(pixels, ids)
            images.append(out["image_features"].detach().astype("float32"))
            texts.append(out["text_features"].detach().astype("float32"))
            if extra_targets is not None:
                extras.append(extra_targets(pixels, ids))
    rng_after = paddle.get_rng_state()
    batch_targets = {k: paddle.concat([e[k] for e in extras], axis=0) for k in (extras[0] if extras else {})}

    values: list[float] = []
    for j, (pixels, ids) in enumerate(micro_batches):
        paddle.set_rng_state(rng_states[j])  # the same dropout masks as the cached pass
        with _autocast(amp):
            out = model(pixels, ids)
            live = {
                "image_features": paddle.concat(
                    images[:j] + [out["image_features"].astype("float32")] + images[j + 1 :]
                ),
                "text_features": paddle.concat(texts[:j] + [out["text_features"].astype("float32")] + texts[j + 1 :]),
                # the batch loss depends on the temperature once, not once per recompute
                "logit_scale": out["logit_scale"] if j == 0 else out["logit_scale"].detach(),
            }
            losses = loss_fn({**live, **batch_targets})
        losses["loss"].backward()
        values.append(float(losses["loss"]))
    paddle.set_rng_state(rng_after)
    return losses, max(values) - min(values)


class GradientAccumulation:
    """``Global.accum_mode: gradients``: every micro-batch's loss / k is back-propagated at once (the sum of the
    micro-batch losses; negatives come from one micro-batch)."""

    def __init__(self, model: paddle.nn.Layer, loss_fn: Callable, amp: dict[str, Any], accum_steps: int):
        self.model, self.loss_fn, self.amp, self.accum_steps = model, loss_fn, amp, accum_steps

    def __call__(self, inputs: tuple, targets: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor]:
        with _autocast(self.amp):
            losses = self.loss_fn({**self.model(*inputs), **targets})
        (losses["loss"] / self.accum_steps).backward()
        return losses


class FeatureAccumulation:
    """``Global.accum_mode: features``: micro-batches are collected, and the k-th runs :func:`features_step`
    over all of them (one contrastive loss over the whole accumulated batch). Returns None while collecting."""

    def __init__(self, model: paddle.nn.Layer, loss_fn: Callable, amp: dict[str, Any], accum_steps: int):
        self.model, self.loss_fn, self.amp, self.accum_steps = model, loss_fn, amp, accum_steps
        self.inputs: list[tuple] = []
        self.targets: list[dict[str, paddle.Tensor]] = []

    def __call__(self, inputs: tuple, targets: dict[str, paddle.Tensor]) -> dict[str, paddle.Tensor] | None:
        self.inputs.append(inputs)
        self.targets.append(targets)
        if len(self.inputs) < self.accum_steps:
            return None
        losses, _ = features_step(self.model, self.inputs, self.loss_fn, self.amp, self.targets)
        self.inputs, self.targets = [], []
        return losses


ACCUMULATORS = {"gradients": GradientAccumulation, "features": FeatureAccumulation}


def build_accumulation(mode: str, model: paddle.nn.Layer, loss_fn: Callable, amp: dict[str, Any], accum_steps: int):
    """The micro-step of ``Global.accum_mode``: ``step(inputs, targets)`` -> the loss terms (None while collecting)."""
    return ACCUMULATORS[mode](model, loss_fn, amp, accum_steps)
