from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recap_label.errors import TokenizerError
from recap_label.model.preprocess import (
    MAX_TOKEN_LEN,
    PromptTokenizer,
    camera_slot_order,
    letterbox,
    letterbox_size,
    to_model_input,
)
from support import TEST_ASSETS

JAX_FIXTURE = TEST_ASSETS / "jax_letterbox.npz"


# --------------------------------------------------------------------------- tokenizer


def test_prompt_has_bos_suffix_and_zero_padding(tokenizer_path):
    tokenizer = PromptTokenizer(tokenizer_path)
    tokens, mask, truncated = tokenizer.tokenize("pick up the red cube  \n")
    assert tokens.dtype == np.int64 and mask.dtype == np.bool_
    assert tokens.shape == mask.shape == (MAX_TOKEN_LEN,)
    assert tokens[0] == 2 == tokenizer.bos_id
    length = int(mask.sum())
    assert np.all(tokens[length:] == 0) and np.all(tokens[:length] != 0)
    assert np.array_equal(mask, tokens != 0)
    assert not truncated
    assert tokenizer._sp.decode(tokens[1:length].tolist()) == "pick up the red cube\nValue:"
    assert 1 not in tokens.tolist()  # no EOS


def test_rstrip_and_cache(tokenizer_path):
    tokenizer = PromptTokenizer(tokenizer_path)
    a = tokenizer.tokenize("open the drawer")
    b = tokenizer.tokenize("open the drawer \t\n")
    assert np.array_equal(a[0], b[0])
    assert tokenizer.tokenize("open the drawer") is a  # cached per task string
    with pytest.raises(ValueError):
        a[0][0] = 5  # cached arrays are read-only


def test_long_prompt_is_truncated_and_flagged(tokenizer_path):
    tokenizer = PromptTokenizer(tokenizer_path)
    tokens, mask, truncated = tokenizer.tokenize("place the blue bowl on the plate " * 10)
    assert truncated
    assert mask.all() and tokens[0] == 2
    text = tokenizer._sp.decode(tokens[1:].tolist())
    assert not text.endswith("Value:")


def test_prompt_that_exactly_fits_is_not_flagged(tokenizer_path):
    tokenizer = PromptTokenizer(tokenizer_path)
    task = ""
    while len(tokenizer._sp.encode(PromptTokenizer.prompt_text(task + "x"))) + 1 <= MAX_TOKEN_LEN:
        task += "x"
    tokens, mask, truncated = tokenizer.tokenize(task)
    assert mask.all() and not truncated
    assert tokenizer.tokenize(task + "x")[2]


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        PromptTokenizer(tmp_path / "nope.model")


def test_bad_tokenizer_file(tmp_path):
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"this is not a sentencepiece model" * 10)
    with pytest.raises(TokenizerError, match="not a SentencePiece model") as info:
        PromptTokenizer(bad)
    assert "\n" not in info.value.message


# --------------------------------------------------------------------------- letterbox


def _slow_antialiased_linear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Direct loops over jax.image.resize(LINEAR, antialias=True) semantics, float64."""

    def axis_weights(in_size: int, out_size: int) -> list[list[float]]:
        scale = out_size / in_size
        width = max(1.0 / scale, 1.0)  # triangle widened only when downscaling
        table = []
        for o in range(out_size):
            centre = (o + 0.5) / scale - 0.5
            if not -0.5 <= centre <= in_size - 0.5:
                table.append([0.0] * in_size)
                continue
            raw = [max(0.0, 1.0 - abs(centre - i) / width) for i in range(in_size)]
            total = sum(raw)
            table.append([w / total for w in raw])
        return table

    h, w, c = image.shape
    rows = axis_weights(h, out_h) if out_h != h else [[float(i == o) for i in range(h)] for o in range(h)]
    cols = axis_weights(w, out_w) if out_w != w else [[float(i == o) for i in range(w)] for o in range(w)]
    out = np.zeros((out_h, out_w, c))
    for oy in range(out_h):
        for ox in range(out_w):
            acc = np.zeros(c)
            for iy in range(h):
                if rows[oy][iy]:
                    for ix in range(w):
                        if cols[ox][ix]:
                            acc += rows[oy][iy] * cols[ox][ix] * image[iy, ix]
            out[oy, ox] = acc
    return out


def _slow_letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Unrounded float64 letterbox (padding included)."""
    h, w = image.shape[:2]
    ratio = max(w / size, h / size)
    new_h, new_w = int(h / ratio), int(w / ratio)
    resized = _slow_antialiased_linear(image, new_h, new_w)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out = np.zeros((size, size, 3))
    out[top : top + new_h, left : left + new_w] = resized
    return out


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [(37, 23, 40), (23, 37, 40), (30, 20, 45), (13, 29, 60), (45, 60, 40), (41, 41, 40)],
)
def test_letterbox_matches_direct_computation(height, width, size):
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    fast, exact = letterbox(image, size).astype(np.float64), _slow_letterbox(image, size)
    assert fast.shape == (size, size, 3)
    expected = np.clip(np.round(exact), 0, 255)
    # Pixels may differ only where the exact value is a rounding tie (x.5), which float32 and
    # float64 arithmetic legitimately break either way.
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    assert np.all((fast == expected) | (tie & (np.abs(fast - exact) < 0.5 + 1e-3)))


def test_letterbox_weights_match_slow_reference_at_full_size():
    """Full-size odd shapes, checked on the (cheaper) separable weights instead of pixels."""
    from recap_label.model.preprocess import resize_weights

    for in_size, out_size in [(300, 224), (199, 148), (37, 224), (23, 139), (640, 224), (480, 168)]:
        fast = resize_weights(in_size, out_size)
        scale = out_size / in_size
        width = max(1.0 / scale, 1.0)
        for o in range(out_size):
            centre = (o + 0.5) / scale - 0.5
            raw = np.maximum(0.0, 1.0 - np.abs(centre - np.arange(in_size)) / width)
            expected = raw / raw.sum() if -0.5 <= centre <= in_size - 0.5 else np.zeros(in_size)
            np.testing.assert_allclose(fast[:, o], expected, atol=5e-5)  # float32 sample positions, as jax


def test_letterbox_geometry_and_padding_split():
    # 300x199 -> ratio 300/224: resized 224 x 148, 76 columns of padding split 38 | 38
    assert letterbox_size(300, 199) == (224, 148)
    assert letterbox_size(199, 300) == (148, 224)
    assert letterbox_size(37, 23) == (224, 139)  # upscaling
    image = np.full((37, 23, 3), 255, np.uint8)
    out = letterbox(image)
    columns = np.nonzero(out[100, :, 0])[0]
    left, right = columns[0], 224 - 1 - columns[-1]
    assert (left, right) == ((224 - 139) // 2, (224 - 139) - (224 - 139) // 2)  # 42 | 43: odd extra goes right/bottom
    assert np.all(out[:, columns[0] : columns[-1] + 1] == 255)


def test_letterbox_identity_at_target_size_and_batches():
    image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    assert np.array_equal(letterbox(image), image)
    batch = np.random.default_rng(2).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    out = letterbox(batch, 32)
    assert out.shape == (3, 32, 32, 3)
    for i in range(3):
        assert np.array_equal(out[i], letterbox(batch[i], 32))


def _pattern_image(height: int, width: int) -> np.ndarray:
    # Same formula as tests/assets/make_jax_letterbox_fixture.py (kept JAX-free here).
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((x * 7 + y * 13 + c * 50 + (x * y) % 17 * 9 + (x * x + 3 * y) % 11 * 5) % 256).astype(np.uint8)


def test_letterbox_matches_recorded_jax_resize_with_pad():
    recorded = np.load(JAX_FIXTURE)
    assert len(recorded.files) >= 10
    for key in recorded.files:
        shape, size = key.split("_to_")
        height, width = map(int, shape.split("x"))
        ours = letterbox(_pattern_image(height, width), int(size)).astype(int)
        difference = np.abs(ours - recorded[key].astype(int))
        # JAX sums in float32 in its own order: only rounding ties (x.5) may land differently.
        assert difference.max() <= 1, key
        assert (difference > 0).mean() < 5e-3, key


def test_to_model_input_numpy_and_torch():
    image = np.array([[[0, 128, 255]]], np.uint8)  # [1, 1, 3]
    x = to_model_input(image)
    assert x.shape == (3, 1, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [-1.0, 128 / 255 * 2 - 1, 1.0], rtol=0, atol=1e-7)
    t = to_model_input(torch.from_numpy(np.stack([image, image])))
    assert t.shape == (2, 3, 1, 1) and t.dtype == torch.float32
    assert math.isclose(float(t[1, 2, 0, 0]), 1.0)


def test_camera_slot_order():
    assert camera_slot_order(["wrist_0_rgb", "base_0_rgb"]) == ["base_0_rgb", "wrist_0_rgb"]
    assert camera_slot_order(["wrist_0_rgb", "right_wrist_0_rgb", "base_0_rgb"]) == [
        "base_0_rgb",
        "right_wrist_0_rgb",
        "wrist_0_rgb",
    ]
    with pytest.raises(ValueError):
        camera_slot_order(["left_0_rgb"])


# --------------------------------------------------------------------------- device letterbox


def _device_letterbox_cases():
    rng = np.random.default_rng(7)
    for h, w, size in [
        (37, 23, 40),
        (23, 37, 40),
        (13, 29, 60),
        (45, 61, 40),
        (41, 41, 40),
        (480, 640, 224),
        (481, 639, 224),
        (224, 224, 224),
    ]:
        yield h, w, size, rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)


def test_device_letterbox_equals_cpu_letterbox_on_the_cpu_device():
    import torch

    from recap_label.model.preprocess import letterbox_torch

    for h, w, size, images in _device_letterbox_cases():
        on_device = letterbox_torch(torch.from_numpy(images), size)
        assert on_device.dtype == torch.uint8 and tuple(on_device.shape) == (3, size, size, 3)
        np.testing.assert_array_equal(on_device.numpy(), letterbox(images, size), err_msg=f"{h}x{w}->{size}")


@pytest.mark.cuda
def test_device_letterbox_on_cuda_equals_cpu_letterbox_up_to_rounding_ties():
    import torch

    from recap_label.model.preprocess import letterbox_torch
    from recap_label.values.engine import matmul_precision

    for h, w, size, images in _device_letterbox_cases():
        with matmul_precision(False):
            gpu = letterbox_torch(torch.from_numpy(images).cuda(), size).cpu().numpy().astype(int)
        difference = np.abs(gpu - letterbox(images, size).astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, f"{h}x{w}->{size}"
