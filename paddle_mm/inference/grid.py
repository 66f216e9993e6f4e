"""A retrieval result as a picture: one row per text query, the query then its top-k images with their scores.

    save_grid("infer_grid.png", [("一只猫", [(image_bytes, 0.31), ...]), ...])
    save_grid("infer_grid.png", [("左上角有一个红色的圆形", [(image_bytes, 0.31, True), ...]), ...])  # checked

A hit may carry a third item, whether it satisfies the query (None: not checked): a satisfying image gets a
green frame and √ after its score, a wrong one a red frame and × (``ok`` / ``no`` without a CJK font).

Chinese needs a CJK font: the first of ``$PADDLE_MM_FONT`` and the usual system paths (Noto/Source Han CJK,
WenQuanYi, SimHei, Microsoft YaHei, PingFang) that exists is used; without one, rows are labelled
``Q1``, ``Q2``... (the caller prints which query each label is). Needs Pillow; no paddle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..vision.transforms import load_image

CELL = 128  # px of each image cell
PAD = 8
LABEL = 22  # px of the score line under each image
TEXT_WIDTH = 200  # px of the query column
FONT_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/adobe-source-han-sans/SourceHanSansCN-Regular.otf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
    "/System/Library/Fonts/PingFang.ttc",
)

FRAME = 3  # px of the green / red frame around a checked image (drawn in the padding, so at most PAD / 2)
# colour, mark, mark without a CJK font. √ and × (GB2312, so in every Chinese font; WenQuanYi has no ✗ glyph)
MARKS = {True: ((40, 160, 40), "√", "ok"), False: ((210, 40, 40), "×", "no")}

Row = tuple[str, Sequence[tuple]]  # (query text, [(image, score[, satisfies]), ...] best first)


def cjk_font() -> str | None:
    """Path of a font that can draw Chinese, or None."""
    for path in (os.environ.get("PADDLE_MM_FONT"), *FONT_PATHS):
        if path and Path(path).is_file():
            return path
    return None


def save_grid(path: str | os.PathLike, rows: Sequence[Row]) -> dict[str, object]:
    """Draw ``rows`` into a PNG at ``path``; return ``{"path", "labels"}`` (the query each row is labelled with).

    An image that cannot be decoded is drawn as a grey cell with ``unreadable``."""
    from PIL import Image, ImageDraw, ImageFont

    font_path = cjk_font()
    font = ImageFont.truetype(font_path, 16) if font_path else ImageFont.load_default()
    k = max((len(hits) for _, hits in rows), default=0)
    width = TEXT_WIDTH + k * (CELL + PAD) + PAD
    height = len(rows) * (CELL + LABEL + PAD) + PAD
    canvas = Image.new("RGB", (width, max(height, 1)), "white")
    draw = ImageDraw.Draw(canvas)
    labels = []
    for r, (query, hits) in enumerate(rows):
        top = PAD + r * (CELL + LABEL + PAD)
        label = query if font_path else f"Q{r + 1}"
        labels.append(label)
        draw.multiline_text((PAD, top + CELL // 2 - 10), _wrap(label, 10), fill="black", font=font)
        for c, (image, score, *check) in enumerate(hits):
            left = TEXT_WIDTH + c * (CELL + PAD)
            canvas.paste(_cell(image), (left, top))
            label = f"#{c + 1}  {score:.3f}"
            if check and check[0] is not None:
                colour, symbol, plain = MARKS[bool(check[0])]
                # around the image, in the padding: the image itself stays as the gallery holds it
                draw.rectangle(
                    (left - FRAME, top - FRAME, left + CELL + FRAME - 1, top + CELL + FRAME - 1),
                    outline=colour,
                    width=FRAME,
                )
                label += f"  {symbol if font_path else plain}"
            draw.text((left + 4, top + CELL + 3), label, fill="black", font=font)
    canvas.save(path, format="PNG")
    return {"path": os.fspath(path), "labels": labels}


def _cell(image: object):
    from PIL import Image, ImageDraw

    try:
        array = load_image(image)
    except ValueError:
        grey = Image.new("RGB", (CELL, CELL), (200, 200, 200))
        ImageDraw.Draw(grey).text((PAD, CELL // 2), "unreadable", fill="black")
        return grey
    cell = Image.fromarray(np.ascontiguousarray(array))
    scale = CELL / max(cell.size)  # small gallery images are enlarged too, so the cell is filled
    cell = cell.resize((max(1, round(cell.width * scale)), max(1, round(cell.height * scale))), Image.BICUBIC)
    framed = Image.new("RGB", (CELL, CELL), "white")
    framed.paste(cell, ((CELL - cell.width) // 2, (CELL - cell.height) // 2))
    return framed


def _wrap(text: str, width: int) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))
