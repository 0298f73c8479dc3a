"""Draw results onto a picture: detections (`edged detect --annotate`, MQTT snapshots) and segmentations.

Boxes get a colour per class and a filled label tab ("cat 72%") sized to the
picture, so the result is readable both as a 512-px test photo and as a 1080p
camera snapshot on a phone. A segmentation is a translucent overlay in the
PASCAL VOC palette (the colours DeepLab's results are usually shown in) over
everything but the background, with a legend of the classes present.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

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


def annotate(image: np.ndarray | Image.Image, detections: Iterable[Detection],
             captions: Iterable[str] | None = None) -> Image.Image:
    """A copy of the RGB picture with each detection's box and "label score%" (or its caption) drawn on it."""
    picture = (Image.fromarray(image) if isinstance(image, np.ndarray) else image).convert("RGB")
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    line = max(2, round(min(width, height) / 200))
    font = _font(max(12, round(min(width, height) / 32)))
    captions = iter(captions) if captions is not None else None
    for detection in detections:
        color = _PALETTE[detection.class_id % len(_PALETTE)]
        x0, y0, x1, y1 = detection.box.to_pixels(width, height)
        x0, x1 = sorted((max(0, min(width - 1, x0)), max(0, min(width - 1, x1))))
        y0, y1 = sorted((max(0, min(height - 1, y0)), max(0, min(height - 1, y1))))
        draw.rectangle((x0, y0, x1, y1), outline=color, width=line)
        text = next(captions) if captions is not None else f"{detection.label} {detection.score:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tab_w, tab_h = right - left + 2 * line, bottom - top + 2 * line
        tab_y = y0 - tab_h if y0 - tab_h >= 0 else y0  # above the box, or inside it at the top edge
        tab_x = min(x0, max(0, width - tab_w))
        draw.rectangle((tab_x, tab_y, tab_x + tab_w, tab_y + tab_h), fill=color)
        draw.text((tab_x + line - left, tab_y + line - top), text, fill=_text_color(color), font=font)
    return picture


def to_jpeg(image: np.ndarray | Image.Image, detections: Iterable[Detection], quality: int = 80,
            captions: Iterable[str] | None = None) -> bytes:
    """The annotated picture as JPEG bytes (for snapshots published over MQTT)."""
    buffer = io.BytesIO()
    annotate(image, detections, captions).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def voc_palette(count: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map, [count, 3] uint8: a class id's bits spread over the high bits of R, G, B."""
    ids = np.arange(count)
    colours = np.zeros((count, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.astype(np.uint8)


def overlay_segments(image: np.ndarray | Image.Image, ids: np.ndarray, labels: Sequence[str], *,
                     opacity: float = 0.55, background: int = 0) -> Image.Image:
    """A copy of the picture with each non-background class tinted in its VOC colour, plus a legend.

    `ids` is the class map at the picture's size (segmentation.to_picture).
    """
    picture = (Image.fromarray(image) if isinstance(image, np.ndarray) else image).convert("RGB")
    pixels = np.asarray(picture, dtype=np.float32)
    if ids.shape != pixels.shape[:2]:
        raise ValueError(f"class map {ids.shape} does not match the picture {pixels.shape[:2]}")
    palette = voc_palette(max(256, int(ids.max()) + 1)).astype(np.float32)
    tinted = ids != background
    pixels[tinted] = (1.0 - opacity) * pixels[tinted] + opacity * palette[ids[tinted]]
    result = Image.fromarray(pixels.round().astype(np.uint8))
    present = [int(i) for i in np.unique(ids[tinted])]
    _legend(result, [(labels[i] if i < len(labels) else f"class {i}", tuple(palette[i].astype(int)))
                     for i in present])
    return result


def _legend(picture: Image.Image, entries: list[tuple[str, tuple[int, ...]]]) -> None:
    """Label tabs in the classes' colours down the top-left corner."""
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    pad = max(2, round(min(width, height) / 200))
    font = _font(max(12, round(min(width, height) / 32)))
    y = pad
    for text, colour in entries:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.rectangle((pad, y, pad + right - left + 2 * pad, y + bottom - top + 2 * pad), fill=colour)
        draw.text((2 * pad - left, y + pad - top), text, fill=_text_color(colour), font=font)
        y += bottom - top + 3 * pad
