"""A state-changing command after its commit point: done on disk before anything is printed,
reported only once its report is written.

`label` and `rollback` record `meta/recap_label/report-pending.json` (the lock's intent: command,
arguments, run id) under the lock, in the same SIGINT-deferred step as their commit; `copy` keeps
its pending mark and a retirement its intent the same way. The record is removed only after the
report reached stdout (cli/output.show calls `on_reported`). So the same command line run again
after a kill or Ctrl-C anywhere, printing included, finds that run and reports it, never doing the
work a second time.

Ctrl-C: each command names its phase here (`phase`, `committed`); the error boundary
(cli/boundary.py) says what is true at the instant the interrupt lands: before the commit,
that nothing was changed; after it, what was done and that the report was cut short.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from recap_label.store.fsutil import fsync_dir, write_json_atomic
from recap_label.store.paths import REPORT_PENDING

_state: dict[str, str | None] = {"phase": None, "done": None}


def phase(message: str) -> None:
    """What Ctrl-C means from now on, until the commit point (e.g. "nothing was changed")."""
    _state["phase"] = message


def committed(summary: str) -> None:
    """The command's work is durable: Ctrl-C from now on says `summary` was done."""
    _state["done"] = summary


def is_done() -> bool:
    return bool(_state["done"])


def reset() -> None:
    """A new command in this process (tests run many in one)."""
    _state.update(phase=None, done=None)


def interrupt_message() -> str:
    """What Ctrl-C leaves behind, true at this instant."""
    if _state["done"]:
        return (
            f"{_state['done']}; interrupted while reporting — run the same command again to see its report "
            f"(it is not done again)"
        )
    if _state["phase"]:
        return _state["phase"]
    return "interrupted; the dataset is unchanged or will be completed by the next run"


def failed_message(message: str) -> str:
    """An error's message, true also when it comes after the commit point (the work stands)."""
    if not _state["done"]:
        return message
    return f"{_state['done']}; then: {message} (what was done stands; run the same command again for its report)"


@contextmanager
def sigint_deferred():
    """Ctrl-C inside the block takes effect at its end: a commit and the record of its completion
    land together, or neither does. (Only the main thread receives signals.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if got:
        raise KeyboardInterrupt


def record_pending(root: Path, record: dict, summary: str) -> None:
    """The command `record` names (command, args, run, pid, pid_start) is done; its report is
    still to be printed. Called right after the commit: from here on every message says the work
    was done, also when the record itself cannot be written."""
    committed(summary)
    try:
        write_json_atomic(root / REPORT_PENDING, {**record, "summary": summary})
    except OSError:
        pass  # housekeeping only: the lock's intent names this run until the lock is released


def read_pending(root: Path) -> dict | None:
    import json

    try:
        record = json.loads((root / REPORT_PENDING).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def drop_pending(root: Path, only_pid: int | None = None) -> None:
    """The report was written (or the record is stale): remove the record. Never fails: a record
    left behind only makes a retry of that very command report it again."""
    path = root / REPORT_PENDING
    if only_pid is not None and (read_pending(root) or {}).get("pid") != only_pid:
        return
    try:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
    except OSError:
        pass


def reporter(root: Path):
    """The `on_reported` of an outcome whose run recorded report-pending.json: drops it."""
    pid = os.getpid()
    return lambda: drop_pending(root, only_pid=pid)
