"""`iterations`, `activate`, `register`: the iteration copies of one base, the `_active` alias
that names the one Stage 6 trains on (lerobot.active), and re-registering a moved copy."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from recap_label.errors import BadInput, RecapError
from recap_label.lerobot.active import is_labeled, moved, read_history, set_active
from recap_label.lerobot.dataset import DatasetFiles, resolve_dataset_path
from recap_label.lerobot.registry import active_alias, cache_entry, points_to, register
from recap_label.store.fsutil import io_error
from recap_label.store.lineage import LABEL_SUFFIX, Lineage, checkpoint_step, read_lineage, split_iteration_name


@dataclass
class IterationRow:
    name: str
    path: str
    iteration: int | None
    parent: str | None
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


def _row(name: str, path: Path, home: Path, alias_target: str | None) -> IterationRow:
    missing = not path.is_dir()
    record: Lineage | None = None
    if not missing:
        try:
            record = read_lineage(path)
        except RecapError:
            record = None
    run = record.active_label_run() if record else None
    thresholds = [t for t in (run.thresholds or {}).values() if t is not None] if run else []
    return IterationRow(
        name=name,
        path=str(path),
        iteration=record.iteration if record else None,
        parent=Path(record.parent).name if record and record.parent else None,
        runs=len(record.active_label_runs()) if record else 0,
        share=run.share if run else None,
        threshold=thresholds[0] if thresholds else None,
        checkpoint_step=checkpoint_step(run.value_source) if run else None,
        active=alias_target is not None and os.path.abspath(alias_target) == os.path.abspath(path),
        registered=points_to(cache_entry(home, name), path),
        missing=missing,
        retired=bool(record and record.retired),
    )


def list_iterations(arg: str, home: Path) -> Iterations:
    """Every iteration copy of the base ARG names (an original, any of its copies, or
    local/<name>): the folders beside it, the cache entries and the `_active` history."""
    root = Path(os.path.realpath(resolve_dataset_path(arg, home)))
    DatasetFiles.open(root)  # a folder that is not a dataset is bad input
    record = read_lineage(root)
    base = split_iteration_name(root.name)[0] if record is not None else root.name
    probe = base + LABEL_SUFFIX
    alias = active_alias(home, probe)
    alias_target = os.readlink(alias) if alias.is_symlink() else None
    found: dict[str, tuple[str, Path]] = {}  # abspath -> (name, path)

    def add(path: Path) -> None:
        if (
            split_iteration_name(path.name)[0] == base
            and split_iteration_name(path.name)[1] >= 1
            and not path.name.startswith(".")
        ):
            found.setdefault(os.path.abspath(path), (path.name, path))

    folder = root.parent
    for p in sorted(folder.glob(f"{base}{LABEL_SUFFIX}*")):
        if p.is_dir() and (p / "meta").is_dir():
            add(p)
    local = home / "local"
    if local.is_dir():
        for entry in sorted(local.glob(f"{base}{LABEL_SUFFIX}*")):
            if entry.is_symlink() and entry.name != alias.name:
                add(Path(os.readlink(entry)))
    for item in read_history(home, probe):
        add(Path(item))
    if alias_target:
        add(Path(alias_target))
    rows = [_row(name, path, home, alias_target) for name, path in found.values()]
    rows.sort(key=lambda r: (r.iteration if r.iteration is not None else split_iteration_name(r.name)[1], r.path))
    return Iterations(base, f"local/{alias.name}", alias_target, rows)


@dataclass
class Activated:
    alias: Path  # local/<base>_vlm_label_active in the LeRobot home
    target: str  # what it points at now, as the link says

    def to_json(self) -> dict:
        return {"alias": f"local/{self.alias.name}", "target": self.target}


def activate(arg: str, home: Path) -> Activated:
    """Point `_active` at the copy ARG names; refused for a missing, unlabeled or retired copy."""
    root = Path(os.path.realpath(resolve_dataset_path(arg, home)))
    DatasetFiles.open(root)
    record = read_lineage(root)
    if record is None or record.iteration < 1:
        raise BadInput(
            f"{root} is not an iteration copy made by `recap-label copy`; `_active` only points at labeled copies"
        )
    if record.retired:
        raise BadInput(
            f"{root.name} was retired ({record.retired}); `_active` only points at live iterations, activate another "
            f"one"
        )
    if not is_labeled(root):
        raise BadInput(
            f"{root.name} has no label run: `_active` never points at an unlabeled copy; run `recap-label label "
            f"{root}` first"
        )
    try:
        set_active(home, root)
    except OSError as exc:
        raise io_error(exc, f"pointing local/{active_alias(home, root.name).name} at {root.name}") from None
    alias = active_alias(home, root.name)
    return Activated(alias, os.readlink(alias))


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


def register_copy(path: Path, home: Path, replace: bool = False) -> Registered:
    """Register the copy at PATH (e.g. moved, or copied with --no-register) as local/<name>;
    a `_active` alias left dangling at its old place follows it."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise BadInput(f"{root} is not a folder; give the copy's folder (where it is now), not local/<name>")
    root = Path(os.path.realpath(root))
    DatasetFiles.open(root)
    record = read_lineage(root)
    if record is None or record.iteration < 1:
        raise BadInput(
            f"{root} is not an iteration copy made by `recap-label copy` (no lineage record); register only copies"
        )
    entry = cache_entry(home, root.name)
    before = os.readlink(entry) if entry.is_symlink() else None
    if entry.exists() and not entry.is_symlink():
        raise BadInput(f"LeRobot cache entry {entry} is a real folder; move it away first")
    if before is not None and not points_to(entry, root) and os.path.exists(entry) and not replace:
        raise BadInput(
            f"LeRobot cache entry {entry} points to {before}, which exists; pass --replace-registration to repoint it"
        )
    alias = active_alias(home, root.name)
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
