"""Sources on real files: image directories and globs looping, a video made with OpenCV, URI dispatch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edged.errors import ConfigError
from edged.sources.base import Backoff, FrameNumbers, SourceError
from edged.sources.factory import create_source, describe
from edged.sources.images import ImageSource
from edged.sources.picamera import Picamera2Source
from edged.sources.video import VideoSource

PHOTOS = ["cat.bmp", "grace_hopper.bmp", "owl.jpg", "pets.jpg", "squat.bmp"]


@pytest.fixture
def photo_dir(tmp_path: Path, image_mirror: Path) -> Path:
    directory = tmp_path / "photos"
    directory.mkdir()
    for name in PHOTOS:
        shutil.copy(image_mirror / name, directory / name)
    return directory


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def read_n(source, n: int) -> list:
    source.open((300, 300))
    try:
        return [source.read() for _ in range(n)]
    finally:
        source.close()


def test_directory_loops_in_name_order_and_frames_hold_the_photos(photo_dir: Path):
    frames = read_n(ImageSource("cam0", str(photo_dir)), 12)
    names = sorted(PHOTOS)
    for index, frame in enumerate(frames):
        expected = rgb(photo_dir / names[index % len(names)])
        assert frame.image.shape == expected.shape
        assert np.array_equal(frame.image, expected)
        assert (frame.width, frame.height) == (expected.shape[1], expected.shape[0])
        assert frame.source == "cam0"
    assert [f.seq for f in frames] == list(range(1, 13))
    assert all(b.captured_ns >= a.captured_ns for a, b in zip(frames, frames[1:]))


def test_unchanged_photos_are_decoded_once(photo_dir: Path):
    frames = read_n(ImageSource("cam0", str(photo_dir)), 2 * len(PHOTOS))
    first, second = frames[: len(PHOTOS)], frames[len(PHOTOS):]
    assert all(a.image is b.image for a, b in zip(first, second))  # the second pass came from the cache
    assert not first[0].image.flags.writeable  # shared by every frame of that file: read-only


def test_directory_is_relisted_each_pass_and_unreadable_files_are_skipped(photo_dir: Path, caplog):
    source = ImageSource("cam0", str(photo_dir))
    source.open((300, 300))
    first_pass = [source.read() for _ in range(len(PHOTOS))]
    (photo_dir / "zz_new.jpg").write_bytes((photo_dir / "owl.jpg").read_bytes())
    (photo_dir / "aa_broken.jpg").write_bytes(b"not a jpeg at all")
    second_pass = [source.read() for _ in range(len(PHOTOS) + 1)]
    assert len(first_pass) == len(PHOTOS)
    assert np.array_equal(second_pass[-1].image, rgb(photo_dir / "owl.jpg"))  # the new file, last by name
    assert np.array_equal(second_pass[0].image, rgb(photo_dir / "cat.bmp"))  # the broken one was skipped
    assert "aa_broken.jpg" in caplog.text and "not a readable image" in caplog.text


def test_glob_selects_matching_files_only(photo_dir: Path):
    frames = read_n(ImageSource("cam0", str(photo_dir / "*.jpg")), 4)
    expected = [rgb(photo_dir / n) for n in ("owl.jpg", "pets.jpg", "owl.jpg", "pets.jpg")]
    assert all(np.array_equal(f.image, e) for f, e in zip(frames, expected))


def test_single_file_is_reread_every_frame(photo_dir: Path):
    target = photo_dir / "current.jpg"
    shutil.copy(photo_dir / "owl.jpg", target)
    source = ImageSource("cam0", str(target))
    source.open((300, 300))
    first = source.read()
    shutil.copy(photo_dir / "pets.jpg", target)
    second = source.read()
    assert np.array_equal(first.image, rgb(photo_dir / "owl.jpg"))
    assert np.array_equal(second.image, rgb(photo_dir / "pets.jpg"))


def test_empty_directory_and_all_unreadable_files_are_source_errors(tmp_path: Path):
    empty = ImageSource("cam0", str(tmp_path))
    with pytest.raises(SourceError, match="no images in"):
        empty.open((300, 300))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(SourceError, match="none of the 2 images .* could be read"):  # at open: it never works
        ImageSource("cam0", str(tmp_path)).open((300, 300))
    with pytest.raises(SourceError, match="bad.png: not a readable image"):
        ImageSource("cam0", str(tmp_path / "bad.png")).open((300, 300))


def test_samples_source_says_which_fetch_to_run(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("EDGED_DATA_DIR", str(tmp_path))
    source = create_source("cam0", "samples")
    with pytest.raises(SourceError, match="edged models fetch"):
        source.open((300, 300))


def write_video(path: Path, photos: list[Path], *, fps: float = 10.0, size=(320, 240)) -> list[np.ndarray]:
    """An MJPEG .avi of the photos (resized) made with OpenCV's VideoWriter; returns the frames written."""
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    frames = []
    for photo in photos:
        frame = np.asarray(Image.open(photo).convert("RGB").resize(size))
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        frames.append(frame)
    writer.release()
    return frames


def test_video_file_plays_its_frames_then_loops(tmp_path: Path, photo_dir: Path):
    video = tmp_path / "clip.avi"
    written = write_video(video, [photo_dir / n for n in PHOTOS[:3]], fps=12.0)
    source = create_source("cam0", str(video))
    assert isinstance(source, VideoSource) and not source.live
    source.open((300, 300))
    assert source.default_fps() == pytest.approx(12.0)
    frames = [source.read() for _ in range(7)]
    source.close()
    for index, frame in enumerate(frames):
        expected = written[index % 3]
        assert frame.image.shape == expected.shape
        assert np.abs(frame.image.astype(int) - expected.astype(int)).mean() < 6  # JPEG-compressed copy
    assert np.abs(frames[0].image.astype(int) - frames[1].image.astype(int)).mean() > 20  # distinct pictures


def test_missing_video_and_unreachable_stream_are_source_errors(tmp_path: Path):
    with pytest.raises(SourceError, match="no such video file"):
        VideoSource("cam0", str(tmp_path / "absent.mp4")).open((300, 300))
    with pytest.raises(SourceError, match="cannot open"):
        VideoSource("cam0", "http://[::1]:9/none.mjpg", timeout_seconds=1.0).open((300, 300))


@pytest.mark.parametrize("uri, kind, cls", [
    ("samples", "samples", ImageSource),
    ("picamera2:1", "picamera2", Picamera2Source),
    ("/dev/video0", "v4l2", VideoSource),
    ("rtsp://[2001:db8::7]:554/stream", "stream", VideoSource),
    ("http://cam.local/video.mjpg", "stream", VideoSource),
    ("/srv/clips/door.mp4", "video", VideoSource),
    ("/srv/photos/*.jpg", "images", ImageSource),
    ("/srv/photos/one.jpg", "images", ImageSource),
])
def test_uri_dispatch(uri: str, kind: str, cls: type):
    assert describe(uri) == kind
    assert isinstance(create_source("cam0", uri), cls)


def test_live_flags():
    assert VideoSource("c", "/dev/video0").live and VideoSource("c", "rtsp://h/s").live
    assert not ImageSource("c", "/x").live and not VideoSource("c", "/x.mp4").live


def test_unrecognizable_sources_are_config_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="camera cam0: source 'nothing-here'"):
        create_source("cam0", "nothing-here")
    with pytest.raises(ConfigError, match="expected picamera2:N"):
        create_source("cam0", "picamera2x")
    for uri in ("picamera2:front", "picamera2:-1", "picamera2:"):
        with pytest.raises(ConfigError, match="expected picamera2:N"):
            create_source("cam0", uri)
    for uri, problem in (("rtsp:///stream", "names no host"), ("http://cam:http/x.mjpg", "not a valid URL")):
        with pytest.raises(ConfigError, match=problem):
            create_source("cam0", uri)


def test_backoff_doubles_up_to_the_cap_and_resets():
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_a_picture_over_the_pixel_limit_is_skipped_from_its_header_once(photo_dir: Path, caplog):
    from tests.bad_files import png_header

    (photo_dir / "big.png").write_bytes(png_header(10000, 6000))  # 60 MP claimed; no pixels to decode
    source = ImageSource("cam0", str(photo_dir), max_pixels=50_000_000)
    frames = read_n(source, 3 * len(PHOTOS))
    assert [f.width for f in frames] == [rgb(photo_dir / n).shape[1] for n in sorted(PHOTOS)] * 3
    warnings = [r.getMessage() for r in caplog.records if "big.png" in r.getMessage()]
    assert warnings == [(f"camera cam0: skipping {photo_dir / 'big.png'}: 10000x6000 pixels is more than the "
                         "limit of 50 megapixels (service.max_image_megapixels)")]


def test_pictures_beyond_the_cache_budget_are_decoded_each_time(photo_dir: Path):
    from edged.sources.images import DecodedCache

    cache = DecodedCache(limit=1_000_000)  # cat.bmp (524 KB decoded) fits; the second picture would not
    first, second = cache.load(photo_dir / "cat.bmp"), cache.load(photo_dir / "grace_hopper.bmp")
    assert cache.load(photo_dir / "cat.bmp") is first
    assert cache.load(photo_dir / "grace_hopper.bmp") is not second
    assert np.array_equal(cache.load(photo_dir / "grace_hopper.bmp"), second)


def test_a_fifo_is_not_read_when_the_source_opens(tmp_path: Path):
    """A program feeding pictures into a FIFO may start later: opening must not wait for it."""
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    source = ImageSource("cam0", str(fifo))
    source.open((300, 300))  # would block forever if it read the FIFO
    source.close()


def test_a_video_file_without_frames_fails_when_it_opens(tmp_path: Path, fetched_data_dir: Path):
    pytest.importorskip("cv2")
    from tests.bad_files import make

    video = make("video", "no_frames", tmp_path, fetched_data_dir)
    with pytest.raises(SourceError, match="no decodable frames"):
        create_source("cam0", str(video)).open((300, 300))


def test_frame_numbers_continue_in_a_rebuilt_source(photo_dir: Path):
    numbers = FrameNumbers()
    first = read_n(create_source("cam0", str(photo_dir), numbers=numbers), 3)
    again = read_n(create_source("cam0", str(photo_dir), numbers=numbers), 3)  # a reload rebuilt the camera
    assert [f.seq for f in first + again] == [1, 2, 3, 4, 5, 6]
