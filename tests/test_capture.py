"""The capture loop against a real MJPEG-over-HTTP camera that goes away and comes back, and against files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edged.service.capture import CaptureLoop
from edged.service.handoff import LatestSlots
from edged.service.stats import PipelineStats
from edged.sources.base import Backoff
from edged.sources.images import ImageSource
from edged.sources.video import VideoSource
from edged.types import Frame
from tests.mjpeg_server import MjpegCamera

pytest.importorskip("cv2")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class Harness:
    def __init__(self, source, *, fps: float = 0.0, backoff: Backoff | None = None) -> None:
        self.slots: LatestSlots[Frame] = LatestSlots(on_drop=lambda camera, _: self.stats.add_dropped(camera))
        self.stats = PipelineStats()
        self.stop = threading.Event()
        self.alive = 0
        self.prepared = 0
        source.open((300, 300))

        def prepare(frame: Frame) -> None:
            self.prepared += 1

        def alive() -> None:
            self.alive += 1

        self.loop = CaptureLoop(source, fps=fps, slots=self.slots, prepare=prepare,
                                model_size=lambda: (300, 300), stats=self.stats,
                                backoff=backoff or Backoff(0.1, 1.0), stop=self.stop, alive=alive)
        self.loop.start()

    @property
    def state(self) -> str:
        return self.stats.camera(self.loop.camera).source_state

    def take(self, timeout: float = 5.0) -> Frame:
        taken = self.slots.take(timeout)
        assert taken is not None, "no frame arrived"
        return taken[1]

    def close(self) -> None:
        self.stop.set()
        self.slots.close()
        self.loop.join(5)
        self.loop.source.close()


@pytest.fixture
def mjpeg_camera(image_mirror: Path):
    camera = MjpegCamera([image_mirror / "cat.bmp", image_mirror / "owl.jpg"], fps=25).start()
    yield camera
    camera.stop()


def test_a_stream_that_drops_is_reopened_with_growing_delays(mjpeg_camera: MjpegCamera):
    harness = Harness(VideoSource("door", mjpeg_camera.url, timeout_seconds=2), backoff=Backoff(0.1, 0.4))
    try:
        first = harness.take()
        assert harness.state == "streaming" and first.image.shape == (240, 320, 3)
        mjpeg_camera.stop()
        wait_for(lambda: harness.state == "reconnecting", 5, "the loop to notice the dropped stream")
        wait_for(lambda: len(harness.loop.delays) >= 4, 10, "four reconnect attempts")
        assert list(harness.loop.delays)[:4] == [0.1, 0.2, 0.4, 0.4]  # doubling, capped
        assert harness.alive > 0  # a loop that is retrying keeps the watchdog fed
        mjpeg_camera.start()
        wait_for(lambda: harness.state == "streaming", 10, "the stream to come back")
        while harness.slots.take(0.01):
            pass
        again = harness.take()
        assert again.seq > first.seq
        wait_for(lambda: harness.loop._backoff.attempts == 0, 5, "the backoff to reset after a good frame")
    finally:
        harness.close()


def test_a_live_stream_overwrites_frames_nobody_took_and_counts_them(mjpeg_camera: MjpegCamera):
    harness = Harness(VideoSource("door", mjpeg_camera.url, timeout_seconds=2))
    try:
        time.sleep(1.0)  # nobody consumes: 25 fps arrive, one slot keeps the newest
        newest = harness.take()
        dropped = harness.stats.camera("door").frames_dropped
        assert dropped >= 10
        assert newest.seq == harness.loop.frames  # the one kept is the latest captured
        assert len(harness.slots) == 0 or harness.take().seq > newest.seq
    finally:
        harness.close()


def test_files_wait_for_the_consumer_and_respect_the_fps_cap(image_mirror: Path, tmp_path: Path):
    for name in ("cat.bmp", "owl.jpg"):
        (tmp_path / name).write_bytes((image_mirror / name).read_bytes())
    harness = Harness(ImageSource("still", str(tmp_path)), fps=10)
    try:
        time.sleep(0.5)
        assert harness.stats.camera("still").frames_dropped == 0
        assert harness.loop.frames <= 2  # one in the slot, one waiting to be put: no busy reading ahead
        started = time.monotonic()
        seqs = [harness.take().seq for _ in range(10)]
        elapsed = time.monotonic() - started
        assert seqs == sorted(seqs) and len(set(seqs)) == 10 and seqs[-1] - seqs[0] == 9  # none skipped
        assert elapsed > 0.6  # ~10 fps cap: 10 frames cannot come out in a burst
        assert harness.stats.camera("still").frames_dropped == 0
    finally:
        harness.close()
