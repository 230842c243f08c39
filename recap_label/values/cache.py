"""The value cache: where a label run's V comes from, and what is kept of it afterwards.

One `ValueCache` per (dataset, value source). Its lookup order, written here only:

1. a source read each run (a column, a values file) is simply read: nothing is cached;
2. the values sidecar `meta/recap_label/values.parquet`: V, A and label of every rollout frame of
   the last committed run, keyed by (episode_index, frame_index), with the source's provenance
   and each episode's input key in its schema metadata; used for the episodes it covers whole
   when the source reuses that provenance and the episode's inputs are unchanged. The sidecars
   of the last few other provenances are kept beside it (`values-earlier/`, KEPT_PROVENANCES in
   all, the oldest dropped), so going back to an earlier source (three cameras, then two, then
   three again) reuses its V instead of inferring everything again;
3. the value parts in `meta/recap_label/values-partial/` (values.parts): an interrupted
   inference, or finished `--shard I/N --score-only` jobs;
4. the parts an earlier `--dry-run` kept outside the dataset (`dry_run_dir`);
5. inference of the rest, streamed into parts as it goes (resumable), by this process or split
   across torchrun ranks.

The label commit stages the new sidecar (`stage`); once it is committed, `committed` discards
the parts it folded in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recap_label.config import Settings
from recap_label.errors import BadInput
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.store.fsutil import write_file_atomic
from recap_label.store.paths import EARLIER_SIDECARS, PARTIAL_DIR, SIDECAR
from recap_label.values.parts import (
    PartialValues,
    all_provenances,
    assign_by_frames,
    live_scorers,
    provenance_difference,
    registered_scorer,
    remove_folder,
)
from recap_label.values.types import Caching, EpisodeValues, ValueSource, split_by_episode

# -- the sidecar's format ----------------------------------------------------------------------


KEPT_PROVENANCES = 3  # the sidecar's and up to two earlier value sources' V, per dataset


def read_sidecar(root: Path) -> tuple[dict, pa.Table] | None:
    """(provenance, table) of the values sidecar, or None when there is none or it is unreadable."""
    return _read_sidecar_file(root / SIDECAR)


def provenance_key(provenance: dict) -> str:
    return hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:16]


def earlier_sidecars(root: Path) -> list[Path]:
    """The kept sidecars of earlier value sources, newest first."""
    folder = root / EARLIER_SIDECARS
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("*.parquet") if not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def reusable_sidecar(root: Path, source: ValueSource) -> tuple[dict, pa.Table] | None:
    """The sidecar whose provenance the source reuses: the current one, else the newest earlier one."""
    for path in [root / SIDECAR, *earlier_sidecars(root)]:
        found = _read_sidecar_file(path)
        if found is not None and source.reuses(found[0]):
            return found
    return None


def _read_sidecar_file(path: Path) -> tuple[dict, pa.Table] | None:
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
        provenance = json.loads(table.schema.metadata[b"recap_label.provenance"])
    except (pa.ArrowException, OSError, KeyError, TypeError, ValueError):
        return None  # an unreadable sidecar is only a cache: ignore it, inference recomputes
    return provenance, table


def sidecar_table(
    episode: np.ndarray,
    frame: np.ndarray,
    value: np.ndarray,
    advantage: np.ndarray,
    label: np.ndarray,
    provenance: dict,
    settings: dict,
    input_keys: dict[int, str] | None = None,
) -> pa.Table:
    table = pa.table(
        {
            "episode_index": pa.array(episode, pa.int64()),
            "frame_index": pa.array(frame, pa.int64()),
            "value": pa.array(value, pa.float32()),
            "advantage": pa.array(advantage, pa.float32()),
            "label": pa.array(label, pa.string()),
        }
    )
    meta = {
        b"recap_label.provenance": json.dumps(provenance, sort_keys=True).encode(),
        b"recap_label.settings": json.dumps(settings, sort_keys=True).encode(),
        b"recap_label.input_keys": json.dumps(
            {str(k): v for k, v in (input_keys or {}).items()}, sort_keys=True
        ).encode(),
    }
    return table.replace_schema_metadata(meta)


def sidecar_values(
    ds: DatasetFiles,
    table: pa.Table,
    episodes: list[int],
    keys: dict[int, str] | None = None,
    want: dict[int, np.ndarray] | None = None,
    partial: dict[int, EpisodeValues] | None = None,
) -> dict[int, EpisodeValues]:
    """V from the sidecar table for the episodes it covers whole (`want`: holds V for each of
    those frame indices of the episode) and, when `keys` are given, whose inputs are unchanged
    since (the key stored with them matches). A sidecar written by `--infer needed` holds V for
    some frames only (NaN for the others); the episodes it covers in part go into `partial`."""
    stored = {}
    try:
        stored = {
            int(k): v
            for k, v in json.loads((table.schema.metadata or {}).get(b"recap_label.input_keys", b"{}")).items()
        }
    except (ValueError, TypeError, AttributeError):
        stored = {}
    value = table["value"].to_numpy(zero_copy_only=False).astype(np.float64)
    has = np.isfinite(value)
    split = {
        ev.episode_index: ev
        for ev in split_by_episode(
            table["episode_index"].to_numpy()[has], table["frame_index"].to_numpy()[has], value[has], episodes
        )
    }
    out = {}
    for e, ev in split.items():
        if keys and stored.get(e) != keys.get(e):
            continue
        if ev.frame_index.size == ds.episodes[e].length if want is None else np.isin(want[e], ev.frame_index).all():
            out[e] = ev
        elif partial is not None and ev.frame_index.size:
            partial[e] = ev
    return out


def merged(a: EpisodeValues | None, b: EpisodeValues) -> EpisodeValues:
    """The frames of both (b's value where both have one), sorted by frame."""
    if a is None or a.frame_index.size == 0:
        return b
    frames = np.concatenate([b.frame_index, a.frame_index])
    values = np.concatenate([b.value, a.value])
    frames, first = np.unique(frames, return_index=True)
    return EpisodeValues(b.episode_index, frames, values[first])


# -- where dry-run values live, and the parts kept in a dataset --------------------------------


DRY_RUN_VALUES = "dry-run-values"


def dry_run_dir(cache_dir: Path, root: Path) -> Path:
    """Where `label --dry-run` keeps the values it computed for the dataset at `root`: under
    `cache_dir` (recap-label's cache), one folder per dataset, keyed by its real path."""
    real = os.path.realpath(root)
    return Path(cache_dir) / DRY_RUN_VALUES / f"{Path(real).name}-{hashlib.sha256(real.encode()).hexdigest()[:12]}"


def kept_parts(root: Path) -> list[PartialValues]:
    """The value parts in the dataset, one per provenance (for `verify`'s notes)."""
    return [PartialValues(root, prov) for prov in all_provenances(root)]


# -- the cache ---------------------------------------------------------------------------------


@dataclass
class Values:
    """V of the episodes asked for, and where it came from."""

    by_episode: dict[int, EpisodeValues]
    values_from: str  # how they were obtained, for the report ("sidecar (no inference)", "inference", …)
    provenance: dict  # what they were computed from (recorded in the run and the sidecar)
    input_keys: dict[int, str]  # per episode, what its V was computed from (empty for sources read each run)


@dataclass
class Lookup:
    """What the cache already holds for the episodes asked for (steps 1-4), and where inference
    of the rest goes (step 5, after `ValueCache.open_inference`)."""

    episodes: list[int]
    keys: dict[int, str]
    values: dict[int, EpisodeValues] = field(default_factory=dict)
    done: Values | None = None  # set when nothing is left to infer
    from_sidecar: int = 0
    changed: bool = False  # the sidecar was reused for some episodes; the others' inputs changed since
    found: PartialValues | None = None  # the dataset's parts the source reuses
    earlier: PartialValues | None = None  # the parts a dry run kept outside the dataset
    parts: PartialValues | None = None  # where inference writes (open_inference)
    todo: list[int] = field(default_factory=list)  # what inference is to compute (open_inference)
    want: dict[int, np.ndarray] | None = None  # per episode, the frames that need V (None: every frame)
    partial: dict[int, EpisodeValues] = field(default_factory=dict)  # the sidecar's V of part of an episode

    def rest(self, e: int, length: int) -> np.ndarray | int:
        """What inference (or a part) must still provide for episode e: its length when that is
        every frame, else the frame indices."""
        wanted = np.arange(length) if self.want is None else np.asarray(self.want[e], dtype=np.int64)
        have = self.partial.get(e)
        if have is not None:
            wanted = wanted[~np.isin(wanted, have.frame_index)]
        return length if wanted.size == length else wanted

    @property
    def missing(self) -> list[int]:
        return [e for e in self.episodes if e not in self.values]

    def finished(self, values_from: str, provenance: dict) -> "Lookup":
        self.done = Values(self.values, values_from, provenance, self.keys)
        return self


@dataclass
class Scoring:
    """What `score` did for this process's episodes."""

    episodes: list[int]
    inferred: int
    reused: int  # already scored (resumed)
    parts: Path
    missing_shards: list[int]
    dropped: list[int]


class ValueCache:
    """The values of one dataset for one value source. `dry_run_dir`: where a dry run keeps what
    it computes (outside the dataset; None for sources read each run); with `dry_run` nothing is
    written inside the dataset."""

    def __init__(
        self, ds: DatasetFiles, source: ValueSource, dry_run_dir: Path | None = None, *, dry_run: bool = False
    ):
        self.ds, self.source = ds, source
        self.caches = source.caching is Caching.SIDECAR
        self.dry_run_dir = dry_run_dir if self.caches else None
        self.dry_run = dry_run
        self._committed_provenance: dict | None = None  # the provenance of the sidecar this run staged

    @classmethod
    def of(cls, ds: DatasetFiles, source: ValueSource, settings: Settings, *, dry_run: bool = False) -> "ValueCache":
        """The cache of a label run: dry-run values go beside the model cache, in recap-label's cache folder."""
        return cls(ds, source, dry_run_dir(settings.model_cache.parent, ds.root), dry_run=dry_run)

    def _lengths(self, episodes: list[int]) -> dict[int, int]:
        return {e: self.ds.episodes[e].length for e in episodes}

    def _parts(
        self, provenance: dict, keys: dict[int, str], base: Path | None = None, read_only: bool = False
    ) -> PartialValues:
        return PartialValues(self.ds.root, provenance, base, keys=keys, read_only=read_only)

    def _reusable(
        self, keys: dict[int, str], base: Path | None = None, read_only: bool = False
    ) -> PartialValues | None:
        """The parts the source can reuse (exact provenance first), or None; `base`: parts kept
        outside the dataset instead of its values-partial/."""
        mine = self.source.provenance()
        found = [
            self._parts(prov, keys, base, read_only)
            for prov in all_provenances(self.ds.root, base)
            if self.source.reuses(prov)
        ]
        found.sort(key=lambda p: p.provenance != mine)
        return found[0] if found else None

    # -- the lookup order ------------------------------------------------------------------------

    def gather(
        self, episodes: list[int], *, recompute: bool = False, want: dict[int, np.ndarray] | None = None
    ) -> Values:
        """V for every frame of `episodes` (`want`: per episode, only those frame indices; `--infer
        needed`), in the lookup order, inferring what no cache holds (`recompute`: infer everything
        again). Cached values whose episode's inputs changed are computed again."""
        look = self.lookup(episodes, recompute=recompute, want=want)
        if look.done is not None:
            return look.done
        parts = self.open_inference(look, recompute=recompute)
        try:
            for ev in self._infer(look, look.todo):
                parts.add(ev)
        except BaseException:
            parts.remove_if_empty()  # nothing to resume from: leave no trace
            raise
        return self.finish(look)

    def _rest(self, look: Lookup, episodes: list[int]) -> dict[int, int | np.ndarray]:
        return {e: look.rest(e, self.ds.episodes[e].length) for e in episodes}

    def _take(self, look: Lookup, found: dict[int, EpisodeValues]) -> None:
        """Values read for the missing episodes, joined to what the sidecar holds of each."""
        for e, ev in found.items():
            look.values[e] = merged(look.partial.get(e), ev)

    def _infer(self, look: Lookup, episodes: list[int]) -> Iterator[EpisodeValues]:
        """The source's values of what `episodes` still lack (whole episodes: every frame)."""
        rest = self._rest(look, episodes)
        if all(isinstance(r, int) for r in rest.values()):
            return self.source.episode_values(self.ds, episodes)
        frames = {e: (np.arange(r) if isinstance(r, int) else r) for e, r in rest.items()}
        return self.source.episode_values(self.ds, episodes, frames=frames)

    def lookup(
        self, episodes: list[int], *, recompute: bool = False, want: dict[int, np.ndarray] | None = None
    ) -> Lookup:
        """Steps 1-4 of the lookup order: no inference, no model loaded."""
        ds, source = self.ds, self.source
        if not self.caches:
            values = {ev.episode_index: ev for ev in source.episode_values(ds, episodes)}
            provenance = source.provenance()
            return Lookup(episodes, {}, values).finished(provenance["source"], provenance)
        if want is not None:  # an episode none of whose frames needs V is not asked for at all
            episodes = [e for e in episodes if np.size(want.get(e, ()))]
        look = Lookup(episodes, source.input_keys(ds, episodes), want=want)  # once: PNG cameras read image bytes
        sidecar_provenance = None
        cached = None if recompute else reusable_sidecar(ds.root, source)
        if cached is not None:
            sidecar_provenance = cached[0]
            look.values = sidecar_values(ds, cached[1], episodes, look.keys, want, look.partial)
            if not look.missing:
                return look.finished("sidecar (no inference)", sidecar_provenance)
            look.from_sidecar, look.changed = len(look.values), True
        found = look.found = None if recompute else self._reusable(look.keys, read_only=self.dry_run)
        if found is not None:
            self._take(look, found.read_whole(self._rest(look, look.missing)))
            shards = found.split()
            unfinished = found.missing_shards(set(look.values))
            if unfinished and shards is not None:
                n = shards["num_shards"]
                raise BadInput(
                    f"shards {', '.join(map(str, unfinished))} of {n} have not finished scoring {ds.root.name}; "
                    f"run them (`recap-label label … --shard I/{n} --score-only`), then label again"
                )
            if not look.missing and (sidecar_provenance is None or sidecar_provenance == found.provenance):
                how = (
                    f"scored parts ({shards['num_shards']} shards, no inference)"
                    if shards
                    else f"scored parts (resumed: {len(look.values)} of {len(episodes)} episodes were already done, "
                    "no inference)"
                )
                return look.finished(how + _notes(found), found.provenance)
        elif not recompute and sidecar_provenance is None:
            self._refuse_foreign_shards()
        earlier = look.earlier = (
            None if recompute or self.dry_run_dir is None else self._reusable(look.keys, base=self.dry_run_dir)
        )
        if (
            earlier is not None
            and sidecar_provenance in (None, earlier.provenance)
            and (found is None or found.provenance == earlier.provenance)
        ):
            self._take(look, earlier.read_whole(self._rest(look, look.missing)))
            if not look.missing:
                return look.finished(
                    f"values kept by an earlier --dry-run in {self.dry_run_dir} (no inference)"
                    + _notes(found, earlier),
                    earlier.provenance,
                )
        return look

    def open_inference(self, look: Lookup, *, recompute: bool = False) -> PartialValues:
        """Step 5 begins: prepare the source, open the parts inference writes into (their own
        earlier parts count as done), and set `look.todo`."""
        self.source.prepare()  # from here on the provenance is what inference really runs with
        parts = look.parts = self._parts(
            self.source.provenance(), look.keys, self.dry_run_dir if self.dry_run else None
        ).ensure()
        if recompute:
            parts.drop(look.episodes)
            look.values, look.partial = {}, {}
        elif all(p is None or p.dir != parts.dir for p in (look.found, look.earlier)):
            self._take(look, parts.read_whole(self._rest(look, look.missing)))
        look.todo = look.missing
        return parts

    def finish(self, look: Lookup, ranks: list[list[int]] | None = None) -> Values:
        """Step 5 ends: read back what inference wrote (`ranks`: how torchrun split `look.todo`)."""
        parts = look.parts
        self._take(look, parts.read_whole(self._rest(look, look.todo)))
        lost = look.missing
        if lost:
            raise BadInput(
                f"the values of episode {lost[0]} could not be read back from {parts.dir}; check the disk and run again"
            )
        n, todo = len(look.episodes), len(look.todo)
        if ranks is not None:
            sizes = ", ".join(f"rank {r}: {len(a)}" for r, a in enumerate(ranks))
            how = f"inference on {len(ranks)} ranks (episodes {sizes}; {n - todo} already done)"
        elif look.partial:
            how = (
                f"sidecar for {look.from_sidecar} episode(s) whole and {len(look.partial)} in part (written by "
                f"--infer needed); inference for the frames it lacks"
            )
        elif look.changed:
            how = f"sidecar for {look.from_sidecar} episode(s); inference for {todo} whose inputs changed since"
        elif todo < n:
            how = f"inference (resumed: {n - todo} of {n} episodes were already done)"
        else:
            how = "inference"
        return Values(look.values, how + _notes(look.found, parts), parts.provenance, look.keys)

    def infer_share(self, episodes: list[int], provenance: dict) -> None:
        """A torchrun rank's share of the inference the lead rank opened with `provenance`."""
        parts = self._parts(
            provenance, self.source.input_keys(self.ds, episodes), self.dry_run_dir if self.dry_run else None
        ).ensure()
        for ev in self.source.episode_values(self.ds, episodes):
            parts.add(ev)

    def _refuse_foreign_shards(self) -> None:
        """Shard parts scored with other settings are not silently thrown away or ignored."""
        for other in kept_parts(self.ds.root):
            if other.split() is not None:
                raise BadInput(
                    f"{self.ds.root.name} holds shard parts scored with other settings: "
                    f"{provenance_difference(self.source.provenance(), other.provenance)}; "
                    "score the shards with these settings, or pass --recompute to ignore them"
                )

    # -- scoring only (`--score-only`, `--shard I/N`) ----------------------------------------------

    @contextmanager
    def scoring(self, what: str) -> Iterator[None]:
        """Announce this scoring process for the duration of the block (a label commit waits for it)."""
        self._require_inference()
        # a model that cannot run (a tokenizer that does not fit it) is refused before anything is written
        self.source.prepare()
        with registered_scorer(self.ds.root, what):
            yield

    def _require_inference(self) -> None:
        if not self.caches:
            raise BadInput("--score-only needs --checkpoint-dir: values from a column or a file have nothing to score")

    def live_scorers(self) -> list[dict]:
        """Scoring processes that may still be running on this dataset."""
        return live_scorers(self.ds.root)

    def score(self, episodes: list[int], *, shard: tuple[int, int] | None = None, recompute: bool = False) -> Scoring:
        """Infer this process's share of `episodes` (shard I of N, balanced by frames; all without
        `shard`) into the dataset's parts, reusing the parts of its own provenance. The sidecar is
        not read: the parts are what the next `label` folds into a new sidecar."""
        self._require_inference()
        lengths = self._lengths(sorted(episodes))
        self.source.prepare()
        parts = self._parts(self.source.provenance(), self.source.input_keys(self.ds, sorted(lengths))).ensure()
        if shard is None:
            mine = sorted(lengths)
        else:
            index, n = shard
            assignment = assign_by_frames(lengths, n)
            parts.claim_split(n, assignment)
            mine = assignment[index - 1]
        if recompute:
            parts.drop(mine)
        have = parts.read_whole({e: lengths[e] for e in mine})
        todo = [e for e in mine if e not in have]
        for ev in self.source.episode_values(self.ds, todo):
            parts.add(ev)
        if shard is not None:
            parts.mark_shard_done(*shard)
        return Scoring(mine, len(todo), len(have), parts.dir, parts.shards_not_done(), parts.dropped)

    # -- after the run -------------------------------------------------------------------------------

    def stage(
        self,
        txn,
        episode: np.ndarray,
        frame: np.ndarray,
        value: np.ndarray,
        advantage: np.ndarray,
        label: np.ndarray,
        *,
        provenance: dict,
        settings: dict,
        input_keys: dict[int, str],
    ) -> None:
        """Stage the new sidecar (the rollout frames' V, A and label) in the label commit `txn`
        (store.writeback.Transaction). The sidecar it replaces is kept first when its provenance
        differs (only a cache: kept even should the commit fail)."""
        self._keep_earlier(provenance)
        self._committed_provenance = provenance
        txn.stage_table(
            self.ds.root / SIDECAR,
            sidecar_table(episode, frame, value, advantage, label, provenance, settings, input_keys),
        )

    def committed(self) -> None:
        """The label commit landed: the sidecar holds the values now, so the parts it folded in
        (and the values a dry run kept) are discarded. Parts are kept for sources read each run:
        they belong to another source's inference."""
        if self.caches:
            remove_folder(self.ds.root / PARTIAL_DIR)
            if self.dry_run_dir is not None:
                remove_folder(self.dry_run_dir)
        self._prune_earlier()

    def _keep_earlier(self, provenance: dict) -> None:
        current = read_sidecar(self.ds.root)
        if current is None or provenance_key(current[0]) == provenance_key(provenance):
            return
        kept = self.ds.root / EARLIER_SIDECARS / f"{provenance_key(current[0])}.parquet"
        kept.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(kept, lambda tmp: shutil.copyfile(self.ds.root / SIDECAR, tmp))

    def _prune_earlier(self) -> None:
        """The committed provenance's copy is the sidecar now; beyond the bound, the oldest go."""
        mine = None if self._committed_provenance is None else provenance_key(self._committed_provenance)
        earlier = earlier_sidecars(self.ds.root)
        stale = [p for p in earlier if p.stem == mine]
        earlier = [p for p in earlier if p.stem != mine]
        for path in [*stale, *earlier[KEPT_PROVENANCES - 1 :]]:
            try:
                path.unlink()
            except OSError:
                pass  # a cache file left over costs only disk space


def _notes(*parts: PartialValues | None) -> str:
    dropped = sorted({e for p in parts if p is not None for e in p.dropped})
    stale = sorted({e for p in parts if p is not None for e in p.stale})
    out = ""
    if dropped:
        out += (
            f"; {len(dropped)} damaged value part(s) dropped and scored again (episode {', '.join(map(str, dropped))})"
        )
    if stale:
        out += f"; {len(stale)} value part(s) of changed inputs scored again (episode {', '.join(map(str, stale))})"
    return out
