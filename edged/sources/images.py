"""Still images as a camera: one file, a directory or a glob, looped forever.

This is the embedded default source (the sample photos `edged models fetch`
fetches), so `edged run` does real work on a machine without a camera. The
listing is refreshed at the start of every pass, so photos dropped into a
watched directory are picked up. A single file is re-read for every frame:
a file another program keeps replacing, or a FIFO it writes JPEGs into,
behaves like a camera.

Memory is bounded on a 1 GB Pi: a picture larger than `max_pixels` is
skipped (one warning) from its header, before any pixel is decoded, and the
decoded-picture cache never keeps what exceeds its byte budget. A source of
regular files decodes its first picture when it opens, so one that can never
produce a frame (corrupt, empty, text, too big) fails at start (exit 69)
instead of "reconnecting" forever; a FIFO is waited for, as a camera would be.
"""

from __future__ import annotations

import glob
import io
import logging
import stat
import warnings
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
DEFAULT_MAX_PIXELS = 50_000_000  # `service.max_image_megapixels`: about 150 MB decoded (RGB)


def quiet_pillow_size_warning() -> None:
    """Leave the size verdict to `max_pixels`: Pillow's own warning for pictures over 89 MP would be a
    second, differently worded line beside edged's. (Pillow still refuses over 178 MP itself.)"""
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def is_glob(uri: str) -> bool:
    return any(ch in uri for ch in GLOB_CHARS)


def decode_image(data: bytes | Path, where: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A file or bytes of any format Pillow reads → RGB uint8 HxWx3 (what `edged detect` decodes too).

    The size comes from the header (`Image.open` decodes nothing yet): an oversized picture is refused
    before its pixels take memory."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise SourceError(f"{where}: {width}x{height} pixels is more than the limit of "
                                  f"{max_pixels / 1e6:g} megapixels (service.max_image_megapixels)")
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SourceError(f"{where}: not a readable image ({' '.join(str(exc).split())})") from exc


class DecodedCache:
    """Decoded pictures of regular files that did not change (same mtime and size).

    Looping over a few photos should not decode them again on every pass: on a
    Pi that is most of the capture thread's work. Bounded: beyond `limit` bytes
    further pictures are decoded each time instead of kept. FIFOs and other
    special files are always read afresh.
    """

    def __init__(self, limit: int = 64 * 1024 * 1024, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._limit = limit
        self._max_pixels = max_pixels
        self._items: dict[Path, tuple[tuple[int, int], np.ndarray]] = {}
        self._bytes = 0

    def load(self, path: Path) -> np.ndarray:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return decode_image(path.read_bytes(), str(path), self._max_pixels)
        key = (info.st_mtime_ns, info.st_size)
        cached = self._items.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        image = decode_image(path, str(path), self._max_pixels)
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

    def __init__(self, camera: str, uri: str, *, hint: str = "",
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(camera, uri)
        self._hint = hint  # what to do when nothing is there, e.g. which fetch command to run
        self._queue: list[Path] = []
        self._failed_in_pass = 0
        self._listed = 0
        self._warned: set[Path] = set()  # one warning per unreadable file, not one per pass
        self._decoded = DecodedCache(max_pixels=max_pixels)
        self._first: np.ndarray | None = None  # decoded by `open`, handed out by the next `read`

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
        """List the files and, unless a FIFO is among them, decode the first readable picture."""
        self._first = None
        self._refill()
        if all(path.is_file() for path in self._queue):
            self._first = self._next_image()

    def read(self) -> Frame:
        image, self._first = (self._first, None) if self._first is not None else (self._next_image(), None)
        return self.make_frame(image)

    def _next_image(self) -> np.ndarray:
        problem = ""
        while True:
            if not self._queue:
                if self._listed and self._failed_in_pass == self._listed:
                    if self._listed == 1:
                        raise SourceError(problem)
                    raise SourceError(f"none of the {self._listed} images in {self.uri} could be read "
                                      f"(the last: {problem})")
                self._refill()
            path = self._queue.pop(0)
            try:
                return self._decoded.load(path)
            except (SourceError, OSError) as exc:
                problem = str(exc)
                self._failed_in_pass += 1
                if path not in self._warned:
                    self._warned.add(path)
                    log.warning("camera %s: skipping %s", self.camera, exc, extra={"CAMERA": self.camera})

    def close(self) -> None:
        self._queue = []
        self._first = None

    def default_fps(self) -> float:
        return IMAGE_DEFAULT_FPS
