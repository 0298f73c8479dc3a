"""Segmentation postprocess as pure functions: class map, per-class shares of a picture, per-zone shares.

A segmenter gives a class per pixel (DeepLab's ArgMax output) or class scores
per pixel (argmax taken here). The map is at the model's resolution; it is
mapped back to the picture (letterbox padding cut off, nearest-neighbour
resize — class ids must never blend) before anything is counted, so shares are
shares of the picture's own pixels. Zones are polygons in normalized picture
coordinates; a pixel belongs to a zone when its centre lies inside (even-odd
rule), which makes the shares exact and the same at every resolution for
zones whose edges fall between pixel centres. Masks are separate from
counting so a caller that sees many frames computes each zone's mask once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from edged.types import Geometry


def class_map(output: np.ndarray) -> np.ndarray:
    """A segmenter's output ([1, H, W] class ids or [1, H, W, C] scores) → an H×W map of class ids
    (uint8 when they fit, else int32)."""
    values = np.asarray(output)
    values = values.reshape(values.shape[1:]) if values.ndim in (3, 4) and values.shape[0] == 1 else values
    ids = values.argmax(axis=-1) if values.ndim == 3 else values
    return ids.astype(np.uint8 if ids.size and 0 <= ids.min() and ids.max() < 256 else np.int32)


def to_picture(ids: np.ndarray, width: int, height: int, geometry: Geometry = Geometry()) -> np.ndarray:
    """The class map over the picture's own width × height: padding cut off, nearest-neighbour resize."""
    rows, columns = ids.shape
    content = ids[: max(1, round(rows * geometry.content_height)),
                  : max(1, round(columns * geometry.content_width))]
    if content.shape == (height, width):
        return content
    mode = "L" if content.dtype == np.uint8 else "I"
    picture = Image.fromarray(content if mode == "L" else content.astype(np.int32), mode=mode)
    return np.asarray(picture.resize((width, height), Image.Resampling.NEAREST)).astype(content.dtype)


def label_of(class_id: int, labels: Sequence[str]) -> str:
    """The label of a class id; ids the labels file does not cover are named `class N`."""
    return labels[class_id] if 0 <= class_id < len(labels) else f"class {class_id}"


def class_shares(ids: np.ndarray, labels: Sequence[str], mask: np.ndarray | None = None) -> dict[str, float]:
    """Share of the (masked) pixels per label, largest first; labels with no pixel are left out.

    Shares are pixel counts over the pixel total, so they sum to 1 up to float
    rounding; a mask without pixels gives an empty dict.
    """
    selected = (ids[mask] if mask is not None else ids.reshape(-1)).astype(np.int64)
    if selected.size == 0:
        return {}
    lowest = min(0, int(selected.min()))  # bincount needs non-negative values
    counts = np.bincount(selected - lowest)
    shares: dict[str, float] = {}
    for index in np.flatnonzero(counts).tolist():
        label = label_of(index + lowest, labels)
        shares[label] = shares.get(label, 0.0) + int(counts[index]) / selected.size
    return dict(sorted(shares.items(), key=lambda item: -item[1]))


def zone_mask(polygon: Sequence[tuple[float, float]], width: int, height: int) -> np.ndarray:
    """Bool height × width mask of the pixels whose centres lie in a polygon of normalized (x, y) points."""
    points = np.asarray(polygon, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValueError(f"a zone needs at least 3 (x, y) points, got {polygon!r}")
    x = (np.arange(width, dtype=np.float64) + 0.5) / width
    y = ((np.arange(height, dtype=np.float64) + 0.5) / height)[:, np.newaxis]
    inside = np.zeros((height, width), dtype=bool)
    for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0)):
        if y0 == y1:
            continue  # a horizontal edge is never crossed by a horizontal ray
        spans = (y0 > y) != (y1 > y)  # rows whose centre line this edge crosses (half-open: no double count)
        crossing_x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= spans & (x < crossing_x)
    return inside


def zone_shares(ids: np.ndarray, masks: Mapping[str, np.ndarray], labels: Sequence[str]
                ) -> dict[str, dict[str, float]]:
    """Per zone, the share of its pixels per label (masks from zone_mask at the map's size)."""
    for name, mask in masks.items():
        if mask.shape != ids.shape:
            raise ValueError(f"zone {name!r}: mask {mask.shape} does not match the class map {ids.shape}")
    return {name: class_shares(ids, labels, mask) for name, mask in masks.items()}
