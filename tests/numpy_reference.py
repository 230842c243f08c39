"""Independent float64 NumPy forward pass of pistar's critic, written from the pipeline
in recap_label/model/network.py's docstring, not from its code.

It works directly on the checkpoint's JAX layouts (Dense kernels [in, out], einsum weights,
scanned SigLIP blocks, NHWC images), so it shares no weight mapping with the PyTorch model.
"""

from __future__ import annotations

import numpy as np

K_MASK = -2.3819763e38  # gemma's masked-logit value


def _p(flat, name):
    return np.asarray(flat[name], dtype=np.float64)


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def rms_norm(x, scale, eps=1e-6):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * (1.0 + scale)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def siglip(flat, image):
    """image [H, W, 3] in [-1, 1] -> [P, D]."""
    kernel = _p(flat, "img/embedding/kernel")  # [p, p, 3, D]
    p = kernel.shape[0]
    h, w = image.shape[0] // p, image.shape[1] // p
    patches = image.reshape(h, p, w, p, 3).transpose(0, 2, 1, 3, 4).reshape(h * w, p, p, 3)
    x = np.einsum("nijc,ijcd->nd", patches, kernel) + _p(flat, "img/embedding/bias")
    x = x + _p(flat, "img/pos_embedding")[0]
    blk = "img/Transformer/encoderblock"
    depth = flat[f"{blk}/LayerNorm_0/scale"].shape[0]
    for layer in range(depth):

        def g(name, layer=layer):
            return _p(flat, f"{blk}/{name}")[layer]

        y = layer_norm(x, g("LayerNorm_0/scale"), g("LayerNorm_0/bias"))
        att = "MultiHeadDotProductAttention_0"
        q = np.einsum("nd,dhk->nhk", y, g(f"{att}/query/kernel")) + g(f"{att}/query/bias")
        k = np.einsum("nd,dhk->nhk", y, g(f"{att}/key/kernel")) + g(f"{att}/key/bias")
        v = np.einsum("nd,dhk->nhk", y, g(f"{att}/value/kernel")) + g(f"{att}/value/bias")
        q = q / np.sqrt(q.shape[-1])
        probs = softmax(np.einsum("qhk,shk->hqs", q, k))
        o = np.einsum("hqs,shk->qhk", probs, v)
        x = x + np.einsum("qhk,hkd->qd", o, g(f"{att}/out/kernel")) + g(f"{att}/out/bias")
        y = layer_norm(x, g("LayerNorm_1/scale"), g("LayerNorm_1/bias"))
        y = gelu_tanh(y @ g("MlpBlock_0/Dense_0/kernel") + g("MlpBlock_0/Dense_0/bias"))
        x = x + y @ g("MlpBlock_0/Dense_1/kernel") + g("MlpBlock_0/Dense_1/bias")
    return layer_norm(x, _p(flat, "img/Transformer/encoder_norm/scale"), _p(flat, "img/Transformer/encoder_norm/bias"))


def rope(x, positions, base):
    """x [L, heads, hd], half-split rotation."""
    hd = x.shape[-1]
    timescale = base ** (2.0 * np.arange(hd // 2) / hd)
    angle = positions[:, None, None] / timescale[None, None, :]
    first, second = x[..., : hd // 2], x[..., hd // 2 :]
    return np.concatenate(
        [first * np.cos(angle) - second * np.sin(angle), second * np.cos(angle) + first * np.sin(angle)], -1
    )


def gemma(flat, x, valid, window=512, period=6):
    """x [L, E], valid [L] -> [L, E]; bidirectional, positions 0..L-1."""
    length = x.shape[0]
    positions = np.arange(length, dtype=np.float64)
    pair = valid[:, None] & valid[None, :]
    near = np.abs(positions[:, None] - positions[None, :]) < window
    layer = 0
    while f"llm/layer_{layer}/pre_attention_norm/scale" in flat:
        pre = f"llm/layer_{layer}"
        is_global = (layer + 1) % period == 0
        mask = pair if is_global else pair & near
        base = 1_000_000.0 if is_global else 10_000.0
        y = rms_norm(x, _p(flat, f"{pre}/pre_attention_norm/scale"))
        q = np.einsum("ld,hdk->lhk", y, _p(flat, f"{pre}/attn/q_einsum/w"))
        kv = np.einsum("ld,ckdh->clkh", y, _p(flat, f"{pre}/attn/kv_einsum/w"))
        k, v = kv[0], kv[1]
        q = rms_norm(q, _p(flat, f"{pre}/attn/_query_norm/scale"))
        k = rms_norm(k, _p(flat, f"{pre}/attn/_key_norm/scale"))
        q = rope(q, positions, base) * q.shape[-1] ** -0.5
        k = rope(k, positions, base)
        group = q.shape[1] // k.shape[1]
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        logits = np.einsum("qhk,shk->hqs", q, k)
        logits = np.where(mask[None], logits, K_MASK)
        o = np.einsum("hqs,shk->qhk", softmax(logits), v)
        att = np.einsum("qhk,hkd->qd", o, _p(flat, f"{pre}/attn/attn_vec_einsum/w"))
        x = x + rms_norm(att, _p(flat, f"{pre}/post_attention_norm/scale"))
        y = rms_norm(x, _p(flat, f"{pre}/pre_ffw_norm/scale"))
        gate = np.einsum("ld,nfd->nlf", y, _p(flat, f"{pre}/mlp/gating_einsum"))
        y = (gelu_tanh(gate[0]) * gate[1]) @ _p(flat, f"{pre}/mlp/linear")
        x = x + rms_norm(y, _p(flat, f"{pre}/post_ffw_norm/scale"))
        layer += 1
    return rms_norm(x, _p(flat, "llm/final_norm/scale"))


def logits(flat, images, image_mask, tokens, token_mask, window=512):
    """One frame: images [K, H, W, 3] float, image_mask [K], tokens [T], token_mask [T] -> [bins]."""
    image_tokens = np.concatenate(
        [siglip(flat, im) @ _p(flat, "img_projection/kernel") + _p(flat, "img_projection/bias") for im in images]
    )
    per_image = image_tokens.shape[0] // len(images)
    image_valid = np.repeat(np.asarray(image_mask, bool), per_image)

    table = _p(flat, "llm/embedder/input_embedding")
    text = table[np.asarray(tokens)] * np.sqrt(table.shape[1])
    ca = "cross_attention"
    q_in = layer_norm(text, _p(flat, "cross_attn_norm/scale"), _p(flat, "cross_attn_norm/bias"))
    q = np.einsum("td,dhk->thk", q_in, _p(flat, f"{ca}/query/kernel")) + _p(flat, f"{ca}/query/bias")
    k = np.einsum("sd,dhk->shk", image_tokens, _p(flat, f"{ca}/key/kernel")) + _p(flat, f"{ca}/key/bias")
    v = np.einsum("sd,dhk->shk", image_tokens, _p(flat, f"{ca}/value/kernel")) + _p(flat, f"{ca}/value/bias")
    probs = softmax(np.einsum("thk,shk->hts", q / np.sqrt(q.shape[-1]), k))  # no mask at all
    o = np.einsum("hts,shk->thk", probs, v)
    text = text + np.einsum("thk,hkd->td", o, _p(flat, f"{ca}/out/kernel")) + _p(flat, f"{ca}/out/bias")

    sequence = np.concatenate([image_tokens, text])
    valid = np.concatenate([image_valid, np.asarray(token_mask, bool)])
    hidden = gemma(flat, sequence, valid, window=window)
    pooled = (hidden * valid[:, None]).sum(0) / max(valid.sum(), 1)

    y = layer_norm(pooled, _p(flat, "value_head/layer_norm/scale"), _p(flat, "value_head/layer_norm/bias"))
    y = gelu_tanh(y @ _p(flat, "value_head/linear1/kernel") + _p(flat, "value_head/linear1/bias"))
    return y @ _p(flat, "value_head/linear2/kernel") + _p(flat, "value_head/linear2/bias")


def value(flat, images, image_mask, tokens, token_mask):
    out = logits(flat, images, image_mask, tokens, token_mask)
    return float(softmax(out) @ np.linspace(-1.0, 0.0, out.shape[-1]))
