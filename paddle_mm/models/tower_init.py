"""Start a CLIP's towers from the weights Chinese-CLIP pretraining starts from (``--clip-weight-path``,
``--bert-weight-path``; ``Global.clip_weight_path`` / ``Global.bert_weight_path``).

cn_clip's ``restore_model`` takes, from an OpenAI CLIP state dict, every ``visual.*`` tensor and ``logit_scale``
(OpenAI's text tower is not used), and from a BERT / RoBERTa-wwm checkpoint every ``bert.*`` tensor except the
pooler; then ``load_state_dict(strict=False)``, which silently skips any name it does not know. Here the same
tensors are taken, converted to Paddle's layout (Linear weights transposed, :mod:`.conversion.names`), and every
one must land: a name or shape that does not fit, or a tower tensor the file lacks, is a one-line error naming the
key and the fix. What is not loaded stays as initialised (the text projection, and the other tower when only one
file is given).

Files: a torch ``.pt`` / ``.bin`` zip (read without torch or pickle code execution), ``.safetensors`` or a Paddle
``.pdparams``; an optional ``module.`` prefix (DataParallel) and, for BERT, Hugging Face's ``BertModel`` names
without the ``bert.`` prefix and old ``LayerNorm.gamma`` / ``beta`` names are accepted.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import paddle

from ..config import ConfigError
from .conversion.names import CHECKPOINT_PREFIX, cn_clip_to_paddle

# Tensors a file may lack without harm: a BatchNorm's step counter (torch < 0.4.1 had none), and the temperature
# (a vision-only state dict: logit_scale keeps its initial log(1 / 0.07)).
_OPTIONAL = re.compile(r".*num_batches_tracked|logit_scale")


def read_state(path: str | Path) -> dict[str, np.ndarray]:
    """A state dict file as numpy arrays, by its suffix (a torch zip for anything not safetensors / pdparams)."""
    from .conversion import load_pdparams, load_torch_state

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))
    if path.suffix == ".pdparams":
        return load_pdparams(path)
    return load_torch_state(path)


def clip_tower_state(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The image tower and ``logit_scale`` of an OpenAI-CLIP-format state dict, in Paddle's layout."""
    state = {k.removeprefix(CHECKPOINT_PREFIX): v for k, v in state.items()}
    return cn_clip_to_paddle({k: v for k, v in state.items() if k.startswith("visual.") or k == "logit_scale"})


def bert_tower_state(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``bert.*`` tensors of a BERT checkpoint (pooler dropped), in Paddle's layout."""
    state = {k.removeprefix(CHECKPOINT_PREFIX): v for k, v in state.items()}
    if not any(k.startswith("bert.") for k in state):  # Hugging Face BertModel.save_pretrained: no prefix
        state = {f"bert.{k}": v for k, v in state.items() if k.startswith(("embeddings.", "encoder.", "pooler."))}
    picked = {}
    for key, value in state.items():
        if key.startswith("bert."):  # the pooler (and position_ids) cn_clip_to_paddle drops, as cn_clip does
            key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))
            picked[key] = value  # old TF-converted BERTs name LayerNorm parameters gamma / beta
    return cn_clip_to_paddle(picked)


_TOWERS = {  # config key -> (what the file holds, the model's tensors it must cover, reader)
    "Global.clip_weight_path": (
        "an OpenAI-CLIP-format state dict",
        re.compile(r"visual\..+|logit_scale"),
        clip_tower_state,
    ),
    "Global.bert_weight_path": ("a BERT / RoBERTa-wwm checkpoint", re.compile(r"bert\..+"), bert_tower_state),
}


def init_towers(model: paddle.nn.Layer, clip_path: str | None, bert_path: str | None) -> list[str]:
    """Load the image tower (and ``logit_scale``) from ``clip_path`` and the text tower from ``bert_path`` (either
    may be None) into ``model``'s CLIP. Returns one log line per file; raises :class:`ConfigError` naming the config
    key, the tensor and the fix when a file does not fit."""
    own = model.state_dict()
    prefix = next((k[: -len("visual.conv1.weight")] for k in own if k.endswith("visual.conv1.weight")), None)
    lines = []
    for key, path in (("Global.clip_weight_path", clip_path), ("Global.bert_weight_path", bert_path)):
        if not path:
            continue
        if prefix is None:
            raise ConfigError(f"{key} initialises a CLIP's towers, and this model has none; set {key}=null")
        if not Path(path).is_file():
            raise ConfigError(f"{key}={path!r}: no such file; give the path of {_TOWERS[key][0]} or set {key}=null")
        lines.append(_load_tower(own, prefix, key, path))
    return lines


def _load_tower(own: dict, prefix: str, key: str, path: str) -> str:
    what, covers, pick = _TOWERS[key]
    try:
        state = pick(read_state(path))
    except KeyError as err:  # a name no conversion rule knows (e.g. cn_clip's flash-attention Wqkv layout)
        raise ConfigError(f"{key}={path!r}: {err.args[0]}") from None
    if not state:
        raise ConfigError(f"{key}={path!r} holds no tensor of the expected names; it must be {what}")
    for name, value in state.items():
        target = own.get(prefix + name)
        if target is None:
            raise ConfigError(
                f"{key}: {name!r} in {path} is not a tensor of this model; check that the file is {what} "
                "(tensor names as cn_clip loads them)"
            )
        if value.size == 1 and target.size == 1:  # logit_scale: 0-d in torch, [1] in some exports
            state[name] = value = np.asarray(value).reshape(target.shape)
        if tuple(target.shape) != tuple(value.shape):
            raise ConfigError(
                f"{key}: {name!r} is {list(value.shape)} in {path} but {list(target.shape)} in the model; "
                "set the Arch sizes (e.g. Arch.vision_width, Arch.text_hidden_size) to the checkpoint's"
            )
    missing = sorted(
        n[len(prefix) :]
        for n in own
        if n.startswith(prefix) and covers.fullmatch(n[len(prefix) :]) and n[len(prefix) :] not in state
    )
    missing = [n for n in missing if not _OPTIONAL.fullmatch(n)]
    if missing:
        raise ConfigError(
            f"{key}: {path} lacks {len(missing)} tensor(s) of the tower, first {missing[0]!r}; it must be {what} "
            "with the same depth as Arch (e.g. Arch.vision_layers, Arch.text_num_hidden_layers)"
        )
    for name, value in state.items():
        target = own[prefix + name]
        target.set_value(np.asarray(value).astype(np.dtype(str(target.numpy().dtype)), copy=False))
    return f"{key}: {len(state)} tensors from {path}"
