"""Still images as a camera: one file, a directory or a glob, looped forever.

This is the embedded default source (the sample photos `edged models fetch`
fetches), so `edged run` does real work on a machine without a camera. The
listing is refreshed at the start of every pass, so photos dropped into a
watched directory are picked up. A single file is re-read for every frame:
a file another program keeps replacing, or a FIFO it writes JPEGs into,
behaves like a camera.
"""

from __future__ import annotations

import glob
import io
import logging
import stat
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edged.sources.base import Source, SourceError
from edged.types import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                            ".pgm"})
GLOB_CHARS = frozenset("*?[")

#: Still images have no frame rate of their own; this default keeps a demo from burning a core.
IMAGE_DEFAULT_FPS = 2.0


def is_glob(uri: str) -> bool:
    return any(ch in uri for ch in GLOB_CHARS)


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Bytes of any format Pillow reads → RGB uint8 HxWx3 (what `edged detect` decodes too)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SourceError(f"{where}: not a readable image ({exc})") from exc


class DecodedCache:
    """Decoded pictures of regular files that did not change (same mtime and size).

    Looping over a few photos should not decode them again on every pass: on a
    Pi that is most of the capture thread's work. Bounded: beyond `limit` bytes
    further pictures are decoded each time instead of kept. FIFOs and other
    special files are always read afresh.
    """

    def __init__(self, limit: int = 64 * 1024 * 1024) -> None:
        self._limit = limit
        self._items: dict[Path, tuple[tuple[int, int], np.ndarray]] = {}
        self._bytes = 0

    def load(self, path: Path) -> np.ndarray:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return decode_image(path.read_bytes(), str(path))
        key = (info.st_mtime_ns, info.st_size)
        cached = self._items.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        image = decode_image(path.read_bytes(), str(path))
        image.flags.writeable = False  # shared by every frame of this file: nobody may draw on it
        old = self._items.pop(path, None)
        self._bytes -= old[1].nbytes if old is not None else 0
        if self._bytes + image.nbytes <= self._limit:
            self._items[path] = (key, image)
            self._bytes += image.nbytes
        return image


class ImageSource(Source):
    """Loops over image files; each pass re-lists the directory or glob."""

    live = False

    def __init__(self, camera: str, uri: str, *, hint: str = "") -> None:
        super().__init__(camera, uri)
        self._hint = hint  # what to do when nothing is there, e.g. which fetch command to run
        self._queue: list[Path] = []
        self._failed_in_pass = 0
        self._listed = 0
        self._warned: set[Path] = set()  # one warning per unreadable file, not one per pass
        self._decoded = DecodedCache()

    def _list(self) -> list[Path]:
        if is_glob(self.uri):
            return sorted(Path(p) for p in glob.glob(self.uri, recursive=True)
                          if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        path = Path(self.uri)
        if path.is_dir():
            return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
        if path.exists():
            return [path]
        return []

    def _refill(self) -> None:
        self._queue = self._list()
        self._listed = len(self._queue)
        self._failed_in_pass = 0
        if not self._queue:
            what = "no file matches" if is_glob(self.uri) else "no images in" if Path(self.uri).is_dir() \
                else "no such file:"
            raise SourceError(f"{what} {self.uri}" + (f": {self._hint}" if self._hint else ""))

    def open(self, model_size: tuple[int, int]) -> None:
        self._refill()

    def read(self) -> Frame:
        while True:
            if not self._queue:
                if self._listed and self._failed_in_pass == self._listed:
                    raise SourceError(f"none of the {self._listed} images in {self.uri} could be read")
                self._refill()
            path = self._queue.pop(0)
            try:
                image = self._decoded.load(path)
            except (SourceError, OSError) as exc:
                self._failed_in_pass += 1
                if path not in self._warned:
                    self._warned.add(path)
                    log.warning("camera %s: skipping %s", self.camera, exc)
                continue
            return self.make_frame(image)

    def close(self) -> None:
        self._queue = []

    def default_fps(self) -> float:
        return IMAGE_DEFAULT_FPS
