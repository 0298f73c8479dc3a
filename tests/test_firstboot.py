"""Flashing a Pi: deploy/edged-seed writes a card's boot partition, its first boot installs edged.

Cards are directories shaped like the FAT partition Raspberry Pi Imager leaves behind: a trixie
card (cloud-init: Imager's user-data with a user, SSH key and runcmd, Imager's Wi-Fi
network-config, the image's meta-data) and a bookworm card (Imager's firstrun.sh hooked into
cmdline.txt). The first-boot script then installs into a scratch root with this machine's Python
and x86_64 wheels; tests/test_aarch64.py does the same for the Pi's architecture.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edged.config import parse_config

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "deploy" / "edged-seed"
sys.path.insert(0, str(REPO / "deploy" / "firstboot"))
import boothooks  # noqa: E402  (deploy/firstboot/boothooks.py: the seed's first-boot hooks)
SHARED = REPO / ".." / "shared"
MIRRORS = ["--mirror", str(SHARED / "models"), "--mirror", str(SHARED / "images")]
CACHE = Path(os.environ.get("EDGED_TEST_CACHE", "/var/cache/edged-tests")) / "seed"
INSTALL_RUNCMD = ["sh", "/boot/firmware/edged/install-edged.sh"]
CARD_OPTIONS = ("--device-id", "pi-door", "--broker", "mqtt://[fd00:ed9e::1]:1883", "--mqtt-username", "door",
                "--camera", "picamera2:0")
CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=6c586e13-02 rootfstype=ext4 fsck.repair=yes "
           "rootwait quiet")

# What Raspberry Pi Imager's customisation writes (rpi-imager src/customization_generator.cpp).
IMAGER_USER_DATA = """#cloud-config
hostname: pi-door
manage_etc_hosts: true
packages:
- avahi-daemon
timezone: Europe/Berlin
enable_ssh: true
users:
- name: admin
  groups: users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo
  shell: /bin/bash
  lock_passwd: true
  ssh_authorized_keys:
    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@laptop
  sudo: ALL=(ALL) NOPASSWD:ALL

runcmd:
  - [ rfkill, unblock, wifi ]
"""
IMAGER_NETWORK_CONFIG = """network:
  version: 2
  wifis:
    wlan0:
      dhcp4: true
      regulatory-domain: "DE"
      access-points:
        "home":
          password: "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988"
"""
IMAGE_META_DATA = "dsmode: local\ninstance_id: rpios-image\n"
IMAGER_FIRSTRUN = """#!/bin/bash

set +e

CURRENT_HOSTNAME=$(cat /etc/hostname | tr -d " \\t\\n\\r")
if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then
   /usr/lib/raspberrypi-sys-mods/imager_custom set_hostname pi-gate
else
   echo pi-gate >/etc/hostname
fi
rm -f /boot/firstrun.sh
sed -i 's| systemd.run.*||g' /boot/cmdline.txt
exit 0
"""
IMAGER_HOOK = (" systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot"
               " systemd.unit=kernel-command-line.target")


def seed(boot: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SEED), str(boot), *args], capture_output=True, text=True)


def target_python() -> str:
    """The Python the scratch-root install uses (`python3` on PATH), as 3.X for the wheels."""
    out = subprocess.run(["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def card(path: Path, *, trixie: bool) -> Path:
    path.mkdir()
    (path / "config.txt").write_text("[all]\nauto_initramfs=1\n")
    if trixie:
        (path / "cmdline.txt").write_text(CMDLINE + "\n")
        (path / "user-data").write_text(IMAGER_USER_DATA)
        (path / "network-config").write_text(IMAGER_NETWORK_CONFIG)
        (path / "meta-data").write_text(IMAGE_META_DATA)
    else:
        (path / "cmdline.txt").write_text(CMDLINE + IMAGER_HOOK + "\n")
        (path / "firstrun.sh").write_text(IMAGER_FIRSTRUN)
    return path


def tree(root: Path) -> dict[str, tuple[str, float]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
            for p in sorted(root.rglob("*")) if p.is_file()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trixie_card(tmp_path_factory):
    boot = card(tmp_path_factory.mktemp("trixie") / "bootfs", trixie=True)
    done = seed(boot, *CARD_OPTIONS, "--arch", "x86_64", "--python", target_python(), *MIRRORS,
                "--cache-dir", str(CACHE))
    assert done.returncode == 0, done.stderr
    assert "cloud-init" in done.stdout
    return boot


# --- bad input: one line, a documented exit code, nothing written ---------------------------------

@pytest.mark.parametrize("make, code, words", [
    (lambda tmp: tmp / "missing", 66, "no such directory"),
    (lambda tmp: tmp, 65, "not a Raspberry Pi boot partition"),
])
def test_bad_boot_directory(tmp_path, make, code, words):
    done = seed(make(tmp_path), "--no-models")
    assert done.returncode == code
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("edged-seed: error: ")
    assert words in done.stderr
    assert not (tmp_path / "edged").exists()


def test_bad_config_files(tmp_path):
    boot = card(tmp_path / "bootfs", trixie=True)
    broken = tmp_path / "broken.toml"
    broken.write_text("[mqtt]\nbrokers = [\"mqtt://[::1]:1883\"\n")
    clashing = tmp_path / "clash.toml"
    clashing.write_text("[device]\nid = \"pi-one\"\n")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[mqtt]\nport = 1883\n")  # edged's own check: the key path and what is wrong
    for config, extra, code, words in ((tmp_path / "nope.toml", [], 66, "config not found"),
                                       (tmp_path, [], 66, "cannot read config"),  # a directory
                                       (broken, [], 78, "not valid TOML"),
                                       (unknown, [], 78, "mqtt: unknown key `port`"),
                                       (clashing, ["--device-id", "pi-two"], 78, "'pi-one'")):
        done = seed(boot, "--config", str(config), *extra, "--no-models")
        assert done.returncode == code, (config, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
        assert str(config) in done.stderr and words in done.stderr, done.stderr
    assert sorted(p.name for p in boot.iterdir()) == ["cmdline.txt", "config.txt", "meta-data",
                                                        "network-config", "user-data"]


def test_device_id_goes_into_a_given_config(tmp_path):
    boot = card(tmp_path / "bootfs", trixie=False)
    example = REPO / "deploy" / "edged.example.toml"  # has `id = ""` under [device]
    done = seed(boot, "--config", str(example), "--device-id", "pi-gate", "--wheel", str(tmp_path / "no.whl"))
    assert done.returncode == 66 and "no.whl" in done.stderr  # the config passed; the wheel is checked next
    loaded = seeded_config(example, "pi-gate")
    assert loaded.device.id == "pi-gate" and loaded.cameras == parse_config(example.read_text()).cameras


def seeded_config(path: Path, device_id: str):
    """The seed's with_device_id applied to `path`, then parsed by edged's own config loader."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("edged_seed", str(SEED))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("edged_seed", loader))
    loader.exec_module(module)
    return parse_config(module.with_device_id(path.read_text(), device_id, path))


# --- the trixie card: cloud-init -------------------------------------------------------------------

def test_user_data_validates_and_keeps_imagers_settings(trixie_card):
    user_data = trixie_card / "user-data"
    if shutil.which("cloud-init"):
        check = subprocess.run(["cloud-init", "schema", "--config-file", str(user_data)],
                               capture_output=True, text=True)
        assert check.returncode == 0 and "Valid cloud-config" in check.stdout, check.stdout + check.stderr
    import yaml

    text = user_data.read_text()
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    imager = yaml.safe_load(IMAGER_USER_DATA)
    assert config["runcmd"] == [*imager["runcmd"], INSTALL_RUNCMD]
    config.pop("runcmd"), imager.pop("runcmd")
    assert config == imager
    # Imager's network and the image's meta-data are left alone.
    assert (trixie_card / "network-config").read_text() == IMAGER_NETWORK_CONFIG
    assert (trixie_card / "meta-data").read_text() == IMAGE_META_DATA


def test_image_default_user_data_keeps_its_comments(tmp_path):
    """pi-gen's stock user-data has no runcmd: ours is appended, the file's text stays as it was."""
    stock = ("#cloud-config\n\n# This is the user-data configuration file for cloud-init.\n"
             "ssh_pwauth: false\n## Run arbitrary commands\n#runcmd:\n#- [ ls, -l, / ]\n")
    template = (REPO / "deploy" / "firstboot" / "user-data").read_text()
    merged = boothooks.merge_user_data(stock, template, tmp_path / "user-data")
    assert merged.startswith(stock)
    assert boothooks.merge_user_data(merged, template, tmp_path / "user-data") == merged
    import yaml

    assert yaml.safe_load(merged) == {"ssh_pwauth": False, "runcmd": [INSTALL_RUNCMD]}
    if shutil.which("cloud-init"):
        (tmp_path / "user-data").write_text(merged)
        check = subprocess.run(["cloud-init", "schema", "-c", str(tmp_path / "user-data")],
                               capture_output=True)
        assert check.returncode == 0


def test_card_holds_everything_the_offline_install_needs(trixie_card):
    edged = trixie_card / "edged"
    wheels = sorted(p.name for p in (edged / "wheels").iterdir())
    assert [w for w in wheels if w.startswith("edged-")] and [w for w in wheels if w.startswith("pip-")]
    assert any(w.startswith("ai_edge_litert-") and "x86_64" in w for w in wheels)
    config = parse_config((edged / "edged.toml").read_text())
    assert (config.device.id, config.mqtt.brokers, config.mqtt.username) == \
        ("pi-door", ["mqtt://[fd00:ed9e::1]:1883"], "door")
    assert [(c.name, c.source) for c in config.cameras] == [("cam0", "picamera2:0")]
    model = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"
    assert sha256(edged / "mirror" / model) == sha256(SHARED / "models" / model)
    unit = REPO / "deploy/systemd/edged.service"
    assert (edged / "systemd/edged.service").read_text() == unit.read_text()
    names = lambda d: sorted(p.name for p in d.iterdir())  # noqa: E731
    assert names(edged / "udev") == names(REPO / "deploy/udev")


def test_seeding_again_changes_nothing(trixie_card, tmp_path):
    before = tree(trixie_card)
    # The same wheel (a rebuild is byte-identical too, unless someone edits the checkout meanwhile).
    wheel = shutil.copy2(next((trixie_card / "edged" / "wheels").glob("edged-*.whl")), tmp_path)
    done = seed(trixie_card, *CARD_OPTIONS, "--wheel", str(wheel), "--arch", "x86_64",
                "--python", target_python(), *MIRRORS, "--cache-dir", str(CACHE))
    assert done.returncode == 0, done.stderr
    assert "already in user-data" in done.stdout
    assert tree(trixie_card) == before


def test_first_boot_script_installs_edged_into_a_scratch_root(trixie_card, tmp_path):
    if os.geteuid() != 0 or shutil.which("systemd-sysusers") is None:
        pytest.skip("the install creates a system user and chowns: needs root and systemd-sysusers")
    root = tmp_path / "root"
    script = trixie_card / "edged" / "install-edged.sh"
    scratch = {**os.environ, "ROOT": str(root)}
    done = subprocess.run(["sh", str(script)], env=scratch, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

    version = next((trixie_card / "edged" / "wheels").glob("edged-*.whl")).name.split("-")[1]
    assert os.readlink(root / "opt/edged/current") == f"releases/{version}"
    edged = root / "opt/edged/current/bin/edged"
    reported = subprocess.run([str(edged), "--version"], capture_output=True, text=True).stdout.strip()
    assert reported == f"edged {version}"
    pyvenv = (root / f"opt/edged/releases/{version}/pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in pyvenv

    assert (root / "etc/edged/edged.toml").read_text() == (trixie_card / "edged/edged.toml").read_text()
    passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":")[3].split(",")
              for line in (root / "etc/group").read_text().splitlines()}
    assert "edged" in passwd and "edged" in groups["video"] and "edged" in groups["plugdev"]
    assert "apex" not in groups  # no PCIe Coral driver: no group, no drop-in (a missing group fails the unit)
    assert not (root / "etc/systemd/system/edged.service.d").exists()
    config_dir = (root / "etc/edged").stat()
    assert oct(config_dir.st_mode & 0o777) == "0o750" and config_dir.st_gid == int(passwd["edged"][3])
    config_stat = (root / "etc/edged/edged.toml").stat()
    assert oct(config_stat.st_mode & 0o777) == "0o640" and config_stat.st_gid == int(passwd["edged"][3])

    model = "ssd_mobilenet_v1_1.0_coco_quant_2018_06_29_postprocess.tflite"
    assert sha256(root / "var/lib/edged/models" / model) == sha256(SHARED / "models" / model)
    assert (root / "var/lib/edged").stat().st_uid == int(passwd["edged"][2])
    unit = root / "etc/systemd/system/edged.service"
    assert unit.read_text() == (REPO / "deploy/systemd/edged.service").read_text()
    assert (root / "etc/systemd/system/multi-user.target.wants/edged.service").is_symlink()
    for rules in (REPO / "deploy/udev").glob("*.rules"):
        assert (root / "etc/udev/rules.d" / rules.name).read_text() == rules.read_text()
    assert "done: edged" in (root / "var/log/edged-install.log").read_text()
    assert "done: edged" in (trixie_card / "edged/install.log").read_text()

    # The installed release runs, offline, on the installed model and sample photo.
    env = {**os.environ, "EDGED_DATA_DIR": str(root / "var/lib/edged"), "EDGED_MIRROR": ""}
    detect = subprocess.run([str(edged), "detect", "--json", str(root / "var/lib/edged/samples/cat.bmp")],
                            capture_output=True, text=True, env=env)
    assert detect.returncode == 0, detect.stderr
    assert [d["label"] for d in json.loads(detect.stdout)["detections"]][:1] == ["cat"]

    again = subprocess.run(["sh", str(script)], env=scratch, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"release {version} already installed" in again.stdout


def test_a_seeded_mqtt_password_reaches_the_unit_and_leaves_the_card(trixie_card, tmp_path):
    """The password moves off the FAT partition into /etc/edged (0600, root) and the LoadCredential drop-in is
    installed with it — without the drop-in a seeded password would never reach edged."""
    if os.geteuid() != 0 or shutil.which("systemd-sysusers") is None:
        pytest.skip("the install creates a system user and chowns: needs root and systemd-sysusers")
    boot = tmp_path / "bootfs"
    shutil.copytree(trixie_card, boot, symlinks=True)
    (tmp_path / "pw").write_text("s3cret\n")
    done = seed(boot, *CARD_OPTIONS, "--mqtt-password-file", str(tmp_path / "pw"), "--arch", "x86_64",
                "--python", target_python(), *MIRRORS, "--cache-dir", str(CACHE))
    assert done.returncode == 0, done.stderr
    assert (boot / "edged/mqtt-password").read_text() == "s3cret\n"

    root = tmp_path / "root"
    installed = subprocess.run(["sh", str(boot / "edged/install-edged.sh")], env={**os.environ, "ROOT": str(root)},
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    secret = root / "etc/edged/mqtt-password"
    assert secret.read_text() == "s3cret\n" and oct(secret.stat().st_mode & 0o777) == "0o600"
    assert not (boot / "edged/mqtt-password").exists()
    drop_in = root / "etc/systemd/system/edged.service.d/mqtt-password.conf"
    assert drop_in.read_text() == (REPO / "deploy/systemd/edged.service.d/mqtt-password.conf").read_text()


def test_install_refuses_a_card_without_its_files(trixie_card, tmp_path):
    partial = tmp_path / "edged"
    shutil.copytree(trixie_card / "edged", partial, ignore=shutil.ignore_patterns("wheels", "mirror"))
    done = subprocess.run(["sh", str(partial / "install-edged.sh")],
                          env={**os.environ, "ROOT": str(tmp_path / "r")}, capture_output=True, text=True)
    assert done.returncode == 66
    last = done.stdout.strip().splitlines()[-1]  # the installer's output is its log too
    assert last.startswith("install-edged: error: no edged wheel in")


# --- the bookworm card: firstrun.sh ---------------------------------------------------------------

def imager_fixup(boot: Path) -> None:
    """What bookworm's initramfs does to an Imager card (raspberrypi-sys-mods imager_fixup)."""
    cmdline = boot / "cmdline.txt"
    cmdline.write_text(cmdline.read_text().replace("/boot/", "/boot/firmware/"))
    script = boot / "firstrun.sh"
    kept = []
    for line in script.read_text().splitlines(keepends=True):
        if re.search(r"rm.*firstrun\.sh$", line.rstrip("\n")):
            break
        kept.append(line)
    script.write_text("".join(kept) + "rm -f /boot/firmware/firstrun.sh\n"
                      "sed -i 's| systemd\\.[^ ]*||g' /boot/firmware/cmdline.txt\nexit 0\n")


def bookworm_seed(boot: Path, wheel: Path) -> subprocess.CompletedProcess:
    return seed(boot, "--wheel", str(wheel), "--arch", "x86_64", "--python", target_python(), "--no-models",
                "--cache-dir", str(CACHE))


def test_bookworm_card_runs_the_install_from_imagers_firstrun(tmp_path, trixie_card):
    wheel = next((trixie_card / "edged" / "wheels").glob("edged-*.whl"))
    boot = card(tmp_path / "bootfs", trixie=False)
    done = bookworm_seed(boot, wheel)
    assert done.returncode == 0, done.stderr
    script = (boot / "firstrun.sh").read_text()
    block = script.index("# >>> edged")
    assert IMAGER_FIRSTRUN.split("rm -f /boot/firstrun.sh")[0] == script[:block]  # Imager's part untouched
    install = script.index('sh "$boot/edged/install-edged.sh" --no-start')
    assert install < script.index("rm -f /boot/firstrun.sh")
    assert (boot / "cmdline.txt").read_text() == CMDLINE + IMAGER_HOOK + "\n"
    assert not (boot / "user-data").exists()
    assert subprocess.run(["bash", "-n", str(boot / "firstrun.sh")]).returncode == 0

    before = tree(boot)
    assert bookworm_seed(boot, wheel).returncode == 0
    assert tree(boot) == before

    imager_fixup(boot)  # the install still runs on bookworm, from /boot/firmware
    fixed = (boot / "firstrun.sh").read_text()
    assert fixed.index("/edged/install-edged.sh") < fixed.index("rm -f /boot/firmware/firstrun.sh")
    assert "systemd.run=/boot/firmware/firstrun.sh" in (boot / "cmdline.txt").read_text()


def test_card_without_imager_customisation_gets_its_own_firstrun(tmp_path, trixie_card):
    wheel = next((trixie_card / "edged" / "wheels").glob("edged-*.whl"))
    boot = tmp_path / "bootfs"
    boot.mkdir()
    (boot / "config.txt").write_text("")
    (boot / "cmdline.txt").write_text(CMDLINE + "\n")
    for _ in range(2):
        done = bookworm_seed(boot, wheel)
        assert done.returncode == 0, done.stderr
    assert (boot / "firstrun.sh").read_text() == (REPO / "deploy/firstboot/firstrun.sh").read_text()
    assert (boot / "cmdline.txt").read_text() == CMDLINE + IMAGER_HOOK + "\n"  # hooked exactly once


# --- first boot under real systemd ------------------------------------------------------------------

def poll(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)
    return value


@pytest.mark.systemd
@pytest.mark.timeout(600)
def test_first_boot_install_leaves_edged_running_under_systemd(containers, trixie_card, tmp_path):
    """The card's runcmd, run as root in a booted Debian (systemd 252): edged enabled, active, publishing."""
    from edged.publish.mosquitto import Mosquitto

    wheel = next((trixie_card / "edged" / "wheels").glob("edged-*.whl"))
    boot = card(tmp_path / "bootfs", trixie=True)
    with Mosquitto(bind="::1") as broker:
        done = seed(boot, "--wheel", str(wheel), "--arch", "x86_64", "--python", target_python(),
                    "--broker", f"mqtt://[::1]:{broker.port}", *MIRRORS, "--cache-dir", str(CACHE))
        assert done.returncode == 0, done.stderr
        pi = containers("pi-firstboot")  # shares this host's network; its host name is the device id
        pi.copy_in(boot, "/boot/firmware")
        install = pi.exec(INSTALL_RUNCMD, check=False, timeout=300)
        assert install.returncode == 0, install.stdout + install.stderr
        poll(lambda: pi.show("edged", "ActiveState") == "active", 120, "edged active (READY=1)")
        assert (pi.show("edged", "UnitFileState"), pi.show("edged", "NRestarts")) == ("enabled", "0")

        def online() -> dict | None:
            sub = subprocess.run(["mosquitto_sub", "-h", "::1", "-p", str(broker.port),
                                  "-t", "edged/pi-firstboot/status", "-C", "1", "-W", "5"],
                                 capture_output=True, text=True)
            status = json.loads(sub.stdout) if sub.returncode == 0 else {}
            # `degraded`: backend auto found no Edge TPU and runs on the CPU (edged/service/inference.py).
            return status if status.get("state") in ("online", "degraded") else None

        try:
            status = poll(online, 60, "a retained status `online` or `degraded`")
        except AssertionError as exc:
            dump = ["mosquitto_sub", "-h", "::1", "-p", str(broker.port), "-t", "edged/#", "-v", "-W", "3"]
            everything = subprocess.run(dump, capture_output=True, text=True).stdout
            journal = pi.journal("edged")[-3000:]
            raise AssertionError(f"{exc}\nretained: {everything}\njournal:\n{journal}") from None
    assert status["version"] == wheel.name.split("-")[1] and status["backend"].startswith("cpu:")
    assert "install-edged: done" in pi.exec(["cat", "/var/log/edged-install.log"]).stdout
    assert "mode is different" not in pi.journal("edged")  # the install made the dirs as the unit wants them
