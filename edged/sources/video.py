"""USB/V4L2 webcams, RTSP/HTTP streams and video files, all through OpenCV's VideoCapture.

One library for the three because OpenCV's headless wheel bundles FFmpeg (every
stream protocol and codec a camera speaks, MJPEG-over-HTTP included) and a
V4L2 backend, ships wheels for x86_64 and aarch64, and its read/timeout/
buffer-size properties are all the daemon needs. cv2 is imported only here.
A video file decodes its first frame when it opens, so a file with no
decodable frame fails at start (exit 69) instead of reconnecting forever.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from edged.errors import UnavailableError
from edged.sources.base import Source, SourceError
from edged.types import Frame

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".mjpeg", ".mjpg", ".h264",
                            ".h265", ".hevc", ".ts", ".mpg", ".mpeg", ".flv", ".ogv"})


def import_cv2() -> Any:
    # FFmpeg writes its own errors ("moov atom not found") straight to stderr, beside our one line saying
    # which camera failed; only fatal ones stay. OPENCV_FFMPEG_LOGLEVEL=16 (or 32, 48) shows them again.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")
    try:
        import cv2
    except ImportError as exc:
        raise UnavailableError(
            f"OpenCV is needed for webcams, streams and video files ({exc}): "
            "pip install 'edged[video]' (opencv-python-headless)") from exc
    # Our own log lines say when a stream drops or reconnects; OpenCV's WARN lines would repeat them.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


def is_v4l2(uri: str) -> bool:
    return uri.startswith("/dev/video") or uri.startswith("v4l2:")


class VideoSource(Source):
    """A cv2.VideoCapture; files rewind at their end, live sources reconnect through the capture loop."""

    def __init__(self, camera: str, uri: str, *, width: int = 0, height: int = 0, fps: float = 0.0,
                 timeout_seconds: float = 10.0) -> None:
        super().__init__(camera, uri)
        self.is_file = not uri.startswith(STREAM_SCHEMES) and not is_v4l2(uri)
        self.live = not self.is_file
        self._width, self._height, self._fps = width, height, fps
        self._timeout_ms = int(timeout_seconds * 1000)
        self._cap: Any = None
        self._cv2: Any = None
        self._native_fps = 0.0
        self._first: Any = None  # a file's first frame, decoded by `open`, handed out by the next `read`

    def _capture(self) -> Any:
        cv2 = self._cv2
        if is_v4l2(self.uri):
            device = self.uri.removeprefix("v4l2:")
            cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
            wanted = ((cv2.CAP_PROP_FRAME_WIDTH, self._width), (cv2.CAP_PROP_FRAME_HEIGHT, self._height),
                      (cv2.CAP_PROP_FPS, self._fps))
            for prop, value in wanted:
                if value:
                    cap.set(prop, value)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one queued seconds ago
            return cap
        if self.is_file and not Path(self.uri).is_file():
            raise SourceError(f"no such video file: {self.uri}")
        if self.uri.startswith(("rtsp://", "rtsps://")):
            # TCP survives lossy Wi-Fi where RTP over UDP smears frames; an explicit setting wins.
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self._timeout_ms,
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, self._timeout_ms]
        return cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, params)

    def open(self, model_size: tuple[int, int]) -> None:
        self._cv2 = import_cv2()
        self.close()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.uri}")
        self._cap = cap
        self._native_fps = float(cap.get(self._cv2.CAP_PROP_FPS) or 0.0)
        if self.is_file:
            ok, self._first = cap.read()
            if not ok or self._first is None:
                self.close()
                raise SourceError(f"{self.uri}: no decodable frames")

    def read(self) -> Frame:
        if self._cap is None:
            raise SourceError(f"{self.uri} is not open")
        if self._first is not None:
            ok, bgr, self._first = True, self._first, None
        else:
            ok, bgr = self._cap.read()
        if not ok and self.is_file:
            self.open((0, 0))  # rewind by reopening (works for every container): it holds the first frame
            ok, bgr, self._first = True, self._first, None
        if not ok or bgr is None:
            raise SourceError(f"{self.uri}: stream ended or timed out")
        return self.make_frame(self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        self._first = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def default_fps(self) -> float:
        """Files play at their own frame rate, as a camera would deliver them; live sources need no cap."""
        return self._native_fps if self.is_file else 0.0
