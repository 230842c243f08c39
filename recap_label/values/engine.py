"""The inference engine: V for every frame of the rollout episodes, batched, on CPU or CUDA.

Data path: each episode is decoded once, sequentially, in DataLoader workers (PNG bytes
or one pass over the mp4 segment), letterboxed to the model's size in batches, and handed
over as uint8 tensors (pinned on CUDA, copied non-blocking, scaled to [-1, 1] on the
device). Each task's prompt is tokenized once. Values stream out episode by episode so
the caller can persist them (resumable sidecar) as they arrive.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from recap_label.errors import DatasetError, DeviceError
from recap_label.lerobot.dataset import LeRobotDataset
from recap_label.lerobot.frames import iter_episode_frames
from recap_label.values.progress import Progress as _Progress
from recap_label.values.sources import EpisodeValues


def _rank_device(spec: str) -> str:
    """Under torchrun each rank takes the GPU of its LOCAL_RANK."""
    local = os.environ.get("LOCAL_RANK")
    if local is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and spec in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(local) % torch.cuda.device_count()}"
    return spec


def resolve_device(spec: str) -> torch.device:
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec} was asked for but CUDA is not available here (torch {torch.__version__}); use --device cpu or install a CUDA build of torch")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here; pick one of cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return dev
    raise DeviceError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")


@dataclass(frozen=True)
class Chunk:
    """Up to batch_size consecutive frames of one episode, ready for the model."""

    episode: int
    frames: np.ndarray
    images: torch.Tensor  # uint8 [B, K, S, S, 3]
    tokens: torch.Tensor  # long [B, L]
    last: bool

    def pin_memory(self) -> "Chunk":
        """Called by the DataLoader's pin thread on CUDA, so host→device copies can be async."""
        return Chunk(self.episode, self.frames, self.images.pin_memory(), self.tokens.pin_memory(), self.last)


class EpisodeFrames(IterableDataset):
    """Decodes whole episodes sequentially; workers split the episodes among themselves."""

    def __init__(self, root: Path, episodes: list[int], columns: list[str | None], size: int, batch: int, task_tokens: dict[int, np.ndarray]):
        self.root, self.episodes, self.columns = root, episodes, columns
        self.size, self.batch, self.task_tokens = size, batch, task_tokens

    def __iter__(self) -> Iterator[Chunk]:
        from recap_label.model.preprocess import letterbox

        info = get_worker_info()
        mine = self.episodes if info is None else self.episodes[info.id :: info.num_workers]
        ds = LeRobotDataset.open(self.root)
        for ep in mine:
            rows = ds.episode_rows(ep, ["task_index"])
            frames = rows["frame_index"].to_numpy()
            tasks = rows["task_index"].to_numpy()
            streams = [iter_episode_frames(ds, ep, col) if col else None for col in self.columns]
            for start in range(0, frames.size, self.batch):
                stop = min(start + self.batch, frames.size)
                n = stop - start
                images = np.zeros((n, len(self.columns), self.size, self.size, 3), np.uint8)
                for k, stream in enumerate(streams):
                    if stream is None:
                        continue
                    raw = _stack([next(stream) for _ in range(n)], ep, frames[start], self.columns[k])
                    # already at the model's size (LeRobot's 224-px cameras): no letterbox, one copy
                    images[:, k] = raw if raw.shape[1:] == (self.size, self.size, 3) else letterbox(raw, self.size)
                tokens = np.stack([self.task_tokens[int(t)] for t in tasks[start:stop]])
                yield Chunk(ep, frames[start:stop], torch.from_numpy(images), torch.from_numpy(tokens), stop == frames.size)


def _stack(raw: list[np.ndarray], ep: int, first_frame: int, column: str) -> np.ndarray:
    shapes = {r.shape for r in raw}
    if len(shapes) != 1:
        raise DatasetError(f"camera {column!r} changes frame size inside episode {ep} near frame {first_frame}; the dataset is inconsistent")
    return np.stack(raw)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    step_dir: Path
    content_hash: str


def load_value_model(checkpoint_dir: Path, step: str | None, *, use_ema: bool, cache_dir: Path | None, siglip_dtype: torch.dtype) -> LoadedModel:
    """Resolve the step, read its params (converted safetensors cache when present), build the model."""
    from recap_label.model.checkpoint import load_flat_params_cached, resolve_step_dir
    from recap_label.model.network import ValueModel

    step_dir = resolve_step_dir(checkpoint_dir, step)
    flat, content_hash = load_flat_params_cached(step_dir, use_ema, cache_dir)
    model = ValueModel.from_flat_params(flat, siglip_dtype=siglip_dtype, consume=True)
    del flat
    return LoadedModel(model, step_dir, content_hash)


def _identity(x):
    return x


class Engine:
    """Batched inference of the value model on one device; the model loads on first use."""

    def __init__(self, *, step_dir: Path, use_ema: bool, tokenizer_path: Path, model_cache: Path, device: str,
                 batch_size: int | None, num_workers: int, precision: str, compile_model: bool, quiet: bool):
        from recap_label.model.preprocess import PromptTokenizer

        self.step_dir, self.use_ema, self.model_cache = step_dir, use_ema, model_cache
        self.device = resolve_device(_rank_device(device))
        self.precision = ("bf16" if self.device.type == "cuda" else "fp32") if precision == "auto" else precision
        self.batch_size = batch_size or (64 if self.device.type == "cuda" else 8)
        self.num_workers, self.compile_model, self.quiet = num_workers, compile_model, quiet
        self.tokenizer = PromptTokenizer(tokenizer_path)
        self._model: torch.nn.Module | None = None
        self.stats: dict[str, float] = {}

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            loaded = load_value_model(self.step_dir, None, use_ema=self.use_ema, cache_dir=self.model_cache,
                                      siglip_dtype=torch.bfloat16 if self.precision == "bf16" else torch.float32)
            model = loaded.model.to(self.device)
            self._model = torch.compile(model) if self.compile_model else model
        return self._model

    def use_model(self, model: torch.nn.Module) -> None:
        """Run `model` instead of the checkpoint's weights (the benchmark's full-size random critic)."""
        self._model = model.to(self.device)

    @property
    def model_config(self):
        m = getattr(self.model, "_orig_mod", self.model)
        return m.config

    def episode_values(self, ds: LeRobotDataset, episodes: list[int], columns: list[str | None]) -> Iterator[EpisodeValues]:
        """V of every frame of `episodes`, one episode at a time; `columns` per camera slot in model order."""
        if not episodes:
            return
        image_mask = torch.tensor([c is not None for c in columns], device=self.device)
        task_tokens = {}
        for index, text in ds.tasks.items():
            tokens, _mask, truncated = self.tokenizer.tokenize(text)
            if truncated and not self.quiet:
                _warn(f"task {index} is longer than {tokens.size} tokens: truncation drops '\\nValue:' (as in pistar)")
            task_tokens[index] = tokens.astype(np.int64)
        size = self.model_config.image_size
        stream = EpisodeFrames(ds.root, episodes, columns, size, self.batch_size, task_tokens)
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            stream, batch_size=None, collate_fn=_identity, num_workers=self.num_workers, pin_memory=cuda,
            prefetch_factor=4 if self.num_workers else None,
        )
        total = int(sum(ds.episodes[e].length for e in episodes))
        pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        progress = _Progress(total, self.device, self.quiet)
        t_fetch = t_infer = 0.0
        t0 = time.perf_counter()
        try:
            mark = time.perf_counter()
            for chunk in loader:
                t_fetch += time.perf_counter() - mark
                mark = time.perf_counter()
                images = chunk.images.to(self.device, non_blocking=True)
                tokens = chunk.tokens.to(self.device, non_blocking=True)
                values = self._forward(images, image_mask, tokens)
                t_infer += time.perf_counter() - mark
                pending.setdefault(chunk.episode, []).append((chunk.frames, values))
                progress.advance(len(chunk.frames))
                if chunk.last:
                    parts = pending.pop(chunk.episode)
                    yield EpisodeValues(chunk.episode, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]).astype(np.float64))
                mark = time.perf_counter()
        finally:
            progress.close()
            wall = time.perf_counter() - t0
            self.stats = {"frames": float(total), "wall_s": wall, "fetch_wait_s": t_fetch, "infer_s": t_infer,
                          "frames_per_s": total / wall if wall else 0.0}

    def _forward(self, images_u8: torch.Tensor, image_mask: torch.Tensor, tokens: torch.Tensor) -> np.ndarray:
        from recap_label.model.preprocess import to_model_input

        b = images_u8.shape[0]
        try:
            with torch.inference_mode():
                x = to_model_input(images_u8)  # [B, K, 3, S, S] in [-1, 1], on the device
                v = self.model(x, image_mask.expand(b, -1), tokens, tokens != 0)
            return v.float().cpu().numpy()
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise DeviceError(
                f"CUDA out of memory at --batch-size {self.batch_size} on {torch.cuda.get_device_name(self.device)}; try --batch-size {max(1, self.batch_size // 2)}"
            ) from None


def _warn(message: str) -> None:
    import sys

    sys.stderr.write(f"warning: {message}\n")
