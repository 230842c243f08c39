"""The line of iteration copies of one original: who belongs to it, and what the next copy is called.

Identity comes from the lineage record written at copy time (`Lineage.original`, the iteration,
the parent), never from folder names: `copy SRC /data/round1` and `copy local/round1 round2`
belong to SRC's line exactly as `SRC_vlm_label_v2` does. The line's name is the original's
folder name; it names the `_active` alias and the default copy names. Records written before
format 3 carry no `original`: it is derived from the parent chain (a first copy's source is the
original), and only a record whose chain is unreadable falls back to its folder name.

Members are found where copies live: the `local/` entries of the LeRobot home, the folders
beside the original and beside the copy asked about, and the `_active` alias and its history.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from recap_label.errors import RecapError
from recap_label.store.lineage import (
    Lineage,
    OriginalRecord,
    iteration_name,
    read_lineage,
    split_iteration_name,
)
from recap_label.store.paths import LINEAGE_FILE

ALIAS_SUFFIX = "_vlm_label_active"
_MAX_CHAIN = 256  # parent links followed for an old record (a loop in hand-edited records ends here)


@dataclass(frozen=True)
class Line:
    name: str  # the original's folder name: `local/<name>_vlm_label_active`, `<name>_vlm_label_v<n>`
    realpath: str  # the original's real path: the identity

    @property
    def alias_name(self) -> str:
        return self.name + ALIAS_SUFFIX

    def record(self) -> OriginalRecord:
        return OriginalRecord(self.name, self.realpath)


@dataclass
class Member:
    path: Path  # the copy's real folder
    record: Lineage


def _read(root: Path) -> Lineage | None:
    try:
        return read_lineage(root)
    except (RecapError, OSError):
        return None


def line_of(root: Path, record: Lineage | None = None) -> Line:
    """The line ROOT belongs to (an original: its own); `record` is ROOT's lineage if already read."""
    root = Path(os.path.realpath(root))
    record = record if record is not None else _read(root)
    for _ in range(_MAX_CHAIN):
        if record is None or record.iteration < 1:  # an original, or one labeled in place
            return Line(root.name, str(root))
        if record.original is not None:
            return Line(record.original.name, record.original.realpath)
        if record.parent is None and record.source is not None:  # an old first copy: its source is the original
            return Line(Path(record.source.realpath).name, record.source.realpath)
        parent = Path(record.parent) if record.parent else None
        parent_record = _read(parent) if parent is not None and parent.is_dir() else None
        if parent_record is None:
            break
        root, record = Path(os.path.realpath(parent)), parent_record
    base = split_iteration_name(root.name)[0]  # an unreadable chain: the folder name is all there is
    return Line(base, str(root.parent / base))


def _lineage_folders(folder: Path) -> list[Path]:
    """The visible folders in `folder` that hold a lineage record."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    return [
        Path(e.path)
        for e in entries
        if not e.name.startswith(".") and e.is_dir() and os.path.isfile(os.path.join(e.path, LINEAGE_FILE))
    ]


def members(home: Path, line: Line, near: tuple[Path, ...] = (), extra: tuple[str, ...] = ()) -> list[Member]:
    """Every existing iteration copy of `line`, oldest iteration first: registered in `local/`,
    beside the original, beside the folders `near`, or named in `extra` (the alias, its history)."""
    candidates: list[Path] = []
    local = home / "local"
    if local.is_dir():
        candidates += [p for p in sorted(local.iterdir()) if p.is_symlink() and not p.name.endswith(ALIAS_SUFFIX)]
    for folder in {Path(line.realpath).parent, *(Path(os.path.realpath(p)).parent for p in near)}:
        candidates += _lineage_folders(folder)
    candidates += [Path(p) for p in extra]
    found: dict[str, Member] = {}
    for path in candidates:
        real = os.path.realpath(path)
        if real in found or not os.path.isdir(real):
            continue
        record = _read(Path(real))
        if record is not None and record.iteration >= 1 and line_of(Path(real), record) == line:
            found[real] = Member(Path(real), record)
    return sorted(found.values(), key=lambda m: (m.record.iteration, str(m.path)))


def next_copy(home: Path, src: Path, record: Lineage | None, *, named: bool) -> tuple[str, int]:
    """The default name and the iteration number a copy of SRC gets: one past SRC's iteration,
    past every iteration number the line already uses (and, when the name is the default one,
    past folders of that name beside SRC)."""
    line = line_of(src, record)
    used = {m.record.iteration for m in members(home, line, near=(src,))}
    n = (record.iteration if record is not None else 0) + 1
    while n in used or (not named and os.path.lexists(Path(src).parent / iteration_name(line.name, n))):
        n += 1
    return iteration_name(line.name, n), n
