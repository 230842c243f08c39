"""Crash-proof write-back: stage every new file beside its target, then commit with a journal.

Protocol (all-or-nothing across the dataset):
  1. stage: each new file is written to `<dir>/.recap-stage-<run>-<name>` and fsynced;
  2. check: every target is still the file we planned against (size, mtime, inode);
  3. journal: `meta/recap_label/journal.json` (atomic) lists target ← staged pairs;
  4. commit: os.replace each staged file over its target, fsync each folder;
  5. done: the journal is removed.
A crash before 3 leaves only staged files, which `recover()` deletes (undo); a crash after 3
leaves a journal, which `recover()` completes (redo). Each rename is atomic, so every file is
at any instant entirely old or entirely new.

Before the journal, every existing target also gets an undo link `<dir>/.recap-old-<run>-<name>`
(a hard link to the old file). When a rename fails with an error rather than a crash (disk
full, permission denied), the journal is switched to "undo" and the old files are put back
from those links, so the command fails with nothing changed; a crash during that undo is
finished by `recover()` the same way.

Parquet rewrites replace only the label column: the Arrow schema and its metadata (the
`huggingface` key included), the other columns, the row order and the row groups are kept.
A file without the label column gets it appended (string), declared in its `huggingface`
features too; taking it out again restores the schema metadata recorded before.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recap_label.errors import DatasetError, RecapError, UnsafeWriteError, first_line
from recap_label.store.faults import crash_point
from recap_label.store.fsutil import (
    TMP_MARK,
    fsync_dir,
    fsync_file,
    io_error,
    os_error_message,
    take_permissions,
    write_json_atomic,
)
from recap_label.store.paths import JOURNAL

STAGE_MARK = ".recap-stage-"
BACKUP_MARK = ".recap-old-"


def file_signature(path: Path) -> list[int]:
    """What changes when anyone writes the file: size, mtime, inode and ctime (which, unlike
    mtime, no user call can set back, so a same-size in-place write is seen too)."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


@dataclass
class Staged:
    target: Path
    staged: Path
    signature: list[int] | None  # of the target when planned; None for a new file
    backup: Path | None = None  # undo link to the old target, made at commit


@dataclass
class Transaction:
    """A set of files replaced together. Use stage_* then commit(), or abort()."""

    root: Path
    run_id: str
    staged: list[Staged] = field(default_factory=list)
    created_dirs: list[Path] = field(default_factory=list)  # made by staging; removed again by abort()

    def _stage_path(self, target: Path) -> Path:
        return target.with_name(f"{STAGE_MARK}{self.run_id}-{target.name}")

    def _backup_path(self, target: Path) -> Path:
        return target.with_name(f"{BACKUP_MARK}{self.run_id}-{target.name}")

    def _add(self, target: Path, write, planned: list[int] | None = None) -> Path:
        staged = self._stage_path(target)
        try:
            signature = file_signature(target) if target.exists() else None
            if planned is not None and signature != planned:
                self.abort()
                raise UnsafeWriteError(
                    f"{target} was changed by another program after it was read; nothing was written, run again"
                )
            missing = [d for d in [target.parent, *target.parent.parents] if not d.exists()]
            self.created_dirs += [d for d in missing if d not in self.created_dirs]  # before: mkdir may fail half-way
            target.parent.mkdir(parents=True, exist_ok=True)
            write(staged)
            take_permissions(staged, target)  # a rewritten file keeps its mode and owner
            fsync_file(staged)
        except OSError as exc:
            left = self.abort(also=staged)
            if exc.errno is None:  # pyarrow's OSError for undecodable data (a damaged page), not a system error
                raise DatasetError(
                    _left_behind(
                        f"cannot rewrite {target} ({first_line(exc)}); the file is damaged, restore it from the "
                        f"source dataset (nothing was written)",
                        left,
                    )
                ) from None
            raise RecapError(_left_behind(os_error_message(exc, f"writing {target}"), left)) from None
        except pa.ArrowException as exc:
            left = self.abort(also=staged)
            raise DatasetError(
                _left_behind(
                    f"cannot rewrite {target} ({first_line(exc)}); the file is damaged, restore it from the source "
                    f"dataset (nothing was written)",
                    left,
                )
            ) from None
        except BaseException:
            self.abort(also=staged)
            raise
        crash_point("stage")
        self.staged.append(Staged(target, staged, signature))
        return staged

    def stage_bytes(self, target: Path, data: bytes) -> None:
        self._add(target, lambda p: p.write_bytes(data))

    def stage_table(self, target: Path, table: pa.Table) -> None:
        self._add(target, lambda p: pq.write_table(table, p))

    def stage_labels(
        self, target: Path, column: str, values: np.ndarray | list, signature: list[int] | None = None
    ) -> None:
        """Stage a copy of parquet `target` whose `column` holds `values` (one per row).

        `signature`: file_signature(target) taken when the labels were computed from it; a file
        changed since then is refused (else its new rows would get labels computed for the old)."""
        self._add(target, lambda p: rewrite_label_column(target, p, column, values), planned=signature)

    def stage_without_label_column(self, target: Path, column: str, metadata: dict[bytes, bytes] | None) -> None:
        """Stage a copy of parquet `target` without `column`, its schema metadata set back to
        `metadata` (as it was before the column was added)."""
        self._add(target, lambda p: drop_label_column(target, p, column, metadata))

    def abort(self, also: Path | None = None) -> list[Path]:
        """Remove every staged file and undo link (each on its own: one failure does not stop
        the rest); returns the ones that could not be removed."""
        left = []
        for p in [
            *(s.staged for s in self.staged),
            *(s.backup for s in self.staged if s.backup is not None),
            *([also] if also else []),
        ]:
            try:
                p.unlink(missing_ok=True)
            except OSError:
                left.append(p)
        self.staged.clear()
        for d in sorted(self.created_dirs, key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        self.created_dirs.clear()
        return left

    def commit(self) -> None:
        if not self.staged:
            return
        for s in self.staged:
            if s.signature is not None and (not s.target.exists() or file_signature(s.target) != s.signature):
                self.abort()
                raise UnsafeWriteError(
                    f"{s.target} was changed by another program while labels were being prepared; nothing was "
                    f"written, run again"
                )
        journal = self.root / JOURNAL
        try:
            for s in self.staged:
                if s.signature is not None:
                    s.backup = _link_backup(s.target, self._backup_path(s.target))
            crash_point("backup")
            for d in {s.staged.parent for s in self.staged}:
                fsync_dir(d)
            entries = [_entry(self.root, s) for s in self.staged]
            write_json_atomic(journal, {"run": self.run_id, "mode": "redo", "entries": entries})
        except OSError as exc:
            self.abort()
            try:
                journal.unlink(missing_ok=True)  # written, but its folder's fsync failed: nothing was applied
            except OSError:
                pass
            raise io_error(exc, "writing the commit journal") from None
        crash_point("journal")
        try:
            _apply(self.root, entries)
        except OSError as exc:
            # an error, not a crash: put every old file back (journal switched to undo first)
            what = os_error_message(exc, "committing the new files", state=None)
            if not all(e.get("backup") or e.get("new") for e in entries):
                # no undo link for some file (no hard links here): only forward is safe, the journal stays
                raise RecapError(
                    f"{what}; the commit journal was kept: once the cause is fixed, run the command again or "
                    f"`recap-label verify --repair {self.root}`, which completes the commit"
                ) from None
            try:
                write_json_atomic(journal, {"run": self.run_id, "mode": "undo", "entries": entries})
                _undo(self.root, entries)
                _finish(self.root)
            except OSError:
                raise RecapError(
                    f"{what}; the commit could not be undone either: once the cause is fixed, run `recap-label "
                    f"verify --repair {self.root}`, which finishes it (every file is entirely old or new)"
                ) from None
            self.staged.clear()
            self.abort()
            raise RecapError(f"{what}; the files already replaced were put back (nothing was changed)") from None
        _finish(self.root)
        self.staged.clear()
        self.created_dirs.clear()


def _left_behind(message: str, left: list[Path]) -> str:
    """A failure message that says what is true: the data is unchanged, but staged files remain."""
    if not left:
        return message
    names = ", ".join(str(p) for p in left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
    return message.replace("(nothing was changed)", "").replace("(nothing was written)", "").rstrip() + (
        f" (the dataset's files are unchanged; staged file(s) could not be removed: {names}; the next run removes them)"
    )


def _link_backup(target: Path, backup: Path) -> Path | None:
    """A hard link to the old target (the undo copy); None where the file system has no hard links."""
    backup.unlink(missing_ok=True)
    try:
        os.link(target, backup)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            return None  # undo not possible for this file: a failed rename is then finished by the next run
        raise
    return backup


def _entry(root: Path, s: Staged) -> dict:
    e = {"target": _rel(root, s.target), "staged": _rel(root, s.staged)}
    if s.backup is not None:
        e["backup"] = _rel(root, s.backup)
    elif s.signature is None:
        e["new"] = True
    return e


def _finish(root: Path) -> None:
    """After the last rename (or undo): drop the journal, then the undo links. Never fails: the commit is done."""
    journal = root / JOURNAL
    try:
        journal.unlink(missing_ok=True)
        fsync_dir(journal.parent)
    except OSError:
        pass  # a leftover journal is finished (as a no-op: nothing staged is left) by the next run
    crash_point("done")
    try:
        leftovers = stale_staged_files(root)
    except OSError:
        return
    for p in leftovers:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _apply(root: Path, entries: list[dict]) -> None:
    for e in entries:
        staged, target = root / e["staged"], root / e["target"]
        if staged.exists():
            os.replace(staged, target)
            fsync_dir(target.parent)
            crash_point("rename")


def _undo(root: Path, entries: list[dict]) -> None:
    """Put the old files back from their undo links; remove new files; drop staged leftovers."""
    for e in reversed(entries):
        staged, target = root / e["staged"], root / e["target"]
        if e.get("backup"):
            backup = root / e["backup"]
            if backup.exists():
                os.replace(backup, target)
                fsync_dir(target.parent)
        elif e.get("new"):
            if not staged.exists():  # it was renamed into place: remove it again
                target.unlink(missing_ok=True)
                fsync_dir(target.parent)
        staged.unlink(missing_ok=True)


def pending_commit(root: Path) -> dict | None:
    """The journal of an interrupted commit, validated (see `check_journal`), or None."""
    path = root / JOURNAL
    if not path.exists():
        return None
    try:
        journal = json.loads(path.read_text())
    except (OSError, ValueError):
        raise RecapError(
            f"commit journal {path} is unreadable; restore the dataset from its source or a backup"
        ) from None
    check_journal(root, journal)
    return journal


_RUN_RE = re.compile(r"^run-\d{4,}$")
_STATE_TARGETS = re.compile(
    r"^meta/recap_label/(lineage\.json|values\.parquet|runs/run-\d{4,}/(prior_labels\.parquet|info\.json\.prior))$"
)


def check_journal(root: Path, journal) -> None:
    """Refuse a journal this tool did not write, before anything is touched: every path relative,
    normalised and inside the dataset (symlinks resolved); staged and backup names of the shapes
    staging makes, beside their target; targets of the kinds a commit rewrites."""
    where = root / JOURNAL

    def bad(what: str) -> DatasetError:
        return DatasetError(
            f"commit journal {where} is not one recap-label wrote ({what}); nothing was changed — restore the "
            f"dataset from its source, "
            "or remove the journal if you are sure no recap-label commit was interrupted"
        )

    if not isinstance(journal, dict):
        raise bad("not an object")
    run = journal.get("run")
    if not isinstance(run, str) or not _RUN_RE.match(run):
        raise bad(f"'run' is {run!r}, not a run id")
    if journal.get("mode") not in ("redo", "undo"):
        raise bad(f"'mode' is {journal.get('mode')!r}")
    entries = journal.get("entries")
    if not isinstance(entries, list):
        raise bad("'entries' is not a list")
    real_root = os.path.realpath(root)
    for i, e in enumerate(entries, 1):
        if not isinstance(e, dict) or not isinstance(e.get("target"), str) or not isinstance(e.get("staged"), str):
            raise bad(f"entry {i} lacks a 'target' or 'staged' path")
        if not isinstance(e.get("backup", ""), str) or not isinstance(e.get("new", False), bool):
            raise bad(f"entry {i} has a malformed 'backup' or 'new'")
        target = _checked_path(e["target"], real_root, root, bad, i)
        if not (
            _STATE_TARGETS.match(target.as_posix())
            or target.as_posix() == "meta/info.json"
            or (target.parts[0] == "data" and target.suffix == ".parquet")
        ):
            raise bad(f"entry {i} targets {target}, which a commit never rewrites")
        for key, mark in (("staged", STAGE_MARK), ("backup", BACKUP_MARK)):
            if key in e:
                p = _checked_path(e[key], real_root, root, bad, i)
                if p != target.with_name(f"{mark}{run}-{target.name}"):
                    raise bad(f"entry {i} {key} {p} is not the {key} name of {target}")


def _checked_path(rel: str, real_root: str, root: Path, bad, i: int) -> Path:
    p = Path(rel)
    if not rel or p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")) or "\\" in rel:
        raise bad(f"entry {i} path {rel!r} is not a plain relative path")
    real = os.path.realpath(root / p.parent)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise bad(f"entry {i} path {rel!r} leads outside the dataset")
    return p


def stale_staged_files(root: Path) -> list[Path]:
    out = []
    for top in ("data", "meta"):
        for dirpath, _dirs, files in os.walk(root / top):
            out += [Path(dirpath) / f for f in files if f.startswith((STAGE_MARK, TMP_MARK, BACKUP_MARK))]
    return out


def recover_commit(root: Path) -> tuple[str | None, dict | None]:
    """Finish (redo) an interrupted commit, or discard (undo) an interrupted staging.

    Call with the dataset lock held. Returns (a note describing what was done or None,
    the journal of a commit that was completed or None).
    """
    journal = pending_commit(root)
    completed = None
    try:
        if journal is not None:
            entries = journal.get("entries", [])
            if journal.get("mode") == "undo":
                _undo(root, entries)
                note = (
                    f"undid an interrupted commit of {journal.get('run')} that had failed ({len(entries)} files "
                    f"put back)"
                )
            else:
                _apply(root, entries)
                completed = journal
                note = f"completed an interrupted commit of {journal.get('run')} ({len(entries)} files)"
            (root / JOURNAL).unlink()
            fsync_dir((root / JOURNAL).parent)
        else:
            note = None
        stale = stale_staged_files(root)
        for p in stale:
            p.unlink(missing_ok=True)
    except OSError as exc:
        raise RecapError(
            os_error_message(exc, f"finishing an interrupted commit in {root}", state=None) + "; run again once fixed"
        ) from None
    if stale and note is None:
        note = f"discarded {len(stale)} staged file(s) of an interrupted run; the dataset was not changed by it"
    return note, completed


def recover(root: Path) -> str | None:
    """recover_commit() without the journal: the note only."""
    return recover_commit(root)[0]


# prior_labels.parquet of a run that created the label column: {file: its schema metadata before}
CREATED_COLUMN_KEY = b"recap_label.created_label_column"


def encode_schema_metadata(metadata: dict[bytes, bytes] | None) -> str:
    """Schema metadata as JSON text, byte-exact (base64), to be put back by a rollback."""
    import base64

    return json.dumps({base64.b64encode(k).decode(): base64.b64encode(v).decode() for k, v in (metadata or {}).items()})


def decode_schema_metadata(text: str) -> dict[bytes, bytes]:
    import base64

    return {base64.b64decode(k): base64.b64decode(v) for k, v in json.loads(text).items()}


def schema_with_label_column(schema: pa.Schema, column: str) -> pa.Schema:
    """`schema` with a string `column` appended, declared in the `huggingface` features (as the
    `datasets` writer declares a string feature) when the file has that key."""
    out = schema.append(pa.field(column, pa.string()))
    meta = dict(schema.metadata or {})
    hf = meta.get(b"huggingface")
    if hf is not None:
        try:
            doc = json.loads(hf)
            features = doc["info"]["features"]
        except (ValueError, KeyError, TypeError):
            features = None
        if isinstance(features, dict):
            features[column] = {"dtype": "string", "_type": "Value"}
            meta[b"huggingface"] = json.dumps(doc).encode()
    return out.with_metadata(meta) if meta else out


def _compression(meta) -> str:
    compression = meta.row_group(0).column(0).compression.lower() if meta.num_row_groups else "snappy"
    return "none" if compression == "uncompressed" else compression


def rewrite_label_column(src: Path, dst: Path, column: str, values) -> None:
    """Write `dst` = `src` with `column` replaced, keeping schema, metadata and row groups; a
    file without `column` gets it appended (schema_with_label_column)."""
    pf = pq.ParquetFile(src)
    schema = pf.schema_arrow
    idx = schema.get_field_index(column)
    if idx < 0:
        schema = schema_with_label_column(schema, column)
        idx = schema.get_field_index(column)
    fld = schema.field(idx)
    meta = pf.metadata
    if meta.num_rows != len(values):
        raise RecapError(f"internal error: {len(values)} labels for {meta.num_rows} rows of {src}; nothing was written")
    compression = _compression(meta)
    offset = 0
    with pq.ParquetWriter(dst, schema, compression=compression) as writer:
        for i in range(pf.num_row_groups):
            table = pf.read_row_group(i)
            n = table.num_rows
            new = pa.array(values[offset : offset + n], type=fld.type)
            table = table.set_column(idx, fld, new) if idx < table.num_columns else table.append_column(fld, new)
            writer.write_table(table, row_group_size=max(n, 1))
            offset += n
    check = pq.ParquetFile(dst)
    if not check.schema_arrow.equals(schema, check_metadata=True) or check.metadata.num_rows != meta.num_rows:
        raise RecapError(f"internal error: the rewritten {src.name} does not keep its schema; nothing was written")


def drop_label_column(src: Path, dst: Path, column: str, metadata: dict[bytes, bytes] | None) -> None:
    """Write `dst` = `src` without `column`, with schema metadata `metadata`; row groups kept."""
    pf = pq.ParquetFile(src)
    idx = pf.schema_arrow.get_field_index(column)
    if idx < 0:
        raise RecapError(f"internal error: {src} has no column {column!r} to remove; nothing was written")
    schema = (
        pf.schema_arrow.remove(idx).with_metadata(metadata)
        if metadata
        else pf.schema_arrow.remove(idx).remove_metadata()
    )
    with pq.ParquetWriter(dst, schema, compression=_compression(pf.metadata)) as writer:
        for i in range(pf.num_row_groups):
            table = pf.read_row_group(i).remove_column(idx)
            writer.write_table(table, row_group_size=max(table.num_rows, 1))
    check = pq.ParquetFile(dst)
    if not check.schema_arrow.equals(schema, check_metadata=True) or check.metadata.num_rows != pf.metadata.num_rows:
        raise RecapError(f"internal error: {src.name} without {column!r} does not keep its schema; nothing was written")


def check_writable_target(root: Path, path: Path) -> None:
    """Refuse symlinked data files and files sharing an inode (the Stage 1 write-through bug)."""
    if path.is_symlink():
        raise UnsafeWriteError(
            f"{path} is a symlink to {os.readlink(path)}; writing would change another dataset — make a standalone "
            f"copy with `recap-label copy` first"
        )
    for parent in path.relative_to(root).parents:
        if parent != Path(".") and (root / parent).is_symlink():
            raise UnsafeWriteError(
                f"{root / parent} is a symlinked folder; writing would change another dataset — make a standalone "
                f"copy with `recap-label copy` first"
            )
    if path.stat().st_nlink > 1:
        raise UnsafeWriteError(
            f"{path} shares its inode with another file (hard link); writing would change another dataset — make a "
            f"standalone copy with `recap-label copy` first"
        )
