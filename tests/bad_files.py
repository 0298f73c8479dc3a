"""Files broken the ways real ones are: pictures, models and videos for the bad-input tests.

Each maker takes the fetched data dir (for real bytes to damage) and returns
the file's content; `make(kind, name, …)` writes one under a directory and
returns its path. `png_header` claims any size without holding the pixels,
so a "too big" picture costs a few bytes; `write_big_png` streams a real one.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

CPU_MODEL = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, idat: bytes = b"") -> bytes:
    """An 8-bit RGB PNG claiming width x height, with `idat` (compressed scanlines) as its only data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def write_big_png(path: Path, width: int, height: int) -> Path:
    """A real, valid width x height black PNG, compressed row by row (the test never holds its pixels)."""
    compressor = zlib.compressobj(1)
    row = b"\0" * (1 + 3 * width)  # filter byte + RGB
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    path.write_bytes(png_header(width, height, idat))
    return path


def _sample(data: Path, name: str) -> bytes:
    return (data / "samples" / name).read_bytes()


IMAGES: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "empty": (".jpg", lambda data: b""),
    "text": (".jpg", lambda data: b"hello, this is not a picture\n"),
    "html": (".png", lambda data: b"<html><body>404 Not Found</body></html>\n"),
    "truncated_jpeg": (".jpg", lambda data: _sample(data, "owl.jpg")[:2000]),
    "corrupt_png": (".png", lambda data: b"\x89PNG\r\n\x1a\n broken"),
    "big_png": (".png", lambda data: png_header(10000, 6000)),  # 60 MP: only edged's limit refuses it
    "bigger_png": (".png", lambda data: png_header(12000, 9000)),  # 108 MP: Pillow warns, edged refuses
    "huge_png": (".png", lambda data: png_header(20000, 20000)),  # 400 MP: Pillow refuses it too
    "good": (".jpg", lambda data: _sample(data, "pets.jpg")),
}

MODELS: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "empty": (".tflite", lambda data: b""),
    "text": (".tflite", lambda data: b"hello, model\n"),
    "truncated": (".tflite", lambda data: (data / "models" / CPU_MODEL).read_bytes()[:1_000_000]),
    "jpeg": (".tflite", lambda data: _sample(data, "owl.jpg")),
}

def _video_without_frames(data: Path) -> bytes:
    """A valid AVI container (OpenCV's VideoWriter, MJPEG) into which no frame was ever written."""
    import tempfile

    import cv2

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "empty.avi"
        cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48)).release()
        return path.read_bytes()


VIDEOS: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "text": (".mp4", lambda data: b"not a video at all\n" * 100),
    "no_frames": (".avi", _video_without_frames),
}

KINDS = {"image": IMAGES, "model": MODELS, "video": VIDEOS}


def make(kind: str, name: str, directory: Path, data: Path) -> Path:
    """Write the `kind` file `name` (e.g. image "empty") into `directory`; returns its path."""
    suffix, maker = KINDS[kind][name]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kind}-{name}{suffix}"
    path.write_bytes(maker(data))
    return path
