"""One writer per dataset: `meta/recap_label/lock`, created with O_EXCL, holding pid and command.

A lock whose process is gone (same host, pid not alive, or the pid now belongs to a process
started later) is stale and cleared automatically. Taking, inspecting and clearing the lock
happen while holding a kernel lock (flock) on the `meta/recap_label` folder itself, which the
kernel releases when its process dies: two processes that find the same stale lock at the same
instant cannot both clear it and both proceed, and a lock file torn by a killed writer is
recognized as such without guessing from the clock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from recap_label.errors import LockedError, RecapError, UnsafeWriteError
from recap_label.store.faults import crash_point
from recap_label.store.fsutil import fsync_dir, io_error, os_error_message, write_json_atomic
from recap_label.store.paths import LOCK_FILE

GUARD_WAIT_S = 30.0


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Is `pid` a live (non-zombie) process, and the same one that started at `start`?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped) holds nothing
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
    except OSError:
        return True
    # the pid was reused by a process started after the holder
    now = process_start_time(pid)
    return start is None or now is None or now == start


def lock_path(root: Path) -> Path:
    return root / LOCK_FILE


def read_holder(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def holder_alive(holder: dict) -> bool:
    """Could the process named in a lock file still be running? (Another host: assume so.)"""
    try:
        pid = int(holder.get("pid", -1))
    except (TypeError, ValueError):
        pid = -1
    return holder.get("host") != socket.gethostname() or process_alive(pid, holder.get("pid_start"))


def live_holder(root: Path) -> dict | None:
    """The lock holder of a dataset when it may still be running, else None."""
    holder = read_holder(lock_path(root))
    return holder if holder is not None and holder_alive(holder) else None


@contextmanager
def _guard(folder: Path):
    """flock on the state folder: serializes taking and clearing the lock (released on death)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise io_error(exc, f"taking the lock in {folder}") from None
    try:
        deadline = time.monotonic() + GUARD_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockedError(
                        f"{folder} is busy: another recap-label process is taking its lock; run again"
                    ) from None
                time.sleep(0.02)
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL):
                    break  # no flock on this file system: O_EXCL alone still guards the lock file
                raise io_error(exc, f"taking the lock in {folder}") from None
        yield
    finally:
        os.close(fd)  # releases the flock


def _locked_message(root: Path, path: Path, holder: dict) -> str:
    return (
        f"{root} is locked by `recap-label {holder.get('command')}` (pid {holder.get('pid')} on {holder.get('host')}, "
        f"since {holder.get('started')}); wait for it to finish, or remove {path} if that process is gone"
    )


def _take(root: Path, path: Path, me: dict) -> dict | None:
    """Create the lock file holding `me`, clearing a stale one; call with the guard held.
    Returns the stale holder it cleared (a killed command, and what it was doing), if any."""
    stale = None
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_holder(path)
            if holder is None:
                # torn: its writer died between creating and filling it (the guard was ours)
                crash_point("lock-break")
                path.unlink(missing_ok=True)
                continue
            if not holder_alive(holder):
                crash_point("lock-break")
                path.unlink(missing_ok=True)  # stale: its process is gone
                stale = holder
                continue
            raise LockedError(_locked_message(root, path, holder)) from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(path.parent)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return stale
    raise LockedError(f"could not take the lock {path}; run again")


def _normal(args: dict) -> dict:
    return json.loads(json.dumps(args, sort_keys=True, default=str))


class HeldLock:
    """The lock while it is held: `declare` records what the command is about to do (its intent:
    arguments and the run id it will record) in the lock file itself, so the lock's removal,
    the command's last step, also ends the intent. `previous` is the stale holder this lock
    replaced: a command killed before it finished, and its intent."""

    def __init__(self, path: Path, me: dict, previous: dict | None):
        self.path, self.me, self.previous = path, me, previous

    def declare(self, command: str, args: dict, run: str) -> None:
        self.me = {**self.me, "intent": {"command": command, "args": _normal(args), "run": run}}
        write_json_atomic(self.path, self.me)

    def interrupted_run(self, command: str, args: dict) -> str | None:
        """The run id of the same command with the same arguments that was killed holding this lock."""
        intent = (self.previous or {}).get("intent")
        if isinstance(intent, dict) and intent.get("command") == command and intent.get("args") == _normal(args):
            return intent.get("run")
        return None


@contextmanager
def dataset_lock(root: Path, command: str):
    """Hold the dataset's write lock for the duration of the block."""
    path = lock_path(root)
    me = {
        "pid": os.getpid(),
        "pid_start": process_start_time(os.getpid()),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    for folder in (root / "meta", path.parent):
        if folder.is_symlink():
            raise UnsafeWriteError(
                f"{folder} is a symlinked folder; a lock there would be written into another dataset — make a "
                f"standalone copy with `recap-label copy` first"
            )
    created = None  # the state folder, when this lock made it (an original labeled with --allow-original)
    for attempt in range(3):
        try:
            if not path.parent.is_dir():
                missing = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
                path.parent.mkdir(parents=True, exist_ok=True)
                created = missing[-1] if missing else created
            with _guard(path.parent):
                previous = _take(root, path, me)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise LockedError(f"could not take the lock {path}: its folder keeps disappearing; run again") from None
            # the folder was removed by the previous holder between our mkdir and our lock: again
        except OSError as exc:
            raise io_error(exc, f"taking the lock {path}") from None
    held = HeldLock(path, me, previous)
    try:
        crash_point("locked")
        yield held
    finally:
        holder = read_holder(path)
        if holder and holder.get("pid") == me["pid"]:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                # the work is done; a lock left behind is cleared as stale by the next command
                why = os_error_message(exc, f"removing the lock {path}", state=None)
                sys.stderr.write(
                    f"warning: {why}; the command itself finished, and the next run clears the lock as stale\n"
                )
        if created is not None:
            _remove_if_empty(path.parent, created)


def _remove_if_empty(folder: Path, top: Path) -> None:
    """Remove the state folders this lock created, if nothing else was written into them."""
    try:
        with _guard(folder):
            for d in [folder, *folder.parents]:
                d.rmdir()  # OSError when not empty: stop there
                if d == top:
                    break
    except (OSError, RecapError):
        pass
