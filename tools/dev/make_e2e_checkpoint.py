"""Write a small random-weight Chinese-CLIP checkpoint with the real 21128-word vocabulary, as cn_clip saves it.

    env -u PYTHONPATH .venv-ref/bin/python tools/dev/make_e2e_checkpoint.py

Needs torch + cn_clip (the reference). Output: ``tests/models/golden/e2e/ViT-B-16-e2e-fp16.pt`` (float16
storages, "module." prefix, under "state_dict", like the released files), used by
tests/models/test_converted_end_to_end.py to run conversion -> retrieval eval -> zero-shot on the built-in
data without torch. The parity goldens use a 300-word vocabulary, which real captions overflow.
"""

from __future__ import annotations

from pathlib import Path

import torch
from cn_clip.clip.model import CLIP

OUT = Path(__file__).resolve().parents[2] / "tests" / "models" / "golden" / "e2e"

CONFIG = {  # ViT-B-16's layout at toy size; real vocabulary and context
    "embed_dim": 32,
    "image_resolution": 64,
    "vision_layers": 2,
    "vision_width": 32,
    "vision_head_width": 16,
    "vision_patch_size": 16,
    "vocab_size": 21128,
    "text_attention_probs_dropout_prob": 0.1,
    "text_hidden_act": "gelu",
    "text_hidden_dropout_prob": 0.1,
    "text_hidden_size": 16,
    "text_initializer_range": 0.02,
    "text_intermediate_size": 32,
    "text_max_position_embeddings": 64,
    "text_num_attention_heads": 2,
    "text_num_hidden_layers": 2,
    "text_type_vocab_size": 2,
}


def main() -> None:
    torch.manual_seed(0)
    model = CLIP(**CONFIG).eval()
    state = {f"module.{k}": (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "ViT-B-16-e2e-fp16.pt"
    torch.save({"epoch": 1, "step": 1, "name": "ViT-B-16", "state_dict": state}, path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
