"""The value model as a value source, without importing torch until inference really runs.

Everything that can be checked cheaply is checked up front (tokenizer, checkpoint step and
tree, batch size, device name); the device itself, the weights and the inference engine
(values.engine, which imports torch) come in only when `prepare()` is called, i.e. when the
value cache (values.cache) cannot supply every value. So does the check that the tokenizer fits
the checkpoint's embedding table: reading the table's shape imports tensorstore (about a second),
which a relabel from the sidecar does not need.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from recap_label.config import DEVICE_RE, Settings, default_num_workers
from recap_label.errors import BadInput, CheckpointError, DatasetError, DeviceError, TokenizerError, warn
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.model.precision import PRECISIONS
from recap_label.model.preprocess import BASE_SLOT, RIGHT_WRIST_SLOT, WRIST_SLOT, PromptTokenizer, camera_slot_order
from recap_label.store.fsutil import sha256_file
from recap_label.values.types import Caching, EpisodeValues


def camera_slots(settings: Settings, ds: DatasetFiles) -> dict[str, str | None]:
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
        wrist = next(
            (
                k
                for k in ("wrist_image", "observation.wrist_image", "observation.images.wrist")
                if k in ds.features and k != base
            ),
            None,
        )
    slots = {BASE_SLOT: base, WRIST_SLOT: wrist}
    if settings.right_wrist_image_col:
        slots[RIGHT_WRIST_SLOT] = settings.right_wrist_image_col
    given = [c for c in slots.values() if c is not None]
    if len(set(given)) < len(given):
        twice = next(c for c in given if given.count(c) > 1)
        raise BadInput(
            f"camera {twice!r} is given for two model slots "
            f"({', '.join(s for s, c in slots.items() if c == twice)}); each slot needs its own camera (cameras "
            f"in {ds.root.name}: {', '.join(ds.camera_keys)})"
        )
    if wrist is None:
        unused = [k for k in ds.camera_keys if k not in given]
        if unused:
            warn(
                f"no wrist camera: slot {WRIST_SLOT} gets a blank image, although {ds.root.name} has "
                f"{', '.join(unused)}; pass --wrist-image-col (the critic was trained with two cameras)"
            )
    for slot, col in slots.items():
        if col is not None and ds.feature_dtype(col) not in ("image", "video"):
            cams = ", ".join(ds.camera_keys) or "none"
            raise DatasetError(
                f"camera column {col!r} ({slot}) is not an image or video feature of {ds.root.name}; cameras there: "
                f"{cams}"
            )
    return {slot: slots[slot] for slot in camera_slot_order(list(slots))}


def episode_input_keys(ds: DatasetFiles, episodes: list[int], columns: list[str | None]) -> dict[int, str]:
    import hashlib

    import pyarrow.compute as pc

    keys = {}
    for e in episodes:
        ep = ds.episodes[e]
        h = hashlib.sha256("\0".join(ep.tasks).encode())
        for col in columns:
            h.update(f"|{col}|".encode())
            if col is None:
                continue
            if ds.feature_dtype(col) == "video":
                ref = ep.videos.get(col)
                if ref is not None and ref.path.exists():
                    st = ref.path.stat()
                    h.update(f"{ref.path.name}:{st.st_size}:{st.st_mtime_ns}:{ref.from_timestamp}".encode())
            else:
                cells = ds.episode_rows(e, [col])[col]
                if cells.type.num_fields and "bytes" in [
                    cells.type.field(i).name for i in range(cells.type.num_fields)
                ]:
                    cells = pc.struct_field(cells, "bytes")
                for chunk in cells.chunks:
                    for buf in chunk.buffers():
                        if buf is not None:
                            h.update(buf)
        keys[e] = h.hexdigest()[:24]
    return keys


default_workers = default_num_workers  # decode workers when not set (config owns the rule)


def _check_vocabulary(tokenizer, step_dir: Path, use_ema: bool) -> None:
    """A tokenizer with more pieces than the checkpoint has embedding rows is not the model's own:
    its ids would index past the table (an IndexError deep in the forward pass)."""
    from recap_label.model.checkpoint import embedding_rows

    rows = embedding_rows(step_dir, use_ema)
    if rows is not None and tokenizer.vocab_size > rows:
        raise TokenizerError(
            f"tokenizer {tokenizer.path} has {tokenizer.vocab_size:,} pieces (token ids up to "
            f"{tokenizer.vocab_size - 1:,}) but the checkpoint "
            f"{step_dir} has a {rows:,}-row token embedding table; they do not belong together, pass the "
            f"--tokenizer-path the value model was trained with"
        )


class ModelValues:
    """The value model as a value source (see values.types.ValueSource)."""

    caching = Caching.SIDECAR
    name = "the value model"

    def __init__(
        self,
        *,
        step_dir: Path,
        checkpoint_hash: str,
        use_ema: bool,
        tokenizer: PromptTokenizer,
        settings: Settings,
        device: str,
        batch_size: int | None,
        num_workers: int,
        precision: str,
        compile_model: bool = False,
    ):
        self.step_dir, self.checkpoint_hash, self.use_ema = step_dir, checkpoint_hash, use_ema
        self.tokenizer, self.tokenizer_path, self.settings = tokenizer, Path(tokenizer.path), settings
        self.device_spec, self.requested_batch_size, self.num_workers = device, batch_size, num_workers
        self.requested_precision = precision
        self.compile_model = compile_model
        self._tokenizer_sha = sha256_file(self.tokenizer_path)
        self._slots: dict[str, str | None] | None = None
        self._engine = None  # values.engine.Engine, made by prepare()
        self.stats: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, use_ema: bool = True, compile_model: bool = False) -> "ModelValues":
        """Validate everything that needs no torch; the weights load only when inference runs."""
        from recap_label.model.checkpoint import checkpoint_content_hash, resolve_step_dir, tree_names

        device = (settings.device or "auto").strip().lower()
        if not DEVICE_RE.match(device):
            raise DeviceError(f"--device must be auto, cpu, cuda or cuda:N, got {settings.device!r}")
        if settings.tokenizer_path is None:
            raise TokenizerError(
                "no tokenizer given; pass --tokenizer-path to the value model's SentencePiece tokenizer.model"
            )
        tokenizer = PromptTokenizer(settings.tokenizer_path)  # readable and a SentencePiece model
        precision = settings.precision
        if precision not in PRECISIONS:
            raise DeviceError(
                f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}; see recap-label label --help"
            )
        step_dir = resolve_step_dir(settings.checkpoint_dir, settings.checkpoint_step)
        tree = "ema_params" if use_ema else "params"
        if tree not in tree_names(step_dir):
            hint = "pass --no-use-ema to use params" if use_ema else "this step has no params tree"
            raise CheckpointError(f"checkpoint step {step_dir} has no {tree}; {hint}")
        if settings.batch_size is not None and settings.batch_size < 1:
            raise DeviceError(f"--batch-size must be >= 1, got {settings.batch_size}")
        workers = default_workers() if settings.num_workers is None else settings.num_workers
        if workers < 0:
            raise DeviceError(f"--num-workers must be >= 0, got {workers}")
        return cls(
            step_dir=step_dir,
            checkpoint_hash=checkpoint_content_hash(step_dir),
            use_ema=use_ema,
            tokenizer=tokenizer,
            settings=settings,
            device=device,
            batch_size=settings.batch_size,
            num_workers=workers,
            precision=precision,
            compile_model=compile_model,
        )

    @property
    def precision(self) -> str:
        """The SigLIP precision inference runs with ("auto" until the device is known)."""
        return self._engine.precision if self._engine is not None else self.requested_precision

    def bind(self, ds: DatasetFiles) -> None:
        """Fix the camera slots for this dataset (part of the provenance)."""
        self._slots = camera_slots(self.settings, ds)

    def provenance(self) -> dict:
        return {
            "source": "model",
            "checkpoint": str(self.step_dir.absolute()),
            "checkpoint_sha256": self.checkpoint_hash,
            "ema": self.use_ema,
            "tokenizer_sha256": self._tokenizer_sha,
            "precision": self.precision,
            "cameras": self._slots,
        }

    def reuses(self, cached: dict) -> bool:
        """Same checkpoint, weights, tokenizer and cameras; with --precision auto, values of
        either precision are reused (name a precision to insist on it)."""
        mine = self.provenance()
        if self.requested_precision == "auto":
            mine, cached = {**mine, "precision": None}, {**cached, "precision": None}
        return cached == mine

    def input_keys(self, ds: DatasetFiles, episodes: list[int]) -> dict[int, str]:
        """Per episode: its task text and, per camera, the video file's size and mtime (a video
        changed in place changes them) or the PNG bytes of its rows (data files are rewritten by
        every label commit, so their mtime says nothing about the images)."""
        if self._slots is None:
            self.bind(ds)
        return episode_input_keys(ds, episodes, list(self._slots.values()))

    def prepare(self) -> None:
        """Check the tokenizer against the checkpoint, resolve the device and build the inference
        engine (imports torch; loads no weights yet)."""
        if self._engine is None:
            _check_vocabulary(self.tokenizer, self.step_dir, self.use_ema)
            from recap_label.values.engine import Engine

            self._engine = Engine(
                step_dir=self.step_dir,
                use_ema=self.use_ema,
                tokenizer_path=self.tokenizer_path,
                model_cache=self.settings.model_cache,
                device=self.device_spec,
                batch_size=self.requested_batch_size,
                num_workers=self.num_workers,
                precision=self.requested_precision,
                compile_model=self.compile_model,
                quiet=self.settings.json,
            )

    @property
    def engine(self):
        self.prepare()
        return self._engine

    def episode_values(
        self, ds: DatasetFiles, episodes: list[int], frames: dict[int, np.ndarray] | None = None
    ) -> Iterator[EpisodeValues]:
        """V of `episodes`, every frame (or, per episode, the frame indices in `frames`)."""
        if self._slots is None:
            self.bind(ds)
        engine = self.engine
        load_s = self._load(engine) if episodes else 0.0
        try:
            yield from engine.episode_values(ds, episodes, list(self._slots.values()), frames)
        finally:
            self.stats = {**engine.stats, **self.run_facts(), "load_s": load_s}

    def _load(self, engine) -> float:
        """Load the weights now (the engine would on first use), timed and announced: a full-size
        checkpoint takes a while, and a log should not fall silent meanwhile."""
        from recap_label.values.progress import say

        if getattr(engine, "_model", None) is not None:  # already loaded (or a model given to the engine)
            return 0.0
        quiet = self.settings.json
        say(
            f"loading the value model {self.step_dir} ({'EMA' if self.use_ema else 'raw params'}) onto "
            f"{engine.device} …",
            quiet,
        )
        t0 = time.perf_counter()
        engine.model  # noqa: B018 (the property loads)
        seconds = time.perf_counter() - t0
        say(f"value model loaded in {seconds:.1f} s", quiet)
        return seconds

    def run_facts(self) -> dict:
        """What the inference ran on and with (reported and recorded with its timings)."""
        engine = self._engine
        return {
            "device": None if engine is None else str(engine.device),
            "precision": self.precision,
            "batch_size": None if engine is None else engine.batch_size,
            "num_workers": self.num_workers,
            "checkpoint_step": checkpoint_step_number(self.step_dir),
            "ema": self.use_ema,
        }


def checkpoint_step_number(step_dir: Path) -> int | None:
    """5000 for `step_00005000` (None for a step folder named otherwise)."""
    m = re.search(r"(\d+)$", step_dir.name)
    return int(m.group(1)) if m else None
