"""Colour conversions for picamera2's buffers, in numpy (no OpenCV needed on the Pi).

On a Pi 4 and older the `lores` stream can only be YUV420. picamera2 hands it
over as a (height * 3/2, stride) uint8 array: the Y plane (height rows of
`stride` bytes), then U and V planes at half resolution whose rows are
stride/2 bytes. `stride` is wider than the image whenever the width is not a
multiple of the ISP's alignment (32 or 64 pixels), so the padding has to be
cut off plane by plane, not from the stacked array. Which YCbCr matrix and
range apply depends on the stream's colour space (Sycc: full-range BT.601,
Smpte170m: limited BT.601, Rec709: limited BT.709).
"""

from __future__ import annotations

import numpy as np

#: (Kr, Kb) luma coefficients of the YCbCr encodings libcamera names.
_LUMA = {"rec601": (0.299, 0.114), "rec709": (0.2126, 0.0722), "rec2020": (0.2627, 0.0593)}


def yuv_to_rgb_matrix(encoding: str = "rec601", full_range: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(3x3 matrix, offset) so that rgb = (yuv - offset) @ matrix.T for YCbCr with that encoding and range."""
    kr, kb = _LUMA[encoding.lower()]
    kg = 1.0 - kr - kb
    to_rgb = np.array([
        [1.0, 0.0, 2.0 * (1.0 - kr)],
        [1.0, -2.0 * kb * (1.0 - kb) / kg, -2.0 * kr * (1.0 - kr) / kg],
        [1.0, 2.0 * (1.0 - kb), 0.0],
    ])
    if full_range:
        return to_rgb, np.array([0.0, 128.0, 128.0])
    scale = np.diag([255.0 / 219.0, 255.0 / 224.0, 255.0 / 224.0])
    return to_rgb @ scale, np.array([16.0, 128.0, 128.0])


def yuv420_planes(buffer: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a (height*3/2, stride) YUV420 buffer into Y (h, w), U and V (h/2, w/2) without the padding."""
    if width % 2 or height % 2:
        raise ValueError(f"YUV420 needs even sizes, got {width}x{height}")
    rows, stride = buffer.shape
    if rows != height * 3 // 2 or stride < width:
        raise ValueError(f"YUV420 buffer {buffer.shape} does not hold a {width}x{height} image")
    flat = buffer.reshape(-1)
    chroma_stride, chroma_rows = stride // 2, height // 2
    y_end = height * stride
    u_end = y_end + chroma_rows * chroma_stride
    y = flat[:y_end].reshape(height, stride)[:, :width]
    u = flat[y_end:u_end].reshape(chroma_rows, chroma_stride)[:, : width // 2]
    v = flat[u_end:u_end + chroma_rows * chroma_stride].reshape(chroma_rows, chroma_stride)[:, : width // 2]
    return y, u, v


def yuv420_to_rgb(buffer: np.ndarray, width: int, height: int, *, encoding: str = "rec601",
                  full_range: bool = True) -> np.ndarray:
    """A picamera2 YUV420 buffer (stride padding included) → RGB uint8 (height, width, 3)."""
    y, u, v = yuv420_planes(buffer, width, height)
    yuv = np.empty((height, width, 3), dtype=np.float32)
    yuv[..., 0] = y
    yuv[..., 1] = u.repeat(2, axis=0).repeat(2, axis=1)
    yuv[..., 2] = v.repeat(2, axis=0).repeat(2, axis=1)
    matrix, offset = yuv_to_rgb_matrix(encoding, full_range)
    rgb = (yuv - offset.astype(np.float32)) @ matrix.T.astype(np.float32)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def rgb_from_picamera2(array: np.ndarray, fmt: str) -> np.ndarray:
    """A picamera2 RGB-family array → RGB order.

    picamera2 names formats after libcamera/DRM fourccs, which list channels from the
    most significant byte: "RGB888" arrays are laid out [B, G, R] per pixel and
    "BGR888" arrays [R, G, B] (picamera2 manual, appendix A). The 4-byte X-formats
    follow the same rule with a padding byte last.
    """
    if fmt in ("BGR888", "XBGR8888"):
        return np.ascontiguousarray(array[..., :3])
    if fmt in ("RGB888", "XRGB8888"):
        return np.ascontiguousarray(array[..., 2::-1])
    raise ValueError(f"not an RGB picamera2 format: {fmt}")
