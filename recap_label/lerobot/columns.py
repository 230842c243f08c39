"""The light per-row columns recap-label works on, read and validated once per command.

`LabelColumns` holds episode, frame, task, intervention, reward and label of every row of a
dataset (concatenated in file order), with the episode grouping and the demo/rollout split
computed once and shared by the rule, the report and the checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recap_label.errors import DatasetError
from recap_label.lerobot.dataset import EpisodeGroups, DatasetFiles, group_episodes
from recap_label.store.faults import crash_point
from recap_label.store.writeback import file_signature


def scalar_column(column) -> np.ndarray:
    """A shape-(1,) feature as a flat numpy array, whether stored as a scalar or a 1-element list."""
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        column = pc.list_flatten(column)
    return column.to_numpy(zero_copy_only=False)


def human_mask(values: np.ndarray, column: str) -> np.ndarray:
    """intervention as bool; anything other than 0/1 is bad input (pistar's _to_bool guessed)."""
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DatasetError(f"column {column!r} must be numeric 0/1, found {arr.dtype}; pass the right --human-col")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise DatasetError(f"column {column!r} holds NaN or inf; it must be 0 or 1 on every frame")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        raise DatasetError(
            f"column {column!r} holds {arr[bad][0].item():g}; it must be 0 or 1 on every frame (fix the data or pass "
            f"the right --human-col)"
        )
    return arr.astype(bool)


@dataclass(frozen=True)
class EpisodeKinds:
    """Demo vs rollout, the rule's step 1: an episode is a rollout iff it has an autonomous frame."""

    ids: np.ndarray  # episode ids, sorted
    inverse: np.ndarray  # row -> position in ids
    rollout: np.ndarray  # bool per episode id

    @property
    def rollout_rows(self) -> np.ndarray:
        return self.rollout[self.inverse]


def episode_kinds(episode: np.ndarray, human: np.ndarray) -> EpisodeKinds:
    ids, inverse = np.unique(np.asarray(episode), return_inverse=True)
    autonomous = np.bincount(inverse, weights=~np.asarray(human, dtype=bool), minlength=ids.size)
    return EpisodeKinds(ids, inverse, autonomous > 0)


@dataclass
class LabelColumns:
    """Per-row columns of a whole dataset in file order; `reward` and `task` only when asked for."""

    episode: np.ndarray
    frame: np.ndarray
    human: np.ndarray
    labels: np.ndarray  # str objects; "none" in the files without the label column
    task: np.ndarray | None = None
    reward: np.ndarray | None = None
    file_rows: list[tuple[Path, int]] = field(default_factory=list)  # (data file, rows) in order
    signatures: dict[Path, list[int]] = field(default_factory=dict)  # as read: a later rewrite is refused
    has_label_column: bool = True  # in at least one data file
    without_label_column: list[Path] = field(default_factory=list)  # data files lacking it (label creates it there)

    @cached_property
    def groups(self) -> EpisodeGroups:
        return group_episodes(self.episode, self.frame)

    @cached_property
    def kinds(self) -> EpisodeKinds:
        return episode_kinds(self.episode, self.human)

    @property
    def rollout_rows(self) -> np.ndarray:
        return self.kinds.rollout_rows

    def rollout_episodes(self) -> list[int]:
        return [int(e) for e in self.kinds.ids[self.kinds.rollout]]

    def file_slices(self):
        """(data file, (lo, hi)) row ranges in concatenation order."""
        lo = 0
        for path, n in self.file_rows:
            yield path, (lo, lo + n)
            lo += n


def _missing_column(ds: DatasetFiles, col: str, flag: str) -> DatasetError:
    return DatasetError(f"column {col!r} is missing from {ds.data_files[0]}; pass the right {flag}; {column_list(ds)}")


def column_list(ds: DatasetFiles) -> str:
    """`columns in <name>: a, b, …` of the first data file, for messages about a missing column."""
    return f"columns in {ds.root.name}: {', '.join(ds.schema(ds.data_files[0]).names)}"


def read_label_columns(
    ds: DatasetFiles, *, human_col: str, adv_col: str, reward_col: str | None = None
) -> LabelColumns:
    """The columns of every data file, validated. With `reward_col` (label): reward, task, file
    rows and signatures too. Labels read "none" in files without the label column (which label
    creates there; pistar's labeler leaves demo files without it)."""
    if not ds.data_files:
        raise DatasetError(f"{ds.root} has no episodes; nothing to label")
    names = ds.schema(ds.data_files[0]).names
    if reward_col is not None:
        for col, flag in ((reward_col, "--reward-col"), (human_col, "--human-col")):
            if col not in names:
                raise _missing_column(ds, col, flag)
    cols = ["episode_index", "frame_index", "task_index", human_col] + ([reward_col] if reward_col else [])
    lacking = [p for p in ds.data_files if adv_col not in ds.schema(p).names]
    if len(lacking) == len(ds.data_files):  # label, and verify/diff too: a misspelt --adv-col is not a column of "none"
        _refuse_label_column_typo(ds, adv_col)
    signatures = {p: file_signature(p) for p in ds.data_files} if reward_col else {}
    tables, labels = [], []
    for p in ds.data_files:
        t = ds.read_columns(cols + ([] if p in lacking else [adv_col]), [p])
        labels.append(np.full(t.num_rows, "none", dtype=object) if p in lacking else _labels(t, adv_col))
        tables.append(t.select(cols))
        crash_point("columns-read")
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowInvalid:
        table = ds.read_columns(cols)  # raises the DatasetError that names the disagreeing files
    out = LabelColumns(
        episode=table["episode_index"].to_numpy(),
        frame=table["frame_index"].to_numpy(),
        human=human_mask(scalar_column(table[human_col]), human_col),
        labels=np.concatenate(labels) if labels else np.zeros(0, dtype=object),
        task=table["task_index"].to_numpy(),
        file_rows=[(p, t.num_rows) for p, t in zip(ds.data_files, tables)],
        signatures=signatures,
        has_label_column=len(lacking) < len(ds.data_files),
        without_label_column=lacking,
    )
    if reward_col is not None:
        out.reward = _reward(table, reward_col)
    _check_frames(out)
    _check_same_columns(ds, ignore=adv_col)
    return out


LABEL_VALUES = {"positive", "negative", "none"}


def _refuse_label_column_typo(ds: DatasetFiles, adv_col: str) -> None:
    """A label column that exists nowhere is created by label, unless another column already holds
    labels: then --adv-col is most likely misspelt, and a second label column is not what is meant."""
    schema = ds.schema(ds.data_files[0])
    for f in schema:
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            values = set(ds.read_columns([f.name], ds.data_files[:1])[f.name].to_pylist())
            if values and values <= LABEL_VALUES:
                raise DatasetError(
                    f"column {adv_col!r} is missing from every data file, but {f.name!r} holds labels "
                    f"({', '.join(sorted(values))}); "
                    f"pass --adv-col {f.name} (label creates a missing label column only where the dataset has none)"
                )


def _check_frames(cols: LabelColumns) -> None:
    """Each episode's frame_index runs 0, 1, 2, … without a gap (a duplicate is refused by
    group_episodes): the N-step advantage counts frames by position."""
    g = cols.groups
    frames = np.asarray(cols.frame, dtype=np.int64)[g.order]
    expected = np.arange(frames.size) - np.repeat(g.starts, g.lengths)
    bad = np.flatnonzero(frames != expected)
    if bad.size:
        i = bad[0]
        ep = int(np.asarray(cols.episode)[g.order][i])
        raise DatasetError(
            f"episode {ep} has no frame_index {int(expected[i])} (its frames go "
            f"{int(frames[i - 1]) if i and expected[i] else '-'} → {int(frames[i])}); "
            "frame indices must run 0, 1, 2, … in every episode, restore the dataset from its source"
        )


def _check_same_columns(ds: DatasetFiles, ignore: str) -> None:
    """Every data file has the columns of the first one (LeRobot writes one schema), the label
    column `ignore` aside (label creates it where it is missing)."""
    first = set(ds.schema(ds.data_files[0]).names) - {ignore}
    for path in ds.data_files[1:]:
        names = set(ds.schema(path).names) - {ignore}
        if names != first:
            extra, missing = sorted(names - first), sorted(first - names)
            what = (
                f"has column(s) {', '.join(map(repr, extra))} that {ds.data_files[0].name} lacks"
                if extra
                else f"lacks column(s) {', '.join(map(repr, missing))}"
            )
            raise DatasetError(f"data file {path} {what}; the data files disagree, restore the dataset from its source")


def _labels(table: pa.Table, adv_col: str) -> np.ndarray:
    col = table[adv_col]
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise DatasetError(f"label column {adv_col!r} has type {col.type}, not string; pass the right --adv-col")
    return shared_strings(col)


def shared_strings(col) -> np.ndarray:
    """A string column as an object array whose rows share one str per distinct value (None for
    null): 8 bytes a row, where to_numpy makes a new str object for every row."""
    encoded = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    words = np.array(encoded.dictionary.to_pylist() + [None], dtype=object)
    codes = encoded.indices.fill_null(len(words) - 1).to_numpy(zero_copy_only=False)
    return words[codes]


def _reward(table: pa.Table, reward_col: str) -> np.ndarray:
    col = table[reward_col]
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        raise DatasetError(f"reward column {reward_col!r} has type {col.type}; pass a numeric --reward-col")
    reward = scalar_column(col).astype(np.float32)
    bad = ~np.isfinite(reward)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise DatasetError(
            f"reward column {reward_col!r} holds {reward[i]} at episode {int(table['episode_index'][i].as_py())} "
            f"frame {int(table['frame_index'][i].as_py())}; rewards must be finite"
        )
    return reward


def _files_with(ds: DatasetFiles, column: str) -> list[Path]:
    """The data files that have `column` (all of them, but for a mixed schema such as pistar's labeler leaves)."""
    return [p for p in ds.data_files if column in ds.schema(p).names]


def label_counts(ds: DatasetFiles, adv_col: str) -> dict[str, int] | None:
    """Label value counts over the data files that have the column, or None when none has it."""
    return label_column_summary(ds, adv_col)[1]


def label_column_digest(ds: DatasetFiles, adv_col: str) -> str | None:
    """sha256 over the label column of every data file, in file order (None if no file has it;
    a file without it counts as such)."""
    return label_column_summary(ds, adv_col)[0]


def label_column_summary(ds: DatasetFiles, adv_col: str) -> tuple[str | None, dict[str, int] | None]:
    """(label_column_digest, label_counts) from one read of the label column, file by file.

    The digest is sha256 over each file's relative path and then its labels joined by NUL (a null
    label as \x01), computed on the column's bytes rather than on a Python string per row."""
    files = set(_files_with(ds, adv_col)) if ds.data_files else set()
    if not files:
        return None, None
    h = hashlib.sha256()
    counts: dict[str, int] = {}
    for path in ds.data_files:
        h.update(path.relative_to(ds.root).as_posix().encode())
        if path not in files:
            h.update(b"\0(no label column)\0")
            continue
        col = ds.read_columns([adv_col], [path])[adv_col]
        for c in pc.value_counts(col).to_pylist():
            key = "null" if c["values"] is None else str(c["values"])
            counts[key] = counts.get(key, 0) + int(c["counts"])
        h.update(joined_label_bytes(col))
    return h.hexdigest(), dict(sorted(counts.items(), key=lambda kv: "None" if kv[0] == "null" else kv[0]))


def joined_label_bytes(col) -> bytes:
    """b"\0".join(label bytes, a null as b"\x01") of a string column, without a str per row."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return b""
    arr = arr.fill_null("\x01").cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    values = (
        np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    )
    return np.insert(values, offsets[1:-1] - offsets[0], 0).tobytes()
