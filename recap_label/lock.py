"""One writer per dataset: `meta/recap_label/lock`, created with O_EXCL, holding pid and command.

A lock whose process is gone (same host, pid not alive) is stale and cleared automatically.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from recap_label.errors import LockedError
from recap_label.fsutil import fsync_dir
from recap_label.lineage import STATE_DIR

LOCK_NAME = "lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped) holds nothing
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def lock_path(root: Path) -> Path:
    return root / STATE_DIR / LOCK_NAME


def read_holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def dataset_lock(root: Path, command: str):
    """Hold the dataset's write lock for the duration of the block."""
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_holder(path)
            if holder is None:
                # a lock being written right now, or a torn one from a crash: look again shortly
                time.sleep(0.2)
                holder = read_holder(path)
                if holder is None:
                    if time.time() - path.stat().st_mtime > 5:
                        path.unlink(missing_ok=True)
                        continue
                    raise LockedError(f"{root} is locked by another recap-label process ({path}); wait for it to finish")
            if holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise LockedError(
                f"{root} is locked by `recap-label {holder.get('command')}` (pid {holder.get('pid')} on {holder.get('host')}, "
                f"since {holder.get('started')}); wait for it to finish, or remove {path} if that process is gone"
            )
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(path.parent)
        break
    else:
        raise LockedError(f"could not take the lock {path}; run again")
    try:
        yield
    finally:
        holder = read_holder(path)
        if holder and holder.get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
