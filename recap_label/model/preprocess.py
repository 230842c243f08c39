"""Model inputs exactly as pistar builds them: prompt tokens, letterboxed images, camera order.

* Prompt: f"{task.rstrip()}\\nValue:", BOS prepended, no EOS, 0-padded / truncated to 48.
* Images: openpi's `resize_with_pad` (jax.image.resize LINEAR with antialias, round, clip,
  centred black padding), then uint8 / 255 * 2 - 1.
* Cameras: pistar's jit flattens the image dict, which sorts the slot names.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from recap_label.errors import TokenizerError, first_line

MAX_TOKEN_LEN = 48
PAD_ID = 0
PROMPT_SUFFIX = "\nValue:"

BASE_SLOT = "base_0_rgb"
WRIST_SLOT = "wrist_0_rgb"
RIGHT_WRIST_SLOT = "right_wrist_0_rgb"
CAMERA_SLOTS = (BASE_SLOT, WRIST_SLOT, RIGHT_WRIST_SLOT)


def camera_slot_order(slots: list[str] | tuple[str, ...]) -> list[str]:
    """The order the model sees cameras in: sorted slot names (base, right_wrist, wrist)."""
    unknown = set(slots) - set(CAMERA_SLOTS)
    if unknown:
        raise ValueError(f"unknown camera slots {sorted(unknown)}; expected a subset of {CAMERA_SLOTS}")
    return sorted(slots)


# ---------------------------------------------------------------------------------------------
# Prompt tokens
# ---------------------------------------------------------------------------------------------


class PromptTokenizer:
    """SentencePiece (Gemma3 `tokenizer.model`) prompt encoder with a per-task cache."""

    def __init__(self, path: str | Path, max_len: int = MAX_TOKEN_LEN):
        import sentencepiece as spm

        self.path = Path(path)
        self.max_len = max_len
        if self.path.is_dir():
            inside = self.path / "tokenizer.model"
            there = f" ({inside} is there: pass that)" if inside.is_file() else ""
            raise TokenizerError(
                f"--tokenizer-path {self.path} is a folder; pass the tokenizer.model file itself{there}"
            )
        if not self.path.is_file():
            raise TokenizerError(
                f"tokenizer file not found: {self.path}; pass --tokenizer-path with the Gemma3 "
                "SentencePiece tokenizer.model the value model was trained with"
            )
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError with C++ text
            raise TokenizerError(
                f"{self.path} is not a SentencePiece model ({first_line(exc)}); "
                "pass --tokenizer-path with the Gemma3 tokenizer.model"
            ) from exc
        self.bos_id = int(self._sp.bos_id())
        if self.bos_id < 0:
            raise TokenizerError(
                f"SentencePiece model {self.path} defines no BOS token; pass the Gemma3 tokenizer.model"
            )
        self.vocab_size = int(self._sp.vocab_size())
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}

    @staticmethod
    def prompt_text(task: str) -> str:
        return f"{str(task).rstrip()}{PROMPT_SUFFIX}"

    def tokenize(self, task: str) -> tuple[np.ndarray, np.ndarray, bool]:
        """(tokens int64[max_len], mask bool[max_len], truncated).

        `truncated` is True when the prompt is cut at max_len, which drops (part of) the
        trailing "\\nValue:" exactly as pistar does.
        """
        cached = self._cache.get(task)
        if cached is None:
            ids = [self.bos_id, *self._sp.encode(self.prompt_text(task))]
            truncated = len(ids) > self.max_len
            ids = ids[: self.max_len] + [PAD_ID] * max(0, self.max_len - len(ids))
            tokens = np.asarray(ids, dtype=np.int64)
            mask = tokens != PAD_ID
            tokens.flags.writeable = False
            mask.flags.writeable = False
            cached = self._cache[task] = (tokens, mask, truncated)
        return cached


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """[in_size, out_size] float32 weights of jax.image.resize(LINEAR, antialias=True) on one axis.

    Mirrors jax's compute_weight_mat in float32: triangle kernel widened by 1/scale when
    downscaling, columns normalised to sum 1, samples outside the input zeroed.
    """
    weights = np.eye(in_size, dtype=np.float32)
    if in_size == out_size:  # jax skips unchanged axes
        return weights
    scale = out_size / in_size
    inv_scale = np.float32(1.0 / scale)
    kernel_scale = max(inv_scale, np.float32(1.0))
    sample = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * inv_scale - np.float32(0.5)
    distance = np.abs(sample[None, :] - np.arange(in_size, dtype=np.float32)[:, None]) / kernel_scale
    weights = np.maximum(np.float32(0.0), np.float32(1.0) - np.abs(distance))
    total = weights.sum(axis=0, keepdims=True, dtype=np.float32)
    normalised = weights / np.where(total != 0, total, np.float32(1.0))
    weights = np.where(np.abs(total) > 1000.0 * np.finfo(np.float32).eps, normalised, np.float32(0.0))
    inside = (sample >= -0.5) & (sample <= in_size - 0.5)
    weights = np.where(inside[None, :], weights, np.float32(0.0)).astype(np.float32)
    weights.flags.writeable = False
    return weights


def letterbox_size(height: int, width: int, size: int = 224) -> tuple[int, int]:
    """Resized (h, w) before padding; the same float expressions as openpi's resize_with_pad."""
    ratio = max(width / size, height / size)
    return max(1, int(height / ratio)), max(1, int(width / ratio))


def letterbox(image: np.ndarray, size: int = 224) -> np.ndarray:
    """openpi `resize_with_pad(image, size, size)` for uint8 [H, W, C] or [N, H, W, C] images.

    Aspect ratio kept, antialiased linear resize, rounded and clipped to uint8, zero padding
    split as (floor, ceil) of the remainder on each axis (top/left get the smaller half).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"letterbox expects uint8 images, got {image.dtype}")
    if image.ndim not in (3, 4):
        raise ValueError(f"letterbox expects [H, W, C] or [N, H, W, C], got shape {image.shape}")
    batched = image if image.ndim == 4 else image[None]
    n, height, width, channels = batched.shape
    new_h, new_w = letterbox_size(height, width, size)
    if (new_h, new_w) == (height, width):
        resized = batched
    else:
        # torch, not numpy: numpy's OpenBLAS thread pool hangs (spins forever) in a forked
        # DataLoader worker once the parent process has used it; torch runs one thread there.
        import torch

        resized = resize_torch(torch.from_numpy(np.ascontiguousarray(batched)), new_h, new_w).numpy()
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out = np.zeros((n, size, size, channels), dtype=np.uint8)
    out[:, top : top + new_h, left : left + new_w] = resized
    return out if image.ndim == 4 else out[0]


def resize_torch(images, new_h: int, new_w: int):
    """uint8 [N, H, W, C] torch tensor (any device) -> uint8 [N, new_h, new_w, C] on that device.

    The same float32 weights and the same two matmuls on every device: rows first, then columns,
    rounded half to even (as np.round) and clipped.
    """
    import torch

    n, height, width, channels = images.shape
    rows = _device_weights(height, new_h, images.device)  # [H, h]
    cols = _device_weights(width, new_w, images.device)  # [W, w]
    x = images.to(torch.float32)
    x = torch.matmul(rows.T, x.reshape(n, height, width * channels))  # [N, h, W*C]
    x = x.reshape(n, new_h, width, channels).transpose(2, 3)  # [N, h, C, W]
    x = torch.matmul(x, cols)  # [N, h, C, w]
    return x.transpose(2, 3).round().clamp(0, 255).to(torch.uint8)


_DEVICE_WEIGHTS: dict = {}


def _device_weights(in_size: int, out_size: int, device):
    """resize_weights as a tensor on `device`, uploaded once: a pageable host->GPU copy per batch
    would make the host wait for the GPU every batch."""
    import torch

    if device.type == "cpu":
        return torch.tensor(resize_weights(in_size, out_size))  # a copy: the cached array is read-only
    key = (in_size, out_size, str(device))
    if key not in _DEVICE_WEIGHTS:
        _DEVICE_WEIGHTS[key] = torch.tensor(resize_weights(in_size, out_size), device=device)
    return _DEVICE_WEIGHTS[key]


def letterbox_torch(images, size: int = 224):
    """`letterbox` of a uint8 [N, H, W, C] torch tensor on its own device (the GPU letterbox).

    Raw camera frames cross the bus as uint8 and the GPU resizes them, so no decode worker spends
    CPU on the resize. Run on the CPU the result equals `letterbox` bit for bit; on a GPU in strict
    fp32 it can differ only by summation order (a rare 1-LSB rounding tie).
    """
    import torch

    n, height, width, channels = images.shape
    new_h, new_w = letterbox_size(height, width, size)
    resized = images if (new_h, new_w) == (height, width) else resize_torch(images, new_h, new_w)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out = torch.zeros((n, size, size, channels), dtype=torch.uint8, device=images.device)
    out[:, top : top + new_h, left : left + new_w] = resized
    return out


def to_model_input(images):
    """uint8 [..., H, W, 3] (numpy or torch) -> float32 [..., 3, H, W] in [-1, 1] (x / 255 * 2 - 1)."""
    if isinstance(images, np.ndarray):
        x = images.astype(np.float32) / np.float32(255.0) * np.float32(2.0) - np.float32(1.0)
        return np.moveaxis(x, -1, -3)
    x = images.float() / 255.0 * 2.0 - 1.0
    return x.movedim(-1, -3)
