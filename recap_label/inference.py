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

from recap_label.config import Settings
from recap_label.dataset import LeRobotDataset
from recap_label.errors import DatasetError, DeviceError
from recap_label.frames import iter_episode_frames
from recap_label.fsutil import sha256_file
from recap_label.values import EpisodeValues

# pistar's camera slots; the model sees them in sorted order (JAX flattens dict keys sorted)
SLOT_BASE, SLOT_RIGHT, SLOT_WRIST = "base_0_rgb", "right_wrist_0_rgb", "wrist_0_rgb"


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


def camera_slots(settings: Settings, ds: LeRobotDataset) -> dict[str, str | None]:
    """slot -> dataset column (None = missing wrist: zero image, mask off), in model order."""
    base = settings.base_image_col
    wrist = settings.wrist_image_col
    if base is None:
        fallback = [k for k in ("image", "observation.image", "observation.images.base") if k in ds.features]
        if not fallback:
            cams = ", ".join(ds.camera_keys) or "none"
            raise DatasetError(f"no base camera given; pass --base-image-col (cameras in {ds.root.name}: {cams})")
        base = fallback[0]
    if wrist is None:
        wrist = next((k for k in ("wrist_image", "observation.wrist_image", "observation.images.wrist") if k in ds.features), None)
    slots = {SLOT_BASE: base, SLOT_WRIST: wrist}
    if settings.right_wrist_image_col:
        slots[SLOT_RIGHT] = settings.right_wrist_image_col
    for slot, col in slots.items():
        if col is not None and ds.feature_dtype(col) not in ("image", "video"):
            cams = ", ".join(ds.camera_keys) or "none"
            raise DatasetError(f"camera column {col!r} ({slot}) is not an image or video feature of {ds.root.name}; cameras there: {cams}")
    return {slot: slots[slot] for slot in sorted(slots)}


def default_workers() -> int:
    """Decode workers: none on a 2-core machine (handing batches between processes costs more
    than it gains there, measured), else up to 8, leaving a core for the main process."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores - 1)


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


class ModelValues:
    """The value model as a value source (see values.ValueSource)."""

    cheap = False
    name = "the value model"

    def __init__(self, *, step_dir: Path, checkpoint_hash: str, use_ema: bool, tokenizer, tokenizer_path: Path,
                 settings: Settings, device: torch.device, batch_size: int, num_workers: int, quiet: bool, precision: str,
                 compile_model: bool = False):
        self.step_dir, self.checkpoint_hash, self.use_ema = step_dir, checkpoint_hash, use_ema
        self.tokenizer, self.tokenizer_path, self.settings = tokenizer, tokenizer_path, settings
        self.device, self.batch_size, self.num_workers, self.quiet, self.precision = device, batch_size, num_workers, quiet, precision
        self.compile_model = compile_model
        self._tokenizer_sha = sha256_file(tokenizer_path)
        self._slots: dict[str, str | None] | None = None
        self._model: torch.nn.Module | None = None
        self.stats: dict[str, float] = {}

    @classmethod
    def from_options(cls, *, checkpoint_dir: Path, step: str | None, use_ema: bool, tokenizer_path: Path | None, settings: Settings,
                     device: str, batch_size: int | None, num_workers: int | None, compile_model: bool, quiet: bool,
                     precision: str = "auto") -> "ModelValues":
        """Validate everything up front; the weights are loaded only when inference is needed
        (a rerun that only changes the rule relabels from the sidecar without them)."""
        from recap_label.errors import TokenizerError
        from recap_label.model.checkpoint import checkpoint_content_hash, resolve_step_dir, tree_names
        from recap_label.model.preprocess import PromptTokenizer

        dev = resolve_device(_rank_device(device))
        if tokenizer_path is None:
            raise TokenizerError("no tokenizer given; pass --tokenizer-path to the value model's SentencePiece tokenizer.model")
        tokenizer = PromptTokenizer(tokenizer_path)
        if precision not in ("auto", "bf16", "fp32"):
            raise DeviceError(f"--precision must be auto, bf16 or fp32, got {precision!r}")
        if precision == "auto":
            precision = "bf16" if dev.type == "cuda" else "fp32"
        step_dir = resolve_step_dir(checkpoint_dir, step)
        tree = "ema_params" if use_ema else "params"
        if tree not in tree_names(step_dir):
            from recap_label.errors import CheckpointError

            hint = "pass --no-use-ema to use params" if use_ema else "this step has no params tree"
            raise CheckpointError(f"checkpoint step {step_dir} has no {tree}; {hint}")
        if batch_size is None:
            batch_size = 64 if dev.type == "cuda" else 8
        if batch_size < 1:
            raise DeviceError(f"--batch-size must be >= 1, got {batch_size}")
        if num_workers is None:
            num_workers = default_workers()
        return cls(step_dir=step_dir, checkpoint_hash=checkpoint_content_hash(step_dir), use_ema=use_ema, tokenizer=tokenizer,
                   tokenizer_path=Path(tokenizer_path), settings=settings, device=dev, batch_size=batch_size,
                   num_workers=num_workers, quiet=quiet, precision=precision, compile_model=compile_model)

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            loaded = load_value_model(self.step_dir, None, use_ema=self.use_ema, cache_dir=self.settings.model_cache,
                                      siglip_dtype=torch.bfloat16 if self.precision == "bf16" else torch.float32)
            model = loaded.model.to(self.device)
            self._model = torch.compile(model) if self.compile_model else model
        return self._model

    def provenance(self) -> dict:
        return {
            "source": "model", "checkpoint": str(self.step_dir.absolute()), "checkpoint_sha256": self.checkpoint_hash,
            "ema": self.use_ema, "tokenizer_sha256": self._tokenizer_sha, "precision": self.precision, "cameras": self._slots,
        }

    @property
    def model_config(self):
        m = getattr(self.model, "_orig_mod", self.model)
        return m.config

    def bind(self, ds: LeRobotDataset) -> None:
        """Fix the camera slots for this dataset (part of the provenance)."""
        self._slots = camera_slots(self.settings, ds)

    def episode_values(self, ds: LeRobotDataset, episodes: list[int]) -> Iterator[EpisodeValues]:
        if self._slots is None:
            self.bind(ds)
        if not episodes:
            return
        slots = self._slots
        columns = list(slots.values())
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


class _Progress:
    """Rich progress on stderr: frames/s, ETA and, on CUDA, GPU memory."""

    def __init__(self, total: int, device: torch.device, quiet: bool):
        self.device = device
        self.bar = None
        if quiet:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self.bar = Progress(TextColumn("infer"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                            TimeRemainingColumn(), TextColumn("{task.fields[mem]}"), console=console, transient=True)
        self.task = self.bar.add_task("infer", total=total, rate="", mem="")
        self.bar.start()
        self.t0 = time.perf_counter()
        self.done = 0

    def advance(self, n: int) -> None:
        if self.bar is None:
            return
        self.done += n
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        mem = f"GPU {torch.cuda.max_memory_allocated(self.device) / 2**30:.1f} GiB" if self.device.type == "cuda" else ""
        self.bar.update(self.task, advance=n, rate=f"{rate:,.1f} frames/s", mem=mem)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
