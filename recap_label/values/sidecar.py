"""The values sidecar: V, A and the label of every labeled frame, and the resumable parts of an
inference in progress.

`meta/recap_label/values.parquet` is keyed by (episode_index, frame_index), with the source's
provenance in its schema metadata; a later run whose source reuses that provenance relabels
from it without inference. Model inference streams into `meta/recap_label/values-partial/`
one episode at a time, so an interrupted run resumes from the episodes already done.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recap_label.errors import BadInput
from recap_label.lerobot.dataset import LeRobotDataset
from recap_label.store.faults import crash_point
from recap_label.store.fsutil import fsync_dir, write_file_atomic, write_json_atomic
from recap_label.store.paths import PARTIAL_DIR, SIDECAR
from recap_label.values.sources import Caching, EpisodeValues, ValueSource, split_by_episode


def read_sidecar(root: Path) -> tuple[dict, pa.Table] | None:
    path = root / SIDECAR
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
        provenance = json.loads(table.schema.metadata[b"recap_label.provenance"])
    except (pa.ArrowException, OSError, KeyError, TypeError, ValueError):
        return None  # an unreadable sidecar is only a cache: ignore it, inference recomputes
    return provenance, table


def sidecar_table(episode: np.ndarray, frame: np.ndarray, value: np.ndarray, advantage: np.ndarray, label: np.ndarray, provenance: dict, settings: dict) -> pa.Table:
    table = pa.table(
        {
            "episode_index": pa.array(episode, pa.int64()),
            "frame_index": pa.array(frame, pa.int64()),
            "value": pa.array(value, pa.float32()),
            "advantage": pa.array(advantage, pa.float32()),
            "label": pa.array(label, pa.string()),
        }
    )
    meta = {b"recap_label.provenance": json.dumps(provenance, sort_keys=True).encode(), b"recap_label.settings": json.dumps(settings, sort_keys=True).encode()}
    return table.replace_schema_metadata(meta)


class PartialValues:
    """Per-episode value parts of an inference in progress (resume after a crash)."""

    def __init__(self, root: Path, provenance: dict, restart: bool):
        self.root = root
        self.dir = root / PARTIAL_DIR
        self.provenance = provenance
        stamp = self.dir / "provenance.json"
        same = stamp.exists() and _load_json(stamp) == provenance
        if restart or not same:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            write_json_atomic(stamp, provenance)

    def _part(self, episode: int) -> Path:
        return self.dir / f"episode-{episode:06d}.parquet"

    def done(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.dir.glob("episode-*.parquet")}

    def add(self, ev: EpisodeValues) -> None:
        table = pa.table({"frame_index": pa.array(ev.frame_index, pa.int64()), "value": pa.array(ev.value, pa.float64())})
        write_file_atomic(self._part(ev.episode_index), lambda p: pq.write_table(table, p))
        crash_point("episode-values")

    def read(self, episode: int) -> EpisodeValues:
        t = pq.read_table(self._part(episode))
        return EpisodeValues(episode, t["frame_index"].to_numpy(), t["value"].to_numpy())

    def discard(self) -> None:
        discard_partial(self.root)


def discard_partial(root: Path) -> None:
    """Drop the in-progress parts once their values are committed to the sidecar."""
    folder = root / PARTIAL_DIR
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
        fsync_dir(folder.parent)


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cached_values(ds: LeRobotDataset, source: ValueSource, episodes: list[int], recompute: bool) -> dict[int, EpisodeValues] | None:
    """V from the sidecar when it was made by the same source and covers every episode."""
    cached = None if recompute else read_sidecar(ds.root)
    if cached is None or not source.reuses(cached[0]):
        return None
    table = cached[1]
    split = {ev.episode_index: ev for ev in split_by_episode(
        table["episode_index"].to_numpy(), table["frame_index"].to_numpy(), table["value"].to_numpy().astype(np.float64), episodes)}
    if all(split[e].frame_index.size == ds.episodes[e].length for e in episodes):
        return split
    return None


def gather_values(
    ds: LeRobotDataset,
    source: ValueSource,
    episodes: list[int],
    *,
    recompute: bool,
    on_episode: Callable[[EpisodeValues], None] | None = None,
) -> tuple[dict[int, EpisodeValues], str]:
    """V for every frame of `episodes`; returns (values by episode, how they were obtained)."""
    if source.caching is Caching.READ_EACH_RUN:
        out = {ev.episode_index: ev for ev in source.episode_values(ds, episodes)}
        return out, source.provenance()["source"]
    cached = cached_values(ds, source, episodes, recompute)
    if cached is not None:
        return cached, "sidecar (no inference)"
    source.prepare()  # from here on the provenance is what inference really runs with
    partial = PartialValues(ds.root, source.provenance(), restart=recompute)
    done = partial.done() & set(episodes)
    todo = [e for e in episodes if e not in done]
    try:
        for ev in source.episode_values(ds, todo):
            partial.add(ev)
            if on_episode:
                on_episode(ev)
    except BaseException:
        if not partial.done():
            partial.discard()  # nothing to resume from: leave no trace
        raise
    out = {e: partial.read(e) for e in episodes}
    how = "inference" if not done else f"inference (resumed: {len(done)} of {len(episodes)} episodes were already done)"
    return out, how


def assemble_values(rows_episode: np.ndarray, rows_frame: np.ndarray, rollout_rows: np.ndarray, by_episode: dict[int, EpisodeValues], source_name: str) -> np.ndarray:
    """V per dataset row (NaN outside rollouts); every rollout frame must have one finite value."""
    value = np.full(rows_episode.size, np.nan)
    for e in np.unique(rows_episode[rollout_rows]):
        sel = np.flatnonzero(rows_episode == e)
        ev = by_episode.get(int(e))
        frames = rows_frame[sel]
        if ev is None or ev.frame_index.size == 0:
            raise BadInput(f"{source_name} has no values for rollout episode {int(e)}; every frame of a rollout episode needs a value")
        pos = np.searchsorted(ev.frame_index, frames)
        pos_c = np.minimum(pos, ev.frame_index.size - 1)
        missing = ev.frame_index[pos_c] != frames
        if missing.any():
            raise BadInput(f"{source_name} has no value for episode {int(e)} frame {int(frames[missing][0])}; every frame of a rollout episode needs a value")
        v = ev.value[pos_c]
        bad = ~np.isfinite(v)
        if bad.any():
            raise BadInput(f"{source_name} has a non-finite value ({v[bad][0]}) at episode {int(e)} frame {int(frames[bad][0])}; values must be finite")
        value[sel] = v
    return value
