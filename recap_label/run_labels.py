"""The labels of one label run of a dataset, per rollout frame: what `diff` compares and `view`
shows. `DS` is the dataset's last active label run, `DS@run-NNNN` an earlier one of it.

The labels of an earlier run `DS@run-K` are rebuilt from the run journal: for each data file,
the prior labels kept by the first later label run that rewrote it, else the file as it is now.
V comes from the values sidecar when it holds exactly these labels.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from recap_label.config import Settings
from recap_label.errors import BadInput
from recap_label.lerobot.columns import read_label_columns, shared_strings
from recap_label.lerobot.dataset import (
    DatasetFiles,
    read_parquet_table,
    resolve_dataset_path,
)
from recap_label.lerobot.line import line_of
from recap_label.store.lineage import (
    LabelRun,
    Lineage,
    read_lineage,
)
from recap_label.summary import LABELS
from recap_label.values.cache import read_sidecar

CLASSES = LABELS  # positive, negative, none (anything else counts as none)
_RUN_RE = re.compile(r"^(?P<ds>.+)@(?P<run>run-\d+)$")


@dataclass
class Side:
    """One dataset (or one label run of it) as the diff sees it: per rollout frame, sorted by key."""

    given: str
    root: Path
    run: LabelRun
    base: str
    key: np.ndarray  # episode << 32 | frame
    episode: np.ndarray
    frame: np.ndarray
    task: np.ndarray
    human: np.ndarray
    labels: np.ndarray
    value: np.ndarray | None  # V from the values sidecar, when it holds these labels
    tasks: dict[int, str]
    notes: list[str] = field(default_factory=list)
    advantage: np.ndarray | None = None  # A from the values sidecar, with `value`

    @property
    def title(self) -> str:
        return f"{self.root.name}@{self.run.id}"


def parse_side(arg: str) -> tuple[str, str | None]:
    m = _RUN_RE.match(arg)
    return (m.group("ds"), m.group("run")) if m else (arg, None)


def _labels_at_run(ds: DatasetFiles, record: Lineage, run: LabelRun, cols) -> np.ndarray:
    """The label column right after `run` committed (rebuilt from the prior labels of later runs)."""
    later = record.runs[record.runs.index(run) + 1 :]
    labels = cols.labels.copy()
    for path, (lo, hi) in cols.file_slices():
        rel = path.relative_to(ds.root).as_posix()
        nxt = next((r for r in later if isinstance(r, LabelRun) and rel in r.files_rewritten), None)
        if nxt is None:
            continue
        prior = read_parquet_table(ds.root / nxt.prior_labels, ["file", "label"])
        values = shared_strings(prior["label"].filter(pc.equal(prior["file"], rel)))
        if values.size != hi - lo:
            raise BadInput(
                f"the run journal of {nxt.id} does not cover {rel} whole; {run.id}'s labels cannot be rebuilt, "
                f"compare iteration copies instead"
            )
        labels[lo:hi] = values
    return labels


def load_side(arg: str, settings: Settings) -> Side:
    spec, run_id = parse_side(arg)
    root = Path(os.path.realpath(resolve_dataset_path(spec, settings.lerobot_home)))
    ds = DatasetFiles.open(root)
    record = read_lineage(ds.root)
    active = record.active_label_runs() if record else []
    if not active:
        raise BadInput(f"{spec} has no label run: nothing to compare; run `recap-label label {spec}` first")
    if run_id is None:
        run = active[-1]
    else:
        run = record.run(run_id)
        if not isinstance(run, LabelRun):
            ids = ", ".join(r.id for r in active)
            raise BadInput(f"{arg}: {spec} has no label run {run_id} (label runs on disk: {ids})")
        if run.rolled_back:
            raise BadInput(
                f"{arg}: {run_id} was rolled back by {run.rolled_back}; its labels are not kept, compare a run that "
                f"is on disk"
            )
    cols = read_label_columns(ds, human_col=settings.human_col, adv_col=settings.adv_col)
    labels = cols.labels if run is active[-1] else _labels_at_run(ds, record, run, cols)
    sel = cols.rollout_rows
    key = (cols.episode[sel].astype(np.int64) << 32) | cols.frame[sel].astype(np.int64)
    order = np.argsort(key, kind="stable")
    labels = np.asarray(labels[sel], dtype=object)[order]
    known = np.zeros(labels.size, dtype=bool)
    for name in CLASSES:  # one comparison per class: np.isin would sort the str objects
        known |= labels == name
    labels = np.where(known, labels, "none")
    side = Side(
        arg,
        ds.root,
        run,
        line_of(ds.root, record).name,
        key[order],
        cols.episode[sel][order],
        cols.frame[sel][order],
        cols.task[sel][order],
        cols.human[sel][order],
        labels,
        None,
        ds.tasks,
    )
    side.value, side.advantage, note = _sidecar_values(ds, side)
    if note:
        side.notes.append(note)
    return side


def _sidecar_values(ds: DatasetFiles, side: Side) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """V and A from the sidecar when it holds exactly this side's labels (the sidecar keeps the last
    label run's V; an earlier run's, or a rolled-back one's, is not kept)."""
    sidecar = read_sidecar(ds.root)
    if sidecar is None:
        return None, None, f"{side.title}: no values sidecar"
    table = sidecar[1]
    key = (table["episode_index"].to_numpy().astype(np.int64) << 32) | table["frame_index"].to_numpy().astype(np.int64)
    order = np.argsort(key, kind="stable")
    labels = shared_strings(table["label"])[order]
    if not np.array_equal(key[order], side.key) or not np.array_equal(labels, side.labels):
        return None, None, f"{side.title}: the values sidecar holds another run's V; V not compared"
    column = lambda name: table[name].to_numpy(zero_copy_only=False).astype(np.float64)[order]
    return column("value"), column("advantage"), None


def check_same_base(a: Side, b: Side, a_arg: str, b_arg: str, force: bool = False) -> None:
    """Two different label runs of copies of one dataset, else a BadInput naming the way out."""
    if a.root == b.root and a.run.id == b.run.id:
        raise BadInput(
            f"{a_arg} and {b_arg} are the same labels ({a.title}); compare two iterations, or two runs as "
            f"DS@run-0001 DS@run-0002"
        )
    if a.base != b.base and not force:
        raise BadInput(
            f"{a.root.name} and {b.root.name} are copies of different datasets ({a.base} vs {b.base}); pass --force "
            f"to compare them anyway"
        )
