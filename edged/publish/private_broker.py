"""The quick start's broker: a private mosquitto on [::1]:1883 for exactly as long as `edged run` lives.

`edged run` starts it when the config names the default broker and nothing
listens there (service/daemon.py). It must neither run as root nor outlive edged:
- started through `setpriv` (util-linux, on every Debian and Raspberry Pi OS):
  as root, it becomes an unprivileged user (`mosquitto`, the Debian package's own,
  else `nobody`) before mosquitto reads a byte from the network;
- `--pdeathsig TERM`, applied by setpriv after the user switch (a switch clears
  it), ends it when edged dies, even by SIGKILL. The kernel sends that signal when
  the *thread* that started it ends, so start it from the main thread;
- nothing on disk to leave behind: the config is an unlinked temporary file
  handed over as /dev/fd/N, the log an unlinked file read only to explain a
  failed start.
Anonymous access stays on, on the loopback address only: that is what lets
`mosquitto_sub` and `edged watch` on the same machine read it without setup.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from edged.errors import UnavailableError
from edged.publish.mosquitto import find_mosquitto, is_listening

UNPRIVILEGED_USERS = ("mosquitto", "nobody")


def unprivileged_user() -> pwd.struct_passwd:
    for name in UNPRIVILEGED_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise UnavailableError(f"no unprivileged user ({' or '.join(UNPRIVILEGED_USERS)}) to run the private "
                           "broker as; edged will not run it as root")


class PrivateBroker:
    """One mosquitto child process on host:port; `start()` once, `close()` at the end."""

    def __init__(self, host: str = "::1", port: int = 1883):
        self.host = host
        self.port = port
        self.user: str | None = None
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def _config(self) -> str:
        return "\n".join([f"listener {self.port} {self.host}", "allow_anonymous true", "persistence false",
                          "log_dest stderr", "log_type error", "log_type warning", ""])

    def _argv(self, config_fd: int) -> list[str]:
        setpriv = shutil.which("setpriv", path=f"{os.environ.get('PATH', os.defpath)}{os.pathsep}/usr/bin")
        if setpriv is None:
            raise UnavailableError("setpriv (util-linux) is not installed: it ties the private broker "
                                   "to edged")
        argv = [setpriv, "--pdeathsig", "TERM"]
        if os.geteuid() == 0:
            user = unprivileged_user()
            self.user = user.pw_name
            argv += [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        return [*argv, "--", find_mosquitto(), "-c", f"/dev/fd/{config_fd}"]

    def start(self, timeout: float = 10.0) -> PrivateBroker:
        with tempfile.TemporaryFile("w+") as config, tempfile.TemporaryFile("w+b") as log:
            config.write(self._config())
            config.flush()
            os.fchmod(config.fileno(), 0o644)  # reopened through /dev/fd by the unprivileged user
            argv = self._argv(config.fileno())
            # its own session: a Ctrl-C in the terminal reaches edged only, which publishes `offline` first
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=log, pass_fds=(config.fileno(),), start_new_session=True)
            deadline = time.monotonic() + timeout
            while not is_listening(self.host, self.port, timeout=0.2):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    log.seek(0)
                    said = log.read().decode(errors="replace").strip().splitlines()
                    why = said[-1] if said else f"no answer within {timeout:g} s"
                    raise UnavailableError(f"mosquitto did not start on [{self.host}]:{self.port}: {why}")
                time.sleep(0.05)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
