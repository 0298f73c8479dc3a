"""Draw detections onto a picture: `edged detect --annotate` files and MQTT snapshots.

Boxes get a colour per class and a filled label tab ("cat 72%") sized to the
picture, so the result is readable both as a 512-px test photo and as a 1080p
camera snapshot on a phone.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edged.types import Detection

_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable since Pillow 10.1
    except TypeError:
        return ImageFont.load_default()


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def annotate(image: np.ndarray | Image.Image, detections: Iterable[Detection]) -> Image.Image:
    """A copy of the RGB picture with each detection's box and "label score%" drawn on it."""
    picture = (Image.fromarray(image) if isinstance(image, np.ndarray) else image).convert("RGB")
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    line = max(2, round(min(width, height) / 200))
    font = _font(max(12, round(min(width, height) / 32)))
    for detection in detections:
        color = _PALETTE[detection.class_id % len(_PALETTE)]
        x0, y0, x1, y1 = detection.box.to_pixels(width, height)
        x0, x1 = sorted((max(0, min(width - 1, x0)), max(0, min(width - 1, x1))))
        y0, y1 = sorted((max(0, min(height - 1, y0)), max(0, min(height - 1, y1))))
        draw.rectangle((x0, y0, x1, y1), outline=color, width=line)
        text = f"{detection.label} {detection.score:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tab_w, tab_h = right - left + 2 * line, bottom - top + 2 * line
        tab_y = y0 - tab_h if y0 - tab_h >= 0 else y0  # above the box, or inside it at the top edge
        tab_x = min(x0, max(0, width - tab_w))
        draw.rectangle((tab_x, tab_y, tab_x + tab_w, tab_y + tab_h), fill=color)
        draw.text((tab_x + line - left, tab_y + line - top), text, fill=_text_color(color), font=font)
    return picture


def to_jpeg(image: np.ndarray | Image.Image, detections: Iterable[Detection], quality: int = 80) -> bytes:
    """The annotated picture as JPEG bytes (for snapshots published over MQTT)."""
    buffer = io.BytesIO()
    annotate(image, detections).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
