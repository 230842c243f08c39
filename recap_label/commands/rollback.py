"""`rollback`: undo label runs (exact prior labels, one atomic commit) or retire an iteration copy."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.compute as pc

from recap_label.config import Settings
from recap_label.errors import BadInput, UnsafeWriteError
from recap_label.invariants import verify_dataset
from recap_label.lerobot.columns import shared_strings
from recap_label.lerobot.dataset import DatasetFiles, read_parquet_table
from recap_label.lerobot.active import (
    after_unlabel,
    forget,
    history_bytes,
    previous_active,
    restore_history,
    set_active,
)
from recap_label.lerobot.line import Line, line_of
from recap_label.lerobot.registry import (
    active_alias,
    cache_entry,
    clean_stale_links,
    point_link,
    points_to,
    remove_link,
    retire_intent_path,
)
from recap_label.errors import RecapError
from recap_label.lerobot.dataset import resolve_dataset_path
from recap_label.store import completion
from recap_label.store.faults import crash_point
from recap_label.store.fsutil import UndoStack, io_error, os_error_message, remove_tree, sha256_file, write_json_atomic
from recap_label.store.lock import process_alive
from recap_label.store.lineage import (
    LabelRun,
    Lineage,
    RollbackRun,
    lineage_bytes,
    now_iso,
    read_lineage,
    split_iteration_name,
    write_lineage,
)
from recap_label.store.lock import dataset_lock
from recap_label.store.paths import INFO_JSON, LINEAGE_FILE
from recap_label.store.writeback import (
    CREATED_COLUMN_KEY,
    Transaction,
    check_writable_target,
    decode_schema_metadata,
    recover,
    recover_commit,
)


@dataclass
class RollbackOutcome:
    dataset: Path
    undone: list[str]
    files_restored: int
    notes: list[str] = field(default_factory=list)
    on_reported: Callable[[], None] | None = field(default=None, repr=False, compare=False)  # store.completion

    def to_json(self) -> dict:
        return {
            "dataset": str(self.dataset),
            "undone": self.undone,
            "files_restored": self.files_restored,
            "notes": self.notes,
        }


def list_runs(ds_root: Path) -> list[LabelRun | RollbackRun]:
    record = read_lineage(ds_root)
    return record.runs if record else []


@dataclass
class RunHistory:
    """`rollback --list`: the recorded runs, oldest first, and where each label run's labels are now."""

    dataset: Path
    runs: list[LabelRun | RollbackRun]

    @property
    def on_disk(self) -> str | None:
        """The label run whose labels the data files hold: only the newest one not undone."""
        standing = self._standing()
        return standing[-1] if standing else None

    def _standing(self) -> list[str]:
        return [r.id for r in self.runs if r.kind == "label" and not r.rolled_back]

    def status(self, run: LabelRun | RollbackRun) -> str:
        """ "active", "replaced by run-X" (its labels are no longer on disk), "undone by run-Y", or
        for a rollback run "undid run-A, run-B"."""
        if run.kind == "rollback":
            return "undid " + ", ".join(run.undid)
        if run.rolled_back:
            return f"undone by {run.rolled_back}"
        if run.id == self.on_disk:
            return "active"
        standing = self._standing()
        return f"replaced by {standing[standing.index(run.id) + 1]}"

    def to_json(self) -> list[dict]:
        on_disk = self.on_disk
        return [
            {**r.to_json(), **({"labels_on_disk": r.id == on_disk} if r.kind == "label" else {})} for r in self.runs
        ]


def run_history(ds_root: Path) -> RunHistory:
    return RunHistory(ds_root, list_runs(DatasetFiles.open(ds_root).root))


def rollback_runs(ds_root: Path, to_run: str | None = None, lerobot_home: Path | None = None) -> RollbackOutcome:
    outcome = _rollback_runs(ds_root, to_run)
    outcome.on_reported = completion.reporter(outcome.dataset)
    if lerobot_home is not None:
        try:  # the labels are restored already: the alias follows, or says why not
            note = after_unlabel(lerobot_home, outcome.dataset)
        except OSError as exc:
            note = (
                f"could not move the _active alias off {outcome.dataset.name} ({exc.strerror}); run `recap-label "
                f"activate <copy>`"
            )
        if note:
            outcome.notes.append(note)
    return outcome


def _rollback_runs(ds_root: Path, to_run: str | None) -> RollbackOutcome:
    completion.phase("interrupted before the commit: nothing was changed (no label restored)")
    ds = DatasetFiles.open(ds_root)
    if read_lineage(ds.root) is None:  # refuse before anything (even a lock) is written
        raise BadInput(
            f"nothing to roll back in {ds.root}: it has no copy lineage (not a copy made by `recap-label copy`, so "
            f"no label run of recap-label is recorded)"
        )
    with dataset_lock(ds.root, "rollback") as lock:
        note, completed = recover_commit(ds.root)
        record = read_lineage(ds.root)
        args = {"to": to_run}
        landed = record.run(lock.interrupted_run("rollback", args) or "") if record else None
        finished = _completed_rollback(record, completed) or (
            landed if isinstance(landed, RollbackRun) and landed is record.runs[-1] else None
        )
        if finished is not None:
            # the interrupted command was this rollback (its commit landed, or recovery just
            # completed it; or it was cut off while reporting): finishing it is what was asked
            # for; one more would go too far
            lock.declare("rollback", args, finished.id)
            lock.committed(_done_summary(finished))
            notes = [
                n
                for n in [
                    note,
                    f"finished the interrupted {finished.id}: its commit had landed; this is its report (nothing "
                    f"was rolled back again)",
                ]
                if n
            ]
            return RollbackOutcome(ds.root, list(finished.undid), len(finished.files_restored), notes)
        active = record.active_label_runs() if record else []
        if not active:
            raise BadInput(
                f"nothing to roll back in {ds.root}: no label run is recorded; to retire this iteration copy "
                f"instead, pass --iteration"
            )
        if to_run is None:
            undo = [active[-1]]
        else:
            ids = [r.id for r in active]
            if to_run == "copy":
                undo = active
            elif to_run not in ids:
                raise BadInput(
                    f"--to {to_run}: no active label run with that id (active: {', '.join(ids)}; or 'copy' for the "
                    f"state after the copy)"
                )
            else:
                undo = active[ids.index(to_run) + 1 :]
                if not undo:
                    raise BadInput(f"--to {to_run}: that is already the latest label run; nothing to roll back")
        lock.declare("rollback", args, record.next_run_id())
        return _undo(ds, record, undo[::-1], note, then=lambda run: lock.committed(_done_summary(run)))


def _done_summary(run: RollbackRun) -> str:
    return f"rolled back {', '.join(run.undid)} ({len(run.files_restored)} file(s) restored, recorded as {run.id})"


def _completed_rollback(record: Lineage | None, journal: dict | None) -> RollbackRun | None:
    """The rollback run whose interrupted commit recover() just completed, if any."""
    if not journal or not record:
        return None
    run = record.run(journal.get("run"))
    return run if isinstance(run, RollbackRun) else None


def _undo(
    ds: DatasetFiles,
    record: Lineage,
    newest_first: list[LabelRun],
    note: str | None,
    then: Callable[[RollbackRun], None],
) -> RollbackOutcome:
    for rel, (writer, digest) in record.last_written_hashes().items():
        path = ds.root / rel
        check_writable_target(ds.root, path)
        if not path.exists() or sha256_file(path) != digest:
            raise UnsafeWriteError(
                f"{rel} changed since {writer} wrote it; refusing to roll back over someone else's changes (restore "
                f"the file or make a new copy)"
            )
    adv_col = newest_first[0].settings.adv_col
    labels: dict[
        str, np.ndarray | dict
    ] = {}  # file → its prior labels, or its schema metadata from before the column existed
    info_prior = None
    for run in newest_first:  # newest first: each run's prior state is the next one's input
        prior = read_parquet_table(ds.root / run.prior_labels, ["file", "label"])
        files = pc.dictionary_encode(prior["file"].combine_chunks())  # a few file names, a code per row
        names, codes = files.dictionary.to_pylist(), files.indices.to_numpy(zero_copy_only=False)
        values = shared_strings(prior["label"])
        created = json.loads((prior.schema.metadata or {}).get(CREATED_COLUMN_KEY, b"{}"))
        for code, rel in enumerate(names):
            labels[rel] = decode_schema_metadata(created[rel]) if rel in created else values[codes == code]
        if run.info_json_prior:
            info_prior = (ds.root / run.info_json_prior).read_bytes()
    rollback_id = record.next_run_id()
    txn = Transaction(ds.root, rollback_id)
    for rel, values in labels.items():
        if isinstance(values, dict):  # the run created the column: take it out again
            txn.stage_without_label_column(ds.root / rel, adv_col, values)
        else:
            txn.stage_labels(ds.root / rel, adv_col, values)
    if info_prior is not None:
        txn.stage_bytes(ds.root / INFO_JSON, info_prior)
    undone = [r.id for r in newest_first]
    staged = {s.target.relative_to(ds.root).as_posix(): s.staged for s in txn.staged}
    run = RollbackRun(
        id=rollback_id,
        time=now_iso(),
        undid=undone,
        files_restored=sorted(labels),
        file_sha256_after={rel: sha256_file(staged[rel]) for rel in labels},
        recovered=note,
    )
    txn.stage_bytes(ds.root / LINEAGE_FILE, lineage_bytes(record.with_run(run)))
    with completion.sigint_deferred():  # the commit and the record of its completion land together
        txn.commit()
        then(run)
    return RollbackOutcome(ds.root, undone, len(labels), [note] if note else [])


@dataclass
class RetireOutcome:
    dataset: Path
    unregistered: list[str]
    active_now: str | None
    deleted: bool
    notes: list[str] = field(default_factory=list)
    on_reported: Callable[[], None] | None = field(default=None, repr=False, compare=False)  # store.completion

    def to_json(self) -> dict:
        return {
            "dataset": str(self.dataset),
            "unregistered": self.unregistered,
            "active_now": self.active_now,
            "deleted": self.deleted,
            "notes": self.notes,
        }


DELETING_MARK = ".recap-deleting-"  # <parent>/.recap-deleting-<name>: a folder being deleted


def _retire_intent_path(home: Path, name: str) -> Path:
    return retire_intent_path(home, name)


def _find_retire_intent(home: Path, arg: str) -> dict | None:
    """The recorded retirement of the copy `arg` names (local/<name> or its path), if one was interrupted."""
    name = arg[len("local/") :] if arg.startswith("local/") else Path(arg).name
    try:
        intent = json.loads(_retire_intent_path(home, name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(intent, dict) or not isinstance(intent.get("dataset"), str):
        return None
    if not arg.startswith("local/") and os.path.abspath(Path(arg).expanduser()) not in (
        intent["dataset"],
        intent.get("given"),
    ):
        return None
    return intent


def retire_iteration(ds_arg: str, settings: Settings, delete: bool) -> RetireOutcome:
    """Make the prior iteration the one the LeRobot cache resolves; keep (or delete) this copy.

    Journaled: the intent (which links change to what, whether the folder goes) is recorded in
    the LeRobot home first, every step is idempotent, and the intent goes last, so the same
    command run again after a kill anywhere completes the retirement, also when `local/<name>`
    or the folder itself is already gone."""
    home = settings.lerobot_home
    if (home / "local").is_dir():
        clean_stale_links(home / "local")  # what a killed retirement may have left
    intent = _find_retire_intent(home, ds_arg)
    if intent is not None and intent.get("done") and points_to(cache_entry(home, intent["name"]), intent["dataset"]):
        # a retirement whose report was cut short, and the copy has been registered again since:
        # that retirement is history, this is a new one
        _retire_intent_path(home, intent["name"]).unlink(missing_ok=True)
        intent = None
    if intent is not None and not process_alive(int(intent.get("pid", -1))):
        return _retire_steps(home, intent, delete or bool(intent.get("delete")))
    completion.phase("interrupted before the retirement began: nothing was changed")
    ds = DatasetFiles.open(Path(os.path.realpath(resolve_dataset_path(ds_arg, home))))  # local/<name> is itself a link
    record = read_lineage(ds.root)
    if record is None:
        raise BadInput(
            f"{ds.root} has no copy lineage: it is not an iteration copy made by `recap-label copy`, nothing to retire"
        )
    parent = Path(record.parent) if record.parent else None
    # where `_active` goes back to when it points here: the last labeled iteration it pointed at
    line = line_of(ds.root, record)
    back = previous_active(home, ds.root) if points_to(active_alias(home, line), ds.root) else None
    prior_path = back or parent
    if prior_path is not None and prior_path.is_dir():
        prior = DatasetFiles.open(prior_path)
        report = verify_dataset(prior, settings)
        if not report.ok:
            failed = next(c for c in report.checks if c.status == "fail")
            raise BadInput(
                f"the prior iteration {prior_path} fails verification ({failed.name}: {failed.detail}); fix it "
                f"before retiring {ds.root.name}"
            )
    with dataset_lock(ds.root, "rollback --iteration"):
        recover(ds.root)
        alias = active_alias(home, line)
        intent = {
            "dataset": str(ds.root),
            "line": {"name": line.name, "realpath": line.realpath},
            "given": os.path.abspath(Path(ds_arg).expanduser()) if not ds_arg.startswith("local/") else None,
            "name": ds.root.name,
            "parent": None if parent is None else str(parent),
            "delete": delete,
            "pid": os.getpid(),
            "alias_to": None if back is None else str(back),
            "entry": f"local/{ds.root.name}" if points_to(cache_entry(home, ds.root.name), ds.root) else None,
            "alias": f"local/{alias.name}" if points_to(alias, ds.root) else None,
        }
        history = history_bytes(home, line)
        try:
            (home / "local").mkdir(parents=True, exist_ok=True)
            write_json_atomic(_retire_intent_path(home, ds.root.name), intent)
            completion.phase(
                f"interrupted while retiring {ds.root.name}: the retirement is recorded; run the same command again "
                f"to complete it"
            )
            _retire_links(home, intent)
            if not record.retired:
                write_lineage(ds.root, record.retired_now())
        except OSError as exc:
            if not record.retired:
                try:  # the retired mark may have landed before its folder's fsync failed
                    if (read_lineage(ds.root) or record).retired:
                        write_lineage(ds.root, record)
                except OSError:
                    pass
            _undo_retire_links(home, intent, history)
            raise io_error(exc, f"retiring {ds.root.name}") from None
    return _finish_retire(home, intent, delete)


def _retire_links(home: Path, intent: dict) -> None:
    """Unregister local/<name> and move `_active` back (or remove it): each step only if still to do."""
    root = Path(intent["dataset"])
    entry = cache_entry(home, intent["name"])
    if points_to(entry, root) or (entry.is_symlink() and not os.path.exists(entry) and os.readlink(entry) == str(root)):
        remove_link(entry)
    alias = active_alias(home, _intent_line(intent))
    if intent.get("alias") and (points_to(alias, root) or (alias.is_symlink() and os.readlink(alias) == str(root))):
        target = _alias_to(intent)
        if target:
            set_active(home, Path(target))
        else:
            remove_link(alias)
    forget(home, root, _intent_line(intent))


def _intent_line(intent: dict) -> Line:
    """The line of the copy being retired; intents written before lines were recorded: from the copy."""
    if isinstance(intent.get("line"), dict):
        return Line(intent["line"]["name"], intent["line"]["realpath"])
    root = Path(intent["dataset"])
    return line_of(root) if root.is_dir() else Line(split_iteration_name(intent["name"])[0], "")


def _alias_to(intent: dict) -> str | None:
    """The alias's new target; intents written before the history existed name the parent."""
    return intent.get("alias_to") if "alias_to" in intent else intent.get("parent")


def _undo_retire_links(home: Path, intent: dict, history: bytes | None) -> None:
    """An error (not a crash) before anything was deleted: put the links (and the `_active`
    history) back as they were."""
    root = Path(intent["dataset"])
    undo = UndoStack()
    undo.push(lambda: restore_history(home, _intent_line(intent), history))
    if intent.get("entry"):
        undo.push(lambda: point_link(cache_entry(home, intent["name"]), str(root)))
    if intent.get("alias"):
        undo.push(lambda: point_link(active_alias(home, _intent_line(intent)), str(root)))
    undo.push(lambda: _retire_intent_path(home, intent["name"]).unlink(missing_ok=True))
    undo.unwind()


def _retire_steps(home: Path, intent: dict, delete: bool) -> RetireOutcome:
    """A retry: the idempotent links and retired mark (under the lock, after clearing what the
    killed run left), then the rest."""
    root = Path(intent["dataset"])
    try:
        if root.exists():
            with dataset_lock(root, "rollback --iteration"):
                recover(root)  # what a killed run left (staged or temporary files)
                _retire_links(home, intent)
                record = read_lineage(root)
                if record is not None and not record.retired:
                    write_lineage(root, record.retired_now())
        else:
            _retire_links(home, intent)
    except OSError as exc:
        raise RecapError(
            os_error_message(exc, f"retiring {root.name}").replace(
                "(nothing was changed)", "(the retirement is recorded; run the same command again to complete it)"
            )
        ) from None
    return _finish_retire(home, intent, delete)


def _finish_retire(home: Path, intent: dict, delete: bool) -> RetireOutcome:
    """Delete the folder when asked (renamed aside first: a half-deleted copy is recognisable),
    then drop the intent: the retirement's last step."""
    root = Path(intent["dataset"])
    if delete:
        doomed = root.with_name(f"{DELETING_MARK}{root.name}")
        try:
            if root.exists():
                os.rename(root, doomed)  # atomic: from here on it is recognisably half-deleted
                crash_point("retire-renamed")
            if doomed.exists():
                remove_tree(doomed)
        except OSError as exc:
            raise RecapError(
                os_error_message(
                    exc,
                    f"deleting {root}",
                    state=(
                        f"it is retired and unregistered; run the same command again to finish deleting {doomed.name}"
                    ),
                )
            ) from None
    target = _alias_to(intent)
    unregistered = [n for n in (intent.get("entry"), None if target else intent.get("alias")) if n]
    active_now = target if intent.get("alias") else None
    summary = f"retired {root.name}" + (" and deleted its folder" if delete else "")
    path = _retire_intent_path(home, intent["name"])
    notes = []
    if intent.get("done"):
        notes.append(
            f"finished the interrupted retirement of {root.name}: it had been done; this is its report (nothing was "
            f"done again)"
        )
    try:  # done, report pending: the intent stays until the report is printed (store.completion)
        with completion.sigint_deferred():
            write_json_atomic(path, {**intent, "done": True, "delete": delete})
            completion.committed(summary)
    except OSError:
        pass  # everything is done; without the mark a retry after a cut-off report finds nothing to do
    if intent.get("alias") and not target:
        notes.append(
            f"{intent['alias']} removed: no earlier labeled iteration to point it at; `recap-label activate <copy>` "
            f"sets it"
        )
    return RetireOutcome(root, unregistered, active_now, delete, notes, on_reported=lambda: _drop_intent(path))


def _drop_intent(path: Path) -> None:
    """The retirement's report was printed: its last step. A leftover intent only makes a retry
    of this name report it again."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
