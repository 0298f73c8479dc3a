"""Benchmark: how long after a broker returns from a long outage edged is publishing again.

Run: `python tests/benchmarks/bench_reconnect.py [--outage 35] [--clients 8]`. Not collected by pytest.
One real mosquitto on [::1], three groups of Publishers connected to it, the broker
stopped for `--outage` seconds and started again; for each client the time from the
broker's return to its CONNACK, and its failed attempts during the outage:
- `paho 30 s` (the baseline): what edged did before, paho's plain doubling 1, 2, 4 … capped
  at 30 s, every client in lockstep;
- `jitter 30 s`: edged's backoff (each wait drawn between half and all of the doubling base)
  with the old cap;
- `jitter 10 s`: edged's backoff with the default cap (`reconnect_max_seconds = 10`).
Printed as ratios of the medians against the baseline, with the machine's load average.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edged.publish.link import Backoff  # noqa: E402
from edged.publish.mosquitto import Mosquitto  # noqa: E402
from edged.publish.publisher import Publisher  # noqa: E402
from edged.publish.settings import MqttSettings, PublishSettings  # noqa: E402


class UpperBound(random.Random):
    """No jitter: every wait is the full base, as paho's own reconnect_delay_set does."""

    def uniform(self, a: float, b: float) -> float:
        return b


GROUPS = {"paho 30 s": (30.0, UpperBound), "jitter 30 s": (30.0, random.Random),
          "jitter 10 s": (10.0, random.Random)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=35.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    logging.getLogger("edged.mqtt").setLevel(logging.ERROR)  # 24 clients x "connection refused"
    broker = Mosquitto().start()
    clients: list[tuple[str, Publisher]] = []
    for group, (cap, rng) in GROUPS.items():
        for index in range(args.clients):
            settings = MqttSettings(brokers=[f"mqtt://[::1]:{broker.port}"], reconnect_min_seconds=1.0,
                                    reconnect_max_seconds=cap)
            publisher = Publisher(settings, PublishSettings(), device_id=f"{group.replace(' ', '')}-{index}",
                                  version="bench")
            publisher._connection.backoff = Backoff(1.0, cap, rng=rng())  # the group's schedule
            publisher.start(backend="cpu", model="m")
            clients.append((group, publisher))
    assert all(p.wait_connected(10) for _, p in clients), "not every client connected"
    broker.stop()
    while any(p.connected for _, p in clients):
        time.sleep(0.01)
    before = {id(p): p.link_stats().failed_attempts for _, p in clients}
    time.sleep(args.outage)
    broker.start()
    back_at = time.monotonic()
    reconnected: dict[int, float] = {}

    def watch(publisher: Publisher) -> None:
        publisher.wait_connected(120)
        reconnected[id(publisher)] = time.monotonic() - back_at

    threads = [threading.Thread(target=watch, args=(p,)) for _, p in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load = os.getloadavg()
    print(f"broker down {args.outage:.0f} s; {args.clients} clients per group; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'group':<12} {'median s':>9} {'min s':>7} {'max s':>7} {'attempts':>9} {'ratio':>6}")
    baseline = None
    for group in GROUPS:
        members = [p for g, p in clients if g == group]
        delays = [reconnected[id(p)] for p in members]
        attempts = statistics.median(p.link_stats().failed_attempts - before[id(p)] for p in members)
        median = statistics.median(delays)
        baseline = baseline or median
        print(f"{group:<12} {median:>9.1f} {min(delays):>7.1f} {max(delays):>7.1f} {attempts:>9.0f} "
              f"{median / baseline:>6.2f}")
    for _, publisher in clients:
        publisher.stop(timeout=0.5)
    broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
