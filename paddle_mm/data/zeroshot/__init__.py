"""Zero-shot classification data: shipped class names and prompt templates, and Chinese-CLIP's folder format.

Chinese-CLIP's zero-shot datasets (zeroshot_dataset.md) look like::

    <root>/label_cn.txt          one Chinese class name a line; line i names class i
    <root>/test/000/xxx.jpg      images of class 0 (folder names sort in class order: 000, 001, ...)
    <root>/test/001/yyy.png

cn_clip reads ``<root>/test`` with torchvision's ``ImageFolder``, which numbers the class folders in sorted
order; :func:`load_zero_shot_folder` does the same, and checks that the folder count matches ``label_cn.txt``.

Shipped data (see NOTICE): ``imagenet_cn_classnames.txt`` (ImageNet-1k in Chinese, 1000 lines) and
``templates.json`` (cn_clip's prompt sets by name: "openai", the one its zeroshot_evaluation.py uses for
ImageNet; "imagenet", the 80 prompts of imagenet_zeroshot_templates.py; "flower", "food", ...).
This module does not import paddle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).parent
IMAGENET_CN_CLASSNAMES = DATA_DIR / "imagenet_cn_classnames.txt"
TEMPLATES_FILE = DATA_DIR / "templates.json"
DEFAULT_TEMPLATES = "openai"  # what cn_clip's zeroshot_evaluation.py uses unless the dataset has its own set

# torchvision's IMG_EXTENSIONS, which cn_clip's ImageFolder accepts
ZERO_SHOT_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def read_classnames(path: str | os.PathLike) -> list[str]:
    """Class names of a ``label_cn.txt``-style file: one a line, stripped, in class order.

    Blank lines are an error (cn_clip would silently make them classes named "").
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline or two is fine
    names = [line.strip() for line in lines]
    blank = [i + 1 for i, name in enumerate(names) if not name]
    if blank:
        raise ValueError(f"{path}: blank class name on line(s) {blank[:5]}; write one class name per line")
    if not names:
        raise ValueError(f"{path} holds no class names; write one class name per line")
    return names


def imagenet_classnames() -> list[str]:
    """The 1000 ImageNet-1k class names in Chinese, as cn_clip ships them (index = ImageNet class index)."""
    return read_classnames(IMAGENET_CN_CLASSNAMES)


def template_sets() -> dict[str, list[str]]:
    """Every shipped prompt set: name -> format strings with one ``{}`` for the class name."""
    return json.loads(TEMPLATES_FILE.read_text(encoding="utf-8"))


def load_templates(spec: str = DEFAULT_TEMPLATES) -> list[str]:
    """Prompt templates by shipped set name (see :func:`template_sets`) or from a file.

    A file is ``.json`` (a list of strings) or text (one template a line); each template holds ``{}``
    exactly once, where the class name goes.
    """
    sets = template_sets()
    if spec in sets:
        return list(sets[spec])
    path = Path(spec)
    if not path.is_file():
        raise KeyError(f"unknown template set {spec!r}; use a shipped set {sorted(sets)} or a file path")
    if path.suffix == ".json":
        templates = json.loads(path.read_text(encoding="utf-8"))
    else:
        templates = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    check_templates(templates, str(path))
    return templates


def check_templates(templates: list[str], source: str = "templates") -> None:
    """Raise ValueError unless ``templates`` is a non-empty list of strings with exactly one ``{}`` each."""
    if not isinstance(templates, list) or not templates:
        raise ValueError(f"{source}: expected a non-empty list of templates, got {templates!r:.80}")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1 or "{" in t.replace("{}", "", 1):
            raise ValueError(f"{source}: template {t!r} must contain '{{}}' exactly once (where the class name goes)")


@dataclass
class ZeroShotFolder:
    """A zero-shot test set: ``images[i]`` is a path, ``labels[i]`` its class index into ``classnames``."""

    root: Path
    classnames: list[str]
    images: list[Path]
    labels: list[int]
    class_folders: list[str]

    def __repr__(self) -> str:
        return f"ZeroShotFolder({str(self.root)!r}, {len(self.classnames)} classes, {len(self.images)} images)"


def load_zero_shot_folder(
    root: str | os.PathLike, split: str = "test", label_file: str | None = None
) -> ZeroShotFolder:
    """Read Chinese-CLIP's zero-shot layout: ``root/label_cn.txt`` and ``root/<split>/<class folder>/*``.

    Class folders are taken in sorted order, as torchvision's ImageFolder does, and folder k is class k.
    Raises FileNotFoundError / ValueError naming the path when the layout is wrong, the folder count and the
    number of class names differ, or a class folder has no image.
    """
    root = Path(root)
    label_path = Path(label_file) if label_file else root / "label_cn.txt"
    image_dir = root / split
    if not label_path.is_file():
        raise FileNotFoundError(f"{label_path} not found; a zero-shot dataset needs one class name a line there")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir} not found; expected {image_dir}/000/*.jpg, {image_dir}/001/... ")
    classnames = read_classnames(label_path)
    folders = sorted(e.name for e in os.scandir(image_dir) if e.is_dir() and not e.name.startswith("."))
    if len(folders) != len(classnames):
        raise ValueError(
            f"{image_dir} has {len(folders)} class folders but {label_path} names {len(classnames)} classes; "
            "folder k (in sorted order) must hold the images of line k"
        )
    images, labels = [], []
    for k, folder in enumerate(folders):
        files = sorted(
            p for p in (image_dir / folder).iterdir() if p.suffix.lower() in ZERO_SHOT_IMAGE_EXTENSIONS and p.is_file()
        )
        if not files:
            raise ValueError(f"class folder {image_dir / folder} ({classnames[k]!r}) holds no image")
        images.extend(files)
        labels.extend([k] * len(files))
    return ZeroShotFolder(root, classnames, images, labels, folders)


__all__ = [
    "DEFAULT_TEMPLATES",
    "IMAGENET_CN_CLASSNAMES",
    "TEMPLATES_FILE",
    "ZeroShotFolder",
    "check_templates",
    "imagenet_classnames",
    "load_templates",
    "load_zero_shot_folder",
    "read_classnames",
    "template_sets",
]
