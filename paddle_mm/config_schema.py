"""Every config key paddle_mm reads: type, default, meaning. The single source for validation
(:mod:`paddle_mm.config`) and for ``docs/config_reference.md`` (``python tools/dev/gen_config_reference.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from hardware.device import device_choices
from hardware.tables import DEFAULT_DEVICE

_REQUIRED = object()


@dataclass
class Field:
    types: tuple[type, ...]
    default: Any = _REQUIRED
    doc: str = ""
    choices: tuple | None = None
    nullable: bool = False
    item_type: type | None = None  # for list fields
    check: Callable[[Any], str | None] | None = None  # returns a problem description, or None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return bool in self.types
        if isinstance(value, int) and float in self.types:
            return True
        if not isinstance(value, self.types):
            return False
        if self.item_type is not None and isinstance(value, list):
            return all(isinstance(v, self.item_type) and not isinstance(v, bool) for v in value)
        return True

    def type_name(self) -> str:
        names = [t.__name__ if t is not list else f"list of {self.item_type.__name__}" for t in self.types]
        if self.nullable or (not self.required and self.default is None):
            names.append("null")
        return " or ".join(names)


@dataclass
class Section:
    fields: dict[str, Any]
    doc: str = ""
    required: bool = False
    optional: bool = False  # absent section stays None instead of being filled with defaults


@dataclass
class ListOf:
    item: Any
    doc: str = ""

    def item_name(self) -> str:
        if isinstance(self.item, OneOf):
            return "{Name: {...}} with Name in " + str(sorted(self.item.choices))
        return "items"


@dataclass
class OneOf:
    choices: dict[str, Section] = field(default_factory=dict)


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _ratio(v: Any) -> str | None:
    return None if 0.0 <= v < 1.0 else "must be in [0, 1)"


def _topk(v: list) -> str | None:
    return None if v and all(k > 0 for k in v) else "must be a non-empty list of positive integers"


INT, FLOAT, BOOL, STR = (int,), (float,), (bool,), (str,)

GLOBAL = Section(
    {
        "output_dir": Field(STR, "./output", "directory for checkpoints, logs and VisualDL records"),
        "device": Field(
            STR,
            DEFAULT_DEVICE,
            f"{device_choices()} (hardware/tables.py); checked against this machine first: an absent one is "
            "one line naming its install command, exit code 2",
        ),
        "epochs": Field(INT, doc="number of training epochs", check=_positive),
        "seed": Field(INT, 42, "seed for weights, data order and dropout; the same seed repeats a run"),
        "save_interval": Field(INT, 1, "write epoch_N every this many epochs", check=_positive),
        "save_steps": Field(
            INT, 0, "also write `latest` every this many optimizer steps (0: only at epoch end)", check=_non_negative
        ),
        "eval_during_train": Field(BOOL, True, "evaluate on DataLoader.Eval during training"),
        "eval_interval": Field(INT, 1, "evaluate every this many epochs", check=_positive),
        "print_batch_step": Field(INT, 10, "log a line every this many optimizer steps", check=_positive),
        "use_visualdl": Field(BOOL, False, "write VisualDL scalars under output_dir/<name>/vdl"),
        "checkpoints": Field(
            STR,
            None,
            "checkpoint directory to resume from (e.g. output/x/latest); resuming may write into a folder that "
            "already holds a run, and refuses a config that changes the data order or the step count",
        ),
        "overwrite": Field(
            BOOL,
            False,
            "a new run into an output folder that already holds one: empty it first (false: refuse, exit 20)",
        ),
        "pretrained_model": Field(STR, None, "weights to start from or to evaluate (a model directory)"),
        "save_inference_dir": Field(STR, "./inference", "where export tools write inference models"),
        "accum_steps": Field(INT, 1, "gradient accumulation: micro-batches per optimizer step", check=_positive),
        "accum_mode": Field(
            STR,
            "gradients",
            "how accum_steps micro-batches make one step: gradients (sum of per-micro-batch losses: negatives from "
            "one micro-batch) or features (Chinese-CLIP's --accum-freq: features cached, one contrastive loss over "
            "all micro-batches of all ranks; the same gradients as one batch accum_steps times larger, for "
            "one extra forward per micro-batch; retrieval only)",
            choices=("gradients", "features"),
        ),
        "progress_bar": Field(BOOL, True, "show tqdm progress bars (rank 0 only)"),
        # issue 19 item 5: the rest of Chinese-CLIP's training flags
        "max_steps": Field(
            INT,
            None,
            "Chinese-CLIP's --max-steps: stop after this many optimizer steps; takes precedence over epochs, which "
            "becomes ceil(max_steps / steps per epoch), and the learning-rate schedule spans max_steps "
            "(null: epochs x steps per epoch)",
            check=_positive,
        ),
        "eval_interval_steps": Field(
            INT,
            0,
            "Chinese-CLIP's --valid-step-interval: also evaluate every this many optimizer steps (global count), "
            "recorded and eligible for best_model like the epoch-end evaluations (0: at epoch ends only)",
            check=_non_negative,
        ),
        "report_batch_acc": Field(
            BOOL,
            False,
            "Chinese-CLIP's --report-training-batch-acc: log i2t_acc / t2i_acc, the share (x100) of the step's "
            "images whose top-scoring text in the (gathered) batch is their own caption, and vice versa, with the "
            "loss (train log line, train_metrics.jsonl, VisualDL); needs ClipLoss",
        ),
        "sync_bn": Field(
            BOOL,
            False,
            "Chinese-CLIP's --use-bn-sync: batch-norm statistics over the global batch of all processes, "
            "through the process group's all-reduce (the RN50 tower's BatchNorm and Paddle BatchNorm2D layers; "
            "gloo on CPU too); one process: nothing to sync, logged",
        ),
        "clip_weight_path": Field(
            STR,
            None,
            "Chinese-CLIP's --clip-weight-path: start the image tower and logit_scale from an OpenAI-CLIP-format "
            "state dict (keys visual.* and logit_scale; .pt / .bin torch zip, .safetensors or .pdparams); "
            "before Global.pretrained_model, ignored on resume",
        ),
        "bert_weight_path": Field(
            STR,
            None,
            "Chinese-CLIP's --bert-weight-path: start the text tower from a BERT / RoBERTa-wwm checkpoint "
            "(Hugging Face names: bert.* or embeddings.* / encoder.*; pooler and MLM head skipped); same files "
            "and order as clip_weight_path",
        ),
        "log_level": Field(
            STR,
            "info",
            "Chinese-CLIP's --debug is log_level: debug: adds a line per optimizer step (micro-batches, seconds, "
            "lr, loss), the resolved config, the parameter count and evaluation times to train.log",
            choices=("debug", "info", "warning"),
        ),
        "drop_duplicate_captions": Field(
            BOOL,
            False,
            "leave captions that repeat an earlier caption of the batch out of the loss (class names as "
            "captions, Chinese-CLIP #240); a warning is logged either way",
        ),
        "task": Field(
            STR,
            "retrieval",
            "what to train: retrieval (CLIP contrastive, the default), vqa (answer classification, VQA soft "
            "accuracy), classification (one label per sample) or matching (image-text matching with in-batch hard "
            "negatives, evaluated by re-ranking); all but retrieval need Arch.fusion; vqa and classification read "
            "DataLoader.*.dataset.name: VQADataset (see docs/fusion.md); inspection (defect classification with "
            "a light CNN on ImageListDataset, docs/inspection.md); captioning (a caption decoder over the image tower, "
            "Arch.caption, docs/captioning.md)",
            choices=("retrieval", "vqa", "classification", "matching", "inspection", "captioning"),
        ),
    },
    doc="run-wide settings",
)

AMP = Section(
    {
        "use_amp": Field(
            BOOL,
            False,
            "automatic mixed precision in the dtype hardware/tables.py gives the device (float16, or bfloat16 "
            "where that is the device's native format); ignored with a warning where Paddle has no autocast",
        ),
        "level": Field(STR, "O1", "O1: per-op casting; O2: cast the model", choices=("O1", "O2")),
        "scale_loss": Field(FLOAT, 65536.0, "initial loss scale (float16 only)", check=_positive),
        "use_dynamic_loss_scaling": Field(BOOL, True, "adapt the loss scale (float16 only)"),
    },
    doc="mixed precision",
)

CLIP_LOSS = Section(
    {
        "weight": Field(FLOAT, 1.0, "weight of this loss term"),
        "gather_with_grad": Field(BOOL, True, "gather negatives from all ranks with gradients (cn_clip default)"),
        "aggregate": Field(
            BOOL, True, "negatives from all ranks (false: each rank's own batch only, cn_clip --skip-aggregate)"
        ),
    }
)

DISTILL_LOSS = Section(
    {
        "weight": Field(FLOAT, 1.0, "weight of this loss term (Chinese-CLIP's --kd_loss_weight)"),
        "teacher": Field(
            STR,
            doc="frozen teacher: a paddle_mm model / checkpoint directory or a Chinese-CLIP .pt (converted in memory)",
        ),
        "kind": Field(
            STR,
            "cosine",
            "cosine: 1 - cos(student, teacher image features), Chinese-CLIP's term (same embed_dim); kl: KL of "
            "the teacher's image<->text similarity distributions to the student's (any sizes)",
            choices=("cosine", "kl"),
        ),
    }
)

VQA_LOSS = Section(
    {
        "weight": Field(FLOAT, 1.0, "weight of this loss term"),
        "kind": Field(
            STR,
            "softmax",
            "softmax: cross-entropy against the normalised soft scores; bce: MMF's per-answer logit BCE",
            choices=("softmax", "bce"),
        ),
    }
)

CLASSIFICATION_LOSS = Section(
    {
        "weight": Field(FLOAT, 1.0, "weight of this loss term"),
        "label_smoothing": Field(FLOAT, 0.0, "label smoothing of the cross-entropy", check=_ratio),
    }
)

LOSS = Section(
    {
        "Train": ListOf(
            OneOf(
                {
                    "ClipLoss": CLIP_LOSS,
                    "DistillLoss": DISTILL_LOSS,
                    "VQALoss": VQA_LOSS,
                    "ClassificationLoss": CLASSIFICATION_LOSS,
                    "MatchingLoss": Section({"weight": Field(FLOAT, 1.0, "weight of this loss term")}),
                    "AttendLoss": Section(
                        {
                            "weight": Field(
                                FLOAT,
                                1.0,
                                "weight of the attention supervision (the share of the question's attention on the "
                                "cells it refers to, from the training split's scene records; training only)",
                                check=_non_negative,
                            )
                        }
                    ),
                    "CellLoss": Section(
                        {
                            "weight": Field(
                                FLOAT,
                                1.0,
                                "weight of the per-cell auxiliary loss (what each grid cell holds, from the training "
                                "split's scene records; training only)",
                                check=_non_negative,
                            )
                        }
                    ),
                }
            ),
            "loss terms summed during training (VQALoss for Global.task vqa, ClassificationLoss for classification, "
            "MatchingLoss + ClipLoss for matching; DistillLoss beside ClipLoss distills a teacher; CellLoss beside "
            "VQALoss / ClassificationLoss supervises the image tower per grid cell, AttendLoss where the fusion looks)",
        )
    },
    doc="losses",
    required=True,
)

LR = Section(
    {
        "name": Field(STR, "Cosine", "schedule", choices=("Cosine", "Constant")),
        "learning_rate": Field(FLOAT, doc="peak learning rate", check=_positive),
        "warmup_steps": Field(INT, 0, "linear warm-up length in optimizer steps", check=_non_negative),
        "warmup_epoch": Field(
            FLOAT, 0.0, "linear warm-up length in epochs (added to warmup_steps)", check=_non_negative
        ),
        "eta_min": Field(FLOAT, 0.0, "final learning rate of the cosine schedule", check=_non_negative),
    },
    required=True,
)

OPTIMIZER = Section(
    {
        "name": Field(STR, "AdamW", "optimizer", choices=("AdamW", "Adam", "Momentum")),
        "beta1": Field(FLOAT, 0.9, "Adam beta1"),
        "beta2": Field(FLOAT, 0.98, "Adam beta2 (CLIP uses 0.98)"),
        "epsilon": Field(FLOAT, 1e-6, "Adam epsilon"),
        "momentum": Field(FLOAT, 0.9, "Momentum's momentum"),
        "weight_decay": Field(
            FLOAT,
            0.001,
            "decoupled weight decay; never applied to biases, norms, embeddings' 1-D params or logit_scale",
            check=_non_negative,
        ),
        "grad_clip": Field(FLOAT, None, "clip gradients to this global norm (null: no clipping)"),
        "lr": LR,
    },
    doc="optimizer and learning-rate schedule",
    required=True,
)


# issue 15: OpenCV frame pre-processing of ImageListDataset (paddle_mm/vision/frame.py)
FRAME = Section(
    {
        "color": Field(STR, "rgb", "rgb, or gray (replicated to 3 channels)", choices=("rgb", "gray")),
        "denoise": Field(STR, "none", "OpenCV denoising filter", choices=("none", "gaussian", "median", "bilateral")),
        "contrast": Field(
            STR, "none", "clahe or equalize the luminance histogram", choices=("none", "clahe", "equalize")
        ),
        "clahe_clip": Field(FLOAT, 2.0, "CLAHE clip limit", check=_positive),
    },
    doc="ImageListDataset (Global.task inspection): frame pre-processing before resizing to Arch.image_resolution",
)


def _crop_range(v: list) -> str | None:
    return None if len(v) == 2 and 0 < v[0] <= v[1] else "must be [min, max] with 0 < min <= max"


TRANSFORM = Section(
    {
        "augment": Field(
            BOOL,
            False,
            "Chinese-CLIP's --use-augment: RandomResizedCrop + horizontal flip + AutoAugment (ImageNet policy) on "
            "training images (paddle_mm.vision.transforms.TrainAugment); false: the evaluation transform",
        ),
        "crop_scale": Field(
            (list,), [0.9, 1.0], "augment: area share of the random crop", item_type=float, check=_crop_range
        ),
        "crop_ratio": Field(
            (list,),
            [0.75, 1.3333333333333333],
            "augment: aspect-ratio range of the random crop",
            item_type=float,
            check=_crop_range,
        ),
        "hflip": Field(
            FLOAT,
            0.5,
            "augment: horizontal-flip probability (cn_clip 0.5; 0 when captions say left or right)",
            check=lambda v: None if 0 <= v <= 1 else "must be in [0, 1]",
        ),
        "auto_augment": Field(STR, "original", "augment: AutoAugment policy", choices=("original", "none")),
    },
    doc="training-time image augmentation",
)


def _loader_section(split: str, shuffle: bool, drop_last: bool, required: bool) -> Section:
    loader = Section({"num_workers": Field(INT, 0, "worker processes for decoding", check=_non_negative)})
    dataset = Section(
        {
            "name": Field(
                STR,
                "ImageTextDataset",
                "dataset reader: ImageTextDataset (captions, retrieval) or VQADataset ({split}_imgs.tsv + "
                "{split}_questions.jsonl + answers.json from tools/make_vqa_data.py; splits train/valid/test)",
                choices=("ImageTextDataset", "VQADataset", "ImageListDataset"),
            ),
            "preprocess": FRAME,
            "root": Field(STR, doc="data directory (Chinese-CLIP TSV/JSONL files or the folder format)"),
            "split": Field(STR, split, "split name: reads {split}_imgs.tsv + {split}_texts.jsonl or {split}/"),
            "format": Field(
                STR, "auto", "file format (auto: tsv or folder)", choices=("auto", "tsv", "folder", "lmdb")
            ),
            "interpolation": Field(
                STR,
                "pil_bicubic",
                "resize kernel; pil_bicubic matches cn_clip exactly",
                choices=("pil_bicubic", "cv2_bicubic"),
            ),
        },
        required=True,
    )
    if split == "train":  # issue 19: training-time augmentation; evaluation never augments
        dataset.fields["transform"] = TRANSFORM
        loader.fields["cache"] = Field(
            BOOL,
            False,
            "caption data (ImageTextDataset): decode, resize and tokenize the training split once into memory "
            "(3 x S x S bytes per image: 166 MB for 6,000 images at 96 px) and gather each batch from there; "
            "for small data, with num_workers 0 and no augmentation",
        )
    sampler = Section(
        {
            "batch_size": Field(INT, doc="samples per rank per step", check=_positive),
            "shuffle": Field(BOOL, shuffle, "shuffle every epoch (seeded)"),
            "drop_last": Field(BOOL, drop_last, "drop the last incomplete batch"),
        },
        required=True,
    )
    return Section({"dataset": dataset, "sampler": sampler, "loader": loader}, required=required, optional=not required)


DATALOADER = Section(
    {
        "Train": _loader_section("train", True, True, required=True),
        "Eval": _loader_section("valid", False, False, required=False),
    },
    doc="data",
    required=True,
)

METRIC = Section(
    {
        "Eval": ListOf(
            OneOf({"Recall": Section({"topk": Field((list,), [1, 5, 10], "K values", item_type=int, check=_topk)})}),
            "retrieval metrics; MR (mean recall) always averages R@1, R@5 and R@10",
        ),
    },
)

INFER = Section(
    {
        "root": Field(STR, None, "gallery: data directory searched by tools/infer.py (default: the Eval data)"),
        "split": Field(STR, "test", "gallery split"),
        "queries": Field((list,), ["左上角有一个红色的圆形"], "text queries (text -> top-k images)", item_type=str),
        "query_images": Field((list,), [], "image files (image -> top-k captions)", item_type=str),
        "topk": Field(INT, 5, "results per query", check=_positive),
        "batch_size": Field(INT, 64, "batch size for gallery encoding", check=_positive),
        "model_dir": Field(
            STR,
            None,
            "search with an export directory (tools/export_model.py) through the Predictor instead of "
            "Global.pretrained_model",
        ),
        "package": Field(
            STR,
            None,
            "search with an SM-signed package of an export directory (docs/model_package.md), verified "
            "before any file is loaded; needs Infer.trust and Infer.package_model",
        ),
        "trust": Field(
            (list,), [], "package: trust anchor files (the signer's public key or certificate PEM)", item_type=str
        ),
        "package_model": Field(STR, None, "package: the model name it must be signed for (no replay of another's)"),
        "package_state": Field(
            STR, None, "package: rollback state file (null: $PADDLE_MM_PACKAGE_STATE or ~/.local/state/paddle_mm/)"
        ),
        "decrypt_key": Field(STR, None, "package: a recipient's SM2 private key PEM, for an encrypted package"),
        "decrypt_passphrase_env": Field(
            STR, None, "package: environment variable holding decrypt_key's passphrase (when it is encrypted)"
        ),
        "backend": Field(
            STR,
            "auto",
            "model_dir / package: runtime (auto: measured once)",
            choices=("auto", "paddle_inference", "onnxruntime"),
        ),
        "precision": Field(
            STR,
            "fp32",
            "model_dir / package: fp32, the INT8 ONNX towers, bf16 (oneDNN BF16 on a CPU with AVX512_BF16 or AMX), "
            "or auto (BF16 where it is faster and its features within cosine 0.999 of fp32, else fp32)",
            choices=("fp32", "int8", "bf16", "auto"),
        ),
        "threads": Field(
            INT, None, "model_dir / package: CPU threads (null: all this process may use)", check=_positive
        ),
    },
)


FUSION = Section(
    {
        "name": Field(
            STR,
            doc="fusion module (paddle_mm/models/fusion.py): concat (early), late, attention (per-sample modality "
            "weights), cross_attention, filip (token-wise late interaction), mfb (bilinear); text_only / "
            "image_only baselines",
            choices=("concat", "late", "attention", "cross_attention", "filip", "mfb", "text_only", "image_only"),
        ),
        "hidden": Field(INT, 128, "width of the fusion layers and of the head's hidden layer", check=_positive),
        "dropout": Field(FLOAT, 0.1, "dropout in the fusion and the head", check=_ratio),
        "layers": Field(INT, 2, "cross_attention: stacked layers", check=_positive),
        "heads": Field(INT, 4, "cross_attention: attention heads (must divide hidden)", check=_positive),
        "image_positions": Field(
            BOOL,
            False,
            "cross_attention: add a learned embedding per image token position to the patch tokens it reads "
            "(LXMERT's box-position embedding, one per patch)",
        ),
        "factor": Field(INT, 5, "mfb: rank k of the factorized bilinear pooling", check=_positive),
        "attend": Field(BOOL, True, "mfb: question-guided attention over image patches (false: pooled image)"),
        "towers": Field(
            STR,
            "full",
            "train the CLIP towers fully, partly (the last train_layers blocks of each) or not at all",
            choices=("full", "partial", "frozen"),
        ),
        "train_layers": Field(INT, 1, "towers: partial: blocks trained at the top of each tower", check=_positive),
        "clip_weights": Field(
            STR, None, "model directory (model.safetensors) of a trained CLIP whose towers to start from"
        ),
    },
    doc="multimodal fusion on the CLIP towers (Global.task vqa / classification); absent for retrieval",
    optional=True,
)

# issue 15: Arch.caption of Global.task captioning (defaults: paddle_mm/models/captioning.py CAPTION_DEFAULTS)
CAPTION = Section(
    {
        "width": Field(INT, 128, "decoder width", check=_positive),
        "layers": Field(INT, 2, "decoder blocks (causal self-attention, cross-attention, MLP)", check=_positive),
        "heads": Field(INT, 4, "attention heads", check=_positive),
        "dropout": Field(FLOAT, 0.1, "decoder dropout", check=_ratio),
        "max_length": Field(INT, 32, "tokens decoded at most, [CLS] and [SEP] included", check=_positive),
        "freeze_image": Field(BOOL, False, "keep the image tower fixed (train the decoder only)"),
        "clip_weights": Field(STR, None, "model directory of trained towers to start the image tower from"),
        "beam_size": Field(INT, 1, "evaluation decoding: 1 greedy, >1 beam search", check=_positive),
        "length_penalty": Field(FLOAT, 0.0, "beam search: GNMT alpha, score / ((5 + length) / 6) ** alpha"),
    },
    doc="caption decoder over the image tower's patch tokens (Global.task captioning)",
    optional=True,
)

# issue 15: Arch of Global.task inspection (paddle_mm/models/inspection.py CLASSIFIERS; kept paddle-free here)
CLASSIFIER_NAMES = (
    "PP-LCNet_x0_25",
    "PP-LCNet_x0_5",
    "PP-LCNet_x1_0",
    "MobileNetV3_small_x0_5",
    "MobileNetV3_small_x1_0",
)
CLASSIFIER_ARCH = Section(
    {
        "name": Field(STR, doc="defect classifier", choices=CLASSIFIER_NAMES),
        "image_resolution": Field(INT, 64, "input side in pixels (frames are resized to it)", check=_positive),
        "dropout": Field(FLOAT, 0.2, "dropout before the classifier", check=_ratio),
        "class_expand": Field(INT, 1280, "PP-LCNet: width of the 1x1 conv after pooling", check=_positive),
    },
    doc="model",
    required=True,
)


def arch_fields(name: str) -> Section:
    """The ``Arch`` section for one named model: any field of its JSON config may be overridden."""
    from .models.registry import get_model_config, list_models

    if name in CLASSIFIER_NAMES:  # issue 15: the inspection classifiers
        return CLASSIFIER_ARCH
    fields: dict[str, Any] = {
        "name": Field(STR, doc="named architecture", choices=tuple(list_models())),
        "freeze_vision": Field(BOOL, False, "freeze the image tower (LiT stage 1)"),
        "grad_checkpointing": Field(
            BOOL,
            False,
            "recompute each ViT / BERT block in backward instead of keeping its activations "
            "(less memory, about one more forward; a ResNet tower is left as is, as in cn_clip)",
        ),
        "mask_ratio": Field(
            FLOAT,
            0.0,
            "FLIP patch dropout: share of a ViT's patch tokens dropped at random in training (0: off; "
            "eval never drops)",
            check=_ratio,
        ),
        "attention": Field(
            STR,
            "eager",
            "Chinese-CLIP's --use-flash-attention: sdpa runs the ViT and BERT attention through "
            "paddle.nn.functional.scaled_dot_product_attention (Paddle picks flash attention for fp16 / bf16 on "
            "recent GPUs, memory-efficient attention otherwise, its math path on CPU); eager: matmul + softmax. "
            "Same weights and outputs either way",
            choices=("eager", "sdpa"),
        ),
    }
    fields["fusion"] = FUSION
    fields["caption"] = CAPTION
    try:
        base = get_model_config(name)
    except KeyError:
        base = {}
    for key, value in base.items():
        doc = f"override the named model's {key} (default {value!r})"
        if isinstance(value, list):  # RN50's vision_layers: blocks per ResNet stage
            fields[key] = Field((list,), None, doc, item_type=int)
        elif value is None:  # RN50's vision_patch_size
            fields[key] = Field(INT, None, doc)
        else:
            fields[key] = Field(FLOAT if isinstance(value, float) else (type(value),), None, doc)
    return Section(fields, doc="model", required=True)


SCHEMA = Section(
    {
        "Global": Section(GLOBAL.fields, GLOBAL.doc, required=True),
        "AMP": AMP,
        "Arch": Section({"name": Field(STR, doc="named architecture")}, "model", required=True),
        "Loss": LOSS,
        "Optimizer": OPTIMIZER,
        "DataLoader": DATALOADER,
        "Metric": METRIC,
        "Infer": INFER,
    }
)
