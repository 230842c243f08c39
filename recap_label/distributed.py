"""Many GPUs, many nodes: `torchrun --nproc-per-node N -m recap_label label …`.

Rank 0 holds the dataset lock, validates, and splits the episodes still to infer across
ranks, balanced by frames. Every rank writes its per-episode values into the shared
resumable sidecar folder; rank 0 then computes the single global threshold and writes
the labels once. Only Python objects are exchanged (gloo), so no NCCL is needed.
"""

from __future__ import annotations

import datetime
import os


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

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


def assign_by_frames(lengths: dict[int, int], world: int) -> list[list[int]]:
    """Longest episodes first, each to the rank with the fewest frames so far."""
    loads = [0] * world
    out: list[list[int]] = [[] for _ in range(world)]
    for ep, n in sorted(lengths.items(), key=lambda kv: (-kv[1], kv[0])):
        r = loads.index(min(loads))
        out[r].append(ep)
        loads[r] += n
    return [sorted(x) for x in out]
