"""`edged dataset stats`: what a dataset holds — frames, objects per label, model scores, disk use."""

from __future__ import annotations

from pathlib import Path

import msgspec

from edged.dataset.layout import iter_frames, open_dataset, parse_time

BINS = 10  # score histogram: [0, 0.1), [0.1, 0.2), …, [0.9, 1.0]


class LabelCount(msgspec.Struct):
    objects: int = 0
    by_person: int = 0  # objects without a model score: drawn or corrected by a person


class DatasetStats(msgspec.Struct, kw_only=True):
    directory: str
    frames: int
    frames_without_objects: int
    cameras: dict[str, int]  # camera → frames
    reasons: dict[str, int]  # why frames were kept → frames
    labels: dict[str, LabelCount]  # label → objects
    score_histogram: list[int]  # BINS counts of model scores, 0.0 → 1.0
    disk_bytes: int  # bytes of every file under the directory
    first_capture: str | None
    last_capture: str | None
    problems: list[str]


def dataset_stats(root: Path) -> DatasetStats:
    problems: list[str] = []
    cameras: dict[str, int] = {}
    reasons: dict[str, int] = {}
    labels: dict[str, LabelCount] = {}
    histogram = [0] * BINS
    frames = empty = 0
    times: list[tuple[float, str]] = []
    for frame in iter_frames(root, problems):
        record = frame.record
        frames += 1
        empty += not record.detections
        cameras[frame.camera] = cameras.get(frame.camera, 0) + 1
        for reason in record.reasons:
            reasons[reason] = reasons.get(reason, 0) + 1
        for a in record.detections:
            count = labels.setdefault(a.label, LabelCount())
            count.objects += 1
            if a.score is None:
                count.by_person += 1
            else:
                histogram[min(BINS - 1, max(0, int(a.score * BINS)))] += 1
        moment = parse_time(record.captured_at)
        if moment is not None:
            times.append((moment, record.captured_at))
    disk = sum(path.stat().st_size for path in open_dataset(root).rglob("*") if path.is_file())
    times.sort()
    return DatasetStats(directory=str(root), frames=frames, frames_without_objects=empty,
                        cameras=dict(sorted(cameras.items())), reasons=dict(sorted(reasons.items())),
                        labels=dict(sorted(labels.items(), key=lambda item: (-item[1].objects, item[0]))),
                        score_histogram=histogram, disk_bytes=disk,
                        first_capture=times[0][1] if times else None,
                        last_capture=times[-1][1] if times else None,
                        problems=problems)


def render(stats: DatasetStats) -> str:
    """The human-readable report: counts, then per-label objects, then a text histogram of scores."""
    lines = [f"{stats.directory}: {stats.frames} frames ({stats.frames_without_objects} without objects), "
             f"{stats.disk_bytes / 1e6:.1f} MB on disk"]
    if stats.first_capture:
        lines.append(f"captured {stats.first_capture} … {stats.last_capture}")
    lines.append("cameras: " + (", ".join(f"{k} {v}" for k, v in stats.cameras.items()) or "none"))
    lines.append("kept for: " + (", ".join(f"{k} {v}" for k, v in stats.reasons.items()) or "-"))
    lines.append(f"{'LABEL':<20} {'OBJECTS':>8} {'BY PERSON':>10}")
    for label, count in stats.labels.items():
        lines.append(f"{label:<20} {count.objects:>8} {count.by_person:>10}")
    top = max(stats.score_histogram, default=0) or 1
    lines.append("model scores:")
    for index, count in enumerate(stats.score_histogram):
        bar = "#" * round(40 * count / top)
        lines.append(f"  {index / BINS:.1f}-{(index + 1) / BINS:.1f} {count:>7} {bar}")
    lines.extend(f"skipped: {problem}" for problem in stats.problems)
    return "\n".join(lines)
