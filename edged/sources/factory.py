"""One source URI → the Source that reads it. The URI forms are what `--source` and `[[cameras]] source` take.

| URI | Source |
|---|---|
| `samples` | the sample photos fetched by `edged models fetch` (the embedded default) |
| `picamera2:N` | Raspberry Pi camera N through picamera2 |
| `/dev/videoN` | a V4L2 (USB) webcam, through OpenCV |
| `rtsp://…`, `http(s)://…` (also rtmp, udp, tcp, srt) | a network stream, through OpenCV/FFmpeg |
| a video file (`.mp4`, `.mkv`, `.avi`, …) | played at its own frame rate, looped |
| an image file, a directory of images, a glob | looped; a single file is re-read every frame |

A URI that can never work (`picamera2:abc`, `rtsp://` without a host, a port
that is not a number) is a ConfigError here, so `edged config check` and the
start of `edged run` refuse it with exit 78 instead of a camera that retries forever.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from edged import paths
from edged.errors import ConfigError
from edged.sources.base import FrameNumbers, Source
from edged.sources.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageSource, is_glob
from edged.sources.picamera import Picamera2Source
from edged.sources.video import STREAM_SCHEMES, VIDEO_SUFFIXES, VideoSource, is_v4l2

SAMPLES = "samples"
PICAMERA2_URI = re.compile(r"^picamera2(:[0-9]+)?$")
NEEDS_HOST = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")  # udp/tcp/srt may listen on all


def describe(uri: str) -> str:
    """A short kind name for logs and stats: samples, picamera2, v4l2, stream, video, images."""
    if uri == SAMPLES:
        return "samples"
    if uri.startswith("picamera2"):
        return "picamera2"
    if is_v4l2(uri):
        return "v4l2"
    if uri.startswith(STREAM_SCHEMES):
        return "stream"
    if Path(uri.removeprefix("file://")).suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    return "images"


def stream_problem(uri: str) -> str | None:
    """Why a stream URL can never be opened (no host, a port that is not a number), or None."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if uri.startswith(NEEDS_HOST) and not parts.hostname:
        return "the URL names no host"
    return None


def create_source(camera: str, uri: str, *, width: int = 0, height: int = 0, fps: float = 0.0,
                  snapshot: Literal["main", "lores", "none"] = "main", timeout_seconds: float = 10.0,
                  max_pixels: int = DEFAULT_MAX_PIXELS, numbers: FrameNumbers | None = None) -> Source:
    """Build (not open) the source for `uri`; ConfigError when the URI names nothing edged can read.

    `numbers`: the camera's frame numbers to continue (the daemon's, kept across reloads)."""
    source = _build(camera, uri, width=width, height=height, fps=fps, snapshot=snapshot,
                    timeout_seconds=timeout_seconds, max_pixels=max_pixels)
    if numbers is not None:
        source.numbers = numbers
    return source


def _build(camera: str, uri: str, *, width: int, height: int, fps: float,
           snapshot: Literal["main", "lores", "none"], timeout_seconds: float, max_pixels: int) -> Source:
    if not uri:
        raise ConfigError(f"camera {camera}: empty source "
                          "(use `samples`, picamera2:N, /dev/videoN, a URL or a path)")
    kind = describe(uri)
    if kind == "samples":
        return ImageSource(camera, str(paths.samples_dir()), max_pixels=max_pixels,
                           hint="fetch the sample photos with `edged models fetch`")
    if kind == "picamera2":
        if not PICAMERA2_URI.match(uri):
            raise ConfigError(f"camera {camera}: source {uri!r}: expected picamera2:N (N: a camera number)")
        return Picamera2Source(camera, uri if ":" in uri else "picamera2:0", width=width, height=height,
                               snapshot=snapshot)
    if kind == "stream" and (problem := stream_problem(uri)) is not None:
        raise ConfigError(f"camera {camera}: source {uri!r}: {problem}")
    if kind in ("v4l2", "stream", "video"):
        return VideoSource(camera, uri.removeprefix("file://"), width=width, height=height, fps=fps,
                           timeout_seconds=timeout_seconds)
    path = uri.removeprefix("file://")
    if is_glob(path) or Path(path).exists() or Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(camera, path, max_pixels=max_pixels)
    raise ConfigError(
        f"camera {camera}: source {uri!r} is not an existing path and not a picamera2:N, /dev/videoN, "
        "stream URL, video or image file name")
