"""Write real cn_clip ``.pt`` checkpoints (torch.save) for every architecture, plus cn_clip's outputs on them.

Run with the reference environment (torch + cn_clip 1.6.0), never from the tests:

    env -u PYTHONPATH .venv-ref/bin/python tools/dev/make_parity_golden.py            # tests/models/golden/parity
    env -u PYTHONPATH .venv-ref/bin/python tools/dev/make_parity_golden.py --full --out /tmp/parity_full

Each architecture is cn_clip.clip.model.CLIP at reduced depth and width that keeps what tells it apart
(ResNet vs ViT, patch 16 / 14 / 32, the 336 grid, ViT-H's non-64 head width, a deeper and wider text tower
for ViT-H), with seeded weights redrawn so that every parameter and BatchNorm statistic matters (see
make_model_golden.py). ``--full`` instead writes a full-size ViT-B-16 (~750 MB, not for the repository).

Per architecture ``<name>``:

    <name>.pt     torch.save({"epoch", "step", "name", "state_dict"}), "module." prefix, as cn_clip's trainer saves
    <name>.npz    config and head overrides (JSON), pixel_values, input_ids, cn_clip's encode_image, encode_text,
                  logits_per_image (get_similarity) and logit_scale_exp, meta
ViT-B-16 also gets ``ViT-B-16-fp16.pt``: the same weights stored as float16 (outputs in the npz are then those
of the fp16-rounded weights run in fp32, key prefix ``fp16/``).

The heads overrides are what ``tools/convert_weights.py --set`` needs: head counts are not stored in weights.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from cn_clip.clip.model import CLIP
from make_model_golden import CLS_ID, PAD_ID, SEP_ID, build

OUT = Path(__file__).resolve().parents[2] / "tests" / "models" / "golden" / "parity"
SEED = 0
TEXT = {  # a small RoBERTa: 2 layers, 32 wide, 2 heads of 16
    "vocab_size": 300,
    "text_attention_probs_dropout_prob": 0.1,
    "text_hidden_act": "gelu",
    "text_hidden_dropout_prob": 0.1,
    "text_hidden_size": 32,
    "text_initializer_range": 0.02,
    "text_intermediate_size": 64,
    "text_max_position_embeddings": 64,
    "text_num_attention_heads": 2,
    "text_num_hidden_layers": 2,
    "text_type_vocab_size": 2,
}
LARGE_TEXT = {**TEXT, "text_hidden_size": 48, "text_intermediate_size": 96, "text_num_attention_heads": 3,
              "text_num_hidden_layers": 3}  # fmt: skip
VIT = {"embed_dim": 32, "vision_layers": 2, "vision_width": 32, "vision_head_width": 16}
REDUCED = {
    "RN50": {**TEXT, "text_num_hidden_layers": 3, "embed_dim": 32, "image_resolution": 64,
             "vision_layers": [2, 1, 1, 1], "vision_width": 4, "vision_head_width": 32, "vision_patch_size": None},
    "ViT-B-16": {**TEXT, **VIT, "image_resolution": 32, "vision_patch_size": 16},
    "ViT-B-32": {**TEXT, **VIT, "vision_width": 16, "vision_head_width": 8, "image_resolution": 64,
                 "vision_patch_size": 32},
    "ViT-L-14": {**TEXT, **VIT, "vision_width": 48, "image_resolution": 28,
                 "vision_patch_size": 14},
    "ViT-L-14-336": {**TEXT, **VIT, "vision_width": 48, "image_resolution": 42,
                     "vision_patch_size": 14},
    "ViT-H-14": {**LARGE_TEXT, **VIT, "embed_dim": 48, "vision_width": 40, "vision_head_width": 20,
                 "image_resolution": 28, "vision_patch_size": 14},
}  # fmt: skip
IMAGES, CONTEXT_LENGTH, TEXT_LENGTHS = 2, 52, (52, 9, 4)  # 2 images x 3 texts: logits are not square


def full_config(name: str) -> dict:
    """cn_clip's own JSON configs for ``name`` (vision + text tower), as cn_clip.clip.utils builds them."""
    configs = Path(__import__("cn_clip").__file__).parent / "clip" / "model_configs"
    towers = {"ViT-H-14": "RoBERTa-wwm-ext-large-chinese", "RN50": "RBT3-chinese"}
    text = towers.get(name, "RoBERTa-wwm-ext-base-chinese")
    cfg = json.loads((configs / f"{name}.json").read_text())
    cfg.update(json.loads((configs / f"{text}.json").read_text()))
    if isinstance(cfg["vision_layers"], str):
        cfg["vision_layers"] = json.loads(cfg["vision_layers"])
    return cfg


def make_inputs(cfg: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    res = cfg["image_resolution"]
    pixel_values = torch.randn(IMAGES, 3, res, res, generator=gen)
    input_ids = torch.full((len(TEXT_LENGTHS), CONTEXT_LENGTH), PAD_ID, dtype=torch.int64)
    for row, length in enumerate(TEXT_LENGTHS):
        words = torch.randint(SEP_ID + 1, cfg["vocab_size"], (length - 2,), generator=gen)
        input_ids[row, :length] = torch.cat([torch.tensor([CLS_ID]), words, torch.tensor([SEP_ID])])
    return pixel_values, input_ids


def outputs(model: CLIP, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        logits_per_image, _ = model.get_similarity(pixel_values, input_ids)
        return {
            "encode_image": model.encode_image(pixel_values).numpy(),
            "encode_text": model.encode_text(input_ids).numpy(),
            "logits_per_image": logits_per_image.numpy(),
            "logit_scale_exp": model.logit_scale.exp().numpy(),
        }


def save_pt(model: CLIP, path: Path, name: str, dtype: torch.dtype = torch.float32) -> None:
    state = {f"module.{k}": (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "step": 10, "name": name, "state_dict": state}, path)


def write(name: str, cfg: dict, out: Path, seed: int, fp16: bool) -> None:
    start = time.perf_counter()
    model = build(cfg, seed)
    pixel_values, input_ids = make_inputs(cfg, seed + 1)
    save_pt(model, out / f"{name}.pt", name)
    arrays = {f"cn_clip/{k}": v for k, v in outputs(model, pixel_values, input_ids).items()}
    if fp16:
        save_pt(model, out / f"{name}-fp16.pt", name, torch.float16)
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(param.half().float())
        arrays.update({f"fp16/{k}": v for k, v in outputs(model, pixel_values, input_ids).items()})
    overrides = {
        "vision_head_width": cfg.get("vision_head_width", 64),  # cn_clip's default when the JSON has none
        "text_num_attention_heads": cfg["text_num_attention_heads"],
    }
    meta = {
        "generator": "tools/dev/make_parity_golden.py",
        "reference": f"cn_clip {metadata.version('cn_clip')} cn_clip.clip.model.CLIP",
        "torch": torch.__version__,
        "seed": seed,
    }
    np.savez_compressed(
        out / f"{name}.npz",
        config=np.array(json.dumps(cfg, sort_keys=True)),
        overrides=np.array(json.dumps(overrides, sort_keys=True)),
        meta=np.array(json.dumps(meta, sort_keys=True)),
        pixel_values=pixel_values.numpy(),
        input_ids=input_ids.numpy(),
        **arrays,
    )
    size = sum(p.stat().st_size for p in out.glob(f"{name}*"))
    print(f"{name}: {size / 1e6:.2f} MB in {time.perf_counter() - start:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--full", action="store_true", help="one full-size ViT-B-16 instead of the reduced set")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    configs = {"ViT-B-16": full_config("ViT-B-16")} if args.full else REDUCED
    for seed, (name, cfg) in enumerate(configs.items()):
        write(name, cfg, args.out, seed=SEED + 10 * seed, fp16=name == "ViT-B-16" and not args.full)


if __name__ == "__main__":
    main()
