"""`local/<original>_vlm_label_active`: the iteration Stage 6 should train on, and its small history.

What it means: the alias points at a *labeled*, live iteration copy, never at an unlabeled or
retired one. It moves when an iteration's first label run commits, when a label run commits
and no alias exists (it never stays gone silently), or when the user says so (`recap-label
activate`); retiring the iteration it points at moves it back to the one it pointed at before.
The line (lerobot.line) names it, from the lineage record, never from a folder name. The order
in which copies became active is kept in `<home>/.recap_label/active-<original>.json` (absolute
paths, oldest first; outside `local/`, which holds only LeRobot's links), so "back" is always
the last good one, not a guess from names.

Where the alias belongs there may be something else: LeRobot 0.3.3, asked for a missing
`local/…_active`, makes an empty real folder there. An empty folder is replaced (and said so);
anything else is refused with its path and the fix, before any link is touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from recap_label.errors import BadInput, RecapError
from recap_label.lerobot.line import Line, line_of
from recap_label.lerobot.registry import active_alias, point_link, points_to, remove_link
from recap_label.store.fsutil import write_bytes_atomic, write_json_atomic
from recap_label.store.lineage import read_lineage

HISTORY_DIR = ".recap_label"


def history_path(home: Path, line: Line) -> Path:
    return home / HISTORY_DIR / f"active-{line.name}.json"


def read_history(home: Path, line: Line) -> list[str]:
    try:
        data = json.loads(history_path(home, line).read_text())
    except (OSError, ValueError):
        return []
    items = data.get("history") if isinstance(data, dict) else None
    return [p for p in items if isinstance(p, str)] if isinstance(items, list) else []


def _write_history(home: Path, line: Line, items: list[str]) -> None:
    history_path(home, line).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(history_path(home, line), {"history": items})


def history_bytes(home: Path, line: Line) -> bytes | None:
    """The history file as it is (None: absent), to put back should a later step fail."""
    try:
        return history_path(home, line).read_bytes()
    except OSError:
        return None


def restore_history(home: Path, line: Line, data: bytes | None) -> None:
    path = history_path(home, line)
    if data is None:
        path.unlink(missing_ok=True)
    elif history_bytes(home, line) != data:
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


def alias_of(home: Path, root: Path) -> Path:
    """The `_active` alias of the line ROOT belongs to."""
    return active_alias(home, line_of(_real(root)))


def check_alias_place(alias: Path) -> None:
    """Refuse when something other than a link or an empty folder is where the alias belongs."""
    if alias.is_symlink() or not os.path.lexists(alias) or _empty_folder(alias):
        return
    what = "a folder with files in it" if alias.is_dir() else "a file"
    raise BadInput(
        f"{alias} is {what}, not the `_active` link recap-label keeps there; move it away (e.g. `mv {alias} "
        f"{alias}.bak`), then run `recap-label activate <copy>`"
    )


def _empty_folder(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and not any(os.scandir(path))
    except OSError:
        return False


def set_active(home: Path, root: Path) -> str | None:
    """Point the alias at `root` and put it last in the history; returns a note when an empty
    folder had to make way for it."""
    root = _real(root)
    path = str(root)
    line = line_of(root)
    alias = active_alias(home, line)
    check_alias_place(alias)
    note = None
    if _empty_folder(alias):
        alias.rmdir()
        note = f"replaced the empty folder at local/{alias.name} (LeRobot makes one when asked for a missing dataset)"
    point_link(alias, path)
    items = [p for p in read_history(home, line) if p != path]
    _write_history(home, line, [*items, path])
    return note


def previous_active(home: Path, root: Path) -> Path | None:
    """The iteration the alias should go back to when `root` retires: the newest earlier entry
    of the history that still exists and is labeled; else `root`'s parent if it is labeled."""
    root = _real(root)
    path = str(root)
    for item in reversed(read_history(home, line_of(root))):
        if item != path and os.path.isdir(item) and is_labeled(Path(item)):
            return Path(item)
    record = read_lineage(root) if root.exists() else None
    parent = Path(record.parent) if record and record.parent else None
    if parent is not None and parent.is_dir() and os.path.abspath(parent) != path and is_labeled(parent):
        return parent
    return None


def forget(home: Path, root: Path, line: Line | None = None) -> None:
    """Drop `root` from the history (it was retired); idempotent. `line`: when ROOT is gone."""
    path = os.path.abspath(root)  # not resolved: a deleted folder's entry is dropped too
    line = line or line_of(root)
    items = read_history(home, line)
    if path in items:
        _write_history(home, line, [p for p in items if p != path])


def moved(home: Path, old: str, new: Path) -> None:
    """A copy moved from `old` to `new`: rewrite its history entry."""
    path = os.path.abspath(new)
    line = line_of(new)
    items = read_history(home, line)
    if old in items:
        _write_history(home, line, [path if p == old else p for p in items if p != path])


def after_label(home: Path, root: Path) -> str | None:
    """Called after a label run committed on a copy: its first run makes it the active iteration,
    and so does any run when no alias exists. Returns a note for the report, or None when the
    alias did not move."""
    root = _real(root)
    record = read_lineage(root)
    if record is None or record.iteration < 1 or record.retired or not record.active_label_runs():
        return None
    alias = alias_of(home, root)
    if points_to(alias, root):
        return None
    missing = not os.path.exists(alias) or _empty_folder(alias)  # absent, dangling, or LeRobot's empty folder
    first = len([r for r in record.runs if getattr(r, "kind", "") == "label"]) == 1
    if not missing and not first:
        return None  # labeled before: the user moved the alias on purpose, `activate` moves it
    replaced = set_active(home, root)
    why = "the first label run of this iteration" if first else "no `_active` existed"
    return "; ".join(n for n in [replaced, f"local/{alias.name} → {root} ({why})"] if n)


def after_unlabel(home: Path, root: Path) -> str | None:
    """Called after a rollback left `root` without labels: the alias may not point at it."""
    root = _real(root)
    alias = alias_of(home, root)
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
        f"the next label run of an iteration sets it again, `recap-label activate <copy>` sets it now"
    )
