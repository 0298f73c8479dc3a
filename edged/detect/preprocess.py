"""Turn an RGB picture into the model's input tensor, remembering how to map boxes back.

Stretching is the default because the SSD models were trained on stretched
300x300 crops and the expected detections (images/EXPECTED.md) were measured that
way; letterboxing keeps the aspect ratio (what pycoral does) and records the
content fraction in a Geometry so postprocess can undo it. OpenCV resizes when
it is installed (the `video` extra): 5-10x faster than Pillow, which matters
on a Pi feeding a Coral; it interpolates bilinearly, or averages pixel areas
when shrinking by 2x or more (what Pillow's bilinear filter does on its own).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edged.types import Geometry


@dataclass(frozen=True)
class InputSpec:
    """What the model's input tensor wants: size, dtype and its own quantization."""

    width: int
    height: int
    dtype: np.dtype
    scale: float
    zero_point: int

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> InputSpec:
        _, height, width, channels = (int(v) for v in detail["shape"])
        if channels != 3:
            raise ValueError(f"expected an RGB input tensor, got {channels} channels")
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return cls(width, height, np.dtype(detail["dtype"]), float(scale), int(zero_point))


@functools.cache
def _opencv() -> Any:
    """cv2 when it is installed, else None (looked up once)."""
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:
        return None
    return cv2


def scaled(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (RGB uint8 HxWx3) resized to `size` (width, height): OpenCV when installed, else Pillow."""
    cv2 = _opencv()
    if cv2 is None:
        from PIL import Image  # here, not at the top: the inference worker imports this module too

        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    shrink = min(image.shape[1] / size[0], image.shape[0] / size[1])
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink >= 2 else cv2.INTER_LINEAR)


def resize(image: np.ndarray, spec: InputSpec, mode: Literal["stretch", "letterbox"] = "stretch"
           ) -> tuple[np.ndarray, Geometry]:
    """Resize an RGB uint8 HxWx3 image to the input size (bilinear, like the measured expectations)."""
    height, width = image.shape[:2]
    if (width, height) == (spec.width, spec.height):
        return np.ascontiguousarray(image), Geometry()
    if mode == "stretch":
        return scaled(image, (spec.width, spec.height)), Geometry()
    scale = min(spec.width / width, spec.height / height)
    inner = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = np.zeros((spec.height, spec.width, 3), dtype=np.uint8)
    canvas[: inner[1], : inner[0]] = scaled(image, inner)
    return canvas, Geometry(inner[0] / spec.width, inner[1] / spec.height)


def quantize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Convert uint8 RGB pixels into the input tensor's dtype.

    uint8 inputs take the raw pixels: the converter chose the input's scale and
    zero point so that 0..255 spans the training range (1/128 and 128 for the SSD
    models = [-1, 1]); re-quantizing with a guessed mean/std would only add
    rounding error. int8 inputs are the same values shifted by 128. Float inputs
    get the [-1, 1] normalisation the TF Object Detection API models expect.
    """
    if spec.dtype == np.uint8:
        return pixels
    if spec.dtype == np.int8:
        return (pixels.astype(np.int16) - 128).astype(np.int8)
    if spec.dtype.kind == "f":
        return ((pixels.astype(np.float32) - 127.5) / 127.5).astype(spec.dtype)
    raise ValueError(f"unsupported input tensor type {spec.dtype}")


def prepare(image: np.ndarray, spec: InputSpec, mode: Literal["stretch", "letterbox"] = "stretch"
            ) -> tuple[np.ndarray, Geometry]:
    """Image (RGB uint8 HxWx3, any size) → (input tensor without batch axis, Geometry)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    pixels, geometry = resize(image, spec, mode)
    return quantize(pixels, spec), geometry
