"""`local/<base>_vlm_label_active`: the iteration Stage 6 should train on, and its small history.

What it means: the alias points at a *labeled* iteration copy, never at an unlabeled one. It
moves when an iteration's first label run commits, or when the user says so (`recap-label
activate`); retiring the iteration it points at moves it back to the one it pointed at before.
The order in which copies became active is kept in `<home>/.recap_label/active-<base>.json`
(absolute paths, oldest first; outside `local/`, which holds only LeRobot's links), so "back"
is always the last good one, not a guess from names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from recap_label.errors import RecapError
from recap_label.lerobot.registry import active_alias, point_link, points_to, remove_link
from recap_label.store.fsutil import write_bytes_atomic, write_json_atomic
from recap_label.store.lineage import read_lineage, split_iteration_name

HISTORY_DIR = ".recap_label"


def history_path(home: Path, copy_name: str) -> Path:
    base, _ = split_iteration_name(copy_name)
    return home / HISTORY_DIR / f"active-{base}.json"


def read_history(home: Path, copy_name: str) -> list[str]:
    try:
        data = json.loads(history_path(home, copy_name).read_text())
    except (OSError, ValueError):
        return []
    items = data.get("history") if isinstance(data, dict) else None
    return [p for p in items if isinstance(p, str)] if isinstance(items, list) else []


def _write_history(home: Path, copy_name: str, items: list[str]) -> None:
    history_path(home, copy_name).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(history_path(home, copy_name), {"history": items})


def history_bytes(home: Path, copy_name: str) -> bytes | None:
    """The history file as it is (None: absent), to put back should a later step fail."""
    try:
        return history_path(home, copy_name).read_bytes()
    except OSError:
        return None


def restore_history(home: Path, copy_name: str, data: bytes | None) -> None:
    path = history_path(home, copy_name)
    if data is None:
        path.unlink(missing_ok=True)
    elif history_bytes(home, copy_name) != data:
        write_bytes_atomic(path, data)


def is_labeled(root: Path) -> bool:
    """A copy with a label run whose labels are on disk (not rolled back), and not retired."""
    try:
        record = read_lineage(root)
    except RecapError:  # a malformed record is not a copy the alias may point at
        return False
    return record is not None and not record.retired and record.active_label_run() is not None


def _real(root: Path) -> Path:
    """Links (a `local/<name>` entry) stand for the folder they point at."""
    return Path(os.path.realpath(root))


def set_active(home: Path, root: Path) -> None:
    """Point the alias at `root` and put it last in the history."""
    root = _real(root)
    path = str(root)
    point_link(active_alias(home, root.name), path)
    items = [p for p in read_history(home, root.name) if p != path]
    _write_history(home, root.name, [*items, path])


def previous_active(home: Path, root: Path) -> Path | None:
    """The iteration the alias should go back to when `root` retires: the newest earlier entry
    of the history that still exists and is labeled; else `root`'s parent if it is labeled."""
    root = _real(root)
    path = str(root)
    for item in reversed(read_history(home, root.name)):
        if item != path and os.path.isdir(item) and is_labeled(Path(item)):
            return Path(item)
    record = read_lineage(root) if root.exists() else None
    parent = Path(record.parent) if record and record.parent else None
    if parent is not None and parent.is_dir() and os.path.abspath(parent) != path and is_labeled(parent):
        return parent
    return None


def forget(home: Path, root: Path) -> None:
    """Drop `root` from the history (it was retired); idempotent."""
    path = os.path.abspath(root)  # not resolved: a deleted folder's entry is dropped too
    items = read_history(home, root.name)
    if path in items:
        _write_history(home, root.name, [p for p in items if p != path])


def moved(home: Path, old: str, new: Path) -> None:
    """A copy moved from `old` to `new`: rewrite its history entry."""
    path = os.path.abspath(new)
    items = read_history(home, new.name)
    if old in items:
        _write_history(home, new.name, [path if p == old else p for p in items if p != path])


def after_first_label(home: Path, root: Path) -> str | None:
    """Called after a label run committed on a copy: its first run makes it the active iteration.
    Returns a note for the report, or None when the alias did not move."""
    root = _real(root)
    record = read_lineage(root)
    if record is None or record.iteration < 1 or len(record.active_label_runs()) != 1:
        return None
    if len([r for r in record.runs if getattr(r, "kind", "") == "label"]) != 1:
        return None  # labeled before (and rolled back): the user moves it with `activate`
    alias = active_alias(home, root.name)
    if points_to(alias, root):
        return None
    set_active(home, root)
    return f"local/{alias.name} → {root} (the first label run of this iteration)"


def after_unlabel(home: Path, root: Path) -> str | None:
    """Called after a rollback left `root` without labels: the alias may not point at it."""
    root = _real(root)
    alias = active_alias(home, root.name)
    if not points_to(alias, root) or is_labeled(root):
        return None
    back = previous_active(home, root)
    forget(home, root)
    if back is not None:
        set_active(home, back)
        return f"local/{alias.name} moved back to {back} ({root.name} has no label run now)"
    remove_link(alias)
    return (
        f"local/{alias.name} removed: {root.name} has no label run now and no earlier labeled iteration exists; "
        f"`recap-label activate <copy>` sets it"
    )
