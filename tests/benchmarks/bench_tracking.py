"""Benchmark: tracking quality (MOTA, IDF1, ID switches) of edged vs norfair vs ByteTrack, and tracker cost.

Run: `python tests/benchmarks/bench_tracking.py` after `pip install -e '.[bench]'`. Not collected by pytest.
Quality: every tracker gets the same simulated detections (tests/tracking_sim.py:
py-motmetrics' TUD-Campus and TUD-Stadtmitte ground truth, fixed seeds, drops,
jitter, low-score false positives, 5-frame occlusions) and is scored by
py-motmetrics at IoU ≥ 0.5. Compared: norfair (Frigate's tracker; IoU distance,
fed detections ≥ 0.5 as a Frigate-like setup, and ≥ 0.3 like edged) and the ByteTrack of
Roboflow's `trackers` package (its defaults, and with edged's thresholds), plus
edged with scipy's optimal assignment instead of its greedy one.
Cost: CameraTracker.update with 20 live objects moving (zones on), median per
frame, printed beside norfair's and ByteTrack's cost on the same frames and with
the machine's load average. Target (issue 8): ≤ 0.5 ms per frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.track.events import CameraTracker  # noqa: E402
from edged.track.settings import TrackingSettings, ZoneSettings  # noqa: E402
from edged.types import Box, Detection  # noqa: E402
from tests import tracking_sim as sim  # noqa: E402

LOST_FRAMES = round(TrackingSettings().lost_seconds * sim.FPS)


def run_norfair(sequence: sim.Sequence, lowest: float) -> list[sim.Row]:
    import logging

    import norfair

    logging.getLogger("norfair").setLevel(logging.ERROR)  # "Incorrect bounding boxes" for its own estimates
    tracker = norfair.Tracker(distance_function="iou", distance_threshold=1 - TrackingSettings().match_iou,
                              hit_counter_max=LOST_FRAMES,
                              initialization_delay=TrackingSettings().min_hits - 1)
    rows = []
    for frame in range(1, sequence.frames + 1):
        detections = [norfair.Detection(box.reshape(2, 2), scores=np.array([score, score]), data=frame)
                      for box, score in sequence.detections.get(frame, []) if score >= lowest]
        for obj in tracker.update(detections):
            if obj.last_detection is not None and obj.last_detection.data == frame:  # matched in this frame
                x0, y0, x1, y1 = obj.estimate.reshape(-1).tolist()
                rows.append((frame, obj.id, x0, y0, x1, y1, 1.0))
    return rows


def run_bytetrack(sequence: sim.Sequence, matched: bool) -> list[sim.Row]:
    import supervision as sv
    import trackers

    options = dict(frame_rate=sim.FPS, lost_track_buffer=LOST_FRAMES)
    if matched:
        ours = TrackingSettings()
        options.update(track_activation_threshold=ours.high_score, high_conf_det_threshold=ours.high_score,
                       minimum_consecutive_frames=ours.min_hits, minimum_iou_threshold=ours.match_iou)
    tracker = trackers.ByteTrackTracker(**options)
    rows = []
    for frame in range(1, sequence.frames + 1):
        found = sequence.detections.get(frame, [])
        detections = sv.Detections(
            xyxy=np.array([box for box, _ in found]).reshape(-1, 4),
            confidence=np.array([score for _, score in found], dtype=np.float32),
            class_id=np.zeros(len(found), dtype=int))
        result = tracker.update(detections)
        for box, ident in zip(result.xyxy, result.tracker_id):
            if ident >= 0:
                rows.append((frame, int(ident), *map(float, box), 1.0))
    return rows


def scipy_assign(iou: np.ndarray, gate: float) -> list[tuple[int, int]]:
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-np.where(iou >= gate, iou, 0.0))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= gate]


def quality() -> None:
    trackers_run = {
        "edged (greedy)": lambda s: sim.run_edged(s),
        "edged (scipy optimal)": lambda s: sim.run_edged(s, assign=scipy_assign),
        "norfair (IoU, scores ≥ 0.5)": lambda s: run_norfair(s, 0.5),
        "norfair (IoU, scores ≥ 0.3)": lambda s: run_norfair(s, 0.3),
        "ByteTrack (trackers, defaults)": lambda s: run_bytetrack(s, matched=False),
        "ByteTrack (trackers, edged thresholds)": lambda s: run_bytetrack(s, matched=True),
    }
    print(f"{'sequence':<15} {'seed':>4} {'tracker':<40} {'MOTA':>6} {'IDF1':>6} {'IDsw':>5} {'FP':>5} "
          f"{'FN':>5}")
    for seed in (sim.SEED, 3):
        for name in sim.SEQUENCES:
            sequence = sim.load(name, seed)
            for label, run in trackers_run.items():
                m = sim.metrics(sequence, run(sequence))
                print(f"{name:<15} {seed:>4} {label:<40} {m['mota']:>6.3f} {m['idf1']:>6.3f} "
                      f"{m['num_switches']:>5.0f} {m['num_false_positives']:>5.0f} {m['num_misses']:>5.0f}")


def crowd(frames: int, objects: int = 20, seed: int = 1) -> list[list[Detection]]:
    """`objects` people walking to and fro across the picture, each detected every frame with jitter."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.05, 0.75, size=(objects, 2))
    velocity = rng.uniform(-0.004, 0.004, size=(objects, 2))
    size = np.column_stack([rng.uniform(0.04, 0.08, objects), rng.uniform(0.1, 0.2, objects)])
    out = []
    for frame in range(frames):
        travelled = (start + velocity * frame) % 1.6  # bounce between 0.1 and 0.9
        centre = np.where(travelled > 0.8, 1.6 - travelled, travelled) + 0.1
        jitter = rng.normal(0, 0.002, size=(objects, 2))
        low, high = centre + jitter - size / 2, centre + jitter + size / 2
        out.append([Detection("person", 0, float(rng.uniform(0.5, 0.9)), Box(*low[i], *high[i]))
                    for i in range(objects)])
    return out


def per_frame_ms(update, frames: list, warmup: int = 30) -> float:
    samples = []
    for index, detections in enumerate(frames):
        start = time.perf_counter_ns()
        update(index, detections)
        if index >= warmup:
            samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def cost(frames_count: int) -> None:
    import norfair
    import supervision as sv
    import trackers

    frames = crowd(frames_count)
    zones = [ZoneSettings(name="left", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)]),
             ZoneSettings(name="right", polygon=[(0.5, 0), (1, 0), (1, 1), (0.5, 1)])]
    ours = CameraTracker(TrackingSettings(), zones)
    edged_ms = per_frame_ms(lambda i, d: ours.update(i / sim.FPS, i / sim.FPS, d), frames)
    live = len(ours.objects())
    nf = norfair.Tracker(distance_function="iou", distance_threshold=1 - TrackingSettings().match_iou,
                         hit_counter_max=LOST_FRAMES, initialization_delay=TrackingSettings().min_hits - 1)
    norfair_ms = per_frame_ms(lambda i, d: nf.update([norfair.Detection(
        np.array([[x.box.xmin, x.box.ymin], [x.box.xmax, x.box.ymax]]), scores=np.array([x.score, x.score]))
        for x in d]), frames)
    bt = trackers.ByteTrackTracker(frame_rate=sim.FPS)
    byte_ms = per_frame_ms(lambda i, d: bt.update(sv.Detections(
        xyxy=np.array([[x.box.xmin, x.box.ymin, x.box.xmax, x.box.ymax] for x in d]),
        confidence=np.array([x.score for x in d], dtype=np.float32), class_id=np.zeros(len(d), dtype=int))),
        frames)
    load = os.getloadavg()
    print(f"\ncost per frame, {live} live tracks, median of {frames_count - 30} frames "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs):")
    print(f"  edged CameraTracker (2 zones)  {edged_ms:.3f} ms")
    print(f"  norfair                        {norfair_ms:.3f} ms  (edged = {edged_ms / norfair_ms:.2f} x)")
    print(f"  ByteTrack (trackers)           {byte_ms:.3f} ms  (edged = {edged_ms / byte_ms:.2f} x)")
    print(f"target ≤ 0.5 ms per frame with 20 live objects: {'met' if edged_ms <= 0.5 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500, help="frames of the cost run")
    args = parser.parse_args()
    quality()
    cost(args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
