"""`rollback`: undo label runs (exact prior labels, one atomic commit) or retire an iteration copy."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recap_label.config import Settings
from recap_label.errors import BadInput, UnsafeWriteError
from recap_label.invariants import verify_dataset
from recap_label.lerobot.dataset import LeRobotDataset, read_parquet_table
from recap_label.lerobot.registry import active_alias, cache_entry, point_link, points_to, register, remove_link
from recap_label.store.fsutil import UndoStack, io_error, sha256_file
from recap_label.store.lineage import LabelRun, Lineage, RollbackRun, lineage_bytes, now_iso, read_lineage, write_lineage
from recap_label.store.lock import dataset_lock
from recap_label.store.paths import INFO_JSON, LINEAGE_FILE
from recap_label.store.writeback import Transaction, check_writable_target, recover, recover_commit


@dataclass
class RollbackOutcome:
    dataset: Path
    undone: list[str]
    files_restored: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"dataset": str(self.dataset), "undone": self.undone, "files_restored": self.files_restored, "notes": self.notes}


def list_runs(ds_root: Path) -> list[LabelRun | RollbackRun]:
    record = read_lineage(ds_root)
    return record.runs if record else []


def rollback_runs(ds_root: Path, to_run: str | None = None) -> RollbackOutcome:
    ds = LeRobotDataset.open(ds_root)
    if read_lineage(ds.root) is None:  # refuse before anything (even a lock) is written
        raise BadInput(
            f"nothing to roll back in {ds.root}: it has no copy lineage (not a copy made by `recap-label copy`, so no label run of recap-label is recorded)"
        )
    with dataset_lock(ds.root, "rollback") as lock:
        note, completed = recover_commit(ds.root)
        record = read_lineage(ds.root)
        args = {"to": to_run}
        landed = record.run(lock.interrupted_run("rollback", args) or "") if record else None
        finished = _completed_rollback(record, completed) or (landed if isinstance(landed, RollbackRun) else None)
        if finished is not None:
            # the interrupted command was this rollback (its commit landed, or recovery just
            # completed it): finishing it is what was asked for; one more would go too far
            notes = [n for n in [note, f"finished the interrupted {finished.id} (its commit had landed)" if not note else None] if n]
            return RollbackOutcome(ds.root, list(finished.undid), len(finished.files_restored), notes)
        active = record.active_label_runs() if record else []
        if not active:
            raise BadInput(
                f"nothing to roll back in {ds.root}: no label run is recorded; to retire this iteration copy instead, pass --iteration"
            )
        if to_run is None:
            undo = [active[-1]]
        else:
            ids = [r.id for r in active]
            if to_run == "copy":
                undo = active
            elif to_run not in ids:
                raise BadInput(f"--to {to_run}: no active label run with that id (active: {', '.join(ids)}; or 'copy' for the state after the copy)")
            else:
                undo = active[ids.index(to_run) + 1 :]
                if not undo:
                    raise BadInput(f"--to {to_run}: that is already the latest label run; nothing to roll back")
        lock.declare("rollback", args, record.next_run_id())
        return _undo(ds, record, undo[::-1], note)


def _completed_rollback(record: Lineage | None, journal: dict | None) -> RollbackRun | None:
    """The rollback run whose interrupted commit recover() just completed, if any."""
    if not journal or not record:
        return None
    run = record.run(journal.get("run"))
    return run if isinstance(run, RollbackRun) else None


def _undo(ds: LeRobotDataset, record: Lineage, newest_first: list[LabelRun], note: str | None) -> RollbackOutcome:
    for rel, (writer, digest) in record.last_written_hashes().items():
        path = ds.root / rel
        check_writable_target(ds.root, path)
        if not path.exists() or sha256_file(path) != digest:
            raise UnsafeWriteError(
                f"{rel} changed since {writer} wrote it; refusing to roll back over someone else's changes (restore the file or make a new copy)"
            )
    adv_col = newest_first[0].settings.adv_col
    labels: dict[str, list] = {}
    info_prior = None
    for run in newest_first:  # newest first: each run's prior state is the next one's input
        prior = read_parquet_table(ds.root / run.prior_labels, ["file", "label"])
        files = np.asarray(prior["file"].to_numpy(zero_copy_only=False), dtype=object)
        values = np.asarray(prior["label"].to_numpy(zero_copy_only=False), dtype=object)
        for rel in dict.fromkeys(files.tolist()):
            labels[rel] = values[files == rel].tolist()
        if run.info_json_prior:
            info_prior = (ds.root / run.info_json_prior).read_bytes()
    rollback_id = record.next_run_id()
    txn = Transaction(ds.root, rollback_id)
    for rel, values in labels.items():
        txn.stage_labels(ds.root / rel, adv_col, values)
    if info_prior is not None:
        txn.stage_bytes(ds.root / INFO_JSON, info_prior)
    undone = [r.id for r in newest_first]
    staged = {s.target.relative_to(ds.root).as_posix(): s.staged for s in txn.staged}
    run = RollbackRun(id=rollback_id, time=now_iso(), undid=undone, files_restored=sorted(labels),
                      file_sha256_after={rel: sha256_file(staged[rel]) for rel in labels}, recovered=note)
    txn.stage_bytes(ds.root / LINEAGE_FILE, lineage_bytes(record.with_run(run)))
    txn.commit()
    return RollbackOutcome(ds.root, undone, len(labels), [note] if note else [])


@dataclass
class RetireOutcome:
    dataset: Path
    unregistered: list[str]
    active_now: str | None
    deleted: bool

    def to_json(self) -> dict:
        return {"dataset": str(self.dataset), "unregistered": self.unregistered, "active_now": self.active_now, "deleted": self.deleted}


def retire_iteration(ds_root: Path, settings: Settings, delete: bool) -> RetireOutcome:
    """Make the prior iteration the one the LeRobot cache resolves; keep (or delete) this copy."""
    ds = LeRobotDataset.open(Path(os.path.realpath(ds_root)))  # local/<name> is itself a cache symlink
    record = read_lineage(ds.root)
    if record is None:
        raise BadInput(f"{ds.root} has no copy lineage: it is not an iteration copy made by `recap-label copy`, nothing to retire")
    parent = Path(record.parent) if record.parent else None
    if parent is not None:
        prior = LeRobotDataset.open(parent)
        report = verify_dataset(prior, settings)
        if not report.ok:
            failed = next(c for c in report.checks if c.status == "fail")
            raise BadInput(f"the prior iteration {parent} fails verification ({failed.name}: {failed.detail}); fix it before retiring {ds.root.name}")
    home = settings.lerobot_home
    unregistered = []
    with dataset_lock(ds.root, "rollback --iteration"):
        recover(ds.root)
        entry = cache_entry(home, ds.root.name)
        alias = active_alias(home, ds.root.name)
        active_now = None
        undo = UndoStack()  # what puts the cache back as it was, should a later step fail
        try:
            if points_to(entry, ds.root):
                before = os.readlink(entry)
                remove_link(entry)
                undo.push(lambda: point_link(entry, before))
                unregistered.append(f"local/{ds.root.name}")
            if points_to(alias, ds.root):
                before_alias = os.readlink(alias)
                if parent is not None:
                    register(alias, parent)  # an atomic swap: on error nothing changed
                    active_now = str(parent)
                else:
                    remove_link(alias)
                    unregistered.append(f"local/{alias.name}")
                undo.push(lambda: point_link(alias, before_alias))
            if not record.retired:
                undo.push(lambda: (read_lineage(ds.root) or record).retired and write_lineage(ds.root, record))
            write_lineage(ds.root, record.retired_now())
        except OSError as exc:
            undo.unwind()
            raise io_error(exc, f"retiring {ds.root.name}") from None
    if delete:
        shutil.rmtree(ds.root)
    return RetireOutcome(ds.root, unregistered, active_now, delete)

