"""Durable file operations: atomic replace, fsync of files and folders, content hashing.

Every write in recap-label goes through here: a temp file in the target's own folder,
fsync, rename over the target, fsync of the folder. A crash at any instant leaves either
the old or the new file, never a torn one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Callable

from recap_label.errors import RecapError, first_line
from recap_label.store.faults import crash_point

TMP_MARK = ".recap-tmp-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(target: Path, tag: str = "") -> Path:
    return target.with_name(f"{TMP_MARK}{tag}{os.getpid()}-{target.name}")


def umask() -> int:
    """The process umask, read without changing it (Linux /proc), else by setting it back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def take_permissions(path: Path, like: Path | None) -> None:
    """Give a freshly written `path` the mode (and, where permitted, the owner and group) of the file
    `like` it replaces; with no such file, the umask's mode (some writers, e.g. safetensors, make 0600
    files whatever the umask, which a shared cache cannot use)."""
    try:
        st = os.stat(like) if like is not None else None
    except FileNotFoundError:
        st = None
    if st is None:
        os.chmod(path, 0o666 & ~umask())
        return
    os.chmod(path, stat.S_IMODE(st.st_mode))
    mine = os.stat(path)
    if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
        for uid in (st.st_uid, -1):  # the owner needs privileges; the group only membership
            try:
                os.chown(path, uid, st.st_gid)
                break
            except OSError:
                continue
        if stat.S_IMODE(st.st_mode) & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))  # chown clears set-id bits


def write_file_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Write via `write(tmp_path)` into a sibling temp file, fsync it, rename over `target`; the
    new file keeps the old one's mode and owner (the umask's mode when there was none)."""
    tmp = temp_path_for(target)
    try:
        write(tmp)
        take_permissions(tmp, target)
        fsync_file(tmp)
        crash_point("atomic-write")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    crash_point("atomic-replace")
    fsync_dir(target.parent)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    write_file_atomic(target, lambda p: p.write_bytes(data))


def write_json_atomic(target: Path, obj: object, indent: int = 2) -> None:
    write_bytes_atomic(target, (json.dumps(obj, indent=indent, ensure_ascii=False) + "\n").encode("utf-8"))


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except FileNotFoundError:
        raise RecapError(f"{path} does not exist; pass an existing file") from None
    except IsADirectoryError:
        raise RecapError(f"{path} is a folder, not a file; pass the file itself") from None
    except OSError as exc:
        raise io_error(exc, f"reading {path}") from None
    return h.hexdigest()


def find_symlinks(root: Path) -> list[Path]:
    """Every symlink (file or folder) under root, links not followed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out += [Path(dirpath) / name for name in dirnames + filenames if os.path.islink(os.path.join(dirpath, name))]
    return out


def os_error_message(exc: OSError, action: str, state: str | None = "nothing was changed") -> str:
    """One line for an OSError during `action`, with what to do about it and, in parentheses, the
    state it leaves (None: the caller says the state itself)."""
    name = str(exc.filename).splitlines()[0] if exc.filename else ""
    where = f" ({name})" if name and name not in action else ""  # the path once, not twice
    after = f" ({state})" if state else ""
    if exc.errno == errno.ENOSPC:
        return f"disk full while {action}{where}; free space and run again{after}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied while {action}{where}; fix the permissions and run again{after}"
    reason = exc.strerror or first_line(exc)
    return f"{reason} while {action}{where}; fix the cause and run again{after}"


def io_error(exc: OSError, action: str) -> RecapError:
    return RecapError(os_error_message(exc, action))


class UndoStack:
    """Steps that put things back, run newest first when a multi-step change fails part-way."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], object]] = []

    def push(self, step: Callable[[], object]) -> None:
        self._steps.append(step)

    def unwind(self) -> bool:
        """Run every step (an OSError in one does not stop the others); True when all succeeded."""
        ok = True
        while self._steps:
            try:
                self._steps.pop()()
            except OSError:
                ok = False
        return ok


def remove_tree(root: Path) -> None:
    """Delete a folder bottom-up, one entry at a time (a crash point per file, for the tests)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.unlink(os.path.join(dirpath, name))
            crash_point("delete-file")
        for name in dirnames:
            path = os.path.join(dirpath, name)
            os.unlink(path) if os.path.islink(path) else os.rmdir(path)
    os.rmdir(root)
