"""Many GPUs, many nodes: `torchrun --nproc-per-node N -m recap_label label …`.

Rank 0 holds the dataset lock, validates, and splits the episodes still to infer across
ranks, balanced by frames. Every rank writes its per-episode values into the shared
resumable sidecar folder; rank 0 then computes the single global threshold and writes
the labels once. Only Python objects are exchanged (gloo), so no NCCL is needed.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from recap_label.errors import RecapError
from recap_label.lerobot.dataset import LeRobotDataset
from recap_label.values.parts import PartialValues
from recap_label.values.sidecar import cached_values, gather_values, read_parts, read_sidecar
from recap_label.values.sources import Caching, EpisodeValues, ValueSource


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


class Dist:
    def __init__(self):
        import torch.distributed as dist

        self._dist = dist
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(hours=6))
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.plan_sent = False

    def broadcast(self, obj=None):
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        if self.rank == 0:
            self.plan_sent = True
        return box[0]

    def gather(self, obj):
        out = [None] * self.world if self.rank == 0 else None
        self._dist.gather_object(obj, out, dst=0)
        return out

    def release(self) -> None:
        """Rank 0, on the way out: free ranks still waiting for a plan, then leave the group."""
        if self.rank == 0 and not self.plan_sent:
            self.broadcast({"ok": False})
            self.gather(None)
        self.close()

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


def start() -> Dist | None:
    """The process group under torchrun, None for a single process."""
    return Dist() if world_size() > 1 else None


def assign_by_frames(lengths: dict[int, int], world: int) -> list[list[int]]:
    """Longest episodes first, each to the rank with the fewest frames so far."""
    loads = [0] * world
    out: list[list[int]] = [[] for _ in range(world)]
    for ep, n in sorted(lengths.items(), key=lambda kv: (-kv[1], kv[0])):
        r = loads.index(min(loads))
        out[r].append(ep)
        loads[r] += n
    return [sorted(x) for x in out]


def follow(ds_root: Path, source: ValueSource, dist: Dist) -> None:
    """A non-zero rank: infer the episodes rank 0 assigns, into the shared sidecar parts."""
    plan = dist.broadcast(None)
    error = None
    try:
        if plan.get("ok") and plan["assign"][dist.rank]:
            ds = LeRobotDataset.open(ds_root)
            source.bind(ds)
            source.prepare()
            if source.provenance() != plan["provenance"]:
                error = f"rank {dist.rank} was started with different settings than rank 0"
            else:
                base = plan.get("parts_base")  # a dry run keeps its parts outside the dataset
                partial = PartialValues(ds.root, plan["provenance"], base=None if base is None else Path(base)).ensure()
                partial.keys = source.input_keys(ds, plan["assign"][dist.rank])
                for ev in source.episode_values(ds, plan["assign"][dist.rank]):
                    partial.add(ev)
    except RecapError as exc:
        error = exc.message
    finally:
        dist.gather(error)
        dist.close()
    if not plan.get("ok"):
        raise RecapError(f"rank {dist.rank}: stopped because rank 0 stopped (see its message)")
    if error:
        raise RecapError(f"rank {dist.rank}: {error}")


def lead(ds: LeRobotDataset, source: ValueSource, episodes: list[int], recompute: bool, dist: Dist,
         parts_base: Path | None = None) -> tuple[dict[int, EpisodeValues], str, dict]:
    """Rank 0: split the episodes still to infer across ranks, infer its own share, wait for all.
    `parts_base`: where the value parts go instead of the dataset's values-partial/ (a dry run)."""
    nothing_to_infer = {"ok": True, "assign": [[] for _ in range(dist.world)], "provenance": source.provenance()}
    if source.caching is Caching.READ_EACH_RUN:
        dist.broadcast(nothing_to_infer)
        dist.gather(None)
        return gather_values(ds, source, episodes, recompute=False)
    keys = source.input_keys(ds, episodes)  # once: for PNG cameras it reads the image bytes
    cached = None if recompute else read_sidecar(ds.root)
    if cached is not None and source.reuses(cached[0]):
        values = cached_values(ds, cached[1], episodes, keys)
        if len(values) == len(episodes):
            dist.broadcast(nothing_to_infer)
            dist.gather(None)
            return values, "sidecar (no inference)", cached[0], keys
    source.prepare()
    provenance = source.provenance()
    partial = PartialValues(ds.root, provenance, base=parts_base).ensure()
    partial.keys = keys
    lengths = {e: ds.episodes[e].length for e in episodes}
    if recompute:
        partial.drop(episodes)
    done = set(read_parts(partial, lengths))
    assign = assign_by_frames({e: n for e, n in lengths.items() if e not in done}, dist.world)
    dist.broadcast({"ok": True, "assign": assign, "provenance": provenance, "parts_base": None if parts_base is None else str(parts_base)})
    error = None
    try:
        for ev in source.episode_values(ds, assign[0]):
            partial.add(ev)
    except RecapError as exc:
        error = exc.message
    errors = dist.gather(error)
    failed = [(r, e) for r, e in enumerate(errors) if e]
    if failed:
        r, e = failed[0]
        raise RecapError(f"rank {r}: {e}" if r else e)
    sizes = ", ".join(f"rank {r}: {len(a)}" for r, a in enumerate(assign))
    return read_parts(partial, lengths), f"inference on {dist.world} ranks (episodes {sizes}; {len(done)} already done)", provenance, keys
