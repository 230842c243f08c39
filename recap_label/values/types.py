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

    def episode_values(self, ds: DatasetFiles, episodes: list[int]) -> Iterator[EpisodeValues]: ...


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
) -> np.ndarray:
    """V per dataset row (NaN outside rollouts); every rollout frame must have one finite value."""
    value = np.full(rows_episode.size, np.nan)
    for e in np.unique(rows_episode[rollout_rows]):
        sel = np.flatnonzero(rows_episode == e)
        ev = by_episode.get(int(e))
        frames = rows_frame[sel]
        if ev is None or ev.frame_index.size == 0:
            raise BadInput(
                f"{source_name} has no values for rollout episode {int(e)}; "
                "every frame of a rollout episode needs a value"
            )
        pos = np.searchsorted(ev.frame_index, frames)
        pos_c = np.minimum(pos, ev.frame_index.size - 1)
        missing = ev.frame_index[pos_c] != frames
        if missing.any():
            raise BadInput(
                f"{source_name} has no value for episode {int(e)} frame {int(frames[missing][0])}; "
                "every frame of a rollout episode needs a value"
            )
        v = ev.value[pos_c]
        bad = ~np.isfinite(v)
        if bad.any():
            raise BadInput(
                f"{source_name} has a non-finite value ({v[bad][0]}) at episode {int(e)} frame {int(frames[bad][0])}; "
                "values must be finite"
            )
        value[sel] = v
    return value
