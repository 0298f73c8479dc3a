"""Looking at the machine without touching hardware: Coral ids in sysfs, device nodes, clock sync, TCP reach.

`edged doctor` is built on these. Every probe takes its root directory as a
parameter so it can be tested on a tree laid out like sysfs, and none of them
opens an accelerator or a camera (libedgetpu may abort the process that does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: USB ids of the Coral USB Accelerator: before its firmware is loaded, and after.
CORAL_USB_IDS = {("1a6e", "089a"): "Global Unichip (firmware not loaded yet)",
                 ("18d1", "9302"): "Google (ready)"}
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronized


@dataclass(frozen=True)
class EdgeTpu:
    kind: str  # "usb" | "pci"
    where: str  # sysfs device or /dev node
    detail: str


def find_edgetpus(usb_root: Path = Path("/sys/bus/usb/devices"),
                  dev_root: Path = Path("/dev")) -> list[EdgeTpu]:
    """USB accelerators by vendor:product id, PCIe/M.2 ones by their /dev/apex_N node."""
    found = []
    for device in sorted(usb_root.glob("*")):
        try:
            ids = ((device / "idVendor").read_text().strip(), (device / "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in CORAL_USB_IDS:
            found.append(EdgeTpu("usb", device.name, f"{ids[0]}:{ids[1]} {CORAL_USB_IDS[ids]}"))
    found += [EdgeTpu("pci", str(node), "gasket/apex driver") for node in sorted(dev_root.glob("apex_*"))]
    return found


def video_devices(dev_root: Path = Path("/dev")) -> list[str]:
    return [str(p) for p in sorted(dev_root.glob("video*"), key=lambda p: (len(p.name), p.name))]


def clock_synchronized() -> tuple[bool | None, str]:
    """(synced?, how we know): timedatectl's NTPSynchronized, else the kernel's adjtimex state."""
    if shutil.which("timedatectl"):
        try:
            out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                                 capture_output=True, text=True, timeout=5)
            if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
                return out.stdout.strip() == "yes", "timedatectl"
        except (OSError, subprocess.TimeoutExpired):
            pass
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None, "no libc"
    timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
    state = ctypes.CDLL(libc_name, use_errno=True).adjtimex(timex)
    if state < 0:
        return None, "adjtimex failed"
    return state != TIME_ERROR, "adjtimex"


@dataclass(frozen=True)
class Reach:
    address: str
    family: str  # "IPv6" | "IPv4"
    ok: bool
    error: str = ""


def tcp_reach(host: str, port: int, *, timeout: float = 2.0) -> list[Reach]:
    """Try a TCP connection to every address of `host` (IPv6 first); one entry per address."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [Reach(host, "?", False, f"cannot resolve: {exc.strerror}")]
    results = []
    for family, kind, proto, _, sockaddr in sorted(set(infos), key=lambda info: info[0] != socket.AF_INET6):
        name = "IPv6" if family == socket.AF_INET6 else "IPv4"
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
            results.append(Reach(str(sockaddr[0]), name, True))
        except OSError as exc:
            results.append(Reach(str(sockaddr[0]), name, False, (exc.strerror or str(exc)).lower()))
    return results
