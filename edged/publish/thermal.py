"""Temperatures for `…/stats`, read from sysfs where the kernel exposes them.

CPU: the thermal zone named like the SoC/CPU sensor (Raspberry Pi: `cpu-thermal`).
Edge TPU: the PCIe/M.2 Coral's gasket/apex driver has `/sys/class/apex/apex_N/temp`;
the USB Accelerator exposes no temperature, so it stays null there.
Both files hold millidegrees Celsius.
"""

from __future__ import annotations

from pathlib import Path

CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "soc_thermal", "x86_pkg_temp", "cpu")


def _millidegrees(path: Path) -> float | None:
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def cpu_temp_c(root: Path = Path("/sys/class/thermal")) -> float | None:
    zones = sorted(root.glob("thermal_zone*"))
    by_type = {}
    for zone in zones:
        try:
            by_type.setdefault(zone.joinpath("type").read_text().strip(), zone)
        except OSError:
            continue
    for wanted in CPU_ZONE_TYPES:
        if wanted in by_type:
            return _millidegrees(by_type[wanted] / "temp")
    return _millidegrees(zones[0] / "temp") if zones else None


def tpu_temp_c(root: Path = Path("/sys/class/apex")) -> float | None:
    """The hottest Edge TPU, when several are present."""
    readings = [t for t in (_millidegrees(d / "temp") for d in sorted(root.glob("apex_*"))) if t is not None]
    return max(readings) if readings else None
