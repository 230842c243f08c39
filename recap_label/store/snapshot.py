"""Did the dataset stay still while it was read? `verify` reads without the lock, so a `label` or
`rollback` may commit in the middle: its reads would mix old and new files and fail checks that
hold. A snapshot (the signature of every file a commit can replace, and the lock's live holder)
taken before the reads and compared after them tells.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from recap_label.errors import ChangedWhileReading, RecapError
from recap_label.store.lock import live_holder
from recap_label.store.paths import JOURNAL, LINEAGE_FILE, SIDECAR, STATE_DIR
from recap_label.store.writeback import file_signature

_STATE_FILES = (LINEAGE_FILE, SIDECAR, JOURNAL)


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, tuple[int, ...]]  # relative path → file signature (size, mtime, inode, ctime)
    holder: tuple | None  # (command, pid, host, started) of a live lock holder


def take(root: Path) -> Snapshot:
    files = {}
    for top in ("data", "meta"):
        for dirpath, dirs, names in os.walk(root / top):
            rel_dir = Path(dirpath).relative_to(root)
            if rel_dir == STATE_DIR:
                dirs.clear()  # recap-label's own state: only what a commit replaces (below)
                continue
            for name in names:
                if not name.startswith("."):  # staged and temporary files are not what a reader reads
                    _sign(root, (rel_dir / name).as_posix(), files)
    for rel in _STATE_FILES:
        _sign(root, rel.as_posix(), files)
    h = live_holder(root)
    return Snapshot(files, None if h is None else tuple(str(h.get(k)) for k in ("command", "pid", "host", "started")))


def _sign(root: Path, rel: str, files: dict) -> None:
    try:
        files[rel] = tuple(file_signature(root / rel))
    except OSError:
        pass  # absent (or vanished in between): its absence is the signature


def changes(before: Snapshot, after: Snapshot) -> str | None:
    """What changed between the two, in words, or None."""
    said = []
    if after.holder is not None and after.holder != before.holder:
        said.append(f"`recap-label {after.holder[0]}` (pid {after.holder[1]}) took its lock")
    changed = sorted(k for k in before.files.keys() | after.files.keys() if before.files.get(k) != after.files.get(k))
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        said.append(f"{len(changed)} file(s) were replaced: {shown}")
    return "; ".join(said) or None


def require_still(root: Path, before: Snapshot, failure: RecapError | None = None) -> None:
    """Raise ChangedWhileReading when the dataset changed since `before` (also when the reads
    failed: a file replaced mid-read is not a damaged file); else return."""
    what = changes(before, take(root))
    if what is None and failure is not None and before.holder is not None:
        what = f"`recap-label {before.holder[0]}` (pid {before.holder[1]}) was writing it"
    if what is not None:
        raise ChangedWhileReading(
            f"{root} changed while verify was reading it ({what}); what was read may mix old and new files, so "
            f"no check is reported and nothing is known to be wrong: run verify again"
        ) from None
