"""`copy`: the safe replacement for `cp -rL` + `ln -sfn`.

Every symlink in the source (file or folder) is materialized into a real file, the copy
is built in a hidden temporary sibling folder, verified byte for byte, and renamed into
place only when complete; then it is registered in the LeRobot cache as `local/<name>`.
The source is only ever read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from recap_label.errors import BadInput, Interrupted, RecapError
from recap_label.lerobot.columns import label_column_summary, label_counts
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.lerobot.fingerprint import copy_fingerprint
from recap_label.lerobot.line import line_of, members, next_copy
from recap_label.lerobot.registry import active_alias, cache_entry, check_registration, points_to, register
from recap_label.store.faults import crash_point
from recap_label.store.fsutil import (
    UndoStack,
    find_symlinks,
    fsync_dir,
    os_error_message,
    sha256_file,
    umask,
    write_json_atomic,
)
from recap_label.store.lineage import (
    LABEL_SUFFIX,
    Lineage,
    SourceRecord,
    read_lineage,
    write_lineage,
)
from recap_label.store.lock import live_holder, process_alive
from recap_label.store import completion
from recap_label.store.paths import COPY_PENDING, STATE_DIR
from recap_label.store.writeback import pending_commit, stale_staged_files

COPY_TMP_PREFIX = ".recap-copy-"
PENDING_MARK = COPY_PENDING
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
    finished_interrupted: bool = False  # this run only finished (or reported) an interrupted copy
    notes: list[str] = field(default_factory=list)
    on_reported: Callable[[], None] | None = field(default=None, repr=False, compare=False)  # store.completion

    def to_json(self) -> dict:
        return {
            "source": str(self.src),
            "dest": str(self.dest),
            "iteration": self.iteration,
            "files": self.files,
            "bytes": self.bytes,
            "registered": None if self.registered is None else str(self.registered),
            "labels": {"source": self.source_counts, "copy": self.copy_counts},
            "notes": self.notes,
        }


def _inside(a: Path, b: Path) -> bool:
    """True when a is b or lies inside b (after resolving symlinks)."""
    a, b = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    return a == b or b in a.parents


def plan_copy(src: Path, dest: Path | None, lerobot_home: Path) -> CopyPlan:
    """Walk SRC following symlinks; refuse loops, dangling links and overlapping paths. The
    iteration number comes from SRC's lineage and the line's copies, never from DEST's name."""
    if dest is None:
        dest, iteration = default_destination(src, lerobot_home)
    else:
        dest = Path(dest).expanduser()
        iteration = next_copy(lerobot_home, src, read_lineage(src), named=True)[1]
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
                raise BadInput(
                    f"dangling symlink {shown} -> {os.readlink(entry.path)} in the source; fix or remove the link first"
                )
            real = os.path.realpath(entry.path)
            st = os.stat(real)
            if stat.S_ISDIR(st.st_mode):
                if real in stack:
                    raise BadInput(
                        f"symlink loop at {shown} (points back to {real}); remove the looping link from the source"
                    )
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
        os.fchmod(fout.fileno(), copied_mode(os.fstat(fin.fileno()).st_mode))
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def copied_mode(src_mode: int, folder: bool = False) -> int:
    """The mode `cp -rL` gives a copy (the source's permission bits less the umask), plus the
    owner's write (and, for folders, search) bits: the copy is made to be labeled."""
    return (stat.S_IMODE(src_mode) & 0o777 & ~umask()) | (stat.S_IRWXU if folder else stat.S_IWUSR)


def default_destination(src: Path, lerobot_home: Path) -> tuple[Path, int]:
    """Next free iteration folder beside SRC (`<original>_vlm_label_v<n>`), and its iteration number."""
    name, n = next_copy(lerobot_home, src, read_lineage(src), named=False)
    return src.parent / name, n


def clean_stale_copies(parent: Path) -> None:
    """Remove temporary copy folders left by killed `copy` processes."""
    for entry in parent.glob(f"{COPY_TMP_PREFIX}*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def copy_dataset(
    src_arg: str,
    src: Path,
    dest: Path | None,
    *,
    adv_col: str,
    lerobot_home: Path,
    do_register: bool = True,
    replace_registration: bool = False,
    from_original: bool = False,
    progress: Callable[[int, int], Callable[[int], None]] | None = None,
) -> CopyResult:
    try:
        return _copy_dataset(
            src_arg,
            src,
            dest,
            adv_col=adv_col,
            lerobot_home=lerobot_home,
            do_register=do_register,
            replace_registration=replace_registration,
            from_original=from_original,
            progress=progress,
        )
    except KeyboardInterrupt:  # before the copy began (after it, _copy_dataset says what is done)
        raise Interrupted("interrupted before anything was written; run the same command to copy") from None


def _copy_dataset(
    src_arg, src, dest, *, adv_col, lerobot_home, do_register, replace_registration, from_original, progress
) -> CopyResult:
    src = real_source(src, lerobot_home)
    src_ds = DatasetFiles.open(src)
    src_ds.read_columns(["episode_index"])  # every data file readable and consistent with meta/
    unfinished = find_unfinished_copy(src, dest)
    if unfinished is not None:
        # the same copy was killed after its rename, while registering: finish that one
        return _finish_copy(src_ds, unfinished, adv_col=adv_col, lerobot_home=lerobot_home, do_register=do_register)
    notes = []
    if not from_original:
        refuse_recopy(src, lerobot_home)
    elif read_lineage(src) is None and existing_iterations(src, lerobot_home):
        notes.append(
            f"started a new line from the original {src.name}: the copy follows no iteration (parent none) and holds "
            f"the original's labels"
        )
    plan = plan_copy(src, dest, lerobot_home)
    entry = cache_entry(lerobot_home, plan.dest.name)
    if do_register:
        check_registration(entry, plan.dest, replace_registration)
    free = shutil.disk_usage(plan.dest.parent).free
    if plan.total_bytes > free:
        raise RecapError(
            f"not enough disk space for the copy: {plan.total_bytes / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free "
            f"in {plan.dest.parent}; free space and run again (nothing was changed)"
        )
    check_source_quiet(src)
    clean_stale_copies(plan.dest.parent)
    tmp = plan.dest.parent / f"{COPY_TMP_PREFIX}{plan.dest.name}-{os.getpid()}"
    advance = progress(plan.total_bytes, len(plan.files)) if progress else (lambda n: None)
    undo = UndoStack()  # what takes every step back, newest first, should a later one fail
    step = "copy"  # then "finish" (after the rename), then "register"
    try:
        src_counts = _build_copy(plan, tmp, src_arg, src_ds, adv_col, advance, undo)
        if do_register and not (entry.exists() or entry.is_symlink()):
            # registered before the rename: a crash after the rename leaves a registered, complete
            # copy (not an unregistered one that the next `copy` would skip as iteration N+1); a
            # crash before it leaves a dangling entry to DEST that the next `copy` reuses
            undo.push(_unregister_step(entry, plan.dest, only_dangling=True))
            register(entry, plan.dest)
            crash_point("copy-registered")
        try:
            os.rename(tmp, plan.dest)  # the commit point: DEST appears complete, or not at all
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and plan.dest.exists():
                undo.unwind()
                raise BadInput(
                    f"destination {plan.dest} appeared while copying (another copy into it?); nothing was written to "
                    f"it, choose another DEST"
                ) from None
            raise
        undo.push(lambda: os.rename(plan.dest, tmp))  # an error from here on takes the copy back
        crash_point("copy-renamed")
        step = "finish"
        fsync_dir(plan.dest.parent)
        registered = None
        if do_register:
            step = "register"
            if not points_to(entry, plan.dest):
                undo.push(_unregister_step(entry, plan.dest, only_dangling=False))
            registered = _register_copy(plan.dest, lerobot_home)
        # done; the pending mark stays until the report is printed (store.completion): a retry
        # after a kill or Ctrl-C while reporting reports this copy instead of refusing or copying again
        completion.committed(f"copied {src} to {plan.dest}")
    except OSError as exc:
        action = (
            f"registering {plan.dest.name} in {lerobot_home / 'local'}"
            if step == "register"
            else f"copying into {plan.dest.parent}"
        )
        message = os_error_message(exc, action)
        if not undo.unwind():
            left = {
                "finish": f"(the copy {plan.dest} is complete but may not survive a power cut; verify it)",
                "register": f"(the copy {plan.dest} is complete but not fully registered; run `recap-label register "
                f"{plan.dest}` or delete it)",
            }
            message = message.replace(
                "(nothing was changed)", left.get(step, f"(a temporary folder may be left in {plan.dest.parent})")
            )
        raise RecapError(message) from None
    except KeyboardInterrupt:
        if undo.unwind():
            raise Interrupted(
                f"interrupted; the copy was taken back, nothing is left of {plan.dest} (the source was only read); "
                f"run the same command to copy again"
            ) from None
        raise Interrupted(
            f"interrupted; the copy could not be fully taken back: the next `recap-label copy` removes a temporary "
            f"folder left in {plan.dest.parent}, or finishes {plan.dest}"
        ) from None
    except BaseException:
        undo.unwind()
        raise
    # the copy's files were compared with the source's bytes (sha256 of each): its label counts are the source's
    try:
        return CopyResult(
            src,
            plan.dest,
            plan.iteration,
            len(plan.files),
            plan.total_bytes,
            registered,
            src_counts,
            src_counts,
            notes=notes,
            on_reported=lambda: _drop_pending_mark(plan.dest),
        )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted after the copy was finished: {plan.dest} is complete"
            f"{' and registered' if do_register else ''}; run the same command again to see its report (it copies "
            f"nothing again)"
        ) from None


def _build_copy(
    plan: CopyPlan, tmp: Path, src_arg: str, src_ds: DatasetFiles, adv_col: str, advance, undo: UndoStack
) -> dict[str, int] | None:
    """Copy, verify and give a lineage record to the hidden folder `tmp`; the source's label counts."""
    tmp.mkdir()
    undo.push(lambda: shutil.rmtree(tmp, ignore_errors=True))
    crash_point("copy-mkdir")
    for rel in plan.dirs:
        (tmp / rel).mkdir()
    hashes: dict[str, str] = {}
    for rel, real, _size in plan.files:
        hashes[rel] = _copy_one(real, tmp / rel, advance)
        crash_point("copy-file")
    _verify_tree(tmp, plan, hashes)
    crash_point("copy-verified")
    parent = read_lineage(plan.src)
    label_digest, label_counts_ = label_column_summary(src_ds, adv_col)
    source = SourceRecord(
        given=src_arg,
        path=str(plan.src.absolute()),
        realpath=os.path.realpath(plan.src),
        codebase_version=src_ds.version,
        fingerprint=copy_fingerprint([(rel, real) for rel, real, _size in plan.files], hashes),
        label_column=adv_col,
        label_column_sha256=label_digest,
    )
    record = Lineage.new_copy(
        plan.iteration,
        str(plan.src.absolute()) if parent is not None else None,
        source,
        {"files": len(plan.files), "bytes": plan.total_bytes},
        line_of(plan.src, parent).record(),
    )
    write_lineage(tmp, record)
    # until registration is done: lets a retry of the same copy recognise and finish this one
    write_json_atomic(tmp / PENDING_MARK, {"source_realpath": os.path.realpath(plan.src), "pid": os.getpid()})
    crash_point("copy-lineage")
    for rel in ["", *plan.dirs]:
        os.chmod(tmp / rel, copied_mode(os.stat(plan.src / rel).st_mode, folder=True))
        fsync_dir(tmp / rel)
    return label_counts_


def _register_copy(dest: Path, lerobot_home: Path) -> Path:
    """local/<dest-name> → DEST. The `_active` alias is not touched: a new copy is not labeled
    yet, and the alias only ever points at a labeled iteration (lerobot.active)."""
    entry = cache_entry(lerobot_home, dest.name)
    if not points_to(entry, dest):
        register(entry, dest)
    return entry


def real_source(src: Path, lerobot_home: Path) -> Path:
    """A `local/<name>` cache entry stands for the folder it links to: the copy is made from,
    and beside, that folder (never beside the link, inside the LeRobot cache)."""
    local = os.path.realpath(lerobot_home / "local")
    if src.is_symlink() and os.path.realpath(src.parent) == local:
        return Path(os.path.realpath(src))
    return src


def existing_iterations(src: Path, lerobot_home: Path) -> list[Path]:
    """The iteration copies of the original SRC, wherever they are and however they are named
    (their lineage records say they descend from SRC)."""
    return [m.path for m in members(lerobot_home, line_of(src, None), near=(src,))]


def refuse_recopy(src: Path, lerobot_home: Path) -> None:
    """Copying an original again starts a new line with no parent and the original's labels;
    the loop continues from the active (or latest live) iteration instead. The hint names the
    copy that command makes, computed as that command will compute it."""
    if read_lineage(src) is not None:
        return
    line = line_of(src, None)
    found = members(lerobot_home, line, near=(src,))
    if not found:
        return
    alias = active_alias(lerobot_home, line)
    names = ", ".join(m.path.name for m in found)
    live = [m for m in found if not m.record.retired]
    if alias.is_symlink() and alias.exists():
        follow, what = Path(os.path.realpath(alias)), f"local/{alias.name}"
    elif live:
        follow = live[-1].path
        what = str(follow)
    else:
        raise BadInput(
            f"{src.name} already has iteration copies ({names}), all retired; `recap-label unretire "
            f"{found[-1].path}` brings the latest back, or pass --from-original to start over from the original, "
            f"unlabeled"
        )
    nxt, _ = default_destination(follow, lerobot_home)
    raise BadInput(
        f"{src.name} already has iteration copies ({names}); the next iteration follows {follow.name}: run "
        f"`recap-label copy {what}` (makes {nxt.name}); to start over from the original, unlabeled, pass "
        f"--from-original"
    )


def _drop_pending_mark(dest: Path) -> None:
    """The copy is complete, registered and reported: drop its pending mark. A failure here changes
    nothing that matters (a mark left behind only makes a retry of this copy report it again), so
    it is not one."""
    try:
        (dest / PENDING_MARK).unlink(missing_ok=True)
        fsync_dir((dest / PENDING_MARK).parent)
    except OSError:
        pass


def find_unfinished_copy(src: Path, dest: Path | None) -> Path | None:
    """A copy of SRC that was renamed into place but not registered (its copy was killed):
    DEST when given, else an iteration folder beside SRC, that carries the pending mark for SRC."""
    real = os.path.realpath(src)
    if dest is not None:
        candidates = [Path(dest).expanduser()]
    else:
        base = line_of(src).name
        candidates = sorted(src.parent.glob(f"{base}{LABEL_SUFFIX}*"))
    for folder in candidates:
        mark = folder / PENDING_MARK
        try:
            info = json.loads(mark.read_text())
        except (OSError, ValueError):
            continue
        if (
            isinstance(info, dict)
            and info.get("source_realpath") == real
            and not process_alive(int(info.get("pid", -1) or -1))
        ):
            return folder
    return None


def _finish_copy(
    src_ds: DatasetFiles, dest: Path, *, adv_col: str, lerobot_home: Path, do_register: bool
) -> CopyResult:
    record = read_lineage(dest)
    try:
        registered = _register_copy(dest, lerobot_home) if do_register else None
        completion.committed(f"copied {src_ds.root} to {dest}")
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while registering; the copy {dest} is complete: run the same copy command again to finish "
            f"its registration"
        ) from None
    except OSError as exc:
        raise RecapError(
            os_error_message(
                exc,
                f"registering {dest.name} in {lerobot_home / 'local'}",
                state=f"the copy {dest} is complete; run the same copy command again to finish its registration",
            )
        ) from None
    counts = label_counts(src_ds, adv_col)
    stats = record.copy if record else {}
    return CopyResult(
        src_ds.root,
        dest,
        record.iteration if record else 1,
        int(stats.get("files", 0)),
        int(stats.get("bytes", 0)),
        registered,
        counts,
        label_counts(DatasetFiles.open(dest), adv_col),
        finished_interrupted=True,
        notes=[
            f"finished an interrupted copy of {src_ds.root}: {dest} was complete (nothing was copied again); its "
            f"registration is done"
        ],
        on_reported=lambda: _drop_pending_mark(dest),
    )


def _unregister_step(entry: Path, dest: Path, *, only_dangling: bool):
    """Undo a registration this copy made (never one made by someone else) and the cache
    folders it created; `only_dangling`: only while DEST does not exist."""
    made = [d for d in [entry.parent, entry.parent.parent] if not d.exists()]

    def step() -> None:
        if entry.is_symlink() and os.readlink(entry) == os.path.abspath(dest) and not (only_dangling and dest.exists()):
            entry.unlink()
        for d in made:  # deepest first, if still empty
            try:
                d.rmdir()
            except OSError:
                pass

    return step


def check_source_quiet(src: Path) -> None:
    """Refuse to copy a dataset that is being written, or whose last write was interrupted."""
    root = Path(os.path.realpath(src))
    holder = live_holder(root)
    if holder is not None:
        raise BadInput(
            f"source {src} is being written by `recap-label {holder.get('command')}` (pid {holder.get('pid')}); copy "
            f"it when that has finished"
        )
    if pending_commit(root) is not None or stale_staged_files(root):
        raise BadInput(
            f"source {src} holds an interrupted write (a commit journal or staged files); run `recap-label verify "
            f"--repair {src}` to finish it, then copy"
        )


def _verify_tree(root: Path, plan: CopyPlan, hashes: dict[str, str]) -> None:
    """No symlink anywhere; every file's bytes equal its source's."""
    for p in find_symlinks(root)[:1]:
        raise RecapError(f"copy verification failed: {p} is a symlink; report this bug")
    for rel, real, size in plan.files:
        target = root / rel
        st = target.stat()
        if st.st_size != size or sha256_file(target) != hashes[rel]:
            raise RecapError(
                f"copy verification failed: {rel} differs from its source {real}; check the disk and copy again"
            )
        if os.path.samestat(st, os.stat(real)):
            raise RecapError(f"copy verification failed: {rel} shares an inode with its source; report this bug")
