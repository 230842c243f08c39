"""Many GPUs, many nodes: `torchrun --nproc-per-node N -m recap_label label …`.

Rank 0 holds the dataset lock, validates, looks the values up in the value cache
(values.cache) and splits the episodes still to infer across ranks, balanced by frames.
Every rank writes its per-episode values into the same value parts; rank 0 then computes the
single global threshold and writes the labels once. Only Python objects are exchanged (gloo),
so no NCCL is needed.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from recap_label.errors import RecapError
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.values.cache import ValueCache, Values
from recap_label.values.parts import assign_by_frames
from recap_label.values.types import ValueSource


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


def follow(ds_root: Path, source: ValueSource, dist: Dist) -> None:
    """A non-zero rank: infer the episodes rank 0 assigns, into the same value parts."""
    plan = dist.broadcast(None)
    error = None
    try:
        if plan.get("ok") and plan["assign"][dist.rank]:
            ds = DatasetFiles.open(ds_root)
            source.bind(ds)
            source.prepare()
            if source.provenance() != plan["provenance"]:
                error = f"rank {dist.rank} was started with different settings than rank 0"
            else:
                kept = plan.get("dry_run_dir")  # a dry run keeps its parts outside the dataset
                cache = ValueCache(ds, source, None if kept is None else Path(kept), dry_run=kept is not None)
                cache.infer_share(plan["assign"][dist.rank], plan["provenance"])
    except RecapError as exc:
        error = exc.message
    finally:
        dist.gather(error)
        dist.close()
    if not plan.get("ok"):
        raise RecapError(f"rank {dist.rank}: stopped because rank 0 stopped (see its message)")
    if error:
        raise RecapError(f"rank {dist.rank}: {error}")


def lead(cache: ValueCache, episodes: list[int], recompute: bool, dist: Dist) -> Values:
    """Rank 0: look the values up in the cache, split the episodes still to infer across ranks,
    infer its own share, wait for all."""
    look = cache.lookup(episodes, recompute=recompute)
    if look.done is not None:
        dist.broadcast({"ok": True, "assign": [[] for _ in range(dist.world)], "provenance": cache.source.provenance()})
        dist.gather(None)
        return look.done
    parts = cache.open_inference(look, recompute=recompute)
    assign = assign_by_frames({e: cache.ds.episodes[e].length for e in look.todo}, dist.world)
    kept = str(cache.dry_run_dir) if cache.dry_run else None
    dist.broadcast({"ok": True, "assign": assign, "provenance": parts.provenance, "dry_run_dir": kept})
    error = None
    try:
        for ev in cache.source.episode_values(cache.ds, assign[0]):
            parts.add(ev)
    except RecapError as exc:
        error = exc.message
    errors = dist.gather(error)
    failed = [(r, e) for r, e in enumerate(errors) if e]
    if failed:
        r, e = failed[0]
        raise RecapError(f"rank {r}: {e}" if r else e)
    return cache.finish(look, ranks=assign)
