"""`rollback`: undo label runs (exact prior labels, one atomic commit) or retire an iteration copy."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recap_label.config import Settings
from recap_label.copying import active_alias, cache_entry, point_link, register, remove_link
from recap_label.dataset import LeRobotDataset, read_parquet_table
from recap_label.errors import BadInput, UnsafeWriteError
from recap_label.fsutil import io_error, sha256_file
from recap_label.lineage import LINEAGE_FILE, now_iso, read_lineage, write_lineage
from recap_label.lock import dataset_lock
from recap_label.verify import verify_dataset
from recap_label.writeback import Transaction, check_writable_target, recover, recover_commit


@dataclass
class RollbackOutcome:
    dataset: Path
    undone: list[str]
    files_restored: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"dataset": str(self.dataset), "undone": self.undone, "files_restored": self.files_restored, "notes": self.notes}


def list_runs(ds_root: Path) -> list[dict]:
    record = read_lineage(ds_root) or {}
    return record.get("runs", [])


def active_label_runs(record: dict) -> list[dict]:
    return [r for r in record.get("runs", []) if r.get("kind") == "label" and not r.get("rolled_back")]


def rollback_runs(ds_root: Path, settings: Settings, to_run: str | None = None) -> RollbackOutcome:
    ds = LeRobotDataset.open(ds_root)
    if read_lineage(ds.root) is None:  # refuse before anything (even a lock) is written
        raise BadInput(
            f"nothing to roll back in {ds.root}: it has no copy lineage (not a copy made by `recap-label copy`, so no label run of recap-label is recorded)"
        )
    with dataset_lock(ds.root, "rollback"):
        note, completed = recover_commit(ds.root)
        record = read_lineage(ds.root)
        finished = _completed_rollback(record, completed)
        if finished is not None:
            # the interrupted command was itself a rollback: finishing it is what was asked for;
            # undoing one more run on top would roll back further than the user requested
            return RollbackOutcome(ds.root, list(finished.get("undid", [])), len(finished.get("files_restored", [])), [note] if note else [])
        active = active_label_runs(record or {})
        if not active:
            raise BadInput(
                f"nothing to roll back in {ds.root}: no label run is recorded; to retire this iteration copy instead, pass --iteration"
            )
        if to_run is None:
            undo = [active[-1]]
        else:
            ids = [r["id"] for r in active]
            if to_run == "copy":
                undo = active
            elif to_run not in ids:
                raise BadInput(f"--to {to_run}: no active label run with that id (active: {', '.join(ids)}; or 'copy' for the state after the copy)")
            else:
                undo = active[ids.index(to_run) + 1 :]
                if not undo:
                    raise BadInput(f"--to {to_run}: that is already the latest label run; nothing to roll back")
        return _undo(ds, record, undo[::-1], note)


def _completed_rollback(record: dict | None, journal: dict | None) -> dict | None:
    """The rollback run whose interrupted commit recover() just completed, if any."""
    if not journal or not record:
        return None
    for run in record.get("runs", []):
        if run.get("id") == journal.get("run") and run.get("kind") == "rollback":
            return run
    return None


def last_written_hashes(record: dict) -> dict[str, tuple[str, str]]:
    """For each data file recap-label rewrote: (the run that wrote it last, its sha256 then).

    A file whose content differs now was rewritten by someone else since."""
    out: dict[str, tuple[str, str]] = {}
    for run in record.get("runs", []):
        for rel, digest in (run.get("file_sha256_after") or {}).items():
            out[rel] = (run["id"], digest)
    return out


def _undo(ds: LeRobotDataset, record: dict, newest_first: list[dict], note: str | None) -> RollbackOutcome:
    newest = newest_first[0]
    for rel, (writer, digest) in last_written_hashes(record).items():
        path = ds.root / rel
        check_writable_target(ds.root, path)
        if not path.exists() or sha256_file(path) != digest:
            raise UnsafeWriteError(
                f"{rel} changed since {writer} wrote it; refusing to roll back over someone else's changes (restore the file or make a new copy)"
            )
    adv_col = newest["settings"]["adv_col"]
    labels: dict[str, list] = {}
    info_prior = None
    for run in newest_first:  # newest first: each run's prior state is the next one's input
        prior = read_parquet_table(ds.root / run["prior_labels"], ["file", "label"])
        files = np.asarray(prior["file"].to_numpy(zero_copy_only=False), dtype=object)
        values = np.asarray(prior["label"].to_numpy(zero_copy_only=False), dtype=object)
        for rel in dict.fromkeys(files.tolist()):
            labels[rel] = values[files == rel].tolist()
        if run.get("info_json_prior"):
            info_prior = (ds.root / run["info_json_prior"]).read_bytes()
    rollback_id = f"run-{len(record.get('runs', [])) + 1:04d}"
    txn = Transaction(ds.root, rollback_id)
    for rel, values in labels.items():
        txn.stage_labels(ds.root / rel, adv_col, values)
    if info_prior is not None:
        txn.stage_bytes(ds.root / "meta" / "info.json", info_prior)
    undone = [r["id"] for r in newest_first]
    runs = [dict(r, rolled_back=rollback_id) if r["id"] in undone else r for r in record["runs"]]
    hashes = {s.target.relative_to(ds.root).as_posix(): sha256_file(s.staged) for s in txn.staged if s.target.relative_to(ds.root).as_posix() in labels}
    runs.append({"id": rollback_id, "kind": "rollback", "time": now_iso(), "undid": undone, "files_restored": sorted(labels),
                 "file_sha256_after": hashes, "recovered": note})
    txn.stage_json(ds.root / LINEAGE_FILE, {**record, "runs": runs})
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
    parent = Path(record["parent"]) if record.get("parent") else None
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
        undo = []  # what puts the cache back as it was, should a later step fail
        try:
            if entry.is_symlink() and os.path.realpath(entry) == os.path.realpath(ds.root):
                before = os.readlink(entry)
                remove_link(entry)
                undo.append(lambda: point_link(entry, before))
                unregistered.append(f"local/{ds.root.name}")
            if alias.is_symlink() and os.path.realpath(alias) == os.path.realpath(ds.root):
                before_alias = os.readlink(alias)
                if parent is not None:
                    register(alias, parent)  # an atomic swap: on error nothing changed
                    undo.append(lambda: point_link(alias, before_alias))
                    active_now = str(parent)
                else:
                    remove_link(alias)
                    undo.append(lambda: point_link(alias, before_alias))
                    unregistered.append(f"local/{alias.name}")
            write_lineage(ds.root, {**record, "retired": now_iso()})
        except OSError as exc:
            if not record.get("retired"):
                undo.insert(0, lambda: (read_lineage(ds.root) or {}).get("retired") and write_lineage(ds.root, record))
            for put_back in reversed(undo):
                try:
                    put_back()
                except OSError:
                    pass
            raise io_error(exc, f"retiring {ds.root.name}") from None
    if delete:
        shutil.rmtree(ds.root)
    return RetireOutcome(ds.root, unregistered, active_now, delete)

