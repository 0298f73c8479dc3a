"""How edged-seed hooks install-edged.sh into a Pi's first boot, without undoing Raspberry Pi Imager's work.

cloud-init (trixie images): our user-data's runcmd joins the card's user-data — appended as text
when the two share no key (the file's comments survive), else merged list by list. firstrun.sh
(bookworm and older): the `# >>> edged` block goes into Imager's script before its clean-up
lines, or our whole template is written and cmdline.txt gets Imager's systemd.run= hook.
Every writer leaves a file untouched when its content would not change, so seeding is idempotent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

FIRSTBOOT = Path(__file__).resolve().parent
FIRSTRUN_HOOK = ("systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot "
                 "systemd.unit=kernel-command-line.target")  # Imager's, verbatim
BLOCK = re.compile(r"^# >>> edged.*?^# <<< edged\n", re.M | re.S)


class SeedError(Exception):
    """One line for the user; `code` is the exit status (sysexits)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SeedError(66, f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(66, f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from None


def write_if_changed(path: Path, text: str) -> bool:
    """Replace `path` atomically (a rename, on FAT too) unless it already says `text`; True if written."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".edged-seed")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def merge_user_data(existing: str | None, ours: str, path: Path) -> str:
    """Add our cloud-config to Imager's: its text plus ours when no key is shared, else a merged dump."""
    try:
        import yaml
    except ImportError:
        raise SeedError(69, "merging cloud-init user-data needs PyYAML: apt install python3-yaml "
                        "(or pip install pyyaml)") from None
    if existing is None or not existing.strip():
        return ours
    if not existing.lstrip().startswith("#cloud-config"):
        raise SeedError(65, f"{path}: not a #cloud-config file (a script or MIME archive?): add "
                        f"{FIRSTBOOT / 'user-data'}'s runcmd to it by hand")
    try:
        theirs = yaml.safe_load(existing) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise SeedError(65, f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(theirs, dict):
        raise SeedError(65, f"{path}: cloud-config is not a mapping")
    mine = yaml.safe_load(ours)
    if all(isinstance(theirs.get(k), list) and all(i in theirs[k] for i in v) for k, v in mine.items()):
        return existing  # seeded before
    if not set(mine) & set(theirs):
        body = ours.split("\n", 1)[1]  # without the #cloud-config line
        return existing.rstrip("\n") + "\n\n" + body
    for key, value in mine.items():
        if not isinstance(theirs.get(key, []), list):
            raise SeedError(65, f"{path}: `{key}` is not a list; cannot add edged's entries")
        theirs[key] = theirs.get(key, []) + [item for item in value if item not in theirs.get(key, [])]
    return "#cloud-config\n" + yaml.safe_dump(theirs, sort_keys=False, width=4096)


def hook_cloud_init(boot: Path) -> str:
    """user-data gets our runcmd; meta-data and network-config only where the card has none."""
    user_data = boot / "user-data"
    existing = read_text(user_data, "user-data") if user_data.exists() else None
    ours = read_text(FIRSTBOOT / "user-data", "template")
    changed = write_if_changed(user_data, merge_user_data(existing, ours, user_data))
    for name in ("meta-data", "network-config"):  # Imager's / the image's own win
        if not (boot / name).exists():
            write_if_changed(boot / name, read_text(FIRSTBOOT / name, "template"))
    return "cloud-init: runcmd " + ("added to" if changed else "already in") + " user-data"


def hook_firstrun(boot: Path) -> str:
    """firstrun.sh runs our block before its clean-up lines; cmdline.txt runs firstrun.sh (once)."""
    template = read_text(FIRSTBOOT / "firstrun.sh", "template")
    script = boot / "firstrun.sh"
    if script.exists():
        text = read_text(script, "firstrun.sh")
        block = BLOCK.search(template).group(0)
        if BLOCK.search(text):
            text = BLOCK.sub(lambda _: block, text)
        else:
            cleanup = re.search(r"^.*rm .*firstrun\.sh$", text, re.M)
            if cleanup is None:
                raise SeedError(65, f"{script}: no `rm … firstrun.sh` clean-up line to put edged's block "
                                "before")
            text = text[:cleanup.start()] + block + "\n" + text[cleanup.start():]
    else:
        text = template
    write_if_changed(script, text)
    cmdline_path = boot / "cmdline.txt"
    cmdline = read_text(cmdline_path, "cmdline.txt").strip()
    if "systemd.run=" not in cmdline:
        cmdline = f"{cmdline} {FIRSTRUN_HOOK}"
    elif not re.search(r"systemd\.run=/boot/(firmware/)?firstrun\.sh(\s|$)", cmdline):
        raise SeedError(65, f"{cmdline_path}: systemd.run= already runs something else than firstrun.sh")
    write_if_changed(cmdline_path, cmdline + "\n")
    return "firstrun.sh: runs install-edged.sh on first boot (cmdline.txt systemd.run=)"
