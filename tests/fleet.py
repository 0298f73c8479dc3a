"""A fleet of "Pis" for the Ansible tests: systemd containers in IPv6-only namespaces, driven over SSH.

One namespace host is the controller: it runs ansible-playbook (through `ip netns exec`) and the
fleet's mosquitto on its own address, fd00:ed9e::1. Every device is a systemd-nspawn container
(real systemd, sshd, its own filesystem) living in its own namespace host, fd00:ed9e::N, and
reaches the broker only over IPv6.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = REPO / "deploy" / "ansible"
SHARED = REPO / ".." / "shared"
BROKER_PORT = 1883
_RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.M)


def ansible_tool(name: str) -> str | None:
    """An Ansible command from the interpreter running the tests (the project's venv), else PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines → {host: {"ok": 3, "changed": 0, "failed": 0, …}}."""
    recap = output.rsplit("PLAY RECAP", 1)[-1]
    return {m["host"]: {k: int(v) for k, v in (pair.split("=") for pair in m["counts"].split())}
            for m in _RECAP_LINE.finditer(recap)}


@dataclass
class PlaybookRun:
    playbook: str
    argv: list[str]
    returncode: int
    output: str
    seconds: float

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        return parse_recap(self.output)

    @property
    def recap_lines(self) -> list[str]:
        return [line for line in self.output.rsplit("PLAY RECAP", 1)[-1].splitlines() if _RECAP_LINE.match(line)]

    def explain(self) -> str:
        return f"{' '.join(self.argv)} → exit {self.returncode}\n{self.output[-6000:]}"


@dataclass
class Device:
    name: str
    address: str
    container: object  # tests.fixtures.nspawn.Container

    def readlink(self, path: str) -> str:
        return self.container.exec(["readlink", path], check=False).stdout.strip()

    def main_pid(self) -> str:
        return self.container.show("edged", "MainPID")

    def releases(self) -> list[str]:
        out = self.container.exec(["ls", "/opt/edged/releases"], check=False).stdout
        return sorted(out.split())


@dataclass
class Fleet:
    controller: object  # tests.fixtures.netns.NetnsHost
    devices: list[Device]
    workdir: Path
    key: Path
    runs: list[PlaybookRun] = field(default_factory=list)

    @property
    def broker_url(self) -> str:
        return f"mqtt://[{self.controller.address}]:{BROKER_PORT}"

    def write_inventory(self, extra_vars: dict, host_vars: dict[str, str] | None = None) -> Path:
        """INI inventory (IPv6 ansible_host unbracketed, `host_vars` appended to a host's line) and the
        group's variables as a JSON file for `-e @file`."""
        inventory = self.workdir / "inventory.ini"
        host_vars = host_vars or {}
        lines = ["[edged]", *(f"{d.name} ansible_host={d.address} {host_vars.get(d.name, '')}".rstrip()
                              for d in self.devices),
                 "", "[edged:vars]",
                 "ansible_user=root", f"ansible_ssh_private_key_file={self.key}",
                 "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                 "-o LogLevel=ERROR'",
                 "ansible_python_interpreter=/usr/bin/python3"]
        inventory.write_text("\n".join(lines) + "\n")
        (self.workdir / "fleet-vars.json").write_text(json.dumps(extra_vars, indent=2))
        return inventory

    def playbook(self, playbook: str, *args: str, timeout: float = 600) -> PlaybookRun:
        """ansible-playbook on the controller (its namespace), from deploy/ansible with its ansible.cfg."""
        argv = [ansible_tool("ansible-playbook"), "-i", str(self.workdir / "inventory.ini"),
                "-e", f"@{self.workdir / 'fleet-vars.json'}", playbook, *args]
        env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.workdir / "cp"),
               "ANSIBLE_LOCAL_TEMP": str(self.workdir / "ansible-tmp"), "PYTHONUNBUFFERED": "1"}
        log = self.workdir / f"run{len(self.runs) + 1}-{Path(playbook).stem}.log"
        started = time.monotonic()
        with log.open("w") as out:  # written as it runs: `tail -f` it while a test is slow
            done = subprocess.run(self.controller.argv(argv), cwd=ANSIBLE_DIR, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        run = PlaybookRun(playbook, argv, done.returncode, log.read_text(), time.monotonic() - started)
        self.runs.append(run)
        return run

    def statuses(self, timeout: int = 5) -> dict[str, dict]:
        """The retained `edged/<device>/status` of every device, read over IPv6 with mosquitto_sub."""
        done = self.controller.run(
            ["mosquitto_sub", "-h", self.controller.address, "-p", str(BROKER_PORT), "-t", "edged/+/status",
             "-v", "-C", str(len(self.devices)), "-W", str(timeout)], check=False)
        found = {}
        for line in done.stdout.splitlines():
            topic, _, payload = line.partition(" ")
            found[topic.split("/")[1]] = json.loads(payload)
        return found


def authorize_key(container, public_key: Path, workdir: Path) -> None:
    """Root may log in with the test's key (sshd's default: keys only for root)."""
    staged = workdir / f"authorized_keys-{container.name}"
    shutil.copy(public_key, staged)
    staged.chmod(0o600)
    container.exec(["install", "-d", "-m", "0700", "/root/.ssh"])
    container.copy_in(staged, "/root/.ssh/authorized_keys")
    container.exec(["chmod", "0600", "/root/.ssh/authorized_keys"])


def make_keypair(workdir: Path) -> Path:
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edged-fleet-test", "-f", str(key)],
                   check=True)
    return key


def broken_source(dest: Path) -> Path:
    """A copy of the source whose `edged run` exits 1 at start: the bad release a rollout must stop."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("pyproject.toml", "README.md", "edged", "models"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__", "*.tflite", "*.npy"))
        else:
            shutil.copy2(src, dest / item)
    run = dest / "edged" / "commands" / "run.py"
    run.write_text(run.read_text() + '\n\ndef main(args):  # broken on purpose by tests/fleet.py\n'
                   '    raise SystemExit("edged: this release is broken on purpose (fleet rollback test)")\n')
    return dest
