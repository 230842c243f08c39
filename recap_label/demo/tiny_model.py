"""Tiny value models for tests, the demo and the benchmark: pistar's architecture at toy size,
and random parameters with pistar's names and shapes (no download, no training)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from recap_label.model.params import SIGLIP_BLOCK, ValueModelConfig, expected_shapes

# shipped with the package: a real Orbax checkpoint of tiny_config() and a SentencePiece model
# (written by tests/assets/make_tiny_checkpoint.py and make_tiny_tokenizer.py)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
TINY_CHECKPOINT = ASSETS / "tiny_value_ckpt"
TINY_TOKENIZER = ASSETS / "tiny_tokenizer.model"


def tiny_config(vocab_size: int = 400) -> ValueModelConfig:
    """A few-kilobyte model with every structural feature of the real one (a global Gemma layer, MQA)."""
    return ValueModelConfig(
        image_size=28,
        patch_size=14,
        siglip_width=32,
        siglip_depth=2,
        siglip_heads=2,
        siglip_head_dim=16,
        siglip_mlp_dim=64,
        embed_dim=32,
        vocab_size=vocab_size,
        gemma_layers=7,
        gemma_heads=2,
        gemma_kv_heads=1,
        gemma_head_dim=16,
        gemma_mlp_dim=64,
        cross_attn_heads=2,
        cross_attn_head_dim=16,
        head_hidden_dim=16,
        num_bins=201,
    )


def random_flat_params(config: ValueModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 parameters with pistar's names and shapes, scaled so activations stay O(1)."""
    rng = np.random.default_rng(seed)

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    flat: dict[str, np.ndarray] = {}
    for name, shape in expected_shapes(config).items():
        leaf = name.rsplit("/", 1)[-1]
        parent = name.rsplit("/", 2)[-2] if name.count("/") else ""
        if name == "llm/embedder/input_embedding":
            value = normal(shape, 1.0 / math.sqrt(config.embed_dim))  # x sqrt(D) at lookup gives O(1)
        elif name == "img/pos_embedding":
            value = normal(shape, 1.0 / math.sqrt(config.siglip_width))
        elif leaf == "scale" and ("LayerNorm" in parent or parent in {"encoder_norm", "cross_attn_norm", "layer_norm"}):
            value = 1.0 + normal(shape, 0.1)  # LayerNorm multiplies by the scale itself
        elif leaf == "scale":
            value = normal(shape, 0.1)  # Gemma RMSNorm multiplies by (1 + scale)
        elif leaf == "bias":
            value = normal(shape, 0.02)
        elif name == "value_head/linear2/kernel":
            # Peaked bin distributions, so values move visibly with the inputs.
            value = normal(shape, 4.0 / math.sqrt(shape[0]))
        else:
            value = normal(shape, 1.0 / math.sqrt(_fan_in(name, shape)))
        flat[name] = value
    return flat


def _fan_in(name: str, shape: tuple[int, ...]) -> int:
    """Input width of a kernel, from the layout of its pistar einsum/Dense."""
    if name == "img/embedding/kernel":
        return shape[0] * shape[1] * shape[2]
    if name.endswith("q_einsum/w"):
        return shape[1]
    if name.endswith("kv_einsum/w"):
        return shape[2]
    if name.endswith("attn_vec_einsum/w") or name.endswith("out/kernel"):
        return int(np.prod(shape[-3:-1]))
    if name.endswith("gating_einsum"):
        return shape[2]
    if name.startswith(SIGLIP_BLOCK):
        return shape[1]  # leading scan axis
    return shape[0]
