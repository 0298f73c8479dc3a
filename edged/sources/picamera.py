"""Raspberry Pi cameras through picamera2: the ISP scales the `lores` stream to the model's input size.

Two streams from one request: `lores` at exactly the model's input size (the
ISP does the resize for free, so the CPU never touches full-resolution pixels
for inference) and `main` at the configured size for snapshots. On a Pi 4 and
older lores can only be YUV420 (converted here honouring the stride); on a
Pi 5 (PiSP) it can be RGB straight from the ISP. picamera2 and libcamera are
Raspberry Pi OS packages, imported only when a `picamera2:N` source opens.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from edged.errors import UnavailableError
from edged.sources.base import Source, SourceError
from edged.sources.yuv import rgb_from_picamera2, yuv420_to_rgb
from edged.types import Frame

log = logging.getLogger(__name__)

#: The array picamera2 returns for "BGR888" is in [R, G, B] order (see yuv.rgb_from_picamera2).
RGB_ORDER_FORMAT = "BGR888"
CAPTURE_TIMEOUT_SECONDS = 5.0


def import_picamera2() -> tuple[Any, Any]:
    try:
        import picamera2
        import picamera2.platform
    except ImportError as exc:
        raise UnavailableError(
            f"picamera2 is not importable ({exc}): on Raspberry Pi OS run "
            "`sudo apt install python3-picamera2` and create the venv with --system-site-packages") from exc
    return picamera2, picamera2.platform


def lores_format(is_pisp: bool) -> str:
    """YUV420 on VC4 (Pi 4 and older, where lores must be YUV); RGB-ordered on a Pi 5."""
    return RGB_ORDER_FORMAT if is_pisp else "YUV420"


def colour_encoding(colour_space: Any) -> tuple[str, bool]:
    """libcamera ColorSpace → (YCbCr encoding name for yuv.py, full range?). Sycc if unknown."""
    encoding = getattr(getattr(colour_space, "ycbcrEncoding", None), "name", "Rec601")
    full = getattr(getattr(colour_space, "range", None), "name", "Full") == "Full"
    if encoding.lower() not in ("rec601", "rec709", "rec2020"):
        return "rec601", True
    return encoding.lower(), full


class Picamera2Source(Source):
    """`picamera2:N`: camera N of `Picamera2.global_camera_info()`."""

    def __init__(self, camera: str, uri: str, *, width: int = 0, height: int = 0,
                 snapshot: Literal["main", "lores", "none"] = "main") -> None:
        super().__init__(camera, uri)
        try:
            self.index = int(uri.split(":", 1)[1] or 0)
        except ValueError:
            raise SourceError(f"{uri}: expected picamera2:N with a camera number") from None
        self._main_size = (width or 1280, height or 720)
        self._snapshot = snapshot
        self._cam: Any = None
        self._lores: dict[str, Any] = {}
        self._colour = ("rec601", True)

    def open(self, model_size: tuple[int, int]) -> None:
        picamera2, platform = import_picamera2()
        self.close()
        is_pisp = picamera2.Picamera2.platform == platform.Platform.PISP
        try:
            cam = picamera2.Picamera2(camera_num=self.index)
        except (IndexError, RuntimeError) as exc:
            raise SourceError(f"no camera {self.index} ({exc})") from exc
        try:
            main_w, main_h = max(self._main_size[0], model_size[0]), max(self._main_size[1], model_size[1])
            config = cam.create_video_configuration(
                main={"size": (main_w, main_h), "format": RGB_ORDER_FORMAT},
                lores={"size": tuple(model_size), "format": lores_format(is_pisp)},
                buffer_count=4,
            )
            cam.configure(config)
            self._lores = cam.stream_configuration("lores")
            self._colour = colour_encoding(cam.camera_configuration().get("colour_space"))
            cam.start()
        except Exception as exc:  # libcamera raises RuntimeError and friends; the loop retries
            cam.close()
            raise SourceError(f"camera {self.index} did not start ({exc})") from exc
        self._cam = cam
        log.info("camera %s: picamera2 %d main %dx%d, lores %s %s stride %s", self.camera, self.index,
                 main_w, main_h, self._lores["size"], self._lores["format"], self._lores["stride"])

    def model_tensor(self, lores: Any) -> Any:
        """The lores array → RGB uint8 at the model's input size."""
        width, height = self._lores["size"]
        if self._lores["format"] == "YUV420":
            encoding, full = self._colour
            return yuv420_to_rgb(lores, width, height, encoding=encoding, full_range=full)
        return rgb_from_picamera2(lores, self._lores["format"])

    def read(self) -> Frame:
        if self._cam is None:
            raise SourceError(f"{self.uri} is not open")
        try:
            request = self._cam.capture_request(wait=CAPTURE_TIMEOUT_SECONDS)
        except Exception as exc:  # a TimeoutError from the job, or libcamera's own errors
            raise SourceError(f"camera {self.index}: no frame ({exc or type(exc).__name__})") from exc
        try:
            tensor = self.model_tensor(request.make_array("lores"))
            image = None
            if self._snapshot == "main":
                image = rgb_from_picamera2(request.make_array("main"), RGB_ORDER_FORMAT)
        finally:
            request.release()
        if image is None and self._snapshot == "lores":
            image = tensor
        size = (image.shape[1], image.shape[0]) if image is not None else self._main_size
        return self.make_frame(image, tensor=tensor, size=size)

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
            finally:
                self._cam.close()
                self._cam = None
