from __future__ import annotations

import dataclasses

import numpy as np
import numpy_reference
import pytest
import torch

from recap_label.errors import CheckpointError
from recap_label.model.network import ValueModel, values_from_logits
from recap_label.demo.tiny_model import random_flat_params, tiny_config
from recap_label.model.params import ValueModelConfig, expected_shapes, flops_per_frame
from recap_label.model.preprocess import PromptTokenizer, letterbox, to_model_input

TASKS = [
    "pick up the red cube and place it on the plate",
    "open the drawer",
    "stack the green block on top of the box " * 6,  # truncated: all 48 tokens valid
    "pour the bottle into the cup",
]
IMAGE_MASKS = [[True, True], [True, False], [False, True], [False, False]]


def _frames(tokenizer_path, image_size: int, cameras: int = 2, seed: int = 0):
    """A batch of realistic inputs: letterboxed uint8 frames and tokenized prompts."""
    rng = np.random.default_rng(seed)
    tokenizer = PromptTokenizer(tokenizer_path)
    shapes = [(37, 23), (50, 64), (28, 28), (31, 45)]
    images = np.stack(
        [
            np.stack(
                [
                    letterbox(rng.integers(0, 256, (*shapes[(b + k) % 4], 3), dtype=np.uint8), image_size)
                    for k in range(cameras)
                ]
            )
            for b in range(len(TASKS))
        ]
    )
    images[1, 1] = 0  # a missing camera: zero image, mask off
    tokens, masks = zip(*[tokenizer.tokenize(t)[:2] for t in TASKS], strict=True)
    image_mask = np.array([row + [True] * (cameras - 2) for row in IMAGE_MASKS])
    return images, image_mask, np.stack(tokens), np.stack(masks)


def _torch_inputs(images, image_mask, tokens, token_mask):
    return (
        torch.from_numpy(to_model_input(images)),
        torch.from_numpy(image_mask),
        torch.from_numpy(tokens),
        torch.from_numpy(token_mask),
    )


@pytest.mark.parametrize("cameras", [2, 3])
def test_float32_model_matches_independent_numpy_reference(ema_flat, tokenizer_path, cameras):
    config = ValueModelConfig.from_params(ema_flat)
    images, image_mask, tokens, token_mask = _frames(tokenizer_path, config.image_size, cameras)
    model = ValueModel.from_flat_params(ema_flat, siglip_dtype=torch.float32)
    with torch.no_grad():
        inputs = _torch_inputs(images, image_mask, tokens, token_mask)
        logits = model.logits(*inputs).numpy()
        values = model(*inputs).numpy()

    float_images = images.astype(np.float64) / 255.0 * 2.0 - 1.0
    for b in range(len(TASKS)):
        ref_logits = numpy_reference.logits(ema_flat, float_images[b], image_mask[b], tokens[b], token_mask[b])
        ref_value = numpy_reference.value(ema_flat, float_images[b], image_mask[b], tokens[b], token_mask[b])
        np.testing.assert_allclose(logits[b], ref_logits, atol=1e-4, rtol=1e-5)
        assert abs(values[b] - ref_value) < 1e-5
    assert np.ptp(values) > 1e-3, "test inputs should produce distinguishable values"


def test_sliding_window_mask_matches_reference(ema_flat, tokenizer_path):
    """The tiny sequence (56 tokens) is shorter than pistar's 512 window; shrink it to exercise the cut."""
    images, image_mask, tokens, token_mask = _frames(tokenizer_path, 28)
    model = ValueModel.from_flat_params(ema_flat, siglip_dtype=torch.float32)
    model.llm.config = dataclasses.replace(model.config, sliding_window=5)
    with torch.no_grad():
        logits = model.logits(*_torch_inputs(images, image_mask, tokens, token_mask)).numpy()
    float_images = images.astype(np.float64) / 255.0 * 2.0 - 1.0
    full_window = numpy_reference.logits(ema_flat, float_images[0], image_mask[0], tokens[0], token_mask[0])
    for b in range(len(TASKS)):
        ref = numpy_reference.logits(ema_flat, float_images[b], image_mask[b], tokens[b], token_mask[b], window=5)
        np.testing.assert_allclose(logits[b], ref, atol=1e-4, rtol=1e-5)
    assert np.abs(logits[0] - full_window).max() > 1e-3


def test_values_are_expectation_over_supports(ema_flat, tokenizer_path):
    model = ValueModel.from_flat_params(ema_flat, siglip_dtype=torch.float32)
    inputs = _torch_inputs(*_frames(tokenizer_path, model.config.image_size))
    with torch.no_grad():
        logits, values = model.logits(*inputs), model(*inputs)
    torch.testing.assert_close(values, values_from_logits(logits))
    assert torch.all(values <= 0) and torch.all(values >= -1)


def test_bfloat16_siglip_stays_close_to_float32(ema_flat, tokenizer_path):
    inputs = _torch_inputs(*_frames(tokenizer_path, 28))
    with torch.no_grad():
        v32 = ValueModel.from_flat_params(ema_flat, siglip_dtype=torch.float32)(*inputs)
        model16 = ValueModel.from_flat_params(ema_flat)  # default: bf16 like pistar's dtype_mm
        v16 = model16(*inputs)
    assert model16.img.encoder.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert model16.img.embeddings.conv.weight.dtype == torch.float32
    assert model16.llm.layers[0].attn.q_proj.weight.dtype == torch.float32
    assert torch.max(torch.abs(v32 - v16)) < 2e-2


def test_ema_and_raw_params_give_different_values(ema_flat, raw_flat, tokenizer_path):
    inputs = _torch_inputs(*_frames(tokenizer_path, 28))
    with torch.no_grad():
        ema = ValueModel.from_flat_params(ema_flat, siglip_dtype=torch.float32)(*inputs)
        raw = ValueModel.from_flat_params(raw_flat, siglip_dtype=torch.float32)(*inputs)
    assert torch.max(torch.abs(ema - raw)) > 1e-4


def test_padding_content_and_masked_tokens_do_not_leak(ema_flat, tokenizer_path):
    """Pad token ids never reach valid positions; masked cameras still feed cross-attention."""
    images, image_mask, tokens, token_mask = _frames(tokenizer_path, 28)
    model = ValueModel.from_flat_params(ema_flat, siglip_dtype=torch.float32)
    with torch.no_grad():
        base = model(*_torch_inputs(images, image_mask, tokens, token_mask))
        other_pads = tokens.copy()
        other_pads[~token_mask] = 5
        changed_pads = model(*_torch_inputs(images, image_mask, other_pads, token_mask))
        other_camera = images.copy()
        other_camera[1, 1] = 200  # masked camera of frame 1
        changed_camera = model(*_torch_inputs(other_camera, image_mask, tokens, token_mask))
    torch.testing.assert_close(changed_pads, base, rtol=0, atol=1e-6)
    assert abs(float(changed_camera[1] - base[1])) > 1e-6  # keys/values of cross-attention are unmasked
    torch.testing.assert_close(changed_camera[[0, 2, 3]], base[[0, 2, 3]])


def test_everything_masked_gives_finite_value(ema_flat):
    model = ValueModel.from_flat_params(ema_flat, siglip_dtype=torch.float32)
    with torch.no_grad():
        v = model(
            torch.zeros(1, 2, 3, 28, 28),
            torch.zeros(1, 2, dtype=torch.bool),
            torch.zeros(1, 48, dtype=torch.long),
            torch.zeros(1, 48, dtype=torch.bool),
        )
    assert torch.isfinite(v).all()


def test_config_is_read_from_parameter_shapes(ema_flat):
    config = ValueModelConfig.from_params(ema_flat)
    assert config == tiny_config(vocab_size=400)
    assert [config.is_global_layer(i) for i in range(7)] == [False] * 5 + [True, False]
    full = ValueModelConfig()
    shapes = expected_shapes(full)
    assert shapes["img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel"] == (27, 1152, 16, 72)
    assert shapes["llm/layer_17/attn/kv_einsum/w"] == (2, 1, 640, 256)
    assert shapes["llm/layer_0/mlp/gating_einsum"] == (2, 2048, 640)
    total = sum(int(np.prod(s)) for s in shapes.values())
    assert 0.66e9 < total < 0.70e9  # ~0.68 B parameters: SigLIP So400m/14 (~0.4 B) + Gemma3-270M
    assert 0.55e12 < flops_per_frame(full, num_cameras=2) < 0.60e12  # ~0.57 TFLOP per frame with 2 cameras


def test_random_params_roundtrip_config():
    config = tiny_config(vocab_size=123)
    flat = random_flat_params(config, seed=3)
    assert ValueModelConfig.from_params(flat) == config
    assert all(a.dtype == np.float32 for a in flat.values())
    ValueModel.from_flat_params(flat)


def test_missing_parameter_is_named(ema_flat):
    flat = dict(ema_flat)
    del flat["llm/layer_3/attn/_key_norm/scale"]
    with pytest.raises(CheckpointError, match=r"llm/layer_3/attn/_key_norm/scale"):
        ValueModel.from_flat_params(flat)


def test_missing_config_parameter_is_named(ema_flat):
    flat = dict(ema_flat)
    del flat["cross_attention/query/kernel"]
    with pytest.raises(CheckpointError, match=r"cross_attention/query/kernel"):
        ValueModel.from_flat_params(flat)


def test_wrong_shape_names_parameter_and_shapes(ema_flat):
    flat = dict(ema_flat)
    flat["value_head/linear1/bias"] = np.zeros(17, np.float32)
    with pytest.raises(CheckpointError) as info:
        ValueModel.from_flat_params(flat)
    message = info.value.message
    assert "value_head/linear1/bias" in message and "(17,)" in message and "(16,)" in message
    assert "\n" not in message


def test_extra_parameters_are_ignored(ema_flat, tokenizer_path):
    """Names outside the architecture (optimizer state, ...) change nothing: same config, same
    weights, same values; they are neither read nor consumed."""
    flat = dict(ema_flat)
    flat["optimizer/mu/whatever"] = np.zeros(3, np.float32)
    model = ValueModel.from_flat_params(flat, siglip_dtype=torch.float32)
    plain = ValueModel.from_flat_params(ema_flat, siglip_dtype=torch.float32)
    assert model.config == plain.config == tiny_config(vocab_size=400)
    got, want = model.state_dict(), plain.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    inputs = _torch_inputs(*_frames(tokenizer_path, model.config.image_size))
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs), plain(*inputs), rtol=0, atol=0)
    assert np.array_equal(flat["optimizer/mu/whatever"], np.zeros(3, np.float32))  # the input is left as it was
    consumed = dict(flat)
    ValueModel.from_flat_params(consumed, consume=True)
    assert list(consumed) == ["optimizer/mu/whatever"]  # consume=True pops exactly the parameters it converts
