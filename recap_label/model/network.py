"""pistar's value model (VLM critic) in PyTorch, numerically faithful to its JAX forward pass.

Pipeline per frame, as pistar's critic computes it: SigLIP per camera -> Linear to the Gemma width ->
text embeddings (x sqrt(width)) cross-attend to all image tokens -> Gemma3 run bidirectionally
over [image tokens; text tokens] -> masked mean pool -> LayerNorm/MLP head -> bin logits ->
V = softmax(logits) . linspace(-1, 0, bins).

Numerics: the SigLIP tower runs in `siglip_dtype` (bf16 like pistar's dtype_mm, or f32) except
for the patch embedding and position add, which stay f32; everything after the tower is f32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import SiglipVisionConfig
from transformers.models.siglip.modeling_siglip import SiglipEncoder

from recap_label.errors import CheckpointError
from recap_label.model.params import SIGLIP_BLOCK, ValueModelConfig, check_params

LAYER_NORM_EPS = 1e-6
RMS_NORM_EPS = 1e-6


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def values_from_logits(logits: torch.Tensor, value_min: float = -1.0, value_max: float = 0.0) -> torch.Tensor:
    """Expected value of the bin distribution: softmax(logits) . linspace(min, max, bins), in f32."""
    logits = logits.float()
    supports = torch.linspace(value_min, value_max, logits.shape[-1], dtype=torch.float32, device=logits.device)
    return (torch.softmax(logits, dim=-1) * supports).sum(dim=-1)


# ---------------------------------------------------------------------------------------------
# SigLIP image tower
# ---------------------------------------------------------------------------------------------


class PatchEmbedding(nn.Module):
    """Non-overlapping patch conv plus learned position embedding, always in f32 (as pistar)."""

    def __init__(self, config: ValueModelConfig):
        super().__init__()
        p, d = config.patch_size, config.siglip_width
        self.conv = nn.Conv2d(3, d, kernel_size=p, stride=p, bias=True)
        self.position = nn.Parameter(torch.zeros(config.tokens_per_image, d))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv(images.float())  # [N, D, h, w]
        x = x.flatten(2).transpose(1, 2)  # row-major patches, like the JAX reshape of NHWC
        return x + self.position


class Float32LayerNorm(nn.LayerNorm):
    """LayerNorm with f32 parameters and math whose output is cast back to the input dtype.

    This is flax's LayerNorm(dtype=bf16) with f32 params: statistics, scale and bias in f32,
    only the result rounded to bf16.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


class SiglipTower(nn.Module):
    """So400m/14-style ViT with pool_type="none": patch tokens after the final encoder LayerNorm."""

    def __init__(self, config: ValueModelConfig, dtype: torch.dtype):
        super().__init__()
        if config.siglip_heads * config.siglip_head_dim != config.siglip_width:
            raise CheckpointError(
                f"SigLIP attention width {config.siglip_heads}x{config.siglip_head_dim} differs from the "
                f"model width {config.siglip_width}; this checkpoint variant is not supported"
            )
        self.dtype = dtype
        hf_config = SiglipVisionConfig(
            hidden_size=config.siglip_width,
            intermediate_size=config.siglip_mlp_dim,
            num_hidden_layers=config.siglip_depth,
            num_attention_heads=config.siglip_heads,
            image_size=config.image_size,
            patch_size=config.patch_size,
            hidden_act="gelu_pytorch_tanh",
            layer_norm_eps=LAYER_NORM_EPS,
            attention_dropout=0.0,
            attn_implementation="sdpa",
        )
        self.embeddings = PatchEmbedding(config)
        self.encoder = SiglipEncoder(hf_config).to(dtype)
        for layer in self.encoder.layers:
            layer.layer_norm1 = Float32LayerNorm(config.siglip_width, eps=LAYER_NORM_EPS)
            layer.layer_norm2 = Float32LayerNorm(config.siglip_width, eps=LAYER_NORM_EPS)
        self.post_layernorm = Float32LayerNorm(config.siglip_width, eps=LAYER_NORM_EPS)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> tokens [N, P, D] (f32 holding `dtype` values)."""
        x = self.embeddings(images).to(self.dtype)
        x = self.encoder(inputs_embeds=x).last_hidden_state
        return self.post_layernorm(x).float()  # bf16-valued like pistar; img_projection promotes to f32


# ---------------------------------------------------------------------------------------------
# Text -> image cross-attention (flax nnx.MultiHeadAttention, no mask)
# ---------------------------------------------------------------------------------------------


class CrossAttention(nn.Module):
    def __init__(self, width: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)  # queries only
        self.query = nn.Linear(width, heads * head_dim)
        self.key = nn.Linear(width, heads * head_dim)
        self.value = nn.Linear(width, heads * head_dim)
        self.out = nn.Linear(heads * head_dim, width)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        q = self._split(self.query(self.norm(text)))
        k = self._split(self.key(image))
        v = self._split(self.value(image))
        attended = F.scaled_dot_product_attention(q, k, v)  # every image token, masked cameras too
        b, _, t, _ = attended.shape
        attended = attended.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return text + self.out(attended)


# ---------------------------------------------------------------------------------------------
# Gemma3 backbone, bidirectional, explicit masks
# ---------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """Gemma RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + scale)."""

    def __init__(self, width: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_NORM_EPS) * (1.0 + self.scale)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-split RoPE angles, computed in f32 the way gemma's apply_rope does."""
    exponents = (2.0 / head_dim) * torch.arange(head_dim // 2, dtype=torch.float32, device=positions.device)
    timescale = torch.pow(torch.tensor(base, dtype=torch.float32, device=positions.device), exponents)
    angles = positions.to(torch.float32)[:, None] / timescale[None, :]  # [L, head_dim/2]
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, heads, L, hd]; rotate (first half, second half) pairs."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


class GemmaAttention(nn.Module):
    def __init__(self, config: ValueModelConfig):
        super().__init__()
        e, h, kv, hd = config.embed_dim, config.gemma_heads, config.gemma_kv_heads, config.gemma_head_dim
        self.heads, self.kv_heads, self.head_dim = h, kv, hd
        self.q_proj = nn.Linear(e, h * hd, bias=False)
        self.k_proj = nn.Linear(e, kv * hd, bias=False)
        self.v_proj = nn.Linear(e, kv * hd, bias=False)
        self.o_proj = nn.Linear(h * hd, e, bias=False)
        self.query_norm = RMSNorm(hd)
        self.key_norm = RMSNorm(hd)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.query_norm(self.q_proj(x).view(b, n, self.heads, self.head_dim)).transpose(1, 2)
        k = self.key_norm(self.k_proj(x).view(b, n, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)  # query head i uses kv head i // group, as gemma's GQA reshape
        v = v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.head_dim**-0.5)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class GemmaBlock(nn.Module):
    def __init__(self, config: ValueModelConfig, is_global: bool):
        super().__init__()
        self.is_global = is_global
        e, f = config.embed_dim, config.gemma_mlp_dim
        self.pre_attention_norm = RMSNorm(e)
        self.attn = GemmaAttention(config)
        self.post_attention_norm = RMSNorm(e)
        self.pre_ffw_norm = RMSNorm(e)
        self.gate_up = nn.Linear(e, 2 * f, bias=False)  # rows [gate; up]
        self.down = nn.Linear(f, e, bias=False)
        self.post_ffw_norm = RMSNorm(e)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.post_attention_norm(self.attn(self.pre_attention_norm(x), cos, sin, mask))
        gate, up = self.gate_up(self.pre_ffw_norm(x)).chunk(2, dim=-1)
        return x + self.post_ffw_norm(self.down(gelu_tanh(gate) * up))


class GemmaBackbone(nn.Module):
    def __init__(self, config: ValueModelConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(GemmaBlock(config, config.is_global_layer(i)) for i in range(config.gemma_layers))
        self.final_norm = RMSNorm(config.embed_dim)
        self._constants: dict = {}

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x [B, L, E] f32, valid [B, L] bool -> [B, L, E]. Positions are arange(L), pads included."""
        eye, band, rope = self._shape_constants(x.shape[1], x.device)
        pair = valid[:, None, :, None] & valid[:, None, None, :]  # [B, 1, L, L], bidirectional
        # Invalid query rows would be fully masked (NaN in SDPA); let them see themselves. Valid
        # rows never attend to invalid keys, and the pooling ignores invalid rows, so outputs match.
        # Both masks are built once per batch and shared by every layer.
        global_mask = pair | eye
        local_mask = (pair & band) | eye
        for layer in self.layers:
            cos, sin = rope[layer.is_global]
            x = layer(x, cos, sin, global_mask if layer.is_global else local_mask)
        return self.final_norm(x)

    def _shape_constants(self, length: int, device: torch.device):
        """Identity, sliding-window band and RoPE tables of a sequence length: computed once per
        (length, device) in eager mode; under torch.compile they are traced (and folded) instead."""
        key = (length, str(device), torch.is_inference_mode_enabled())  # inference tensors stay in inference mode
        cached = None if torch.compiler.is_compiling() else self._constants.get(key)
        if cached is None:
            c = self.config
            positions = torch.arange(length, device=device)
            eye = torch.eye(length, dtype=torch.bool, device=device)
            band = (positions[:, None] - positions[None, :]).abs() < c.sliding_window
            rope = {
                True: rope_cos_sin(positions, c.gemma_head_dim, c.rope_global_base),
                False: rope_cos_sin(positions, c.gemma_head_dim, c.rope_local_base),
            }
            cached = (eye, band, rope)
            if not torch.compiler.is_compiling():
                self._constants[key] = cached
        return cached


# ---------------------------------------------------------------------------------------------
# The critic
# ---------------------------------------------------------------------------------------------


class ValueHead(nn.Module):
    def __init__(self, config: ValueModelConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        self.linear1 = nn.Linear(config.embed_dim, config.head_hidden_dim)
        self.linear2 = nn.Linear(config.head_hidden_dim, config.num_bins)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear2(gelu_tanh(self.linear1(self.layer_norm(pooled))))


class ValueModel(nn.Module):
    """pistar's distributional critic.

    Inputs (cameras in the caller's slot order, i.e. sorted slot names, see values.model_source.camera_slots):
      images      float [B, K, 3, H, W], channels first, values in [-1, 1] (uint8 / 255 * 2 - 1);
                  a missing camera is a zero uint8 image (-1.0 everywhere) with image_mask False
      image_mask  bool  [B, K]
      tokens      long  [B, T]  (T = 48: BOS + prompt, 0-padded)
      token_mask  bool  [B, T]  (tokens != 0)
    """

    def __init__(self, config: ValueModelConfig, siglip_dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.config = config
        self.siglip_dtype = siglip_dtype
        e = config.embed_dim
        self.img = SiglipTower(config, siglip_dtype)
        self.img_projection = nn.Linear(config.siglip_width, e)
        self.embedding = nn.Embedding(config.vocab_size, e)
        self.cross_attention = CrossAttention(e, config.cross_attn_heads, config.cross_attn_head_dim)
        self.llm = GemmaBackbone(config)
        self.value_head = ValueHead(config)

    def logits(
        self,
        images: torch.Tensor,
        image_mask: torch.Tensor,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Bin logits [B, num_bins] (f32)."""
        b, k = images.shape[:2]
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, K, 3, H, W], got {tuple(images.shape)}")
        image_tokens = self.img_projection(self.img(images.flatten(0, 1)))  # [B*K, P, E] f32
        per_image = image_tokens.shape[1]
        image_tokens = image_tokens.reshape(b, k * per_image, -1)
        image_valid = image_mask.bool().repeat_interleave(per_image, dim=1)

        text = self.embedding(tokens.long()) * math.sqrt(self.config.embed_dim)
        text = self.cross_attention(text, image_tokens)

        sequence = torch.cat([image_tokens, text], dim=1)
        valid = torch.cat([image_valid, token_mask.bool()], dim=1)
        hidden = self.llm(sequence, valid)

        weights = valid.to(hidden.dtype)[..., None]
        count = weights.sum(dim=1).clamp(min=1.0)
        pooled = (hidden * weights).sum(dim=1) / count
        return self.value_head(pooled)

    def forward(
        self,
        images: torch.Tensor,
        image_mask: torch.Tensor,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Values V [B] (f32) in [value_min, value_max]."""
        return values_from_logits(
            self.logits(images, image_mask, tokens, token_mask), self.config.value_min, self.config.value_max
        )

    # -----------------------------------------------------------------------------------------

    @classmethod
    def from_flat_params(
        cls,
        flat: Mapping[str, np.ndarray],
        *,
        siglip_dtype: torch.dtype = torch.bfloat16,
        consume: bool = False,
    ) -> ValueModel:
        """Build the model from pistar's '/'-joined parameter dict; extra names are ignored.

        consume=True pops each array from `flat` as it is converted, so a full-size tree is not
        held twice in host memory (the caller must not need `flat` afterwards).

        Raises CheckpointError naming a missing parameter or one whose shape does not fit.
        """
        config = ValueModelConfig.from_params(flat)
        check_params(flat, config)
        with torch.device("meta"):
            model = cls(config, siglip_dtype=siglip_dtype)
        state = _torch_state_dict(flat, config, consume)
        dtypes = {name: t.dtype for name, t in model.state_dict().items()}
        for name in list(state):  # in place: each float32 original is freed as soon as it is cast
            state[name] = state[name].to(dtypes[name])
        model.load_state_dict(state, strict=True, assign=True)
        model.supports = torch.linspace(config.value_min, config.value_max, config.num_bins, dtype=torch.float32)
        return model.eval()


def _torch_state_dict(
    flat: Mapping[str, np.ndarray], config: ValueModelConfig, consume: bool = False
) -> dict[str, torch.Tensor]:
    """Map pistar's JAX layouts (Dense kernels [in, out], einsum weights) to torch's [out, in]."""

    def get(name: str) -> torch.Tensor:
        array = flat.pop(name) if consume else flat[name]  # type: ignore[attr-defined]
        return torch.from_numpy(np.ascontiguousarray(np.asarray(array, dtype=np.float32)))

    def dense(kernel: torch.Tensor) -> torch.Tensor:  # [..., in, out] -> [out, in] for 2-D kernels
        return kernel.reshape(kernel.shape[0], -1).T.contiguous()

    def out_proj(kernel: torch.Tensor) -> torch.Tensor:  # [heads, hd, out] -> [out, heads*hd]
        return kernel.reshape(-1, kernel.shape[-1]).T.contiguous()

    state: dict[str, torch.Tensor] = {}
    state["img.embeddings.conv.weight"] = get("img/embedding/kernel").permute(3, 2, 0, 1).contiguous()
    state["img.embeddings.conv.bias"] = get("img/embedding/bias")
    state["img.embeddings.position"] = get("img/pos_embedding")[0]
    # One stacked leaf at a time (each is up to ~0.5 GB at full size): its per-layer copies are
    # made, then the stacked array is dropped, so the SigLIP tower is never held twice.
    siglip_leaves = {
        "LayerNorm_0/scale": ("layer_norm1.weight", None),
        "LayerNorm_0/bias": ("layer_norm1.bias", None),
        "LayerNorm_1/scale": ("layer_norm2.weight", None),
        "LayerNorm_1/bias": ("layer_norm2.bias", None),
        **{
            f"MultiHeadDotProductAttention_0/{jax_name}/{leaf}": (
                f"self_attn.{torch_name}.{'weight' if leaf == 'kernel' else 'bias'}",
                dense if leaf == "kernel" else _flatten,
            )
            for jax_name, torch_name in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
            for leaf in ("kernel", "bias")
        },
        "MultiHeadDotProductAttention_0/out/kernel": ("self_attn.out_proj.weight", out_proj),
        "MultiHeadDotProductAttention_0/out/bias": ("self_attn.out_proj.bias", None),
        "MlpBlock_0/Dense_0/kernel": ("mlp.fc1.weight", _transpose),
        "MlpBlock_0/Dense_0/bias": ("mlp.fc1.bias", None),
        "MlpBlock_0/Dense_1/kernel": ("mlp.fc2.weight", _transpose),
        "MlpBlock_0/Dense_1/bias": ("mlp.fc2.bias", None),
    }
    for leaf, (torch_name, convert) in siglip_leaves.items():
        stacked = get(f"{SIGLIP_BLOCK}/{leaf}")
        for i in range(config.siglip_depth):
            layer = stacked[i]
            state[f"img.encoder.layers.{i}.{torch_name}"] = convert(layer) if convert else layer.clone()
        del stacked
    state["img.post_layernorm.weight"] = get("img/Transformer/encoder_norm/scale")
    state["img.post_layernorm.bias"] = get("img/Transformer/encoder_norm/bias")
    state["img_projection.weight"] = dense(get("img_projection/kernel"))
    state["img_projection.bias"] = get("img_projection/bias")

    state["embedding.weight"] = get("llm/embedder/input_embedding")
    for i in range(config.gemma_layers):
        src, dst = f"llm/layer_{i}", f"llm.layers.{i}"
        q = get(f"{src}/attn/q_einsum/w")  # [H, E, hd]
        kv = get(f"{src}/attn/kv_einsum/w")  # [2, K, E, hd]
        state[f"{dst}.attn.q_proj.weight"] = q.permute(0, 2, 1).reshape(-1, q.shape[1]).contiguous()
        state[f"{dst}.attn.k_proj.weight"] = kv[0].permute(0, 2, 1).reshape(-1, kv.shape[2]).contiguous()
        state[f"{dst}.attn.v_proj.weight"] = kv[1].permute(0, 2, 1).reshape(-1, kv.shape[2]).contiguous()
        state[f"{dst}.attn.o_proj.weight"] = out_proj(get(f"{src}/attn/attn_vec_einsum/w"))
        state[f"{dst}.attn.query_norm.scale"] = get(f"{src}/attn/_query_norm/scale")
        state[f"{dst}.attn.key_norm.scale"] = get(f"{src}/attn/_key_norm/scale")
        for norm in ("pre_attention_norm", "post_attention_norm", "pre_ffw_norm", "post_ffw_norm"):
            state[f"{dst}.{norm}.scale"] = get(f"{src}/{norm}/scale")
        gating = get(f"{src}/mlp/gating_einsum")  # [2, F, E]: gate, up
        state[f"{dst}.gate_up.weight"] = gating.reshape(-1, gating.shape[-1])
        state[f"{dst}.down.weight"] = get(f"{src}/mlp/linear").T.contiguous()
    state["llm.final_norm.scale"] = get("llm/final_norm/scale")

    for jax_name in ("query", "key", "value"):
        state[f"cross_attention.{jax_name}.weight"] = dense(get(f"cross_attention/{jax_name}/kernel"))
        state[f"cross_attention.{jax_name}.bias"] = get(f"cross_attention/{jax_name}/bias").reshape(-1)
    state["cross_attention.out.weight"] = out_proj(get("cross_attention/out/kernel"))
    state["cross_attention.out.bias"] = get("cross_attention/out/bias")
    state["cross_attention.norm.weight"] = get("cross_attn_norm/scale")
    state["cross_attention.norm.bias"] = get("cross_attn_norm/bias")
    state["value_head.layer_norm.weight"] = get("value_head/layer_norm/scale")
    state["value_head.layer_norm.bias"] = get("value_head/layer_norm/bias")
    for layer in ("linear1", "linear2"):
        state[f"value_head.{layer}.weight"] = dense(get(f"value_head/{layer}/kernel"))
        state[f"value_head.{layer}.bias"] = get(f"value_head/{layer}/bias")
    return state


def _flatten(bias: torch.Tensor) -> torch.Tensor:  # [heads, hd] -> [heads*hd]
    return bias.reshape(-1).clone()


def _transpose(kernel: torch.Tensor) -> torch.Tensor:  # [in, out] -> [out, in]
    return kernel.T.contiguous()
