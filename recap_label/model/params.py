"""The value model's parameter tree: names, shapes, config inference, FLOPs.

Pure NumPy (no torch), so scripts that only need names and shapes (the tiny
Orbax checkpoint writer runs under JAX) can import it. Names are pistar's
"/"-joined pure-dict paths (`expected_shapes` lists them all); every dimension of the
architecture is read back from the shapes, so one code path serves the full
So400m/14 + Gemma3-270M critic and tiny test models.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

import numpy as np

from recap_label.errors import CheckpointError

SIGLIP_BLOCK = "img/Transformer/encoderblock"
_GEMMA_LAYER_RE = re.compile(r"^llm/layer_(\d+)/")


@dataclasses.dataclass(frozen=True)
class ValueModelConfig:
    """Architecture of pistar's critic. Defaults are the real model (So400m/14 @224, Gemma3-270M)."""

    image_size: int = 224
    patch_size: int = 14
    siglip_width: int = 1152
    siglip_depth: int = 27
    siglip_heads: int = 16
    siglip_head_dim: int = 72
    siglip_mlp_dim: int = 4304
    embed_dim: int = 640
    vocab_size: int = 262144
    gemma_layers: int = 18
    gemma_heads: int = 4
    gemma_kv_heads: int = 1
    gemma_head_dim: int = 256
    gemma_mlp_dim: int = 2048
    cross_attn_heads: int = 8
    cross_attn_head_dim: int = 80
    head_hidden_dim: int = 320
    num_bins: int = 201
    # Fixed by pistar's code, not visible in the checkpoint.
    sliding_window: int = 512
    global_layer_period: int = 6  # layer i is global iff (i + 1) % 6 == 0
    rope_local_base: float = 10_000.0
    rope_global_base: float = 1_000_000.0
    max_token_len: int = 48
    value_min: float = -1.0
    value_max: float = 0.0

    @property
    def tokens_per_image(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def is_global_layer(self, layer: int) -> bool:
        return (layer + 1) % self.global_layer_period == 0

    @classmethod
    def from_params(cls, flat: Mapping[str, np.ndarray]) -> ValueModelConfig:
        """Infer every dimension from parameter shapes; shapes are then checked by `expected_shapes`."""

        def shape(name: str) -> tuple[int, ...]:
            if name not in flat:
                raise CheckpointError(
                    f"checkpoint has no parameter '{name}'; it is not a pistar value-model checkpoint "
                    "(pass the step directory written by scripts/train_value.py)"
                )
            return tuple(int(d) for d in np.shape(flat[name]))

        def dims(name: str, rank: int) -> tuple[int, ...]:
            got = shape(name)
            if len(got) != rank:
                raise CheckpointError(
                    f"parameter '{name}' has shape {got}, expected rank {rank}; the checkpoint does "
                    "not fit the pistar value-model architecture"
                )
            return got

        patch, _, _, width = dims("img/embedding/kernel", 4)
        _, num_patches, _ = dims("img/pos_embedding", 3)
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise CheckpointError(
                f"parameter 'img/pos_embedding' has {num_patches} positions, not a square grid; "
                "the checkpoint does not fit the pistar value-model architecture"
            )
        depth, _, siglip_heads, siglip_head_dim = dims(f"{SIGLIP_BLOCK}/MultiHeadDotProductAttention_0/query/kernel", 4)
        siglip_mlp = dims(f"{SIGLIP_BLOCK}/MlpBlock_0/Dense_0/kernel", 3)[2]
        vocab, embed_dim = dims("llm/embedder/input_embedding", 2)
        layers = sorted({int(m.group(1)) for name in flat if (m := _GEMMA_LAYER_RE.match(name))})
        if not layers:
            shape("llm/layer_0/attn/q_einsum/w")  # raises the missing-parameter error
        gemma_heads, _, gemma_head_dim = dims("llm/layer_0/attn/q_einsum/w", 3)
        gemma_kv_heads = dims("llm/layer_0/attn/kv_einsum/w", 4)[1]
        gemma_mlp = dims("llm/layer_0/mlp/gating_einsum", 3)[1]
        _, cross_heads, cross_head_dim = dims("cross_attention/query/kernel", 3)
        head_hidden = dims("value_head/linear1/kernel", 2)[1]
        num_bins = dims("value_head/linear2/kernel", 2)[1]
        return cls(
            image_size=side * patch,
            patch_size=patch,
            siglip_width=width,
            siglip_depth=depth,
            siglip_heads=siglip_heads,
            siglip_head_dim=siglip_head_dim,
            siglip_mlp_dim=siglip_mlp,
            embed_dim=embed_dim,
            vocab_size=vocab,
            # Missing intermediate layers are reported by name by the shape check.
            gemma_layers=max(layers) + 1,
            gemma_heads=gemma_heads,
            gemma_kv_heads=gemma_kv_heads,
            gemma_head_dim=gemma_head_dim,
            gemma_mlp_dim=gemma_mlp,
            cross_attn_heads=cross_heads,
            cross_attn_head_dim=cross_head_dim,
            head_hidden_dim=head_hidden,
            num_bins=num_bins,
        )


def expected_shapes(config: ValueModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter pistar's critic has, with its shape (the names of its Orbax checkpoint)."""
    c = config
    d, n, hd, depth = c.siglip_width, c.siglip_heads, c.siglip_head_dim, c.siglip_depth
    shapes: dict[str, tuple[int, ...]] = {
        "img/embedding/kernel": (c.patch_size, c.patch_size, 3, d),
        "img/embedding/bias": (d,),
        "img/pos_embedding": (1, c.tokens_per_image, d),
    }
    for ln in ("LayerNorm_0", "LayerNorm_1"):
        shapes[f"{SIGLIP_BLOCK}/{ln}/scale"] = (depth, d)
        shapes[f"{SIGLIP_BLOCK}/{ln}/bias"] = (depth, d)
    attn = f"{SIGLIP_BLOCK}/MultiHeadDotProductAttention_0"
    for proj in ("query", "key", "value"):
        shapes[f"{attn}/{proj}/kernel"] = (depth, d, n, hd)
        shapes[f"{attn}/{proj}/bias"] = (depth, n, hd)
    shapes[f"{attn}/out/kernel"] = (depth, n, hd, d)
    shapes[f"{attn}/out/bias"] = (depth, d)
    mlp = f"{SIGLIP_BLOCK}/MlpBlock_0"
    shapes[f"{mlp}/Dense_0/kernel"] = (depth, d, c.siglip_mlp_dim)
    shapes[f"{mlp}/Dense_0/bias"] = (depth, c.siglip_mlp_dim)
    shapes[f"{mlp}/Dense_1/kernel"] = (depth, c.siglip_mlp_dim, d)
    shapes[f"{mlp}/Dense_1/bias"] = (depth, d)
    shapes["img/Transformer/encoder_norm/scale"] = (d,)
    shapes["img/Transformer/encoder_norm/bias"] = (d,)

    e = c.embed_dim
    shapes["img_projection/kernel"] = (d, e)
    shapes["img_projection/bias"] = (e,)
    shapes["llm/embedder/input_embedding"] = (c.vocab_size, e)
    for i in range(c.gemma_layers):
        p = f"llm/layer_{i}"
        shapes[f"{p}/pre_attention_norm/scale"] = (e,)
        shapes[f"{p}/attn/q_einsum/w"] = (c.gemma_heads, e, c.gemma_head_dim)
        shapes[f"{p}/attn/kv_einsum/w"] = (2, c.gemma_kv_heads, e, c.gemma_head_dim)
        shapes[f"{p}/attn/attn_vec_einsum/w"] = (c.gemma_heads, c.gemma_head_dim, e)
        shapes[f"{p}/attn/_query_norm/scale"] = (c.gemma_head_dim,)
        shapes[f"{p}/attn/_key_norm/scale"] = (c.gemma_head_dim,)
        shapes[f"{p}/post_attention_norm/scale"] = (e,)
        shapes[f"{p}/pre_ffw_norm/scale"] = (e,)
        shapes[f"{p}/mlp/gating_einsum"] = (2, c.gemma_mlp_dim, e)
        shapes[f"{p}/mlp/linear"] = (c.gemma_mlp_dim, e)
        shapes[f"{p}/post_ffw_norm/scale"] = (e,)
    shapes["llm/final_norm/scale"] = (e,)

    ch, chd = c.cross_attn_heads, c.cross_attn_head_dim
    for proj in ("query", "key", "value"):
        shapes[f"cross_attention/{proj}/kernel"] = (e, ch, chd)
        shapes[f"cross_attention/{proj}/bias"] = (ch, chd)
    shapes["cross_attention/out/kernel"] = (ch, chd, e)
    shapes["cross_attention/out/bias"] = (e,)
    shapes["cross_attn_norm/scale"] = (e,)
    shapes["cross_attn_norm/bias"] = (e,)
    shapes["value_head/layer_norm/scale"] = (e,)
    shapes["value_head/layer_norm/bias"] = (e,)
    shapes["value_head/linear1/kernel"] = (e, c.head_hidden_dim)
    shapes["value_head/linear1/bias"] = (c.head_hidden_dim,)
    shapes["value_head/linear2/kernel"] = (c.head_hidden_dim, c.num_bins)
    shapes["value_head/linear2/bias"] = (c.num_bins,)
    return shapes


def check_params(flat: Mapping[str, np.ndarray], config: ValueModelConfig) -> None:
    """Raise CheckpointError naming the first missing parameter or the first shape that does not fit."""
    for name, want in expected_shapes(config).items():
        if name not in flat:
            raise CheckpointError(
                f"checkpoint is missing parameter '{name}'; it is not a complete pistar value-model "
                "checkpoint (use a step directory written by scripts/train_value.py)"
            )
        got = tuple(int(x) for x in np.shape(flat[name]))
        if got != want:
            raise CheckpointError(
                f"parameter '{name}' has shape {got}, expected {want}; the checkpoint does not fit "
                "the pistar value-model architecture"
            )


def flops_per_frame(config: ValueModelConfig, num_cameras: int = 2) -> int:
    """Analytic multiply-add FLOPs (2 per MAC) of one frame; dense attention, no mask sparsity."""
    c = config
    n, d = c.tokens_per_image, c.siglip_width
    attn_d = c.siglip_heads * c.siglip_head_dim
    siglip = n * c.patch_size * c.patch_size * 3 * d
    siglip += c.siglip_depth * (3 * n * d * attn_d + 2 * n * n * attn_d + n * attn_d * d + 2 * n * d * c.siglip_mlp_dim)
    e = c.embed_dim
    image_tokens = num_cameras * n
    macs = num_cameras * (siglip + n * d * e)
    t = c.max_token_len
    cross_d = c.cross_attn_heads * c.cross_attn_head_dim
    macs += t * e * cross_d + 2 * image_tokens * e * cross_d + 2 * t * image_tokens * cross_d + t * cross_d * e
    seq = image_tokens + t
    q_d, kv_d = c.gemma_heads * c.gemma_head_dim, c.gemma_kv_heads * c.gemma_head_dim
    macs += c.gemma_layers * (
        seq * e * q_d + 2 * seq * e * kv_d + 2 * seq * seq * q_d + seq * q_d * e + 3 * seq * e * c.gemma_mlp_dim
    )
    macs += e * c.head_hidden_dim + c.head_hidden_dim * c.num_bins
    return 2 * macs
