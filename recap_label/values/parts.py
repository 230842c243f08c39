"""Per-episode value parts: what inference has computed so far, shareable by many processes.

The storage behind the value cache (values.cache, which decides when parts are read, written and
discarded). `meta/recap_label/values-partial/<key>/` holds the parts of one provenance
(checkpoint content, EMA, tokenizer, cameras, precision; `<key>` is a hash of it,
`provenance.json` the full record): one `episode-XXXXXX.parquet` per scored episode, each written
atomically under its own name, so any number of processes (an interrupted run resuming, torchrun
ranks, `--shard I/N` jobs of a cluster array) add parts side by side and a half-written part is
never mistaken for a done one. A `--dry-run` keeps its parts in the same layout outside the
dataset (values.cache.dry_run_dir).

Sharded scoring also leaves `split.json` (how many shards and which episodes each owns) and a
`shard-III-of-NNN.done` marker per finished shard; a scoring process registers itself under
`values-partial/scorers/` while it runs, so a label commit can refuse while scoring is live.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recap_label.errors import BadInput
from recap_label.store.faults import crash_point
from recap_label.store.fsutil import fsync_dir, write_file_atomic, write_json_atomic
from recap_label.store.lock import holder_alive, process_start_time
from recap_label.store.paths import PARTIAL_DIR
from recap_label.values.types import EpisodeValues

SCORERS = "scorers"


def provenance_key(provenance: dict) -> str:
    return hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:16]


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class PartialValues:
    """The parts of one provenance (created on first use). `base`: the folder of provenances
    (default: the dataset's values-partial/); `keys`: the input key of each episode
    (values.types.ValueSource.input_keys), stored with its part and checked on reading;
    `read_only`: a dry run's view of the dataset's parts (a bad part is skipped, not removed)."""

    def __init__(
        self,
        root: Path,
        provenance: dict,
        base: Path | None = None,
        *,
        keys: dict[int, str] | None = None,
        read_only: bool = False,
    ):
        self.root = root
        self.provenance = provenance
        self.dir = (root / PARTIAL_DIR if base is None else base) / provenance_key(provenance)
        self.read_only = read_only
        self.keys: dict[int, str] = dict(keys or {})
        self.dropped: list[int] = []  # episodes whose part did not read back whole
        self.stale: list[int] = []  # episodes whose part was computed from other inputs

    def ensure(self) -> "PartialValues":
        if not (self.dir / "provenance.json").exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.dir / "provenance.json", self.provenance)
        return self

    # -- parts -------------------------------------------------------------------------------

    def _part(self, episode: int) -> Path:
        return self.dir / f"episode-{episode:06d}.parquet"

    def done(self) -> set[int]:
        """Episodes with a part (not yet checked: see `read`)."""
        if not self.dir.is_dir():
            return set()
        out = set()
        for p in self.dir.glob("episode-*.parquet"):
            try:
                out.add(int(p.stem.split("-")[1]))
            except ValueError:
                continue
        return out

    def add(self, ev: EpisodeValues) -> None:
        table = pa.table(
            {"frame_index": pa.array(ev.frame_index, pa.int64()), "value": pa.array(ev.value, pa.float64())}
        )
        key = self.keys.get(ev.episode_index)
        if key:
            table = table.replace_schema_metadata({b"recap_label.input_key": key.encode()})
        write_file_atomic(self._part(ev.episode_index), lambda p: pq.write_table(table, p))
        crash_point("episode-values")

    def read(self, episode: int, length: int | np.ndarray) -> EpisodeValues | None:
        """The part of `episode` if it reads back whole (schema, `length` finite values of
        distinct frames; or, given frame indices, finite values of distinct frames among which
        are all of those), else None: it is dropped and the episode is scored again."""
        path = self._part(episode)
        try:
            t = pq.read_table(path)
            frames = t["frame_index"].to_numpy()
            values = t["value"].to_numpy().astype(np.float64)
            distinct = np.isfinite(values).all() and np.unique(frames).size == t.num_rows
            if isinstance(length, (int, np.integer)):
                whole = t.num_rows == length and distinct
            else:
                whole = distinct and bool(np.isin(length, frames).all())
            stored = (t.schema.metadata or {}).get(b"recap_label.input_key", b"").decode()
        except (pa.ArrowException, OSError, KeyError, ValueError, TypeError):
            whole, stored = False, ""
        if whole and self.keys.get(episode) and stored != self.keys[episode]:
            if not self.read_only:
                path.unlink(missing_ok=True)
            self.stale.append(episode)
            return None
        if whole:
            return EpisodeValues(episode, frames, values)
        if not self.read_only:
            path.unlink(missing_ok=True)
        self.dropped.append(episode)
        return None

    def remove_if_empty(self) -> None:
        """Remove this provenance's folder (and values-partial/) when no part or split is in it."""
        if self.dir.is_dir() and not self.done() and self.split() is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            try:
                self.dir.parent.rmdir()
            except OSError:
                pass

    def drop(self, episodes: list[int]) -> None:
        for e in episodes:
            self._part(e).unlink(missing_ok=True)

    def read_whole(self, lengths: dict[int, int | np.ndarray]) -> dict[int, EpisodeValues]:
        """The parts that read back whole, for the given episodes and lengths (or frame indices
        each part must hold: see `read`)."""
        done = self.done()
        out = {}
        for e, n in lengths.items():
            if e in done:
                ev = self.read(e, n)
                if ev is not None:
                    out[e] = ev
        return out

    # -- shards ------------------------------------------------------------------------------

    def claim_split(self, num_shards: int, assignment: list[list[int]]) -> None:
        """Record (or check) how the episodes are split: every shard of one split must agree."""
        self.ensure()
        path = self.dir / "split.json"
        record = {"num_shards": num_shards, "episodes": assignment}
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            existing = _load_json(path)
            if not isinstance(existing, dict) or existing.get("num_shards") != num_shards:
                other = existing.get("num_shards") if isinstance(existing, dict) else "?"
                raise BadInput(
                    f"this copy is being scored as {other} shards, not {num_shards}; give every shard the same N "
                    f"(the split would not tile), "
                    f"or remove {path.parent} to start over"
                ) from None
            if existing.get("episodes") != assignment:
                raise BadInput(
                    f"the rollout episodes changed since the other shards split them ({path}); remove {path.parent} "
                    f"and score every shard again"
                )
            return
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(self.dir)

    def split(self) -> dict | None:
        record = _load_json(self.dir / "split.json")
        return record if isinstance(record, dict) and isinstance(record.get("num_shards"), int) else None

    def mark_shard_done(self, shard: int, num_shards: int) -> None:
        write_json_atomic(self.dir / f"shard-{shard:03d}-of-{num_shards:03d}.done", {"time": time.time()})

    def shards_not_done(self) -> list[int]:
        """1-based shard numbers of the split without a done marker yet."""
        split = self.split()
        if split is None:
            return []
        n = split["num_shards"]
        return [i for i in range(1, n + 1) if not (self.dir / f"shard-{i:03d}-of-{n:03d}.done").exists()]

    def missing_shards(self, episodes_done: set[int]) -> list[int]:
        """1-based shard numbers of the split whose episodes are not all scored yet."""
        split = self.split()
        if split is None:
            return []
        return [i + 1 for i, eps in enumerate(split["episodes"]) if not set(eps) <= episodes_done]


def all_provenances(root: Path, base: Path | None = None) -> list[dict]:
    folder = root / PARTIAL_DIR if base is None else base
    if not folder.is_dir():
        return []
    out = []
    for stamp in sorted(folder.glob("*/provenance.json")):
        prov = _load_json(stamp)
        if isinstance(prov, dict):
            out.append(prov)
    return out


def provenance_difference(a: dict, b: dict) -> str:
    """What differs between two provenances, for a message."""
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k} ({b.get(k)!r} there, {a.get(k)!r} here)" for k in keys) or "nothing"


def assign_by_frames(lengths: dict[int, int], groups: int) -> list[list[int]]:
    """The episodes in `groups` groups balanced by frames (shards, torchrun ranks): longest
    episodes first, each to the group with the fewest frames so far."""
    loads = [0] * groups
    out: list[list[int]] = [[] for _ in range(groups)]
    for ep, n in sorted(lengths.items(), key=lambda kv: (-kv[1], kv[0])):
        r = loads.index(min(loads))
        out[r].append(ep)
        loads[r] += n
    return [sorted(x) for x in out]


def remove_folder(folder: Path) -> None:
    """Drop a folder of parts (and fsync its parent) once its values are committed to the sidecar."""
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
        fsync_dir(folder.parent)


# -- live scoring processes ------------------------------------------------------------------


def scorer_dir(root: Path) -> Path:
    return root / PARTIAL_DIR / SCORERS


@contextmanager
def registered_scorer(root: Path, what: str) -> Iterator[None]:
    """Announce a scoring process for the duration of the block (a label commit waits for it)."""
    folder = scorer_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    me = {
        "pid": os.getpid(),
        "pid_start": process_start_time(os.getpid()),
        "host": socket.gethostname(),
        "what": what,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = folder / f"{me['host']}-{me['pid']}.json"
    write_json_atomic(path, me)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def live_scorers(root: Path) -> list[dict]:
    """Scoring processes that may still be running; records of dead ones are removed."""
    folder = scorer_dir(root)
    if not folder.is_dir():
        return []
    live = []
    for path in sorted(folder.glob("*.json")):
        holder = _load_json(path)
        if isinstance(holder, dict) and holder_alive(holder):
            live.append(holder)
        else:
            path.unlink(missing_ok=True)
    return live
