"""The LeRobot cache registry: `local/<name>` symlinks under the LeRobot home, and the stable
`local/<base>_vlm_label_active` alias that Stage 6 configs point at.

Every link change is an atomic swap through a temporary link in the same folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from recap_label.errors import BadInput
from recap_label.lerobot.line import Line
from recap_label.store.faults import crash_point
from recap_label.store.fsutil import TMP_MARK, fsync_dir
from recap_label.store.lock import process_alive

LINK_MARK = ".recap-link-"
RETIRE_MARK = ".recap-retire-"  # <home>/local/.recap-retire-<name>.json: a retirement in progress


def retire_intent_path(lerobot_home: Path, name: str) -> Path:
    """Where `rollback --iteration` records the retirement of the copy `name` while it runs."""
    return lerobot_home / "local" / f"{RETIRE_MARK}{name}.json"


def cache_entry(lerobot_home: Path, name: str) -> Path:
    return lerobot_home / "local" / name


def active_alias(lerobot_home: Path, line: Line) -> Path:
    """`local/<original>_vlm_label_active`: the stable name a Stage 6 config can use."""
    return lerobot_home / "local" / line.alias_name


def points_to(link: Path, target: Path) -> bool:
    return link.is_symlink() and os.path.realpath(link) == os.path.realpath(target)


def check_registration(entry: Path, dest: Path, replace: bool) -> None:
    """Refuse to replace a LeRobot cache entry that points somewhere else."""
    if not (entry.exists() or entry.is_symlink()):
        return
    if points_to(entry, dest) or (replace and entry.is_symlink()):
        return
    what = f"points to {os.readlink(entry)}" if entry.is_symlink() else "is a real folder"
    hint = "pass --replace-registration to repoint it" if entry.is_symlink() else "move it away first"
    raise BadInput(f"LeRobot cache entry {entry} already exists and {what}; {hint}, or use --no-register")


def register(entry: Path, dest: Path) -> None:
    """Point the cache entry `entry` at `dest` (an absolute link)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    point_link(entry, os.path.abspath(dest))


def point_link(link: Path, target: str) -> None:
    """Make `link` a symlink to `target` with an atomic swap through a temporary link."""
    tmp = link.with_name(f".{link.name}{LINK_MARK}{os.getpid()}")
    clean_stale_links(link.parent)
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    crash_point("register")
    _fsync_quietly(link.parent)


def clean_stale_links(folder: Path) -> None:
    """Remove temporary links and files that killed processes left in `folder`."""
    stale = [(tmp, tmp.name.rsplit(LINK_MARK, 1)[-1]) for tmp in folder.glob(f".*{LINK_MARK}*")]
    stale += [(tmp, tmp.name[len(TMP_MARK) :].split("-", 1)[0]) for tmp in folder.glob(f"{TMP_MARK}*")]
    for tmp, pid in stale:
        if pid.isdigit() and not process_alive(int(pid)):
            try:
                tmp.unlink()
            except OSError:
                pass


def remove_link(link: Path) -> None:
    link.unlink()
    crash_point("unregister")
    _fsync_quietly(link.parent)


def _fsync_quietly(folder: Path) -> None:
    try:
        fsync_dir(folder)
    except OSError:
        pass  # the link change itself is done; only its durability across a power cut is not certain
