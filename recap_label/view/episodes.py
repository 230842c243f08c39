"""Which episodes `view` shows (by index, or the N a person should look at first, each with why)
and every shown frame's series, in the order its camera frames are decoded.

The labels and V of a side come from recap_label.run_labels, as `diff` reads them; V from the
values sidecar when it holds these labels, else from the dataset column the run used.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recap_label.config import Settings
from recap_label.errors import BadInput
from recap_label.lerobot.columns import scalar_column
from recap_label.lerobot.dataset import DatasetFiles, resolve_dataset_path
from recap_label.run_labels import Side, check_same_base, load_side, parse_side
from recap_label.stats import spearman
from recap_label.store.lineage import read_lineage
from recap_label.value_check import STD_FLOOR, TAIL_EPISODE_SHARE

LABEL_CODE = {"positive": 1.0, "negative": -1.0, "none": 0.0}  # the label as a number, for a series


@dataclass
class EpisodeSeries:
    """One episode's frames in frame_index order (the order its camera frames are decoded)."""

    episode: int
    frame: np.ndarray
    timestamp: np.ndarray  # seconds from the episode's start (the dataset's column)
    value: np.ndarray  # float32, NaN where unknown
    advantage: np.ndarray  # float32, NaN where unknown
    threshold: np.ndarray  # float64: the run's threshold for this frame's pool, NaN if none
    label: np.ndarray  # positive / negative / none
    human: np.ndarray  # bool: intervention frame
    task: list[str]
    other_value: np.ndarray | None = None  # with --compare
    other_label: np.ndarray | None = None  # "" where OTHER lacks the frame
    flipped: np.ndarray | None = None  # label differs from OTHER's on a frame both have
    reason: str | None = None  # why --worst picked it

    def __len__(self) -> int:
        return int(self.frame.size)


@dataclass
class ViewSource:
    ds: DatasetFiles
    side: Side
    other: Side | None
    value_source: str  # where V comes from, for legends
    notes: list[str] = field(default_factory=list)

    @property
    def rollout_episodes(self) -> list[int]:
        return [int(e) for e in np.unique(self.side.episode)]


def open_source(spec: str, settings: Settings, compare: str | None = None) -> ViewSource:
    """The dataset's active label run (or `DS@run-NNNN`) and, with `compare`, the other side."""
    ds_spec, _ = parse_side(spec)
    root = Path(os.path.realpath(resolve_dataset_path(ds_spec, settings.lerobot_home)))
    ds = DatasetFiles.open(root)
    record = read_lineage(ds.root)
    if not (record and record.active_label_runs()):
        raise BadInput(
            f"{ds_spec} has no label run, so no V and no adv_ind to show; label it first: `recap-label copy "
            f"{ds_spec}`, then "
            f"`recap-label label local/<the copy> --checkpoint-dir CKPT` (or --values FILE, or --value-column COL)"
        )
    side = load_side(spec, settings)
    other = None
    if compare is not None:
        other = load_side(compare, settings)
        check_same_base(side, other, spec, compare)
    notes = list(side.notes) + (list(other.notes) if other else [])
    source = "values sidecar"
    if side.value is None:
        column = side.run.value_source.get("column") if side.run.value_source.get("source") == "value-column" else None
        if column and column in ds.schema(ds.data_files[0]).names:
            side.value = _column_values(ds, column, side)
            source = f"dataset column {column}"
            notes.append(
                f"V from the dataset column {column} the run used; A not kept (no values sidecar for these labels)"
            )
        else:
            source = "none"
            notes.append("V not kept for these labels (no values sidecar holds them): V and A are not shown")
    return ViewSource(ds, side, other, source, notes)


def _column_values(ds: DatasetFiles, column: str, side: Side) -> np.ndarray:
    table = ds.read_columns(["episode_index", "frame_index", column])
    key = (table["episode_index"].to_numpy().astype(np.int64) << 32) | table["frame_index"].to_numpy().astype(np.int64)
    order = np.argsort(key)
    pos = order[np.searchsorted(key, side.key, sorter=order)]
    return scalar_column(table[column]).astype(np.float64)[pos]


# -- choosing episodes ----------------------------------------------------------------------------


def parse_episode_list(text: str) -> list[int]:
    """ "3,7" or "2-5,9" -> [3, 7] / [2, 3, 4, 5, 9], in the order given, without repeats."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise BadInput(
                f"--episodes {text!r}: {part!r} is not an episode index or a range like 2-5; pass e.g. --episodes 3,7"
            )
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise BadInput(f"--episodes {text!r}: the range {part} is empty; write it low-high, e.g. {hi}-{lo}")
        out.extend(e for e in range(lo, hi + 1) if e not in out)
    return out


def check_episodes(src: ViewSource, episodes: list[int]) -> None:
    known = sorted(src.ds.episodes)
    rollouts = src.rollout_episodes
    for e in episodes:
        if e not in src.ds.episodes:
            raise BadInput(f"episode {e} does not exist; {src.ds.name} has episodes {_ranges(known)}")
        if e not in rollouts:
            raise BadInput(
                f"episode {e} is a demo (every frame an intervention): it has no V and no advantage to show; rollout "
                f"episodes: {_ranges(rollouts)}"
            )


def _ranges(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts, start = [], None
    for i, e in enumerate(ids):
        if start is None:
            start = e
        if i + 1 == len(ids) or ids[i + 1] != e + 1:
            parts.append(str(start) if start == e else f"{start}-{e}")
            start = None
    return ", ".join(parts) or "none"


@dataclass
class Pick:
    episode: int
    reason: str


def worst_episodes(src: ViewSource, n: int, settings: Settings) -> list[Pick]:
    """The N episodes to look at first, each with why: most flips against OTHER, positives piled
    up in the tail, V nearly flat, lowest Spearman of V with the Monte-Carlo value column."""
    if n < 1:
        raise BadInput(f"--worst {n}: pass a number of episodes, 1 or more")
    side = src.side
    ids = src.rollout_episodes
    lookahead = int(side.run.settings.lookahead)
    candidates: list[tuple[int, list[tuple[float, int, str]]]] = []  # (priority, [(sort key, episode, reason)])
    if src.other is not None:
        flips = []
        for e in ids:
            s = flip_mask(src, e)
            if s[0].any():
                flips.append(
                    (
                        -float(s[0].sum()),
                        e,
                        f"{int(s[0].sum())} of {int(s[1])} frames flipped against {src.other.title}",
                    )
                )
        candidates.append((0, flips))
    tail, flat, rho = [], [], []
    mc = _mc_values(src, settings.mc_value_col)
    for e in ids:
        sel = side.episode == e
        frames, labels, human = side.frame[sel], side.labels[sel], side.human[sel]
        in_tail = (frames.max() - frames < lookahead) & ~human
        if in_tail.sum():
            share = float(np.mean(labels[in_tail] == "positive"))
            if share > TAIL_EPISODE_SHARE:
                tail.append(
                    (
                        -share,
                        e,
                        f"{100 * share:.0f} % of its last {lookahead} autonomous frames positive (tail pile-up)",
                    )
                )
        if side.value is not None:
            std = float(np.std(side.value[sel]))
            if std < STD_FLOOR:
                flat.append((std, e, f"V nearly flat (std {std:.4g} < {STD_FLOOR})"))
            if mc is not None:
                r = spearman(side.value[sel], mc[sel])
                if r is not None:
                    rho.append((r, e, f"Spearman of V with {settings.mc_value_col} {r:.2f}"))
    candidates += [(1, tail), (2, flat), (3, rho)]
    picks: list[Pick] = []
    for _, rows in sorted(candidates, key=lambda c: c[0]):
        for _, e, why in sorted(rows):
            if len(picks) < n and e not in {p.episode for p in picks}:
                picks.append(Pick(e, why))
    if len(picks) < n:
        src.notes.append(
            f"--worst {n}: only {len(picks)} rollout episodes stand out (flips, tail pile-up, flat V, Spearman)"
        )
    if not picks:
        raise BadInput(
            f"--worst {n}: no episode stands out (no flips{'' if src.other else ' without --compare'}, no tail "
            f"pile-up, no flat V"
            f"{'' if mc is not None else f', no {settings.mc_value_col!r} column for Spearman'}); pick episodes with "
            f"--episodes"
        )
    return picks


def _mc_values(src: ViewSource, column: str) -> np.ndarray | None:
    ds = src.ds
    if column not in ds.schema(ds.data_files[0]).names:
        return None
    return _column_values(ds, column, src.side)


def flip_mask(src: ViewSource, episode: int) -> tuple[np.ndarray, int]:
    """Per frame of the episode in side's order: the label differs from OTHER's (frames both have)."""
    a, b = src.side, src.other
    sel = a.episode == episode
    keys = a.key[sel]
    pos = np.clip(np.searchsorted(b.key, keys), 0, max(b.key.size - 1, 0))
    both = b.key[pos] == keys if b.key.size else np.zeros(keys.size, bool)
    return both & (a.labels[sel] != b.labels[pos]), int(both.sum())


# -- per-frame series -----------------------------------------------------------------------------


def episode_series(src: ViewSource, episode: int, reason: str | None = None) -> EpisodeSeries:
    ds, side = src.ds, src.side
    rows = ds.episode_rows(episode, ["timestamp", "task_index"])
    frame = rows["frame_index"].to_numpy().astype(np.int64)
    keys = (np.int64(episode) << 32) | frame
    pos = np.clip(np.searchsorted(side.key, keys), 0, side.key.size - 1)
    if not np.array_equal(side.key[pos], keys):
        raise BadInput(
            f"episode {episode}: its rows and the label run's frames disagree; run `recap-label verify {ds.root}`"
        )
    value = side.value[pos].astype(np.float32) if side.value is not None else np.full(frame.size, np.nan, np.float32)
    advantage = (
        side.advantage[pos].astype(np.float32)
        if side.advantage is not None
        else np.full(frame.size, np.nan, np.float32)
    )
    task_index = rows["task_index"].to_numpy()
    thresholds = side.run.thresholds or {}
    if "global" in thresholds:
        thr = np.full(frame.size, np.nan if thresholds["global"] is None else thresholds["global"], np.float64)
    else:
        thr = np.array(
            [np.nan if thresholds.get(f"task {int(t)}") is None else thresholds[f"task {int(t)}"] for t in task_index],
            np.float64,
        )
    out = EpisodeSeries(
        episode,
        frame,
        rows["timestamp"].to_numpy().astype(np.float64),
        value,
        advantage,
        thr,
        side.labels[pos],
        side.human[pos],
        [ds.tasks.get(int(t), str(t)) for t in task_index],
        reason=reason,
    )
    if src.other is not None:
        b = src.other
        opos = np.clip(np.searchsorted(b.key, keys), 0, max(b.key.size - 1, 0))
        both = b.key[opos] == keys if b.key.size else np.zeros(keys.size, bool)
        out.other_label = np.where(both, b.labels[opos], "")
        ov = b.value[opos].astype(np.float32) if b.value is not None else np.full(frame.size, np.nan, np.float32)
        out.other_value = np.where(both, ov, np.float32(np.nan)).astype(np.float32)
        out.flipped = both & (out.label != out.other_label)
    return out
