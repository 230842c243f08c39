"""The values sidecar: V, A and the label of every labeled frame, and the resumable parts of an
inference in progress.

`meta/recap_label/values.parquet` is keyed by (episode_index, frame_index), with the source's
provenance in its schema metadata; a later run whose source reuses that provenance relabels
from it without inference. Model inference streams into per-episode parts (values.parts), so
an interrupted run resumes from the episodes already done, and shards scored elsewhere are
picked up whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recap_label.errors import BadInput
from recap_label.lerobot.dataset import LeRobotDataset
from recap_label.store.paths import SIDECAR
from recap_label.values.parts import PartialValues, all_provenances, provenance_difference
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


def sidecar_table(episode: np.ndarray, frame: np.ndarray, value: np.ndarray, advantage: np.ndarray, label: np.ndarray, provenance: dict, settings: dict,
                  input_keys: dict[int, str] | None = None) -> pa.Table:
    table = pa.table(
        {
            "episode_index": pa.array(episode, pa.int64()),
            "frame_index": pa.array(frame, pa.int64()),
            "value": pa.array(value, pa.float32()),
            "advantage": pa.array(advantage, pa.float32()),
            "label": pa.array(label, pa.string()),
        }
    )
    meta = {b"recap_label.provenance": json.dumps(provenance, sort_keys=True).encode(), b"recap_label.settings": json.dumps(settings, sort_keys=True).encode(),
            b"recap_label.input_keys": json.dumps({str(k): v for k, v in (input_keys or {}).items()}, sort_keys=True).encode()}
    return table.replace_schema_metadata(meta)


def cached_values(ds: LeRobotDataset, table: pa.Table, episodes: list[int], keys: dict[int, str] | None = None) -> dict[int, EpisodeValues]:
    """V from the sidecar table for the episodes it covers whole and, when `keys` are given,
    whose inputs are unchanged since (the key stored with them matches)."""
    stored = {}
    try:
        stored = {int(k): v for k, v in json.loads((table.schema.metadata or {}).get(b"recap_label.input_keys", b"{}")).items()}
    except (ValueError, TypeError, AttributeError):
        stored = {}
    split = {ev.episode_index: ev for ev in split_by_episode(
        table["episode_index"].to_numpy(), table["frame_index"].to_numpy(), table["value"].to_numpy().astype(np.float64), episodes)}
    return {e: ev for e, ev in split.items()
            if ev.frame_index.size == ds.episodes[e].length and (not keys or stored.get(e) == keys.get(e))}


def gather_values(
    ds: LeRobotDataset,
    source: ValueSource,
    episodes: list[int],
    *,
    recompute: bool,
    kept: Path | None = None,
    dry_run: bool = False,
) -> tuple[dict[int, EpisodeValues], str, dict, dict[int, str]]:
    """V for every frame of `episodes`: (values by episode, how they were obtained, the
    provenance of the values used, the input key of each episode). In order: the source itself
    (a column or file), the values sidecar, complete value parts (resumed runs, finished shards),
    then parts an earlier --dry-run kept outside the dataset (in `kept`), then inference of what is
    left. Cached values whose episode's inputs changed are computed again. With `dry_run` nothing
    is written inside the dataset: new parts go to `kept` instead."""
    if source.caching is Caching.READ_EACH_RUN:
        out = {ev.episode_index: ev for ev in source.episode_values(ds, episodes)}
        return out, source.provenance()["source"], source.provenance(), {}
    keys = source.input_keys(ds, episodes)
    have: dict[int, EpisodeValues] = {}
    provenance = None
    cached = None if recompute else read_sidecar(ds.root)
    if cached is not None and source.reuses(cached[0]):
        have = cached_values(ds, cached[1], episodes, keys)
        provenance = cached[0]
        if len(have) == len(episodes):
            return have, "sidecar (no inference)", cached[0], keys
    from_sidecar = len(have)
    changed = [e for e in episodes if e not in have] if provenance is not None else []
    lengths = {e: ds.episodes[e].length for e in episodes}
    found = None if recompute else PartialValues.find(ds.root, source)
    if found is not None:
        found.keys = keys
        found.read_only = dry_run
        have.update(read_parts(found, {e: n for e, n in lengths.items() if e not in have}))
        missing = found.missing_shards(set(have))
        if missing and found.split() is not None:
            n = found.split()["num_shards"]
            raise BadInput(
                f"shards {', '.join(map(str, missing))} of {n} have not finished scoring {ds.root.name}; run them "
                f"(`recap-label label … --shard I/{n} --score-only`), then label again"
            )
        if len(have) == len(episodes) and (provenance is None or provenance == found.provenance):
            shards = found.split()
            how = (f"scored parts ({shards['num_shards']} shards, no inference)" if shards
                   else f"scored parts (resumed: {len(have)} of {len(episodes)} episodes were already done, no inference)")
            return have, how + _notes(found), found.provenance, keys
    elif not recompute and provenance is None:
        _refuse_foreign_shards(ds.root, source)
    earlier = None if recompute or kept is None else PartialValues.find(ds.root, source, base=kept)
    if earlier is not None and (provenance is None or provenance == earlier.provenance) and (found is None or found.provenance == earlier.provenance):
        earlier.keys = keys
        have.update(read_parts(earlier, {e: n for e, n in lengths.items() if e not in have}))
        if len(have) == len(episodes):
            return have, f"values kept by an earlier --dry-run in {kept} (no inference)" + _notes(found, earlier), earlier.provenance, keys
    source.prepare()  # from here on the provenance is what inference really runs with
    partial = PartialValues(ds.root, source.provenance(), base=kept if dry_run else None).ensure()
    partial.keys = keys
    if recompute:
        partial.drop(episodes)
        have = {}
    elif (found is None or found.dir != partial.dir) and (earlier is None or earlier.dir != partial.dir):
        have.update(read_parts(partial, {e: n for e, n in lengths.items() if e not in have}))
    todo = [e for e in episodes if e not in have]
    try:
        for ev in source.episode_values(ds, todo):
            partial.add(ev)
    except BaseException:
        partial.remove_if_empty()  # nothing to resume from: leave no trace
        raise
    have.update(read_parts(partial, {e: lengths[e] for e in todo}))
    lost = [e for e in episodes if e not in have]
    if lost:
        raise BadInput(f"the values of episode {lost[0]} could not be read back from {partial.dir}; check the disk and run again")
    if changed:
        how = f"sidecar for {from_sidecar} episode(s); inference for {len(todo)} whose inputs changed since"
    elif len(todo) < len(episodes):
        how = f"inference (resumed: {len(episodes) - len(todo)} of {len(episodes)} episodes were already done)"
    else:
        how = "inference"
    return have, how + _notes(found, partial), partial.provenance, keys


def _notes(*parts) -> str:
    dropped = sorted({e for p in parts if p is not None for e in p.dropped})
    stale = sorted({e for p in parts if p is not None for e in p.stale})
    out = ""
    if dropped:
        out += f"; {len(dropped)} damaged value part(s) dropped and scored again (episode {', '.join(map(str, dropped))})"
    if stale:
        out += f"; {len(stale)} value part(s) of changed inputs scored again (episode {', '.join(map(str, stale))})"
    return out


def read_parts(parts: PartialValues, lengths: dict[int, int]) -> dict[int, EpisodeValues]:
    """The parts that read back whole, for the given episodes and lengths."""
    done = parts.done()
    out = {}
    for e, n in lengths.items():
        if e in done:
            ev = parts.read(e, n)
            if ev is not None:
                out[e] = ev
    return out


def _refuse_foreign_shards(root, source: ValueSource) -> None:
    """Shard parts scored with other settings are not silently thrown away or ignored."""
    for prov in all_provenances(root):
        other = PartialValues(root, prov)
        if other.split() is not None:
            raise BadInput(
                f"{root.name} holds shard parts scored with other settings: {provenance_difference(source.provenance(), prov)}; "
                "score the shards with these settings, or pass --recompute to ignore them"
            )


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
