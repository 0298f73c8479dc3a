"""A fixed-seed detector simulation on MOTChallenge ground truth, and the MOT metrics of a tracker's output.

Shared by the tracking-quality test (a floor on one sequence) and
tests/benchmarks/bench_tracking.py (edged vs norfair vs ByteTrack). The ground
truth is what py-motmetrics ships in its wheel (motmetrics/data/TUD-Campus and
TUD-Stadtmitte: 640x480, 25 fps). The simulated detector, per frame:
- drops each true box with probability 0.1, and hides each object for 5 frames
  in a row with probability 0.02 per frame (occlusions);
- jitters x, y, w, h by a normal error of 5 % of the box's width or height;
- scores true boxes uniformly in 0.35..0.95 (some dip below 0.5, as real
  scores do when a person turns or is half hidden);
- adds on average 1.5 false positives per frame, person-sized, at 0.3..0.55.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
FPS = 25.0
WIDTH, HEIGHT = 640, 480
SEED = 8

# (frame, id, xmin, ymin, xmax, ymax, score) in pixels
Row = tuple[int, int, float, float, float, float, float]


@dataclass(frozen=True)
class Sequence:
    name: str
    truth: dict[int, list[tuple[int, np.ndarray]]]  # frame → [(id, xyxy)]
    detections: dict[int, list[tuple[np.ndarray, float]]]  # frame → [(xyxy, score)]

    @property
    def frames(self) -> int:
        return max(self.truth)


def data_dir() -> Path:
    import motmetrics

    return Path(motmetrics.__file__).parent / "data"


def load_truth(name: str) -> dict[int, list[tuple[int, np.ndarray]]]:
    truth: dict[int, list[tuple[int, np.ndarray]]] = {}
    for line in (data_dir() / name / "gt.txt").read_text().splitlines():
        fields = line.split(",")
        frame, ident = int(fields[0]), int(fields[1])
        x, y, w, h = (float(v) for v in fields[2:6])
        truth.setdefault(frame, []).append((ident, np.array([x, y, x + w, y + h])))
    return truth


def simulate(truth: dict[int, list[tuple[int, np.ndarray]]], seed: int = SEED) -> dict[int, list]:
    rng = np.random.default_rng(seed)
    hidden_until: dict[int, int] = {}
    detections: dict[int, list[tuple[np.ndarray, float]]] = {}
    for frame in range(1, max(truth) + 1):
        found = []
        for ident, box in truth.get(frame, []):
            if hidden_until.get(ident, 0) >= frame:
                continue
            if rng.random() < 0.02:
                hidden_until[ident] = frame + 4
                continue
            if rng.random() < 0.1:
                continue
            w, h = box[2] - box[0], box[3] - box[1]
            x = box[0] + rng.normal(0, 0.05 * w)
            y = box[1] + rng.normal(0, 0.05 * h)
            w2 = max(4.0, w + rng.normal(0, 0.05 * w))
            h2 = max(4.0, h + rng.normal(0, 0.05 * h))
            found.append((np.array([x, y, x + w2, y + h2]), float(rng.uniform(0.35, 0.95))))
        for _ in range(rng.poisson(1.5)):
            h = rng.uniform(80, 250)
            w = h * rng.uniform(0.35, 0.5)
            x, y = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
            found.append((np.array([x, y, x + w, y + h]), float(rng.uniform(0.3, 0.55))))
        order = rng.permutation(len(found))
        detections[frame] = [found[i] for i in order]
    return detections


def load(name: str, seed: int = SEED) -> Sequence:
    truth = load_truth(name)
    return Sequence(name, truth, simulate(truth, seed))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    return inter / (_area(a)[:, None] + _area(b)[None, :] - inter)


def _area(m: np.ndarray) -> np.ndarray:
    return (m[:, 2] - m[:, 0]) * (m[:, 3] - m[:, 1])


def metrics(sequence: Sequence, rows: Iterable[Row]) -> dict[str, float]:
    """MOTA, IDF1, ID switches (+ MOTP, FP, FN) of tracker rows against the ground truth, IoU ≥ 0.5.

    The distance matrix is computed here (motmetrics 1.4's own iou_matrix uses
    np.asfarray, gone in numpy 2); motmetrics does the matching and metrics.
    """
    import motmetrics as mm

    by_frame: dict[int, list[tuple[int, np.ndarray]]] = {}
    for frame, ident, x0, y0, x1, y1, _score in rows:
        by_frame.setdefault(frame, []).append((ident, np.array([x0, y0, x1, y1])))
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame in range(1, sequence.frames + 1):
        truth = sequence.truth.get(frame, [])
        hyps = by_frame.get(frame, [])
        if truth and hyps:
            iou = _iou(np.stack([b for _, b in truth]), np.stack([b for _, b in hyps]))
            distances = np.where(iou >= 0.5, 1 - iou, np.nan)
        else:
            distances = np.empty((len(truth), len(hyps)))
        accumulator.update([i for i, _ in truth], [i for i, _ in hyps], distances, frameid=frame)
    host = mm.metrics.create()
    names = ["mota", "idf1", "num_switches", "motp", "num_false_positives", "num_misses"]
    summary = host.compute(accumulator, metrics=names, name=sequence.name)
    return {name: float(summary[name].iloc[0]) for name in names}


def run_edged(sequence: Sequence, settings=None, assign: Callable | None = None) -> list[Row]:
    """edged's tracker on the simulated detections, through the same replay `edged track` uses."""
    from edged.track.mot import MOT_LABEL, replay
    from edged.track.settings import TrackingSettings
    from edged.track.tracker import Tracker
    from edged.types import Box, Detection

    settings = settings or TrackingSettings()
    frames = {frame: [Detection(MOT_LABEL, 0, score, Box(*map(float, box))) for box, score in found]
              for frame, found in sequence.detections.items()}
    tracker = Tracker(settings, assign=assign) if assign else None
    return [(frame, ident, box.xmin, box.ymin, box.xmax, box.ymax, score)
            for frame, ident, box, score in replay(frames, settings, FPS, tracker)]
