"""The label breakdown (what the pasted pyarrow snippet used to print) and its rendering.

`breakdown()` is pure computation on column arrays; `render_*` draw rich tables; the CLI
prints `to_json()` instead when --json is given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from recap_label.advantage import episode_kinds
from recap_label.dataset import LeRobotDataset, group_episodes
from recap_label.errors import DatasetError

LABELS = ("positive", "negative", "none")


def _label_counts(labels: np.ndarray) -> dict[str, int]:
    counts = {name: int(np.count_nonzero(labels == name)) for name in LABELS}
    other = int(labels.size - sum(counts.values()))
    if other:
        counts["other"] = other
    return counts


@dataclass
class EpisodeRow:
    episode_index: int
    kind: str  # "demo" | "rollout"
    frames: int
    intervention: int
    positive: int
    negative: int
    none: int


@dataclass
class Breakdown:
    frames: int
    labels: dict[str, int]
    intervention: dict[str, int]  # intervention = 1 frames
    autonomous: dict[str, int]  # intervention = 0 frames (they exist only in rollout episodes)
    autonomous_positive_share: float | None
    demo_episodes: int
    rollout_episodes: int
    episodes: list[EpisodeRow] = field(default_factory=list)

    def to_json(self, with_episodes: bool = False) -> dict:
        d = asdict(self)
        if not with_episodes:
            d.pop("episodes")
        return d


def human_mask(values: np.ndarray, column: str) -> np.ndarray:
    """intervention as bool; anything other than 0/1 is bad input (pistar's _to_bool guessed)."""
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DatasetError(f"column {column!r} must be numeric 0/1, found {arr.dtype}; pass the right --human-col")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise DatasetError(f"column {column!r} holds NaN or inf; it must be 0 or 1 on every frame")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        raise DatasetError(f"column {column!r} holds {arr[bad][0]!r}; it must be 0 or 1 on every frame (fix the data or pass the right --human-col)")
    return arr.astype(bool)


def read_label_arrays(ds: LeRobotDataset, human_col: str, adv_col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode_index, intervention bool, labels as str objects; "none" where the column is absent)."""
    table = ds.read_columns(["episode_index", "frame_index", human_col])
    present = adv_col in ds.schema(ds.data_files[0]).names if ds.data_files else False
    if present:
        labels = ds.read_columns([adv_col])[adv_col].to_numpy(zero_copy_only=False)
    else:
        labels = np.full(table.num_rows, "none", dtype=object)
    episode = table["episode_index"].to_numpy()
    group_episodes(episode, table["frame_index"].to_numpy())  # duplicate frames are an error
    return episode, human_mask(scalar_column(table[human_col]), human_col), np.asarray(labels, dtype=object)


def scalar_column(column) -> np.ndarray:
    """A shape-(1,) feature as a flat numpy array, whether stored as a scalar or a 1-element list."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        column = pc.list_flatten(column)  # shape-(1,) stored as a 1-element list
    return column.to_numpy(zero_copy_only=False)


def breakdown(episode: np.ndarray, human: np.ndarray, labels: np.ndarray, with_episodes: bool = False) -> Breakdown:
    kinds = episode_kinds(episode, human)
    ids, inverse, is_rollout = kinds.ids, kinds.inverse, kinds.rollout
    auto = ~human
    auto_counts = _label_counts(labels[auto])
    pos, neg = auto_counts["positive"], auto_counts["negative"]
    rows = []
    if with_episodes:
        for k, ep in enumerate(ids):
            sel = inverse == k
            c = _label_counts(labels[sel])
            rows.append(EpisodeRow(int(ep), "rollout" if is_rollout[k] else "demo", int(sel.sum()), int(human[sel].sum()), c["positive"], c["negative"], c["none"]))
    return Breakdown(
        frames=int(labels.size),
        labels=_label_counts(labels),
        intervention=_label_counts(labels[human]),
        autonomous=auto_counts,
        autonomous_positive_share=(pos / (pos + neg)) if (pos + neg) else None,
        demo_episodes=int((~is_rollout).sum()),
        rollout_episodes=int(is_rollout.sum()),
        episodes=rows,
    )


# -- rendering ---------------------------------------------------------------------------


def breakdown_table(b: Breakdown, title: str = "adv_ind breakdown"):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("frames")
    for name in LABELS:
        t.add_column(name, justify="right")
    t.add_column("total", justify="right")
    for label, counts in (("all", b.labels), ("intervention=1", b.intervention), ("intervention=0", b.autonomous)):
        t.add_row(label, *(f"{counts.get(n, 0):,}" for n in LABELS), f"{sum(counts.values()):,}")
    return t


def summary_line(b: Breakdown) -> str:
    share = "n/a" if b.autonomous_positive_share is None else f"{100 * b.autonomous_positive_share:.2f} %"
    return f"autonomous positive share {share} · episodes: {b.rollout_episodes} rollout, {b.demo_episodes} demo"


def episodes_table(b: Breakdown):
    from rich.table import Table

    t = Table(title="per episode", title_justify="left")
    for col in ("episode", "kind", "frames", "intervention", "positive", "negative", "none"):
        t.add_column(col, justify="right" if col not in ("kind",) else "left")
    for r in b.episodes:
        t.add_row(str(r.episode_index), r.kind, str(r.frames), str(r.intervention), str(r.positive), str(r.negative), str(r.none))
    return t


def counts_side_by_side(left_name: str, left: dict | None, right_name: str, right: dict | None):
    from rich.table import Table

    t = Table(title="adv_ind distribution", title_justify="left")
    t.add_column("value")
    t.add_column(left_name, justify="right")
    t.add_column(right_name, justify="right")
    keys = sorted(set(left or {}) | set(right or {}))
    for k in keys:
        t.add_row(k, f"{(left or {}).get(k, 0):,}", f"{(right or {}).get(k, 0):,}")
    if not keys:
        t.add_row("(no adv_ind column)", "-", "-")
    return t
