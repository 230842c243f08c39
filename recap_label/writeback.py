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

Parquet rewrites replace only the label column: the Arrow schema and its metadata (the
`huggingface` key included), the other columns, the row order and the row groups are kept.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recap_label.errors import RecapError, UnsafeWriteError
from recap_label.faults import crash_point
from recap_label.fsutil import TMP_MARK, fsync_dir, fsync_file, io_error, write_json_atomic
from recap_label.lineage import STATE_DIR

JOURNAL = STATE_DIR / "journal.json"
STAGE_MARK = ".recap-stage-"


def file_signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


@dataclass
class Staged:
    target: Path
    staged: Path
    signature: list[int] | None  # of the target when planned; None for a new file


@dataclass
class Transaction:
    """A set of files replaced together. Use stage_* then commit(), or abort()."""

    root: Path
    run_id: str
    staged: list[Staged] = field(default_factory=list)

    def _stage_path(self, target: Path) -> Path:
        return target.with_name(f"{STAGE_MARK}{self.run_id}-{target.name}")

    def _add(self, target: Path, write) -> Path:
        signature = file_signature(target) if target.exists() else None
        staged = self._stage_path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            write(staged)
            fsync_file(staged)
        except OSError as exc:
            staged.unlink(missing_ok=True)
            self.abort()
            raise io_error(exc, f"writing {target}") from None
        except BaseException:
            staged.unlink(missing_ok=True)
            self.abort()
            raise
        crash_point("stage")
        self.staged.append(Staged(target, staged, signature))
        return staged

    def stage_bytes(self, target: Path, data: bytes) -> None:
        self._add(target, lambda p: p.write_bytes(data))

    def stage_json(self, target: Path, obj, indent: int = 2) -> None:
        self.stage_bytes(target, (json.dumps(obj, indent=indent, ensure_ascii=False) + "\n").encode())

    def stage_table(self, target: Path, table: pa.Table) -> None:
        self._add(target, lambda p: pq.write_table(table, p))

    def stage_labels(self, target: Path, column: str, values: np.ndarray | list) -> None:
        """Stage a copy of parquet `target` whose `column` holds `values` (one per row)."""
        self._add(target, lambda p: rewrite_label_column(target, p, column, values))

    def abort(self) -> None:
        for s in self.staged:
            s.staged.unlink(missing_ok=True)
        self.staged.clear()

    def commit(self) -> None:
        if not self.staged:
            return
        for s in self.staged:
            if s.signature is not None and (not s.target.exists() or file_signature(s.target) != s.signature):
                self.abort()
                raise UnsafeWriteError(
                    f"{s.target} was changed by another program while labels were being prepared; nothing was written, run again"
                )
        entries = [{"target": _rel(self.root, s.target), "staged": _rel(self.root, s.staged)} for s in self.staged]
        journal = self.root / JOURNAL
        try:
            for d in {s.staged.parent for s in self.staged}:
                fsync_dir(d)
            write_json_atomic(journal, {"run": self.run_id, "entries": entries})
        except OSError as exc:
            self.abort()
            raise io_error(exc, "writing the commit journal") from None
        crash_point("journal")
        _apply(self.root, entries)
        journal.unlink()
        fsync_dir(journal.parent)
        crash_point("done")
        self.staged.clear()


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _apply(root: Path, entries: list[dict]) -> None:
    for e in entries:
        staged, target = root / e["staged"], root / e["target"]
        if staged.exists():
            os.replace(staged, target)
            fsync_dir(target.parent)
            crash_point("rename")


def pending_commit(root: Path) -> dict | None:
    path = root / JOURNAL
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise RecapError(f"commit journal {path} is unreadable; restore the dataset from its source or a backup") from None


def stale_staged_files(root: Path) -> list[Path]:
    out = []
    for top in ("data", "meta"):
        for dirpath, _dirs, files in os.walk(root / top):
            out += [Path(dirpath) / f for f in files if f.startswith(STAGE_MARK) or f.startswith(TMP_MARK)]
    return out


def recover(root: Path) -> str | None:
    """Finish (redo) an interrupted commit, or discard (undo) an interrupted staging.

    Call with the dataset lock held. Returns a note describing what was done, or None.
    """
    journal = pending_commit(root)
    if journal is not None:
        _apply(root, journal["entries"])
        (root / JOURNAL).unlink()
        fsync_dir((root / JOURNAL).parent)
        note = f"completed an interrupted commit of {journal['run']} ({len(journal['entries'])} files)"
    else:
        note = None
    stale = stale_staged_files(root)
    for p in stale:
        p.unlink(missing_ok=True)
    if stale and note is None:
        note = f"discarded {len(stale)} staged file(s) of an interrupted run; the dataset was not changed by it"
    return note


def rewrite_label_column(src: Path, dst: Path, column: str, values) -> None:
    """Write `dst` = `src` with `column` replaced, keeping schema, metadata and row groups."""
    pf = pq.ParquetFile(src)
    schema = pf.schema_arrow
    idx = schema.get_field_index(column)
    fld = schema.field(idx)
    meta = pf.metadata
    if meta.num_rows != len(values):
        raise RecapError(f"internal error: {len(values)} labels for {meta.num_rows} rows of {src}; nothing was written")
    compression = meta.row_group(0).column(0).compression.lower() if meta.num_row_groups else "snappy"
    if compression == "uncompressed":
        compression = "none"
    offset = 0
    with pq.ParquetWriter(dst, schema, compression=compression) as writer:
        for i in range(pf.num_row_groups):
            table = pf.read_row_group(i)
            n = table.num_rows
            new = pa.array(list(values[offset : offset + n]), type=fld.type)
            writer.write_table(table.set_column(idx, fld, new), row_group_size=max(n, 1))
            offset += n
    check = pq.ParquetFile(dst)
    if not check.schema_arrow.equals(schema, check_metadata=True) or check.metadata.num_rows != meta.num_rows:
        raise RecapError(f"internal error: the rewritten {src.name} does not keep its schema; nothing was written")


def check_writable_target(root: Path, path: Path) -> None:
    """Refuse symlinked data files and files sharing an inode (the Stage 1 write-through bug)."""
    if path.is_symlink():
        raise UnsafeWriteError(
            f"{path} is a symlink to {os.readlink(path)}; writing would change another dataset — make a standalone copy with `recap-label copy` first"
        )
    for parent in path.relative_to(root).parents:
        if parent != Path(".") and (root / parent).is_symlink():
            raise UnsafeWriteError(
                f"{root / parent} is a symlinked folder; writing would change another dataset — make a standalone copy with `recap-label copy` first"
            )
    if path.stat().st_nlink > 1:
        raise UnsafeWriteError(
            f"{path} shares its inode with another file (hard link); writing would change another dataset — make a standalone copy with `recap-label copy` first"
        )


__all__ = ["Transaction", "recover", "pending_commit", "rewrite_label_column", "check_writable_target"]
