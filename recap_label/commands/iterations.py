"""`iterations`, `activate`, `register`, `unretire`: the iteration copies of one original's line
(lerobot.line), the `_active` alias that names the one Stage 6 trains on (lerobot.active),
re-registering a moved copy, and bringing a retired one back.

A retired iteration (`rollback --iteration`) is out of the loop: unregistered, never `_active`,
never labeled (label refuses it, naming `unretire`), kept on disk for comparison. `unretire` is
the one way back: registered again, back in `iterations` as live, eligible for `_active`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recap_label.errors import BadInput, RecapError
from recap_label.lerobot.active import alias_of, check_alias_place, is_labeled, moved, read_history, set_active
from recap_label.lerobot.dataset import DatasetFiles, resolve_dataset_path
from recap_label.lerobot.line import line_of, members
from recap_label.lerobot.registry import active_alias, cache_entry, points_to, register, retire_intent_path
from recap_label.store.fsutil import io_error, os_error_message
from recap_label.store.lineage import Lineage, checkpoint_step, read_lineage, write_lineage
from recap_label.store.lock import dataset_lock


@dataclass
class IterationRow:
    name: str
    path: str
    iteration: int | None
    parent: str | None  # the parent copy's folder name (None: copied from the original)
    parent_iteration: int | None  # from the parent's own lineage record (None: no parent, or it is gone)
    runs: int  # label runs whose labels are on disk
    share: float | None  # of the last active label run
    threshold: float | None  # its global threshold (the first one with --threshold-scope task)
    checkpoint_step: int | None
    active: bool
    registered: bool
    missing: bool
    retired: bool

    @property
    def state(self) -> str:
        """One word for the row: missing (folder gone), retired, registered (as local/<name>), unregistered."""
        return (
            "missing"
            if self.missing
            else "retired"
            if self.retired
            else "registered"
            if self.registered
            else "unregistered"
        )


@dataclass
class Iterations:
    base: str
    alias: str
    active: str | None  # where the alias points (it may dangle)
    rows: list[IterationRow]

    def to_json(self) -> dict:
        return {
            "base": self.base,
            "alias": self.alias,
            "active": self.active,
            "iterations": [asdict(r) for r in self.rows],
        }


def _row(name: str, path: Path, home: Path, alias_target: str | None, record: Lineage | None) -> IterationRow:
    missing = not path.is_dir()
    run = record.active_label_run() if record else None
    thresholds = [t for t in (run.thresholds or {}).values() if t is not None] if run else []
    parent = Path(record.parent) if record and record.parent else None
    parent_record = _lineage_or_none(parent) if parent is not None and parent.is_dir() else None
    return IterationRow(
        name=name,
        path=str(path),
        iteration=record.iteration if record else None,
        parent=parent.name if parent else None,
        parent_iteration=parent_record.iteration if parent_record else None,
        runs=len(record.active_label_runs()) if record else 0,
        share=run.share if run else None,
        threshold=thresholds[0] if thresholds else None,
        checkpoint_step=checkpoint_step(run.value_source) if run else None,
        active=alias_target is not None and os.path.abspath(alias_target) == os.path.abspath(path),
        registered=points_to(cache_entry(home, name), path),
        missing=missing,
        retired=bool(record and record.retired),
    )


def _lineage_or_none(root: Path) -> Lineage | None:
    try:
        return read_lineage(root)
    except RecapError:
        return None


def list_iterations(arg: str, home: Path) -> Iterations:
    """Every iteration copy of the original ARG's line (ARG: the original, any of its copies,
    or local/<name>), found by their lineage records (lerobot.line), whatever their names; plus
    a missing row for each folder the alias or its history names that is gone."""
    root = Path(os.path.realpath(resolve_dataset_path(arg, home)))
    DatasetFiles.open(root)  # a folder that is not a dataset is bad input
    line = line_of(root)
    alias = active_alias(home, line)
    alias_target = os.readlink(alias) if alias.is_symlink() else None
    named = [*read_history(home, line), *([alias_target] if alias_target else [])]
    found = members(home, line, near=(root,), extra=tuple(named))
    rows = [_row(m.path.name, m.path, home, alias_target, m.record) for m in found]
    seen = {str(m.path) for m in found}
    for item in named:
        if not os.path.isdir(item) and os.path.abspath(item) not in seen:
            seen.add(os.path.abspath(item))
            rows.append(_row(Path(item).name, Path(item), home, alias_target, None))
    rows.sort(key=lambda r: (r.iteration if r.iteration is not None else 1 << 30, r.path))
    return Iterations(line.name, f"local/{alias.name}", alias_target, rows)


@dataclass
class Activated:
    alias: Path  # local/<original>_vlm_label_active in the LeRobot home
    target: str  # what it points at now, as the link says
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"alias": f"local/{self.alias.name}", "target": self.target, "notes": self.notes}


def _copy_record(root: Path, why: str) -> Lineage:
    record = read_lineage(root)
    if record is None or record.iteration < 1:
        raise BadInput(f"{root} is not an iteration copy made by `recap-label copy`; {why}")
    return record


def activate(arg: str, home: Path) -> Activated:
    """Point `_active` at the copy ARG names; refused for a missing, unlabeled or retired copy."""
    root = Path(os.path.realpath(resolve_dataset_path(arg, home)))
    DatasetFiles.open(root)
    record = _copy_record(root, "`_active` only points at labeled copies")
    if record.retired:
        raise BadInput(
            f"{root.name} was retired ({record.retired}); `_active` only points at live iterations: `recap-label "
            f"unretire {root}` brings it back, then activate it"
        )
    if not is_labeled(root):
        raise BadInput(
            f"{root.name} has no label run: `_active` never points at an unlabeled copy; run `recap-label label "
            f"{root}` first"
        )
    alias = alias_of(home, root)
    try:
        note = set_active(home, root)
    except OSError as exc:
        raise io_error(exc, f"pointing local/{alias.name} at {root.name}") from None
    return Activated(alias, os.readlink(alias), [note] if note else [])


@dataclass
class Registered:
    entry: Path
    dest: Path
    before: str | None  # where local/<name> pointed before (None: it did not exist)
    alias_moved: bool

    def to_json(self) -> dict:
        return {
            "entry": str(self.entry),
            "dest": str(self.dest),
            "before": self.before,
            "alias_moved": self.alias_moved,
        }


def _check_entry(entry: Path, root: Path, replace: bool) -> str | None:
    """Where local/<name> points now (None: nowhere); refuses to take over an existing folder's name."""
    before = os.readlink(entry) if entry.is_symlink() else None
    if entry.exists() and not entry.is_symlink():
        raise BadInput(f"LeRobot cache entry {entry} is a real folder; move it away first")
    if before is not None and not points_to(entry, root) and os.path.exists(entry) and not replace:
        raise BadInput(
            f"LeRobot cache entry {entry} points to {before}, which exists; pass --replace-registration to repoint it"
        )
    return before


def register_copy(path: Path, home: Path, replace: bool = False) -> Registered:
    """Register the copy at PATH (e.g. moved, or copied with --no-register) as local/<name>;
    a `_active` alias left dangling at its old place follows it. A retired copy is brought back
    by `unretire`, not here (registering it would leave it retired)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise BadInput(f"{root} is not a folder; give the copy's folder (where it is now), not local/<name>")
    root = Path(os.path.realpath(root))
    DatasetFiles.open(root)
    record = _copy_record(root, "it has no lineage record; register only copies")
    if record.retired:
        raise BadInput(
            f"{root.name} was retired ({record.retired}); `recap-label unretire {root}` registers it again and brings "
            f"it back into the loop"
        )
    entry = cache_entry(home, root.name)
    before = _check_entry(entry, root, replace)
    alias = alias_of(home, root)
    old_alias = os.readlink(alias) if alias.is_symlink() else None
    follow = old_alias is not None and not os.path.exists(alias) and Path(old_alias).name == root.name
    try:
        if not points_to(entry, root):
            register(entry, root)
        if before and before != str(root):
            moved(home, before, root)
        if follow:
            moved(home, old_alias, root)
            set_active(home, root)
    except OSError as exc:
        raise io_error(exc, f"registering {root.name} in {home / 'local'}") from None
    return Registered(entry, root, before, follow)


@dataclass
class Unretired:
    dataset: Path
    entry: Path  # local/<name>, registered again
    was_retired: str | None  # when it had been retired (None: it was live already; this run finished the rest)
    active: str | None  # where `_active` points now
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "dataset": str(self.dataset),
            "entry": f"local/{self.entry.name}",
            "was_retired": self.was_retired,
            "active": self.active,
            "notes": self.notes,
        }


def unretire(arg: str, home: Path, replace: bool = False) -> Unretired:
    """Bring a retired iteration back: its retired mark cleared (under the dataset's lock),
    local/<name> registered again; it is labelable and may be activated again. When no `_active`
    exists and it is labeled, the alias points at it. Each step is idempotent, so the same
    command run again after an interruption finishes the rest."""
    root = Path(os.path.realpath(resolve_dataset_path(arg, home)))
    DatasetFiles.open(root)
    record = _copy_record(root, "only a retired iteration copy can be brought back")
    if retire_intent_path(home, root.name).exists():
        raise BadInput(
            f"the retirement of {root.name} was interrupted; finish it with `recap-label rollback {root} --iteration`, "
            f"then unretire it"
        )
    entry = cache_entry(home, root.name)
    _check_entry(entry, root, replace)
    alias = alias_of(home, root)
    check_alias_place(alias)
    was = record.retired
    notes = [] if was else [f"{root.name} was not retired; its registration and `_active` are checked"]
    try:
        if was:
            with dataset_lock(root, "unretire"):
                current = read_lineage(root) or record
                if current.retired:
                    write_lineage(root, current.unretired())
        if not points_to(entry, root):
            register(entry, root)
        if is_labeled(root) and not os.path.exists(alias):
            note = set_active(home, root)
            notes += [n for n in [note, f"local/{alias.name} → {root} (no `_active` existed)"] if n]
    except OSError as exc:
        state = "each step is safe to repeat: run the same command again to finish"
        raise RecapError(os_error_message(exc, f"bringing {root.name} back", state)) from None
    active = os.readlink(alias) if alias.is_symlink() else None
    return Unretired(root, entry, was, active, notes)
