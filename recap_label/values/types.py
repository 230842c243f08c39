"""What every value source and the value cache share: V of one episode, the source protocol,
and the two ways between dataset rows and per-episode values (split, assemble)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from collections.abc import Iterable, Iterator
from typing import Protocol

import numpy as np

from recap_label.errors import BadInput
from recap_label.lerobot.dataset import DatasetFiles


@dataclass
class EpisodeValues:
    episode_index: int
    frame_index: np.ndarray
    value: np.ndarray


class Caching(enum.Enum):
    """How a source's values may be reused across runs (the value cache, values.cache, acts on it)."""

    #: read again every run (a column or a file: cheap, and the file may have been rewritten)
    READ_EACH_RUN = "read each run"
    #: computed once, kept in the values sidecar and reused while the provenance matches;
    #: an inference in progress is resumable from per-episode parts (values.parts)
    SIDECAR = "sidecar"


class ValueSource(Protocol):
    """Anything that can produce V for the frames of given episodes."""

    #: how error messages name it, e.g. "values file runs/v.parquet"
    name: str
    caching: Caching

    def bind(self, ds: DatasetFiles) -> None:
        """Fix what depends on the dataset (the model's camera columns); before provenance()."""

    def provenance(self) -> dict:
        """What the values were computed from (recorded in the run and the sidecar)."""

    def reuses(self, cached: dict) -> bool:
        """May values with provenance `cached` stand in for this source's?"""

    def prepare(self) -> None:
        """Get ready to compute values (the model: load it); called only when values are needed."""

    def input_keys(self, ds: DatasetFiles, episodes: list[int]) -> dict[int, str]:
        """Per episode, a fingerprint of what its values are computed from (cached values whose
        key differs are stale); empty for sources read each run."""

    def episode_values(self, ds: DatasetFiles, episodes: list[int]) -> Iterator[EpisodeValues]:
        """V of every frame of `episodes`. A SIDECAR source also takes `frames` (per episode, the
        frame indices wanted): the value cache asks for part of an episode under `--infer needed`,
        or for the frames a sidecar written that way lacks."""


def split_by_episode(
    ep: np.ndarray, fr: np.ndarray, val: np.ndarray, episodes: Iterable[int]
) -> Iterator[EpisodeValues]:
    order = np.lexsort((fr, ep))
    ep, fr, val = ep[order], fr[order], val[order]
    for e in episodes:
        lo, hi = np.searchsorted(ep, e, "left"), np.searchsorted(ep, e, "right")
        yield EpisodeValues(int(e), fr[lo:hi], val[lo:hi])


def assemble_values(
    rows_episode: np.ndarray,
    rows_frame: np.ndarray,
    rollout_rows: np.ndarray,
    by_episode: dict[int, EpisodeValues],
    source_name: str,
    required: np.ndarray | None = None,
) -> np.ndarray:
    """V per dataset row (NaN outside rollouts); every rollout frame must have one finite value,
    or with `required` (bool per row, `--infer needed`) every required row: the other rollout rows
    get V where the values hold it, else NaN.

    One sorted lookup of (episode, frame) keys for all rows (not a scan of every row per episode)."""
    value = np.full(rows_episode.size, np.nan)
    if required is not None:
        return _assemble_some(rows_episode, rows_frame, rollout_rows, required, by_episode, source_name, value)
    sel = np.flatnonzero(rollout_rows)
    if sel.size == 0:
        return value
    ep, fr = np.asarray(rows_episode)[sel].astype(np.int64), np.asarray(rows_frame)[sel].astype(np.int64)
    given = [ev for e in np.unique(ep) if (ev := by_episode.get(int(e))) is not None and ev.frame_index.size]
    empty = sorted(set(np.unique(ep).tolist()) - {int(ev.episode_index) for ev in given})
    if given:
        keys = np.concatenate([_keys(np.int64(ev.episode_index), ev.frame_index) for ev in given])
        vals = np.concatenate([np.asarray(ev.value, dtype=np.float64) for ev in given])
        order = np.argsort(keys, kind="stable")
        keys, vals = keys[order], vals[order]
        pos = np.minimum(np.searchsorted(keys, _keys(ep, fr)), keys.size - 1)
        missing = keys[pos] != _keys(ep, fr)
        v = vals[pos]
    else:
        missing, v = np.ones(ep.size, dtype=bool), np.zeros(ep.size)
    bad = ~np.isfinite(v) & ~missing
    if empty or missing.any() or bad.any():
        _refuse_values(ep, fr, v, missing, bad, empty, source_name)
    value[sel] = v
    return value


def _assemble_some(rows_episode, rows_frame, rollout_rows, required, by_episode, source_name, value) -> np.ndarray:
    """assemble_values for the required rows, plus whatever V the values hold for the other rollout rows."""
    req = np.asarray(required, dtype=bool) & np.asarray(rollout_rows, dtype=bool)
    value[req] = assemble_values(rows_episode, rows_frame, req, by_episode, source_name)[req]
    rest = np.flatnonzero(np.asarray(rollout_rows, dtype=bool) & ~req)
    given = [ev for ev in by_episode.values() if ev.frame_index.size]
    if rest.size and given:
        keys = np.concatenate([_keys(np.int64(ev.episode_index), ev.frame_index) for ev in given])
        vals = np.concatenate([np.asarray(ev.value, dtype=np.float64) for ev in given])
        order = np.argsort(keys, kind="stable")
        keys, vals = keys[order], vals[order]
        want = _keys(np.asarray(rows_episode)[rest], np.asarray(rows_frame)[rest])
        pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
        found = keys[pos] == want
        value[rest[found]] = vals[pos[found]]
    return value


def _keys(episode, frame) -> np.ndarray:
    return np.asarray(episode, dtype=np.int64) * (1 << 32) + np.asarray(frame, dtype=np.int64)


def _refuse_values(ep, fr, v, missing, bad, empty: list[int], source_name: str) -> None:
    """The first problem, episode by episode: no values at all, a frame without one, a non-finite one."""
    first = min([*empty, *np.unique(ep[missing | bad]).tolist()[:1]])
    if first in empty:
        raise BadInput(
            f"{source_name} has no values for rollout episode {first}; every frame of a rollout episode needs a value"
        )
    rows = ep == first
    if missing[rows].any():
        frame = int(fr[rows & missing][0])
        raise BadInput(
            f"{source_name} has no value for episode {first} frame {frame}; every frame of a rollout episode needs a "
            "value"
        )
    i = np.flatnonzero(rows & bad)[0]
    raise BadInput(
        f"{source_name} has a non-finite value ({v[i]}) at episode {first} frame {int(fr[i])}; values must be finite"
    )
