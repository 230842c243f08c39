"""`copy`: the safe replacement for `cp -rL` + `ln -sfn`.

Every symlink in the source (file or folder) is materialized into a real file, the copy
is built in a hidden temporary sibling folder, verified byte for byte, and renamed into
place only when complete; then it is registered in the LeRobot cache as `local/<name>`.
The source is only ever read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from recap_label.dataset import LeRobotDataset
from recap_label.errors import BadInput, DatasetError, RecapError
from recap_label.faults import crash_point
from recap_label.fsutil import fsync_dir, os_error_message
from recap_label.lineage import default_destination, label_counts, new_lineage, read_lineage, split_iteration_name, write_lineage
from recap_label.lineage import STATE_DIR, data_fingerprint
from recap_label.lock import process_alive

COPY_TMP_PREFIX = ".recap-copy-"
CHUNK = 8 << 20


@dataclass
class CopyPlan:
    src: Path
    dest: Path
    iteration: int
    files: list[tuple[str, Path, int]]  # (relative path, real source path, size)
    dirs: list[str]
    total_bytes: int


@dataclass
class CopyResult:
    src: Path
    dest: Path
    iteration: int
    files: int
    bytes: int
    registered: Path | None
    source_counts: dict[str, int] | None
    copy_counts: dict[str, int] | None
    file_hashes: dict[str, str] = field(default_factory=dict, repr=False)


def _inside(a: Path, b: Path) -> bool:
    """True when a is b or lies inside b (after resolving symlinks)."""
    a, b = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    return a == b or b in a.parents


def plan_copy(src: Path, dest: Path | None) -> CopyPlan:
    """Walk SRC following symlinks; refuse loops, dangling links and overlapping paths."""
    if dest is None:
        dest, iteration = default_destination(src)
    else:
        dest = Path(dest).expanduser()
        _, n = split_iteration_name(dest.name)
        record = read_lineage(src)
        iteration = max(n, (int(record.get("iteration", 1)) + 1) if record else 1, 1)
    if dest.exists() and _inside(src, dest):
        raise BadInput(f"source {src} is inside the destination {dest}; choose a DEST that does not contain the source")
    if _inside(dest.parent, src):
        raise BadInput(f"destination {dest} is inside the source {src}; choose a DEST outside the source")
    if dest.exists() or dest.is_symlink():
        raise BadInput(f"destination {dest} already exists; choose another DEST or remove it")
    if not dest.parent.is_dir():
        raise BadInput(f"destination folder {dest.parent} does not exist; create it first")

    files: list[tuple[str, Path, int]] = []
    dirs: list[str] = []
    total = 0
    root_real = os.path.realpath(src)

    def walk(real_dir: str, rel: str, stack: tuple[str, ...]) -> None:
        nonlocal total
        try:
            entries = sorted(os.scandir(real_dir), key=lambda e: e.name)
        except OSError as exc:
            raise RecapError(os_error_message(exc, f"reading {real_dir}")) from None
        for entry in entries:
            rel_path = f"{rel}/{entry.name}" if rel else entry.name
            if rel_path == STATE_DIR.as_posix():
                continue  # the source's own recap-label state (runs, sidecar, lock): the copy starts fresh
            shown = src / rel_path
            if entry.is_symlink() and not os.path.exists(entry.path):
                raise BadInput(f"dangling symlink {shown} -> {os.readlink(entry.path)} in the source; fix or remove the link first")
            real = os.path.realpath(entry.path)
            st = os.stat(real)
            if stat.S_ISDIR(st.st_mode):
                if real in stack:
                    raise BadInput(f"symlink loop at {shown} (points back to {real}); remove the looping link from the source")
                dirs.append(rel_path)
                walk(real, rel_path, stack + (real,))
            elif stat.S_ISREG(st.st_mode):
                files.append((rel_path, Path(real), st.st_size))
                total += st.st_size
            else:
                raise BadInput(f"{shown} is not a regular file or folder; remove it from the source")

    walk(root_real, "", (root_real,))
    return CopyPlan(src, dest, iteration, files, dirs, total)


def _copy_one(src: Path, dst: Path, on_bytes: Callable[[int], None]) -> str:
    """Copy bytes into a new file (never a link), fsync it; return the source's sha256."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while block := fin.read(CHUNK):
            h.update(block)
            fout.write(block)
            on_bytes(len(block))
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def clean_stale_copies(parent: Path) -> None:
    """Remove temporary copy folders left by killed `copy` processes."""
    for entry in parent.glob(f"{COPY_TMP_PREFIX}*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def cache_entry(lerobot_home: Path, name: str) -> Path:
    return lerobot_home / "local" / name


def active_alias(lerobot_home: Path, dest_name: str) -> Path:
    """`local/<base>_vlm_label_active`: the stable name a Stage 6 config can use; it follows the newest iteration."""
    base, _ = split_iteration_name(dest_name)
    return lerobot_home / "local" / f"{base}_vlm_label_active"


def check_registration(entry: Path, dest: Path, replace: bool) -> None:
    """Refuse to replace a LeRobot cache entry that points somewhere else."""
    if not (entry.exists() or entry.is_symlink()):
        return
    if entry.is_symlink() and os.path.realpath(entry) == os.path.realpath(dest):
        return
    if replace and entry.is_symlink():
        return
    what = f"points to {os.readlink(entry)}" if entry.is_symlink() else "is a real folder"
    hint = "pass --replace-registration to repoint it" if entry.is_symlink() else "move it away first"
    raise BadInput(f"LeRobot cache entry {entry} already exists and {what}; {hint}, or use --no-register")


def register(entry: Path, dest: Path) -> None:
    """Point the cache entry `entry` at `dest` (an absolute link)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    point_link(entry, os.path.abspath(dest))


def point_link(link: Path, target: str) -> None:
    """Make `link` a symlink to `target` with an atomic swap through a temporary link."""
    tmp = link.with_name(f".{link.name}.recap-link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    crash_point("register")
    _fsync_quietly(link.parent)


def remove_link(link: Path) -> None:
    link.unlink()
    _fsync_quietly(link.parent)


def _fsync_quietly(folder: Path) -> None:
    try:
        fsync_dir(folder)
    except OSError:
        pass  # the link change itself is done; only its durability across a power cut is not certain


def copy_dataset(
    src_arg: str,
    src: Path,
    dest: Path | None,
    *,
    adv_col: str,
    lerobot_home: Path,
    do_register: bool = True,
    replace_registration: bool = False,
    progress: Callable[[int, int], Callable[[int], None]] | None = None,
) -> CopyResult:
    src_ds = LeRobotDataset.open(src)
    src_ds.read_columns(["episode_index"])  # every data file readable and consistent with meta/
    plan = plan_copy(src, dest)
    entry = cache_entry(lerobot_home, plan.dest.name)
    if do_register:
        check_registration(entry, plan.dest, replace_registration)
    free = shutil.disk_usage(plan.dest.parent).free
    if plan.total_bytes > free:
        raise RecapError(
            f"not enough disk space for the copy: {plan.total_bytes / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free in {plan.dest.parent}; free space and run again (nothing was changed)"
        )

    check_source_quiet(src)
    clean_stale_copies(plan.dest.parent)
    tmp = plan.dest.parent / f"{COPY_TMP_PREFIX}{plan.dest.name}-{os.getpid()}"
    advance = progress(plan.total_bytes, len(plan.files)) if progress else (lambda n: None)
    hashes: dict[str, str] = {}
    pre_registered = renamed = False
    entry_before = os.readlink(entry) if entry.is_symlink() else None
    cache_dirs_made = [d for d in [entry.parent, entry.parent.parent] if not d.exists()] if do_register else []
    try:
        tmp.mkdir()
        crash_point("copy-mkdir")
        for rel in plan.dirs:
            (tmp / rel).mkdir()
        for rel, real, _size in plan.files:
            hashes[rel] = _copy_one(real, tmp / rel, advance)
            crash_point("copy-file")
        _verify_tree(tmp, plan, hashes)
        crash_point("copy-verified")
        tmp_ds = LeRobotDataset.open(tmp)
        parent = read_lineage(src)
        record = new_lineage(
            src_arg, src, src_ds, plan.iteration,
            parent=str(src.absolute()) if parent is not None else None,
            fingerprint=data_fingerprint(src_ds, hashes),
            adv_col=adv_col,
            copy_stats={"files": len(plan.files), "bytes": plan.total_bytes},
        )
        write_lineage(tmp, record)
        crash_point("copy-lineage")
        for rel in ["", *plan.dirs]:
            fsync_dir(tmp / rel)
        if do_register and not (entry.exists() or entry.is_symlink()):
            # registered before the rename: a crash after the rename leaves a registered, complete
            # copy (not an unregistered one that the next `copy` would skip as iteration N+1); a
            # crash before it leaves a dangling entry to DEST that the next `copy` reuses
            register(entry, plan.dest)
            pre_registered = True
            crash_point("copy-registered")
        os.rename(tmp, plan.dest)  # the commit point: DEST appears complete, or not at all
        renamed = True
        crash_point("copy-renamed")
        fsync_dir(plan.dest.parent)
    except OSError as exc:
        if not renamed and exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and plan.dest.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            _unregister_dangling(entry, plan.dest, pre_registered, cache_dirs_made)
            raise BadInput(f"destination {plan.dest} appeared while copying (another copy into it?); nothing was written to it, choose another DEST") from None
        if renamed:  # only the fsync after the rename failed: take the copy back, an error means nothing changed
            try:
                os.rename(plan.dest, tmp)
            except OSError:
                raise RecapError(os_error_message(exc, f"finishing the copy {plan.dest}").replace(
                    "(nothing was changed)", "(the copy is complete but may not survive a power cut; verify it)")) from None
        shutil.rmtree(tmp, ignore_errors=True)
        _unregister_dangling(entry, plan.dest, pre_registered, cache_dirs_made)
        raise RecapError(os_error_message(exc, f"copying into {plan.dest.parent}")) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _unregister_dangling(entry, plan.dest, pre_registered, cache_dirs_made)
        raise

    registered = None
    if do_register:
        alias = active_alias(lerobot_home, plan.dest.name)
        try:
            if not pre_registered:
                register(entry, plan.dest)
            if alias.is_symlink() or not alias.exists():
                register(alias, plan.dest)
        except OSError as exc:
            # registration failed after the rename: take the copy back, so that an error means nothing changed
            message = os_error_message(exc, f"registering {plan.dest.name} in {lerobot_home / 'local'}")
            try:
                os.rename(plan.dest, tmp)
                shutil.rmtree(tmp, ignore_errors=True)
                if entry_before is None and entry.is_symlink() and os.readlink(entry) == os.path.abspath(plan.dest):
                    entry.unlink()
                _remove_empty(cache_dirs_made)
            except OSError:
                message = message.replace("(nothing was changed)", f"(the copy {plan.dest} is complete but not fully registered; register it by hand or delete it)")
            raise RecapError(message) from None
        registered = entry
    dest_ds = LeRobotDataset.open(plan.dest)
    src_counts = label_counts(src_ds, adv_col)
    dest_counts = label_counts(dest_ds, adv_col)
    if src_counts != dest_counts:  # cannot happen after the byte check; kept as a last guard
        raise DatasetError(f"label distribution of the copy differs from the source; delete {plan.dest} and copy again")
    del tmp_ds
    return CopyResult(src, plan.dest, plan.iteration, len(plan.files), plan.total_bytes, registered, src_counts, dest_counts, hashes)


def _unregister_dangling(entry: Path, dest: Path, pre_registered: bool, dirs_made: list[Path]) -> None:
    """Undo a registration made before a copy that then failed (never one made by someone else)."""
    try:
        if pre_registered and entry.is_symlink() and not dest.exists() and os.readlink(entry) == os.path.abspath(dest):
            entry.unlink()
    except OSError:
        pass
    _remove_empty(dirs_made)


def _remove_empty(dirs: list[Path]) -> None:
    """Remove the cache folders this copy created, deepest first, if they are still empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            pass


def check_source_quiet(src: Path) -> None:
    """Refuse to copy a dataset that is being written, or whose last write was interrupted."""
    from recap_label.lock import lock_path, read_holder
    from recap_label.writeback import JOURNAL, stale_staged_files

    root = Path(os.path.realpath(src))
    holder = read_holder(lock_path(root))
    if holder is not None:
        try:
            pid = int(holder.get("pid", -1))
        except (TypeError, ValueError):
            pid = -1
        import socket

        if holder.get("host") != socket.gethostname() or process_alive(pid, holder.get("pid_start")):
            raise BadInput(
                f"source {src} is being written by `recap-label {holder.get('command')}` (pid {pid}); copy it when that has finished"
            )
    if (root / JOURNAL).exists() or stale_staged_files(root):
        raise BadInput(
            f"source {src} holds an interrupted write (a commit journal or staged files); run `recap-label verify {src}` to finish it, then copy"
        )


def _verify_tree(root: Path, plan: CopyPlan, hashes: dict[str, str]) -> None:
    """No symlink anywhere; every file's bytes equal its source's."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                raise RecapError(f"copy verification failed: {p} is a symlink; report this bug")
    for rel, real, size in plan.files:
        target = root / rel
        st = target.stat()
        if st.st_size != size or _hash(target) != hashes[rel]:
            raise RecapError(f"copy verification failed: {rel} differs from its source {real}; check the disk and copy again")
        if os.path.samestat(st, os.stat(real)):
            raise RecapError(f"copy verification failed: {rel} shares an inode with its source; report this bug")


def find_symlinks(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out.append(p)
    return out

