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

from recap_label.errors import DatasetError, DeviceError, warn
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.lerobot.frames import iter_episode_frames
from recap_label.values.progress import Progress as _Progress
from recap_label.values.types import EpisodeValues


def _rank_device(spec: str) -> str:
    """Under torchrun each rank takes the GPU of its LOCAL_RANK."""
    local = os.environ.get("LOCAL_RANK")
    if (
        local is not None
        and int(os.environ.get("WORLD_SIZE", "1")) > 1
        and spec in ("auto", "cuda")
        and torch.cuda.is_available()
    ):
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
            raise DeviceError(
                f"--device {spec} was asked for but CUDA is not available here (torch {torch.__version__}); use "
                f"--device cpu or install a CUDA build of torch"
            )
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here; pick one of "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
        return dev
    raise DeviceError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")


@dataclass(frozen=True)
class Batch:
    """`batch` rows of consecutive frames of one worker's episodes, which may span episode ends.

    Every batch has the same shape; the worker's very last one is padded after row `n` (padding
    repeats the last real row and its V is dropped). A camera already at the model's size is
    uint8 [B, S, S, 3]; with device letterboxing a camera of another size travels raw as uint8
    [B, H, W, 3] and is letterboxed on the device.
    """

    episodes: np.ndarray  # int64 [n], episode of each real row
    frames: np.ndarray  # int64 [n], frame_index of each real row
    cameras: tuple[torch.Tensor, ...]  # per camera slot, uint8 [B, H, W, 3]
    tokens: torch.Tensor  # long [B, L]
    n: int
    finished: tuple[int, ...]  # episodes whose last frame is in this batch

    def pin_memory(self) -> "Batch":
        """Called by the DataLoader's pin thread on CUDA, so host→device copies can be async."""
        return Batch(
            self.episodes,
            self.frames,
            tuple(c.pin_memory() for c in self.cameras),
            self.tokens.pin_memory(),
            self.n,
            self.finished,
        )


class EpisodeFrames(IterableDataset):
    """Decodes episodes sequentially into fixed-size batches; workers split the episodes among themselves.

    Inside a worker each camera decodes on its own thread (PyAV and the letterbox matmuls release
    the GIL), so a 3-camera batch costs about the slowest camera, not the sum.
    """

    def __init__(
        self,
        root: Path,
        episodes: list[int],
        columns: list[str | None],
        size: int,
        batch: int,
        task_tokens: dict[int, np.ndarray],
        device_letterbox: bool = False,
        wanted: dict[int, np.ndarray] | None = None,
    ):
        self.root, self.episodes, self.columns = root, episodes, columns
        self.size, self.batch, self.task_tokens = size, batch, task_tokens
        self.device_letterbox = device_letterbox
        self.wanted = wanted  # per episode, the frame indices to infer (None: every frame)

    def __iter__(self) -> Iterator[Batch]:
        from concurrent.futures import ThreadPoolExecutor

        info = get_worker_info()
        mine = self.episodes if info is None else self.episodes[info.id :: info.num_workers]
        if not mine:
            return
        ds = DatasetFiles.open(self.root)
        plan = []  # (episode, frame_index array, task_index array, their row positions in the episode)
        for ep in mine:
            rows = ds.episode_rows(ep, ["task_index"])
            frames, tasks = rows["frame_index"].to_numpy().astype(np.int64), rows["task_index"].to_numpy()
            at = np.arange(frames.size) if self.wanted is None else np.flatnonzero(np.isin(frames, self.wanted[ep]))
            plan.append((ep, frames[at], tasks[at], at))
        cams = [k for k, col in enumerate(self.columns) if col]
        # inside a DataLoader worker one codec thread each: the workers already fill the cores
        threads = 1 if info is not None else None
        readers = {k: _CameraReader(ds, self.columns[k], plan, threads) for k in cams}
        with ThreadPoolExecutor(max_workers=max(1, len(cams)), thread_name_prefix="decode") as pool:
            for segments in _fixed_batches(plan, self.batch):
                n = sum(stop - start for _, start, stop in segments)
                decoded = dict(zip(cams, pool.map(lambda k: self._camera(readers[k], k, segments), cams)))
                # a missing camera is a black image the mask hides
                cameras = [
                    decoded[k]
                    if k in decoded
                    else torch.zeros((self.batch, self.size, self.size, 3), dtype=torch.uint8)
                    for k in range(len(self.columns))
                ]
                eps = np.concatenate([np.full(stop - start, plan[i][0], np.int64) for i, start, stop in segments])
                frames = np.concatenate([plan[i][1][start:stop] for i, start, stop in segments])
                tasks = np.concatenate([plan[i][2][start:stop] for i, start, stop in segments])
                tokens = _pad(np.stack([self.task_tokens[int(t)] for t in tasks]), self.batch)
                finished = tuple(plan[i][0] for i, _, stop in segments if stop == plan[i][1].size)
                yield Batch(eps, frames, tuple(cameras), torch.from_numpy(tokens), n, finished)

    def _camera(self, reader: "_CameraReader", k: int, segments) -> torch.Tensor:
        """The camera's `batch` rows (padding repeats the last frame): at the model size, or raw
        for the device letterbox. Frames are decoded straight into the batch array (no list, no stack)."""
        from recap_label.model.preprocess import letterbox

        target = (self.size, self.size, 3)
        batch = rows = None
        pos = 0
        for i, start, stop in segments:
            for frame in reader.frames(i, start, stop):
                if batch is None:
                    shared = get_worker_info() is not None and (self.device_letterbox or frame.shape == target)
                    batch = _batch_tensor((self.batch, *frame.shape), shared)
                    rows = batch.numpy()
                elif frame.shape != rows.shape[1:]:
                    return self._mixed_sizes(reader, segments)
                rows[pos] = frame
                pos += 1
        rows[pos:] = rows[pos - 1]
        if rows.shape[1:] == target or self.device_letterbox:  # LeRobot's 224-px cameras: no letterbox
            return batch
        return torch.from_numpy(letterbox(rows, self.size))

    def _mixed_sizes(self, reader: "_CameraReader", segments) -> torch.Tensor:
        """Episodes of one batch whose camera sizes differ: each letterboxed to the model size here."""
        from recap_label.model.preprocess import letterbox

        reader.rewind()
        parts = []
        for i, start, stop in segments:
            part = np.stack(list(reader.frames(i, start, stop)))
            parts.append(part if part.shape[1:] == (self.size, self.size, 3) else letterbox(part, self.size))
        return torch.from_numpy(_pad(np.concatenate(parts), self.batch))


class _CameraReader:
    """One camera's frames, episode after episode of the worker's plan, pulled by one decode thread at a time."""

    def __init__(self, ds: DatasetFiles, column: str, plan, threads: int | None):
        self.ds, self.column, self.plan, self.threads = ds, column, plan, threads
        self.current = -1
        self.position = 0
        self.stream: Iterator[np.ndarray] | None = None

    def frames(self, plan_index: int, start: int, stop: int) -> Iterator[np.ndarray]:
        """Rows start..stop of the plan's episode, which must follow the previous call's rows;
        frames between the rows asked for (`--infer needed`) are decoded and passed over."""
        episode, frame_index, _tasks, at = self.plan[plan_index]
        if start >= stop:
            return
        if plan_index != self.current or at[start] < self.position:
            self.current, self.position = plan_index, 0
            self.stream = iter_episode_frames(self.ds, episode, self.column, threads=self.threads)
        shape = None
        for row in range(start, stop):
            while self.position < at[row]:  # after a rewind, or a frame not asked for: skip it
                next(self.stream)
                self.position += 1
            frame = next(self.stream)
            self.position += 1
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise DatasetError(
                    f"camera {self.column!r} changes frame size inside episode {episode} near frame "
                    f"{int(frame_index[row])}; the dataset is inconsistent"
                )
            yield frame

    def rewind(self) -> None:
        self.current = -1


def _batch_tensor(shape: tuple[int, ...], shared: bool) -> torch.Tensor:
    """uint8 tensor for a batch; `shared`: in shared memory from the start, so handing the batch
    from a worker to the main process moves no pixels (torch would copy it into shared memory)."""
    if not shared:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def _fixed_batches(plan, batch: int) -> Iterator[list[tuple[int, int, int]]]:
    """Segments (plan index, start row, stop row) of each batch of `batch` rows, across episode ends."""
    segments, room = [], batch
    for i, (_ep, frames, _tasks, _at) in enumerate(plan):
        start = 0
        while start < frames.size:
            stop = min(frames.size, start + room)
            segments.append((i, start, stop))
            room -= stop - start
            start = stop
            if room == 0:
                yield segments
                segments, room = [], batch
    if segments:
        yield segments


def _pad(rows: np.ndarray, batch: int) -> np.ndarray:
    """Fill up to `batch` rows by repeating the last one (real inputs: no NaN-prone empty masks)."""
    if rows.shape[0] == batch:
        return np.ascontiguousarray(rows)
    return np.concatenate([rows, np.repeat(rows[-1:], batch - rows.shape[0], axis=0)])


@dataclass
class LoadedModel:
    model: torch.nn.Module
    step_dir: Path
    content_hash: str


def load_value_model(
    checkpoint_dir: Path, step: str | None, *, use_ema: bool, cache_dir: Path | None, siglip_dtype: torch.dtype
) -> LoadedModel:
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


# Batches whose values are still in flight when the next one is queued: the loop reads a batch's
# V this many batches later, so the GPU never waits for Python and Python never waits for the GPU.
RESULT_LAG = 2


class Engine:
    """Batched inference of the value model on one device; the model loads on first use."""

    def __init__(
        self,
        *,
        step_dir: Path,
        use_ema: bool,
        tokenizer_path: Path,
        model_cache: Path,
        device: str,
        batch_size: int | None,
        num_workers: int,
        precision: str,
        compile_model: bool,
        quiet: bool,
        device_letterbox: bool | None = None,
    ):
        from recap_label.model.precision import resolve_precision
        from recap_label.model.preprocess import PromptTokenizer

        self.step_dir, self.use_ema, self.model_cache = step_dir, use_ema, model_cache
        self.device = resolve_device(_rank_device(device))
        self.numerics = resolve_precision(precision, self.device.type)
        self.precision = self.numerics.name
        self.batch_size = batch_size or (64 if self.device.type == "cuda" else 8)
        self.num_workers, self.compile_model, self.quiet = num_workers, compile_model, quiet
        # letterbox on the device where it is a GPU (uint8 crosses the bus, the GPU resizes); on
        # the CPU the workers letterbox in parallel
        self.device_letterbox = self.device.type == "cuda" if device_letterbox is None else device_letterbox
        if compile_model:
            check_compiler(self.device)
        self.tokenizer = PromptTokenizer(tokenizer_path)
        self._model: torch.nn.Module | None = None
        self._forward_fn = None
        self.stats: dict[str, float] = {}

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            loaded = load_value_model(
                self.step_dir,
                None,
                use_ema=self.use_ema,
                cache_dir=self.model_cache,
                siglip_dtype=torch.bfloat16 if self.numerics.siglip_bf16 else torch.float32,
            )
            self._model = loaded.model.to(self.device)
        return self._model

    def use_model(self, model: torch.nn.Module) -> None:
        """Run `model` instead of the checkpoint's weights (the benchmark's full-size random critic)."""
        self._model = model.to(self.device)
        self._forward_fn = None

    @property
    def model_config(self):
        return self.model.config

    def forward_fn(self):
        """The model's forward, compiled with --compile (CUDA graphs on CUDA: every batch has one shape)."""
        if self._forward_fn is None:
            model = self.model
            if self.compile_model:
                mode = "reduce-overhead" if self.device.type == "cuda" else None
                self._forward_fn = torch.compile(model, mode=mode, dynamic=False)
            else:
                self._forward_fn = model
        return self._forward_fn

    def episode_values(
        self,
        ds: DatasetFiles,
        episodes: list[int],
        columns: list[str | None],
        frames: dict[int, np.ndarray] | None = None,
    ) -> Iterator[EpisodeValues]:
        """V of every frame of `episodes` (`frames`: of those frame indices only), one episode at a
        time; `columns` per camera slot in model order."""
        from collections import deque

        if not episodes:
            return
        image_mask = torch.tensor([c is not None for c in columns], device=self.device)
        task_tokens = {}
        for index, text in ds.tasks.items():
            tokens, _mask, truncated = self.tokenizer.tokenize(text)
            if truncated and not self.quiet:
                warn(f"task {index} is longer than {tokens.size} tokens: truncation drops '\\nValue:' (as in pistar)")
            task_tokens[index] = tokens.astype(np.int64)
        size = self.model_config.image_size
        stream = EpisodeFrames(
            ds.root, episodes, columns, size, self.batch_size, task_tokens, self.device_letterbox, frames
        )
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            stream,
            batch_size=None,
            collate_fn=_identity,
            num_workers=self.num_workers,
            pin_memory=cuda,
            prefetch_factor=4 if self.num_workers else None,
        )
        lengths = {e: ds.episodes[e].length if frames is None else int(np.size(frames[e])) for e in episodes}
        total = int(sum(lengths.values()))
        pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        in_flight: deque = deque()
        results = _ResultBuffers(self.batch_size, self.device, RESULT_LAG + 2)
        progress = _Progress(total, self.device, self.quiet)
        t_fetch = t_infer = t_wait = 0.0
        batches = padded = 0

        def collect(batch: Batch, host: torch.Tensor, event) -> Iterator[EpisodeValues]:
            if event is not None:
                event.synchronize()
            values = host[: batch.n].numpy().astype(np.float64)
            for ep in np.unique(batch.episodes):
                rows = batch.episodes == ep
                pending.setdefault(int(ep), []).append((batch.frames[rows], values[rows]))
            progress.advance(batch.n)
            for ep in batch.finished:
                parts = pending.pop(ep)
                frames = np.concatenate([p[0] for p in parts])
                if frames.size != lengths[ep]:
                    raise DatasetError(
                        f"episode {ep}: {frames.size} frames decoded for {lengths[ep]} rows; the dataset is "
                        f"inconsistent"
                    )
                yield EpisodeValues(ep, frames, np.concatenate([p[1] for p in parts]))

        try:
            mark = time.perf_counter()
            batches_in = iter(loader)
            while True:
                try:
                    batch = next(batches_in)
                except StopIteration:
                    break
                except Exception:
                    # a damaged frame stops the stream: the episodes already computed still
                    # reach the caller (its resumable cache) before the error does
                    while in_flight:
                        yield from list(collect(*in_flight.popleft()))
                    raise
                t_fetch += time.perf_counter() - mark
                mark = time.perf_counter()
                values = self._forward(batch, image_mask, size)
                host, event = results.copy(values)
                in_flight.append((batch, host, event))
                batches += 1
                padded += self.batch_size - batch.n
                t_infer += time.perf_counter() - mark
                while len(in_flight) > RESULT_LAG:
                    mark = time.perf_counter()
                    items = list(collect(*in_flight.popleft()))
                    t_wait += time.perf_counter() - mark
                    yield from items
                mark = time.perf_counter()
            mark = time.perf_counter()
            while in_flight:
                items = list(collect(*in_flight.popleft()))
                yield from items
            t_wait += time.perf_counter() - mark
        finally:
            progress.close()
            wall = progress.elapsed  # one clock for the progress line and the report
            self.stats = {
                "frames": float(total),
                "wall_s": wall,
                "fetch_wait_s": t_fetch,
                "infer_s": t_infer,
                "frames_per_s": total / wall if wall else 0.0,
                "result_wait_s": t_wait,
                "batches": float(batches),
                "padded_frames": float(padded),
                "batch_size": float(self.batch_size),
                "decode_workers": float(self.num_workers),
                "decode_threads_per_worker": float(sum(1 for c in columns if c)),
                "device_letterbox": float(self.device_letterbox),
            }

    def _forward(self, batch: Batch, image_mask: torch.Tensor, size: int) -> torch.Tensor:
        """Queue one batch on the device; V [B] f32 on the device (not waited for)."""
        try:
            with torch.inference_mode():
                images = self.model_images(batch, size)
                tokens = batch.tokens.to(self.device, non_blocking=True)
                with matmul_precision(self.numerics.tf32):
                    return self.forward_fn()(images, image_mask.expand(images.shape[0], -1), tokens, tokens != 0)
        except torch.cuda.OutOfMemoryError:
            raise self._out_of_memory(image_mask, size) from None

    def model_images(self, batch: Batch, size: int) -> torch.Tensor:
        """float [B, K, 3, S, S] in [-1, 1] on the device; raw cameras letterboxed there."""
        from recap_label.model.preprocess import letterbox_torch, to_model_input

        cams = []
        for cam in batch.cameras:
            cam = cam.to(self.device, non_blocking=True)
            if cam.shape[1:3] != (size, size):
                with matmul_precision(False):  # the CPU's fp32 arithmetic, not TF32
                    cam = letterbox_torch(cam, size)
            cams.append(cam)
        return to_model_input(torch.stack(cams, dim=1))

    def _out_of_memory(self, image_mask: torch.Tensor, size: int) -> DeviceError:
        """Measure the largest batch that fits (peak memory of batches 1 and 2, then a check)."""
        torch.cuda.empty_cache()
        name = torch.cuda.get_device_name(self.device)
        # measured on the eager model: probing other shapes through CUDA graphs would recompile each
        fits = fitting_batch_size(
            self.model, self.device, image_mask, size, self.model_config, self.numerics.tf32, below=self.batch_size
        )
        hint = (
            f"--batch-size {fits} fits (measured)"
            if fits
            else "not even --batch-size 1 fits; free GPU memory or use another device"
        )
        return DeviceError(f"CUDA out of memory at --batch-size {self.batch_size} on {name}; {hint}")


def fitting_batch_size(
    model, device: torch.device, image_mask: torch.Tensor, size: int, config, tf32: bool, below: int
) -> int:
    """Largest batch < `below` whose forward fits: linear fit of peak memory at 1 and 2, then verified."""

    def peak(b: int) -> int | None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        k = image_mask.shape[0]
        try:
            with torch.inference_mode(), matmul_precision(tf32):
                x = torch.zeros(b, k, 3, size, size, device=device)
                tokens = torch.ones(b, config.max_token_len, dtype=torch.long, device=device)
                model(x, image_mask.expand(b, -1), tokens, tokens != 0)
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return None

    one, two = peak(1), peak(2)
    if one is None:
        return 0
    if two is None:
        return 1
    per_frame = max(two - one, 1)
    torch.cuda.empty_cache()
    free, _total = torch.cuda.mem_get_info(device)
    reachable = free + torch.cuda.memory_reserved(device)  # what this process holds counts too
    guess = min(below - 1, max(1, int((reachable * 0.95 - (one - per_frame)) // per_frame)))
    while guess > 1 and peak(guess) is None:
        guess = int(guess * 0.9)
    torch.cuda.empty_cache()
    return max(guess, 1)


class _ResultBuffers:
    """A ring of pinned host buffers the device copies V into without the host waiting."""

    def __init__(self, batch: int, device: torch.device, slots: int):
        self.cuda = device.type == "cuda"
        self.slots = (
            [torch.empty(batch, dtype=torch.float32, pin_memory=self.cuda) for _ in range(slots)] if self.cuda else []
        )
        self.next = 0

    def copy(self, values: torch.Tensor):
        if not self.cuda:
            return values.float(), None
        host = self.slots[self.next]
        self.next = (self.next + 1) % len(self.slots)
        host.copy_(values.float(), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host, event


class matmul_precision:
    """fp32 matmuls/convolutions on TF32 tensor cores (True) or strict IEEE fp32 (False), restored after."""

    def __init__(self, tf32: bool):
        self.tf32 = tf32

    def __enter__(self):
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.tf32

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def check_compiler(device: torch.device) -> None:
    """--compile needs a working torch.compile backend (a C++ compiler on CPU, Triton on CUDA):
    compile one tiny function now, so a broken toolchain is one Error line, not a traceback mid-run."""
    try:
        fn = torch.compile(lambda x: x * 2 + 1, dynamic=False)
        fn(torch.ones(4, device=device))
    except Exception as exc:  # inductor raises many types (BackendCompilerFailed, CppCompileError, ...)
        from recap_label.errors import first_line

        raise DeviceError(
            f"--compile: torch.compile does not work on this {device.type} host ({first_line(exc)}); "
            "install a C++ compiler (CPU) or Triton (CUDA), or run without --compile"
        ) from None
