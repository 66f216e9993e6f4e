"""Write tests/models/golden/cn_clip_tiny.npz: a tiny cn_clip ViT CLIP, its inputs and its outputs.

Run with the reference environment (torch + cn_clip 1.6.0), never from the tests:

    env -u PYTHONPATH .venv-ref/bin/python tools/dev/make_model_golden.py

The model is cn_clip.clip.model.CLIP with a tiny config and seeded random weights, re-drawn so that every
sublayer matters (Linear weights ~ N(0, 1/fan_in) rather than BERT's 0.02) and so that LayerNorm scales
and all biases are away from 1 / 0 (a loader that skips them fails the test). Linear weights that are
square would survive a missing transpose by shape alone, so only the outputs can catch that: the test
compares them.

The file holds (all float32 / int64 arrays, loadable without pickle):

    state_dict/<key>     cn_clip's state dict with the "module." prefix, as in released checkpoints
    config               JSON of cn_clip CLIP's constructor arguments (cn_clip field names)
    pixel_values         [3, 3, 32, 32] float32
    input_ids            [3, 52] int64: [CLS]=101 ... [SEP]=102, then [PAD]=0 (3 different lengths)
    encode_image         CLIP.encode_image(pixel_values), unnormalized [3, embed_dim]
    encode_text          CLIP.encode_text(input_ids), unnormalized [3, embed_dim]
    logits_per_image     CLIP.get_similarity(...)[0], [3, 3] (logit_scale.exp() * cosine similarities)
    logit_scale_exp      CLIP.forward(...)[2] (cn_clip's forward returns features and this, not logits)
    meta                 JSON: generator, torch and cn_clip versions

The seed is fixed, so reruns on the same torch build give the same arrays (the zip timestamps differ).
"""

from __future__ import annotations

import argparse
import json
import math
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from cn_clip.clip.model import CLIP
from torch import nn

OUT = Path(__file__).resolve().parents[2] / "tests" / "models" / "golden" / "cn_clip_tiny.npz"
SEED = 0
PREFIX = "module."

# cn_clip CLIP constructor arguments. vocab_size is cut from the tokenizer's 21128 to 1000 to keep the file
# small; every input id stays below it.
CONFIG = {
    "embed_dim": 32,
    "image_resolution": 32,
    "vision_layers": 2,
    "vision_width": 64,
    "vision_head_width": 32,
    "vision_patch_size": 8,
    "vocab_size": 1000,
    "text_attention_probs_dropout_prob": 0.1,
    "text_hidden_act": "gelu",
    "text_hidden_dropout_prob": 0.1,
    "text_hidden_size": 64,
    "text_initializer_range": 0.02,
    "text_intermediate_size": 128,
    "text_max_position_embeddings": 64,
    "text_num_attention_heads": 2,
    "text_num_hidden_layers": 2,
    "text_type_vocab_size": 2,
}
BATCH, CONTEXT_LENGTH = 3, 52
TEXT_LENGTHS = (52, 20, 5)  # tokens before padding, [CLS] and [SEP] included: full, medium, short
CLS_ID, SEP_ID, PAD_ID, FIRST_WORD_ID = 101, 102, 0, 103
LOGIT_SCALE = math.log(100.0)  # what released checkpoints hold (~4.6052), not the log(1/0.07) init


def build(cfg: dict, seed: int) -> CLIP:
    """cn_clip's CLIP with seeded weights in which every parameter and BatchNorm statistic affects the outputs."""
    torch.manual_seed(seed)
    model = CLIP(**cfg)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=module.in_features**-0.5)
            elif isinstance(module, nn.MultiheadAttention):
                nn.init.normal_(module.in_proj_weight, std=module.embed_dim**-0.5)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.5)
            elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                module.weight.copy_(1.0 + 0.1 * torch.randn_like(module.weight))
            if isinstance(module, nn.BatchNorm2d):  # eval uses these: make them matter
                module.running_mean.copy_(0.1 * torch.randn_like(module.running_mean))
                module.running_var.copy_(torch.rand_like(module.running_var) + 0.5)
                module.num_batches_tracked.fill_(7)
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.copy_(0.1 * torch.randn_like(param))
        model.logit_scale.fill_(LOGIT_SCALE)
    return model.eval()


def build_model() -> CLIP:
    return build(CONFIG, SEED)


def make_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(SEED + 1)
    res = CONFIG["image_resolution"]
    pixel_values = torch.randn(BATCH, 3, res, res, generator=gen)
    input_ids = torch.full((BATCH, CONTEXT_LENGTH), PAD_ID, dtype=torch.int64)
    for row, length in enumerate(TEXT_LENGTHS):
        words = torch.randint(FIRST_WORD_ID, CONFIG["vocab_size"], (length - 2,), generator=gen)
        input_ids[row, :length] = torch.cat([torch.tensor([CLS_ID]), words, torch.tensor([SEP_ID])])
    return pixel_values, input_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    model = build_model()
    pixel_values, input_ids = make_inputs()
    with torch.no_grad():
        encode_image = model.encode_image(pixel_values)
        encode_text = model.encode_text(input_ids)
        logits_per_image, logits_per_text = model.get_similarity(pixel_values, input_ids)
        _, _, logit_scale_exp = model(pixel_values, input_ids)
    assert torch.equal(logits_per_text, logits_per_image.t())

    arrays = {f"state_dict/{PREFIX}{k}": v.detach().numpy() for k, v in model.state_dict().items()}
    meta = {
        "generator": "tools/dev/make_model_golden.py",
        "reference": f"cn_clip {metadata.version('cn_clip')} cn_clip.clip.model.CLIP",
        "torch": torch.__version__,
        "seed": SEED,
    }
    arrays.update(
        config=np.array(json.dumps(CONFIG, sort_keys=True)),
        meta=np.array(json.dumps(meta, sort_keys=True)),
        pixel_values=pixel_values.numpy(),
        input_ids=input_ids.numpy(),
        encode_image=encode_image.numpy(),
        encode_text=encode_text.numpy(),
        logits_per_image=logits_per_image.numpy(),
        logit_scale_exp=logit_scale_exp.numpy(),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    n_params = sum(v.size for k, v in arrays.items() if k.startswith("state_dict/"))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {n_params} parameters)")
    print(f"logits_per_image:\n{logits_per_image.numpy()}")


if __name__ == "__main__":
    main()
