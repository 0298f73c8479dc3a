"""One source URI → the Source that reads it. The URI forms are what `--source` and `[[cameras]] source` take.

| URI | Source |
|---|---|
| `samples` | the sample photos fetched by `edged models fetch` (the embedded default) |
| `picamera2:N` | Raspberry Pi camera N through picamera2 |
| `/dev/videoN` | a V4L2 (USB) webcam, through OpenCV |
| `rtsp://…`, `http(s)://…` (also rtmp, udp, tcp, srt) | a network stream, through OpenCV/FFmpeg |
| a video file (`.mp4`, `.mkv`, `.avi`, …) | played at its own frame rate, looped |
| an image file, a directory of images, a glob | looped; a single file is re-read every frame |
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edged import paths
from edged.errors import ConfigError
from edged.sources.base import Source
from edged.sources.images import IMAGE_SUFFIXES, ImageSource, is_glob
from edged.sources.picamera import Picamera2Source
from edged.sources.video import STREAM_SCHEMES, VIDEO_SUFFIXES, VideoSource, is_v4l2

SAMPLES = "samples"


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


def create_source(camera: str, uri: str, *, width: int = 0, height: int = 0, fps: float = 0.0,
                  snapshot: Literal["main", "lores", "none"] = "main",
                  timeout_seconds: float = 10.0) -> Source:
    """Build (not open) the source for `uri`; ConfigError when the URI names nothing edged can read."""
    if not uri:
        raise ConfigError(f"camera {camera}: empty source "
                          "(use `samples`, picamera2:N, /dev/videoN, a URL or a path)")
    kind = describe(uri)
    if kind == "samples":
        return ImageSource(camera, str(paths.samples_dir()),
                           hint="fetch the sample photos with `edged models fetch`")
    if kind == "picamera2":
        if uri != "picamera2" and not uri.startswith("picamera2:"):
            raise ConfigError(f"camera {camera}: source {uri!r}: expected picamera2:N")
        return Picamera2Source(camera, uri if ":" in uri else "picamera2:0", width=width, height=height,
                               snapshot=snapshot)
    if kind in ("v4l2", "stream", "video"):
        return VideoSource(camera, uri.removeprefix("file://"), width=width, height=height, fps=fps,
                           timeout_seconds=timeout_seconds)
    path = uri.removeprefix("file://")
    if is_glob(path) or Path(path).exists() or Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(camera, path)
    raise ConfigError(
        f"camera {camera}: source {uri!r} is not an existing path and not a picamera2:N, /dev/videoN, "
        "stream URL, video or image file name")
