"""What the benchmarks share: the models and photos fetched from a local mirror, and a timing loop.

Each benchmark runs as a script (`python tests/benchmarks/bench_x.py`), so this is imported after the
script puts the repository on sys.path.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from edged.detect import fetch

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def default_mirrors() -> list[str]:
    """../shared beside the repository, as the tests use it."""
    return [str(SHARED / "models"), str(SHARED / "images")]


def fetched(names: Iterable[str], variants: Iterable[str] = ("cpu",),
            mirrors: list[str] | None = None) -> Path:
    """A fresh data directory with `names` (models, "samples") fetched offline and verified; its path."""
    data = Path(tempfile.mkdtemp(prefix="edged-bench-"))
    with open(os.devnull, "w") as quiet:
        for _, entry, directory in fetch.plan(list(names), list(variants), models_dir=data / "models",
                                              samples_dir=data / "samples"):
            fetch.fetch_file(entry, directory, mirrors or default_mirrors(), offline=True,
                             progress_stream=quiet)
    return data


def timed_ms(action: Callable[[], object], runs: int, warmup: int = 3) -> tuple[float, float]:
    """(median, 90th percentile) of `action` in milliseconds, after `warmup` calls."""
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        action()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]
