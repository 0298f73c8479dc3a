"""The picamera2 adapter up to the hardware boundary: its conversions on real arrays laid out as picamera2
hands them.

No camera here, so the buffers are built the way picamera2's `make_array`
returns them for a `lores` stream: YUV420 as (height*3/2, stride) with the
stride padding on every plane row, RGB888/BGR888 in their (confusing) byte order.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from edged.errors import UnavailableError
from edged.sources.picamera import Picamera2Source, colour_encoding, lores_format
from edged.sources.yuv import rgb_from_picamera2, yuv420_planes, yuv420_to_rgb, yuv_to_rgb_matrix

cv2 = pytest.importorskip("cv2")
PAD = 77  # what the ISP leaves in the padding; any value must be ignored


def photo(image_mirror: Path, name: str = "grace_hopper.bmp", size=(300, 300)) -> np.ndarray:
    return np.asarray(Image.open(image_mirror / name).convert("RGB").resize(size, Image.Resampling.BILINEAR))


def picamera2_yuv420(planes: tuple[np.ndarray, np.ndarray, np.ndarray], stride: int) -> np.ndarray:
    """Y, U, V planes → the (h*3/2, stride) array picamera2 returns, padding filled with PAD."""
    y, u, v = planes
    height, width = y.shape
    rows = []
    for plane, plane_stride in ((y, stride), (u, stride // 2), (v, stride // 2)):
        padded = np.full((plane.shape[0], plane_stride), PAD, dtype=np.uint8)
        padded[:, : plane.shape[1]] = plane
        rows.append(padded.reshape(-1))
    return np.concatenate(rows).reshape(height * 3 // 2, stride)


def i420_planes(rgb: np.ndarray):
    """OpenCV's own RGB → I420 (limited-range BT.601), split into planes."""
    height, width = rgb.shape[:2]
    flat = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    y = flat[: width * height].reshape(height, width)
    quarter = (width // 2) * (height // 2)
    u = flat[width * height: width * height + quarter].reshape(height // 2, width // 2)
    v = flat[width * height + quarter:].reshape(height // 2, width // 2)
    return y, u, v


@pytest.mark.parametrize("stride", [300, 320, 384])
def test_yuv420_with_stride_matches_opencv_and_the_photo(image_mirror: Path, stride: int):
    rgb = photo(image_mirror)
    planes = i420_planes(rgb)
    buffer = picamera2_yuv420(planes, stride)
    assert buffer.shape == (450, stride)
    converted = yuv420_to_rgb(buffer, 300, 300, encoding="rec601", full_range=False)
    reference = cv2.cvtColor(np.concatenate([p.reshape(-1) for p in planes]).reshape(450, 300),
                             cv2.COLOR_YUV2RGB_I420)
    assert converted.shape == (300, 300, 3) and converted.dtype == np.uint8
    assert np.abs(converted.astype(int) - reference.astype(int)).max() <= 1
    assert np.abs(converted.astype(int) - rgb.astype(int)).mean() < 4  # chroma subsampling costs a little


def test_planes_ignore_the_padding(image_mirror: Path):
    rgb = photo(image_mirror, size=(320, 240))
    planes = i420_planes(rgb)
    y, u, v = yuv420_planes(picamera2_yuv420(planes, 384), 320, 240)
    for got, want in zip((y, u, v), planes):
        assert np.array_equal(got, want)


def test_full_range_round_trip(image_mirror: Path):
    """Sycc (full-range BT.601) and Rec709 (limited): RGB → YUV with the inverse matrix → back."""
    rgb = photo(image_mirror, size=(64, 48)).astype(np.float64)
    for encoding, full in (("rec601", True), ("rec709", False)):
        matrix, offset = yuv_to_rgb_matrix(encoding, full)
        yuv = rgb @ np.linalg.inv(matrix).T + offset
        y = np.clip(np.round(yuv[..., 0]), 0, 255).astype(np.uint8)
        u = np.clip(np.round(yuv[..., 1].reshape(24, 2, 32, 2).mean(axis=(1, 3))), 0, 255).astype(np.uint8)
        v = np.clip(np.round(yuv[..., 2].reshape(24, 2, 32, 2).mean(axis=(1, 3))), 0, 255).astype(np.uint8)
        back = yuv420_to_rgb(picamera2_yuv420((y, u, v), 128), 64, 48, encoding=encoding, full_range=full)
        assert np.abs(back.astype(float) - rgb).mean() < 6, encoding


def test_rgb888_is_bgr_in_memory_and_bgr888_is_rgb(image_mirror: Path):
    rgb = photo(image_mirror, size=(32, 16))
    as_rgb888 = rgb[..., ::-1].copy()  # picamera2 "RGB888": bytes B, G, R
    assert np.array_equal(rgb_from_picamera2(as_rgb888, "RGB888"), rgb)
    assert np.array_equal(rgb_from_picamera2(rgb.copy(), "BGR888"), rgb)
    xbgr = np.concatenate([rgb, np.full((16, 32, 1), 255, np.uint8)], axis=2)  # "XBGR8888": R, G, B, X
    assert np.array_equal(rgb_from_picamera2(xbgr, "XBGR8888"), rgb)
    xrgb = np.concatenate([rgb[..., ::-1], np.full((16, 32, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(rgb_from_picamera2(xrgb, "XRGB8888"), rgb)
    with pytest.raises(ValueError):
        rgb_from_picamera2(rgb, "YUV420")


def test_lores_format_and_colour_space_choice():
    assert lores_format(is_pisp=False) == "YUV420"  # VC4: "lores stream must be YUV"
    assert lores_format(is_pisp=True) == "BGR888"  # Pi 5: RGB-ordered straight from the ISP

    def space(encoding: str, rng: str):
        return SimpleNamespace(ycbcrEncoding=SimpleNamespace(name=encoding), range=SimpleNamespace(name=rng))

    assert colour_encoding(space("Rec709", "Limited")) == ("rec709", False)  # video config >= 1280x720
    assert colour_encoding(space("Rec601", "Limited")) == ("rec601", False)  # Smpte170m
    assert colour_encoding(space("Rec601", "Full")) == ("rec601", True)  # Sycc
    assert colour_encoding(None) == ("rec601", True)


def test_the_model_sees_the_same_objects_through_a_yuv_lores_buffer(image_mirror: Path,
                                                                     fetched_data_dir: Path):
    """A lores frame converted by the adapter gives the detections of the RGB picture."""
    from edged.detect.detector import Detector
    from edged.detect.settings import DetectorSettings

    rgb = photo(image_mirror, "cat.bmp")
    source = Picamera2Source("cam0", "picamera2:0")
    source._lores = {"size": (300, 300), "format": "YUV420", "stride": 320}
    source._colour = ("rec601", False)
    tensor = source.model_tensor(picamera2_yuv420(i420_planes(rgb), 320))
    with Detector.open(DetectorSettings(backend="cpu")) as detector:
        direct = detector.detect(rgb).detections
        through_yuv = detector.detect(tensor).detections
    assert direct and through_yuv
    assert through_yuv[0].label == direct[0].label == "cat"
    assert through_yuv[0].box.iou(direct[0].box) > 0.9


@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="picamera2 is installed here")
def test_without_picamera2_the_error_says_how_to_install_it():
    with pytest.raises(UnavailableError, match="apt install python3-picamera2"):
        Picamera2Source("cam0", "picamera2:0").open((300, 300))
